"""pki layer: see docs/architecture.md."""
