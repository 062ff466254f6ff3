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


def test_models_lists_and_loads_packaged_models():
    result = run_cli("models")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "smollm2" in result.stdout and "gemma3-270m" in result.stdout
    assert result.stdout.count("loads and generates") == 2


def test_ask_embedded():
    result = run_cli("ask", "Say hello.", "--max-tokens", "8")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
