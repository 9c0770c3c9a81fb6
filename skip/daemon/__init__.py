"""daemon layer: see docs/architecture.md."""
