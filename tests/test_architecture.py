"""The layering of docs/architecture.md, enforced: a layer imports only the layers below it,
and nothing below the daemon reads the clock or touches sockets, processes or event loops."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "skip"
ORDER = ["errors", "native", "wire", "crypto", "pki", "ipsec", "keying", "multicast", "discovery",
         "offline", "files", "daemon", "cli"]
ALLOWED_BELOW = {  # ipsec does not need pki; everything else may use every layer below it
    "ipsec": {"errors", "native", "wire", "crypto", "ipsec"},
}
SANS_IO = {"errors", "native", "wire", "crypto", "pki", "ipsec", "keying", "multicast", "discovery",
           "offline"}
IO_MODULES = {"time", "socket", "asyncio", "select", "selectors", "subprocess", "signal"}
CLOCK_READS = {"now", "utcnow", "today", "monotonic", "perf_counter"}


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    if rel.parts[0].endswith(".py"):
        name = rel.stem
        return name if name in ORDER else "cli"  # demo.py and friends are entry points
    return rel.parts[0]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layer_imports_only_layers_below(path):
    layer = _layer(path)
    allowed = ALLOWED_BELOW.get(layer, set(ORDER[: ORDER.index(layer) + 1]))
    for module in _imports(path):
        if module == "skip" or not module.startswith("skip."):
            continue
        target = module.split(".")[1]
        target = "native" if target == "_native" else target  # the compiled core's layer
        target = target if target in ORDER else "cli"
        assert target in allowed, f"{path.name} ({layer}) imports {module} ({target})"


@pytest.mark.parametrize("path", [p for p in MODULES if _layer(p) in SANS_IO],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_sans_io_core_has_no_clock_or_sockets(path):
    bad = {m for m in _imports(path) if m.split(".")[0] in IO_MODULES}
    assert not bad, f"{path.name} imports {bad}: time and I/O belong to skip/daemon"
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        assert not (isinstance(func, ast.Name) and func.id == "open"), (
            f"{path.name}:{node.lineno} opens a file: pass bytes in instead")
        assert not (isinstance(func, ast.Attribute) and func.attr in CLOCK_READS), (
            f"{path.name}:{node.lineno} reads the clock: take `now` as a parameter")
