"""skipd's traffic-key log file (``[daemon] key_log``, docs/decrypt.md): off by default,
mode 0600 even over a looser existing file, never through a symlink, lines that
skip.offline.keylog parses, and a loud warning."""

from __future__ import annotations

import logging
import os
import stat

import pytest

from skip.daemon.config import DaemonSettings
from skip.daemon.key_log import KeyLogFile
from skip.keying.events import TrafficKeys
from skip.offline.keylog import parse_keylog

KEYS = TrafficKeys("out", "local", "b", 2, bytes(range(12)) + b"\1" * 48, b"\2" * 32,
                   b"\3" * 36, b"")


def test_off_by_default():
    assert DaemonSettings().key_log is None


def test_lines_parse_back_and_the_file_is_private(tmp_path, caplog):
    path = tmp_path / "keys"
    path.write_text("")
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="skipd"):
        log = KeyLogFile(path)
    log(KEYS)
    log(KEYS)
    log.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert any("DANGEROUS" in r.getMessage() for r in caplog.records)
    text = path.read_text()
    assert text.startswith("# SKIP traffic-key log") and text.count("SKIP_TRAFFIC_KEY") == 2
    (entry,) = parse_keylog(text.splitlines()).values()
    assert entry.e_kp == KEYS.e_kp and entry.a_kp == b"" and entry.header == KEYS.header
    KeyLogFile(path).close()  # appending again adds no second comment
    assert path.read_text().count("# SKIP") == 1


def test_a_symlink_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("precious\n")
    (tmp_path / "keys").symlink_to(target)
    with pytest.raises(OSError):
        KeyLogFile(tmp_path / "keys")
    assert target.read_text() == "precious\n"
