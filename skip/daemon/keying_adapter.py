"""Builds the keying engine skipd drives (the only module that knows the keying API)."""

from __future__ import annotations

from skip.daemon.config import Config
from skip.daemon.engine import KeyingEngine
from skip.errors import ConfigError


def build_engine(config: Config, now: float) -> KeyingEngine | None:
    """None when no rule protects anything (skipd then only passes or denies cleartext)."""
    if not any(rule.action == "protect" for rule in (config.default, *config.peers)):
        return None
    raise ConfigError("config_invalid", f"{config.path}: protect rules need the SKIP keying "
                      "engine, which is not available in this build yet")
