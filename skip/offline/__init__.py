"""offline layer: opening captured SKIP traffic after the fact (docs/decrypt.md).

Above the keying layer, beside discovery: it reuses the engine's key hierarchy and never
touches a live endpoint. Pure: files are the CLI's business (skip.cli.decrypt)."""
