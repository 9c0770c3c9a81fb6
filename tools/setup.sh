#!/usr/bin/env bash
# One-time set-up on a fresh Debian machine (as root): Debian packages the tests and the demo
# use as outside witnesses, then a virtualenv in .venv with skip and its dev extras.
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# gcc, libssl-dev and the Python headers build the compiled core (skip/_native.c)
DEB_PACKAGES=(tshark openssl iproute2 iputils-ping iperf3 procps kmod knot knot-dnsutils ldnsutils bind9-utils
              gcc libc6-dev libssl-dev python3-dev)
need=()
for pkg in "${DEB_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ! command -v python3 >/dev/null 2>&1; then need+=(python3 python3-venv python3-pip); fi
if ((${#need[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing Debian packages (${need[*]}); run as root or install them" >&2
        exit 1
    fi
    echo "setup: installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv 2>/dev/null || {
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        "$PY" -m venv .venv
    }
fi
stamp=.venv/.skip-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing skip and its dev dependencies into .venv"
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e '.[dev]'
    touch "$stamp"
fi
# The compiled core is built in place (skip/_native*.so) by the editable install; rebuild it
# when its source changed since. Its build is optional for pip, so check it happened here.
so=$(ls skip/_native*.so 2>/dev/null | head -n1 || true)
if [ -z "$so" ] || [ skip/_native.c -nt "$so" ]; then
    echo "setup: building the compiled core (skip/_native.c)"
    .venv/bin/python -m pip install -q --no-deps -e . 2>/dev/null
fi
if ! SKIP_PURE_PYTHON= .venv/bin/python -c 'import skip._native' 2>/dev/null; then
    echo "setup: the compiled core did not build (gcc, libssl-dev, Python headers?)" >&2
    exit 1
fi
# Bytecode, as a wheel install would have it: an editable install leaves every start to compile
# about a hundred modules (0.1 s of skipd's start), and PYTHONDONTWRITEBYTECODE in an
# environment stops Python from caching them. Stale files are recompiled (mtime check).
.venv/bin/python -m compileall -q skip

# man pages and shell completion for skipd, skipctl, skip-cert and skip-decrypt, generated from
# their argument parsers (tools/gen-man); system-wide, so only as root
if [ "$(id -u)" -eq 0 ]; then
    .venv/bin/python tools/gen-man --install >/dev/null
fi
