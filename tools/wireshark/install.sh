#!/usr/bin/env bash
# Install the SKIP dissector for the current user: copy skip.lua into Wireshark's personal
# Lua plugin folder (the one `tshark -G folders` names, ~/.local/lib/wireshark/plugins on
# Linux). Wireshark and tshark load it at start; no root needed. docs/wireshark.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir=""
if command -v tshark >/dev/null 2>&1; then
    dir="$(tshark -G folders 2>/dev/null | sed -n 's/^Personal Lua Plugins:[[:space:]]*//p')"
fi
dir="${dir:-$HOME/.local/lib/wireshark/plugins}"
mkdir -p "$dir"
install -m 0644 "$here/skip.lua" "$dir/skip.lua"
echo "installed $dir/skip.lua"
