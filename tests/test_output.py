"""Output a person can read (issue 22, item 9): help pages without markup accidents or odd metavars,
tables and warnings at 80 columns, progress inside a long clip, an ETA while training."""

from __future__ import annotations

import re

import pytest

from conftest import run_cli

WIDTH = 80


@pytest.fixture()
def narrow(monkeypatch):
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    # the module-level consoles of depdet.cli were sized when first used: size them again
    import depdet.cli as cli

    for con in (cli.console, cli.out):
        monkeypatch.setattr(con, "_width", WIDTH)


def _command_paths():
    """Every command and sub-command of the real CLI, walked from the Click tree Typer builds."""
    import typer.main

    from depdet.cli import app

    root = typer.main.get_command(app)
    paths = []

    def walk(cmd, path):
        paths.append((path, cmd))
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            if not sub.hidden:
                walk(sub, [*path, name])

    walk(root, [])
    return paths


COMMANDS = _command_paths()
# a Rich tag that would be parsed (and dropped) when not escaped: [name], [/], [#fff], [@click]
_TAG = re.compile(r"(?<!\\)\[[a-z#/@][^\[\]]*\]")


def _help_texts(cmd):
    yield "help", cmd.help or ""
    yield "epilog", cmd.epilog or ""
    for p in cmd.params:
        yield p.name, getattr(p, "help", None) or ""


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) or "depdet" for p, _ in COMMANDS])
def test_help_has_no_markup_accident_odd_metavar_or_long_line(path, cmd, narrow, capsys):
    for where, text in _help_texts(cmd):
        assert not _TAG.search(text), f"{' '.join(path)} {where}: Rich would eat {_TAG.search(text).group()!r}"
    code, out, err = run_cli([*path, "--help"], capsys)
    assert code == 0, err
    for line in out.splitlines():
        assert len(line) <= WIDTH, f"{len(line)} columns: {line!r}"
    for odd in ("<bool>", " range>", "<list[", "<str range"):
        assert odd not in out, f"{' '.join(path) or 'depdet'} --help shows {odd!r}"
    flat = " ".join(out.replace("│", " ").split())
    for _, text in _help_texts(cmd):
        for extra in re.findall(r'pip install -e \\?"\.\\?\[\w+\]"', text):
            assert extra.replace("\\", "") in flat, f"{extra!r} lost in {' '.join(path)} --help"


def test_the_cluster_extra_survives_in_extract_and_train_help(narrow, capsys):
    for cmd in ("extract", "train"):
        code, out, err = run_cli([cmd, "--help"], capsys)
        assert 'pip install -e ".[cluster]"' in " ".join(out.replace("│", " ").split()), cmd
