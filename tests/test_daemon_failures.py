"""What an operator meets when skipd cannot start: a second skipd, a port or an interface name
already taken, no privileges, unreadable files. Each must be one line on stderr with a reason
code and exit status 2, never a traceback, and must leave the kernel, and any skipd already
running, as they were. Run against the real kernel in a network namespace; the unprivileged
cases run skipd as user nobody (setpriv), so the kernel, not a mock, refuses."""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skip.daemon.control import request
from tests.netns import Lab, Namespace, can_run, make_pki, skipd_config, start_skipd, stop_skipd

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(can_run() is not None, reason=str(can_run()))]

NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
CONFIG = """
[daemon]
control_socket = "{sock}"
interface = "{interface}"
{extra}
[default]
action = "allow-cleartext"

[[peer]]
name = "beta"
hosts = ["192.0.2.2"]
mode = "transport"
action = "deny"
"""


@pytest.fixture()
def host() -> Iterator[Namespace]:
    with Lab() as lab:
        yield lab.host("a")


@pytest.fixture()
def work() -> Iterator[Path]:
    """A directory user nobody can read (pytest's own temporary directories are root's)."""
    path = Path(tempfile.mkdtemp(prefix="skipd-failures-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def write(work: Path, name: str, *, sock: Path, interface: str = "skip0", **daemon: object
          ) -> Path:
    extra = "\n".join(f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}"
                      for k, v in daemon.items())
    path = work / f"{name}.toml"
    path.write_text(CONFIG.format(sock=sock, interface=interface, extra=extra))
    path.chmod(0o644)
    return path


def refused(ns: Namespace, config: Path, *options: str, user: tuple[str, ...] = ()) -> str:
    """Run skipd to its failure; the one line it printed."""
    result = ns.run(*user, sys.executable, "-m", "skip.cli.skipd", "-c", str(config), *options,
                    check=False, timeout=30)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    return lines[0]


def kernel(ns: Namespace) -> tuple[str, str]:
    return ns.run("ip", "rule").stdout + ns.run("ip", "-6", "rule").stdout, \
        ns.run("ip", "-o", "link").stdout


def test_a_second_skipd_and_taken_ports_leave_the_first_one_alone(host: Namespace,
                                                                  work: Path) -> None:
    sock = work / "first.sock"
    first = start_skipd(host, write(work, "first", sock=sock, udp_port=5757,
                                    metrics="127.0.0.1:9657"), sock, work / "first.log")
    before = kernel(host)
    # the same control socket, even with its own interface: refused before any kernel change
    line = refused(host, write(work, "second", sock=sock, interface="skip1"))
    assert line.startswith(f"skipd: in_use: {sock}: another skipd is running on this control "
                           "socket"), line
    # its own socket and kernel objects, but a port the first one holds
    own = {"sock": work / "third.sock", "interface": "skip2", "table": 58, "fwmark": 0x5C2,
           "rule_priority": 5800}
    line = refused(host, write(work, "third", **own, udp_port=5757))
    assert line.startswith("skipd: in_use: cannot bind the SKIP-in-UDP port 5757: "), line
    line = refused(host, write(work, "fourth", **own, metrics="127.0.0.1:9657"))
    assert line.startswith("skipd: in_use: cannot serve metrics on 127.0.0.1:9657: "), line
    assert kernel(host) == before  # what the failed starts added, they removed
    assert request(sock, "status")["ok"] and sock.exists()
    assert stop_skipd(first) == 0
    # the lock goes with the process: the next skipd on that socket starts
    assert stop_skipd(start_skipd(host, write(work, "second", sock=sock, interface="skip1"),
                                  sock, work / "second.log")) == 0


def test_an_interface_name_taken_by_another_device(host: Namespace, work: Path) -> None:
    host.run("ip", "link", "add", "skip0", "type", "veth", "peer", "name", "skip0p")
    before = kernel(host)
    line = refused(host, write(work, "a", sock=work / "a.sock"))
    assert line.startswith("skipd: io_error: cannot create TUN device skip0 (is skip0 an "
                           "interface of another kind?"), line
    assert kernel(host) == before


