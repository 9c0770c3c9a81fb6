"""The systemd units (issue 13): ``systemd-analyze verify`` accepts both (with the man pages
tools/gen-man makes, so ``Documentation=`` names something installed), ``systemd-analyze
security --offline=yes`` rates them (it rated the old unit 5.0 MEDIUM), and the daemon does
what the units promise: under ``Type=notify`` READY=1 reaches a NOTIFY_SOCKET only once the
TUN device and the control socket are up, with skipd holding no capability but CAP_NET_ADMIN
and CAP_NET_RAW (its bounding set cut to those by setpriv, as the units'
``CapabilityBoundingSet=`` does), in a network namespace. (The checkout is not readable by
an unprivileged user here, so the test runs as uid 0 with only those two capabilities: no
CAP_DAC_OVERRIDE, CAP_SYS_ADMIN or any other.)"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skip.daemon.control import request
from tests.netns import Lab, can_run, make_pki, skipd_config

ROOT = Path(__file__).resolve().parent.parent
UNITS = ("skipd.service", "skipd@.service")
BEST = 2.0  # what the daemon allows: it needs the host's network, netlink and raw sockets


def _settings(unit: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (ROOT / "tools" / unit).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


@pytest.mark.parametrize("unit", UNITS)
def test_unit_settings(unit: str) -> None:
    s = _settings(unit)
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["User"] == ["skipd"]
    assert s["AmbientCapabilities"] == ["CAP_NET_ADMIN CAP_NET_RAW"]
    assert s["CapabilityBoundingSet"] == ["CAP_NET_ADMIN CAP_NET_RAW"]
    assert s["UMask"] == ["0077"] and s["LimitCORE"] == ["0"]  # docs/pfs.md: no core dumps
    for key in ("ProtectClock", "ProtectKernelLogs", "RestrictSUIDSGID", "NoNewPrivileges"):
        assert s[key] == ["yes"], key
    assert s["ProtectProc"] == ["invisible"]
    assert s["SystemCallFilter"][0] == "@system-service"


def _prepared(tmp_path: Path) -> list[Path]:
    """The units as installed: ExecStart naming this checkout's skipd, and the man pages
    generated into a MANPATH."""
    subprocess.run([sys.executable, str(ROOT / "tools" / "gen-man"), str(tmp_path / "man")],
                   check=True, capture_output=True, timeout=60)
    skipd = shutil.which("skipd", path=str(Path(sys.executable).parent)) or "/usr/bin/true"
    out = []
    for unit, name in (("skipd.service", "skipd.service"),
                       ("skipd@.service", "skipd@site-a.service")):
        text = (ROOT / "tools" / unit).read_text().replace("/usr/local/bin/skipd", skipd)
        (tmp_path / name).write_text(text)
        out.append(tmp_path / name)
    return out


needs_analyze = pytest.mark.skipif(not shutil.which("systemd-analyze"),
                                   reason="systemd-analyze is not installed")


@needs_analyze
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    units = _prepared(tmp_path)
    result = subprocess.run(["systemd-analyze", "verify", *map(str, units)],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "MANPATH": str(tmp_path / "man")})
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@needs_analyze
@pytest.mark.parametrize("index", [0, 1])
def test_systemd_analyze_security_rating(tmp_path: Path, index: int) -> None:
    unit = _prepared(tmp_path)[index]
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                            capture_output=True, text=True, timeout=60)
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d) (\w+)", result.stdout)
    assert found, result.stdout[-500:] + result.stderr
    assert float(found.group(1)) <= BEST and found.group(2) == "OK", found.group(0)
    # what is left open is what skipd needs, and nothing else
    open_items = {line.split()[1] for line in result.stdout.splitlines()
                  if line.startswith("✗")}
    assert "NoNewPrivileges=" not in open_items and "UMask=" not in open_items
    assert "CapabilityBoundingSet=~CAP_SYS_ADMIN" not in open_items


@pytest.mark.netns
@pytest.mark.skipif(can_run() is not None, reason=str(can_run()))
@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs setpriv (util-linux)")
def test_ready_arrives_once_skipd_is_up_with_two_capabilities(tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    pki = work / "pki"
    make_pki(pki, {"a": (["192.0.2.1"], "x25519"), "b": (["192.0.2.2"], "x25519")}, time.time())
    (work / "peers-a").mkdir()
    shutil.copy(pki / "b.pem", work / "peers-a")
    run = work / "run"
    config = skipd_config(work, "a", pki, overlay=["10.57.0.1/24"],
                          daemon={"control_socket": str(run / "a.sock")},
                          peers=[{"name": "b", "hosts": ["10.57.0.2"], "tunnel": "192.0.2.2",
                                  "action": "protect"}])
    notify = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    os.chmod(notify, 0o777)
    listener.settimeout(20)
    caps = "-all,+net_admin,+net_raw"
    with Lab() as lab:
        a = lab.host("a")
        b = lab.host("b")
        lab.link(a, ["192.0.2.1/24"], b, ["192.0.2.2/24"])
        proc = a.popen("setpriv", f"--inh-caps={caps}", f"--ambient-caps={caps}",
                       f"--bounding-set={caps}", "env", f"NOTIFY_SOCKET={notify}",
                       f"PYTHONPATH={ROOT}", sys.executable, "-m", "skip.cli.skipd", "-c",
                       str(config), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            message, _sender = listener.recvfrom(4096)
        except TimeoutError:
            proc.kill()
            out = proc.communicate()[0].decode()
            raise AssertionError(f"no READY=1 from skipd:\n{out}") from None
        # when READY=1 arrives, what it promises is there
        assert request(run / "a.sock", "status")["ok"]
        assert "skip0" in a.run("ip", "-o", "link").stdout
        fields = dict(line.split("=", 1) for line in message.decode().splitlines())
        assert fields["READY"] == "1" and fields["MAINPID"] == str(
            int(a.run("pgrep", "-f", f"skip.cli.skipd -c {config}").stdout.split()[0]))
        assert "skip0" in fields["STATUS"]
        status = Path(f"/proc/{fields['MAINPID']}/status").read_text()
        effective = int(re.search(r"^CapEff:\s+(\w+)", status, re.M).group(1), 16)
        assert effective == (1 << 12) | (1 << 13)  # CAP_NET_ADMIN, CAP_NET_RAW: no more
        listener.close()
