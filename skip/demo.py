"""Placeholder demonstration; replaced by the engine walk-through."""

print("skip: demo under construction")