def test_a_tun_device_deleted_under_skipd_stops_it_cleanly(host: Namespace,
                                                           work: Path) -> None:
    """Every read then fails (EBADFD): skipd must not spin on it, but stop and exit non-zero
    so that its supervisor restarts it, leaving the protected address blocked (fail closed)
    rather than routed in clear meanwhile."""
    log = work / "a.log"
    proc = start_skipd(host, write(work, "a", sock=work / "a.sock"), work / "a.sock", log)
    host.run("ip", "link", "del", "skip0")
    assert proc.wait(timeout=10) == 2
    text = log.read_text()
    assert "Traceback" not in text and len(text) < 2000, text[:2000]
    assert text.splitlines()[-1] == ("skipd: io_error: TUN device skip0 failed (deleted?): "
                                     "File descriptor in bad state")
    assert "fwmark 0x5c1 lookup 57" in kernel(host)[0] and not (work / "a.sock").exists()
    assert "unreachable 192.0.2.2 " in host.run("ip", "route", "show", "table", "57").stdout


def test_a_route_the_kernel_refuses_on_reload_is_reported(host: Namespace, work: Path) -> None:
    sock, log = work / "a.sock", work / "a.log"
    config = write(work, "a", sock=sock)
    start_skipd(host, config, sock, log)
    host.run("sysctl", "-q", "-w", "net.ipv6.conf.skip0.disable_ipv6=1")
    with config.open("a") as out:
        out.write('[[peer]]\nname = "v6"\nhosts = ["2001:db8::9"]\naction = "deny"\n')
    result = host.run(sys.executable, "-m", "skip.cli.skipctl", "reload", "-s", str(sock),
                      check=False)
    assert result.returncode == 1 and "io_error: netlink: route add 2001:db8::9" in \
        result.stderr, result.stderr
    assert "configuration reloaded, but the kernel refused a route [reason=io_error" in \
        log.read_text()
    assert request(sock, "status")["ok"]  # and skipd serves on


def test_without_privileges(host: Namespace, work: Path) -> None:
    # the default kind of socket path: a directory nobody may create
    run = work / "run"
    line = refused(host, write(work, "a", sock=run / "skipd.sock"), user=NOBODY)
    assert line == (f"skipd: io_error: cannot create the control socket's lock "
                    f"{run}/skipd.sock.lock: Permission denied (skipd needs root, or "
                    "CAP_NET_ADMIN and CAP_NET_RAW and access to its files)")
    # a writable socket directory: then the TUN device is refused
    run.mkdir(mode=0o777)
    run.chmod(0o777)
    line = refused(host, write(work, "a", sock=run / "skipd.sock"), user=NOBODY)
    # (where /dev/net/tun is mode 0666 the device opens, and creating the interface fails)
    assert re.fullmatch(r"skipd: io_error: cannot (open /dev/net/tun|create TUN device skip0): "
                        r"(Permission denied|Operation not permitted) \(skipd needs root.*\)",
                        line), line
    assert "skip0" not in kernel(host)[1]


def test_unreadable_key_and_certificate_store(host: Namespace, work: Path) -> None:
    pki = work / "pki"
    make_pki(pki, {"a": (["192.0.2.1"], "x25519"), "b": (["192.0.2.2"], "x25519")},
             time.time())
    store = work / "peers-a"
    store.mkdir()
    shutil.copy(pki / "b.pem", store)
    # skipd as nobody reading root's files needs a key others can read: said explicitly
    config = skipd_config(work, "a", pki, peers=[{"name": "b", "hosts": ["10.57.0.2"],
                                                  "tunnel": "192.0.2.2", "action": "protect"}],
                          identity={"allow_readable_key": True})
    config.chmod(0o644)
    (pki / "a.key").chmod(0o644)
    ok = host.run(*NOBODY, sys.executable, "-m", "skip.cli.skipd", "-c", str(config), "--check",
                  check=False)
    assert ok.returncode == 0, ok.stderr  # as nobody, with every file readable
    (pki / "a.key").chmod(0o600)
    line = refused(host, config, "--check", user=NOBODY)
    assert line == (f"skipd: config_invalid: {pki}/a.key: cannot read the private key: "
                    "Permission denied"), line
    (pki / "a.key").chmod(0o644)
    store.chmod(0o700)
    line = refused(host, config, "--check", user=NOBODY)
    assert line == (f"skipd: config_invalid: {store}: cannot list "
                    "identity.peer_certificates: Permission denied"), line
