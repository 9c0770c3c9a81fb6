"""The README's main command (tools/demo runs tools/netns_demo.py): it must work end to end
and prove what it claims, then leave nothing behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.netns import can_run

pytestmark = [pytest.mark.netns, pytest.mark.skipif(can_run() is not None, reason=str(can_run()))]
ROOT = Path(__file__).resolve().parent.parent


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def test_demo_runs_proves_protection_and_cleans_up():
    before = _namespaces()
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "netns_demo.py"), "--size", "2"],
                          capture_output=True, text=True, timeout=180, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "3 packets transmitted, 3 received, 0% packet loss" in out
    assert out.count("(match)") >= 1 and "sha256 match" in out
    assert "appears in the capture: False" in out
    assert "OK: SKIP protected every packet" in out
    assert _namespaces() == before, "the demo left network namespaces behind"
    assert not (ROOT / "certs" / "demo").exists(), "the demo left its certificates behind"
