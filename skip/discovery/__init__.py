"""discovery layer: finding peers' certificates (CDP, the DNS), sans-I/O; see docs/discovery.md."""
