"""``skipd --check`` (run by the systemd unit before start) warns about peer certificates
skipd will not use, without refusing the file: one that chains to no trust anchor (here,
issued by another CA of the same name, so its signature does not verify under our anchor:
the witness is skip.pki's own validation refusing it), and a protecting rule left without
any certificate."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.netns import make_pki, skipd_config


def _check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "skip.cli.skipd", "-c", str(config),
                           "--check"], capture_output=True, text=True, timeout=60)


def test_check_warns_about_certificates_that_do_not_chain(tmp_path: Path) -> None:
    now = time.time()
    pki, other = tmp_path / "pki", tmp_path / "other-ca"
    make_pki(pki, {"a": (["192.0.2.1"], "x25519"), "b": (["192.0.2.2"], "x25519")}, now)
    make_pki(other, {"c": (["192.0.2.3"], "x25519"), "d": (["192.0.2.4"], "x25519")}, now)
    store = tmp_path / "peers-a"
    store.mkdir()
    shutil.copy(pki / "b.pem", store)
    config = skipd_config(tmp_path, "a", pki, peers=[
        {"name": "b", "hosts": ["10.57.0.2"], "tunnel": "192.0.2.2", "action": "protect"}])
    clean = _check(config)
    assert clean.returncode == 0 and clean.stderr == ""
    assert clean.stdout.strip() == f"{config}: OK (1 peer, default action deny)"

    shutil.copy(other / "c.pem", store)  # wanted by a rule, signed by a CA we do not trust
    shutil.copy(other / "d.pem", store)  # wanted by no rule today: still worth a warning
    config = skipd_config(tmp_path, "a", pki, peers=[
        {"name": "b", "hosts": ["10.57.0.2"], "tunnel": "192.0.2.2", "action": "protect"},
        {"name": "c", "hosts": ["10.57.0.3"], "tunnel": "192.0.2.3", "action": "protect"}])
    warned = _check(config)
    assert warned.returncode == 0, warned.stderr
    lines = warned.stderr.strip().splitlines()
    assert all(line.startswith("skipd: warning: ") for line in lines), lines
    assert any(f"{store}/c.pem: peer c: cert_bad_signature" in line for line in lines), lines
    assert any(f"{store}/d.pem: cert_bad_signature: CN=d" in line for line in lines), lines
    assert any(line.startswith("skipd: warning: peer c: no valid certificate") for line in lines)
    assert not any("b.pem" in line for line in lines)
    assert warned.stdout.strip() == f"{config}: OK (2 peers, default action deny, 3 warnings)"
