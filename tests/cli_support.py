"""Driving skip-cert in-process from tests: run it, expect success, expect a one-line refusal."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from skip.cli.cert import main

# One line, a reason code from skip.errors, then the detail.
ONE_LINE = re.compile(r"^skip-cert: error: [a-z_]+(: .+)?$")


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def ok(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    return out


def refused(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> str:
    """Exit status 1 and one line with a reason code, no traceback; returns that line."""
    code, out, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 1, out
    assert len(lines) == 1 and ONE_LINE.match(lines[0]), err
    assert "Traceback" not in err
    return lines[0]
