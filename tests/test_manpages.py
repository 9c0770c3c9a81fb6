"""tools/gen-man (issue 13): man pages and bash/zsh completion generated from the tools' own
argparse parsers. Checked with outside readers: groff renders each page without
warnings and the rendering names every subcommand and option; bash, given the completion
script, offers every subcommand of skipctl and skip-cert; zsh (where installed) parses its
script."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from skip.cli import cert, decrypt, skipctl, skipd

ROOT = Path(__file__).resolve().parent.parent
PARSERS = {"skipd": (skipd.build_parser(), 8), "skipctl": (skipctl.build_parser(), 8),
           "skip-cert": (cert.build_parser(), 1), "skip-decrypt": (decrypt.build_parser(), 1)}


def _subcommands(parser: argparse.ArgumentParser) -> list[str]:
    """The subcommands by their own names (an alias such as ``fingerprint`` is mentioned with
    its command, not given a section of its own)."""
    return [choice.dest for action in parser._actions
            if isinstance(action, argparse._SubParsersAction)
            for choice in action._choices_actions]


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [o for a in parser._actions for o in a.option_strings
            if o.startswith("--") and o != "--help"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("man")
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gen-man"), str(out)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return out


def _rendered(generated: Path, name: str, section: int) -> str:
    page = generated / f"man{section}" / f"{name}.{section}"
    if shutil.which("groff"):
        warnings = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-Wbreak", "-z", str(page)],
                                  capture_output=True, text=True, timeout=30)
        assert warnings.returncode == 0 and not warnings.stderr.strip(), warnings.stderr
        shown = subprocess.run(["groff", "-man", "-Tascii", "-P-cbou", "-rLL=200n",
                                str(page)], capture_output=True, text=True, timeout=30)
        assert shown.returncode == 0, shown.stderr
        return shown.stdout
    return page.read_text()


@pytest.mark.parametrize("name", list(PARSERS))
def test_pages_list_every_subcommand_and_option(generated: Path, name: str) -> None:
    parser, section = PARSERS[name]
    text = _rendered(generated, name, section)
    assert text.splitlines()[0].split()[0] == f"{name.upper()}({section})"
    for command in _subcommands(parser):
        assert f"{name} {command}" in text, command
        sub = next(a for a in parser._actions
                   if isinstance(a, argparse._SubParsersAction)).choices[command]
        for option in _options(sub):
            assert option in text, (command, option)
    for option in _options(parser):
        assert option in text, option
    if name == "skipctl":
        assert {"certs", "monitor", "counters"} <= set(_subcommands(parser))
        assert "--reset" in text


@pytest.mark.parametrize("name", ["skipctl", "skip-cert"])
def test_bash_completion_offers_every_subcommand(generated: Path, name: str) -> None:
    script = generated / "bash-completion" / name
    function = f"_shtab_{name.replace('-', '_')}"
    result = subprocess.run(["bash", "-c", f'source "{script}"; COMP_WORDS=({name} ""); '
                             f'COMP_CWORD=1; {function}; printf "%s\\n" "${{COMPREPLY[@]}}"'],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    parser = PARSERS[name][0]
    names = [n for a in parser._actions if isinstance(a, argparse._SubParsersAction)
             for n in a.choices]  # aliases complete too
    assert sorted(result.stdout.split()) == sorted(names)
    assert set(_subcommands(parser)) <= set(names)


def test_bash_completion_of_an_option(generated: Path) -> None:
    script = generated / "bash-completion" / "skipctl"
    result = subprocess.run(["bash", "-c", f'source "{script}"; COMP_WORDS=(skipctl counters '
                             '--r); COMP_CWORD=2; _shtab_skipctl; echo "${COMPREPLY[@]}"'],
                            capture_output=True, text=True, timeout=30)
    assert result.stdout.split() == ["--reset"]


@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh is not installed")
def test_zsh_completion_parses(generated: Path) -> None:
    for name in PARSERS:
        script = generated / "zsh" / f"_{name}"
        assert f"#compdef {name}" in script.read_text()
        result = subprocess.run(["zsh", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_zsh_completion_names_every_subcommand(generated: Path) -> None:
    for name in ("skipctl", "skip-cert"):
        text = (generated / "zsh" / f"_{name}").read_text()
        assert text.startswith(f"#compdef {name}")
        for command in _subcommands(PARSERS[name][0]):
            assert f"    {command}:'" in text, (name, command)


def test_install_puts_everything_where_the_units_look(generated: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "gen-man"), str(generated),
                             "--install", "--prefix", str(tmp_path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    share = tmp_path / "share"
    assert (share / "man" / "man8" / "skipd.8").exists()
    assert (share / "man" / "man1" / "skip-cert.1").exists()
    assert (share / "bash-completion" / "completions" / "skipctl").exists()
    assert (share / "zsh" / "site-functions" / "_skipd").exists()
    assert (share / "doc" / "skip" / "skipd.md").exists()
