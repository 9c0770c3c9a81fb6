"""multicast layer: group keys (draft-ietf-ipsec-skip-mc-00), docs/multicast.md."""
