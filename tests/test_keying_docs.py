"""The runnable example of docs/keying.md runs, as written."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "keying.md"


def test_keying_md_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert blocks, "docs/keying.md lost its example"
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), {})
