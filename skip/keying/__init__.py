"""keying layer: see docs/architecture.md."""
