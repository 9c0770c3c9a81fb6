"""``--version`` on the three tools prints the installed distribution's version (the
witness: importlib.metadata, i.e. what pip installed from pyproject.toml) and exits 0."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import pytest

import skip


@pytest.mark.parametrize(("tool", "module"), [("skipd", "skip.cli.skipd"),
                                              ("skipctl", "skip.cli.skipctl"),
                                              ("skip-cert", "skip.cli.cert")])
def test_version(tool: str, module: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [tool if module != "skip.cli.cert" else "skip-cert",
                                     version("skip-ipsec")]
    assert skip.__version__ == version("skip-ipsec")
