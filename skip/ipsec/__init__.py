"""ipsec layer: see docs/architecture.md."""
