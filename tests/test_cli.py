"""The command line: help on every command, and the demo pipeline end to end on the embedded model."""

from __future__ import annotations

import pytest

from tests.conftest import run_cli

COMMANDS = [
    [],
    ["run"],
    ["synth"],
    ["models"],
    ["ask"],
    ["data"],
    ["data", "import"],
    ["data", "export"],
    ["data", "show"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "syllabus")
def test_help_explains_with_example(command):
    result = run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    if command and command != ["data"]:
        assert "Example" in result.stdout


@pytest.mark.slow
def test_models_lists_and_loads_packaged_models():
    result = run_cli("models")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smollm2" in result.stdout and "gemma3-270m" in result.stdout
    assert result.stdout.count("loads and generates") == 2


@pytest.mark.slow
def test_ask_embedded():
    result = run_cli("ask", "Say hello.", "--max-tokens", "8")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def _command_paths(command, path=()):
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _command_paths(sub, (*path, name))


def _help_sources(command) -> str:
    return " ".join([command.help or "", *(getattr(p, "help", None) or "" for p in command.params)])


def test_help_shows_recipe_table_names_in_brackets(capsys, monkeypatch):
    """Rich markup swallowed "[presets.NAME]", "[[arms]]" and "[synth]" from help texts."""
    import re

    import typer

    from syllabus import cli

    monkeypatch.setenv("COLUMNS", "400")
    raw = typer.main.get_command(cli.app)  # as typer builds it, before escaping
    checked = 0
    for path in _command_paths(raw):
        source = raw
        for name in path:
            source = source.commands[name]
        cli.cli_command().main([*path, "--help"], prog_name="syllabus", standalone_mode=False)
        shown = " ".join(capsys.readouterr().out.replace("│", " ").split())
        assert "[]" not in shown, path
        for table in re.findall(r"\[\[?[a-z][\w.]*\]?\]", _help_sources(source)):
            if table not in {"[bold]", "[dim]", "[italic]"}:
                assert table in shown, (path, table)
                checked += 1
    assert checked >= 5  # the run, synth and curate texts quote tables


def test_run_takes_out_like_every_other_verb(tmp_path):
    """`syllabus run` took only --run-dir where every other verb takes -o/--out; now -o/--out
    is its one spelling (the CLI convention), and --run-dir is refused."""
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "r"\n')
    for flag in ("-o", "--out"):
        result = run_cli("run", str(recipe), flag, str(tmp_path / "out"))
        assert "No such option" not in result.stderr, flag
        assert "has no [[arms]]" in result.stderr, result.stderr
    old = run_cli("run", str(recipe), "--run-dir", str(tmp_path / "out"))
    assert old.returncode == 2 and "No such option" in old.stderr
