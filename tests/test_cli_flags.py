"""Every verb's flags, frozen, and the CLI convention (syllabus/cli.py's docstring) checked
mechanically on them. Modelled on torchtitan's test_no_new_cli_options.py: a new, renamed or
removed flag fails here until the table below is updated on purpose.

To update the table deliberately: make the change follow the convention, print the current
table with `PYTHONPATH=src python -m tests.test_cli_flags`, paste it over FLAGS, and say what
changed in docs/cli.md.
"""

from __future__ import annotations

import json

import pytest
import typer

from syllabus import cli

# fmt: off
FLAGS: dict[str, list[str]] = {
    "syllabus": ["--install-completion", "--show-completion"],
    "annotate": [
        "--api-key-env", "--api-model", "--concurrency", "--fresh", "--rubric", "-m/--model",
        "-n/--limit", "-o/--out", "DATASET",
    ],
    "ask": [
        "--api-key-env", "--api-model", "--complete", "--max-tokens", "--seed", "--temperature",
        "-m/--model", "PROMPT",
    ],
    "browse": ["--host", "--port", "-o/--out", "PATH"],
    "curate": ["--keep-rejected", "--preset", "--ray", "--tasks", "-o/--out", "RECIPE"],
    "data": [],
    "data export": ["-o/--out", "DATASET"],
    "data import": ["--append", "--kind", "--skip-bad", "-o/--out", "FILES..."],
    "data show": ["-n/--limit", "PATH"],
    "decontam": [
        "--humaneval/--no-humaneval", "--ngram", "--ray", "--tasks", "-b/--benchmark", "-o/--out",
        "INPUTS...",
    ],
    "dedup": [
        "--near/--no-near", "--num-perm", "--ray", "--shingle-size", "--tasks", "--threshold",
        "-o/--out", "INPUTS...",
    ],
    "eval": [
        "--api-key-env", "--api-model", "--fresh", "--max-tokens", "--prompt-style", "--samples",
        "--seed", "--semantics", "--shots", "--temperature", "--top-p", "--workers", "-m/--model",
        "-n/--limit", "-o/--out", "-q/--quiet", "-t/--task",
    ],
    "eval compare": ["OUTPUTS..."],
    "export": [
        "--fresh", "--measure", "--quant", "--text", "--tokens", "-f/--format", "-o/--out",
        "-q/--quiet", "MODEL",
    ],
    "finetune": ["--fresh", "--merge/--no-merge", "--preset", "-o/--out", "-q/--quiet", "RECIPE"],
    "fit": [
        "--features", "--negative", "--per-class", "--positive", "--reference", "--threshold",
        "--use-expected/--no-use-expected", "-o/--out", "LABELS",
    ],
    "generate": [
        "--max-tokens", "--prompt", "--seed", "--stop", "--temperature", "--top-k", "--top-p",
        "CHECKPOINT",
    ],
    "models": ["--check/--no-check"],
    "pack": [
        "--budget", "--max-repeats", "--seed", "--tokenizer", "--val-fraction", "-o/--out",
        "DATASETS...",
    ],
    "portfolio": ["--fresh", "-o/--out", "-q/--quiet", "CONFIG"],
    "route": ["--from", "--port", "CONFIG"],
    "run": ["--fresh", "--preset", "--until", "-o/--out", "-q/--quiet", "RECIPE"],
    "sandbox": [],
    "sandbox check": ["--isolation"],
    "score": ["--classifier", "--ray", "--tasks", "--threshold", "-o/--out", "INPUTS..."],
    "synth": ["--fresh", "--preset", "-o/--out", "-q/--quiet", "RECIPE"],
    "tokenizer": [],
    "tokenizer train": ["--special", "--vocab-size", "-o/--out", "DATASETS..."],
    "train": ["--data", "--fresh", "--max-steps", "--preset", "-o/--out", "-q/--quiet", "RECIPE"],
}
# fmt: on

# Verbs that write output: each takes -o/--out.
WRITES_OUTPUT = {
    "run", "synth", "data import", "data export", "tokenizer train", "pack", "train", "export",
    "finetune", "eval", "portfolio", "curate", "dedup", "decontam", "score", "annotate", "fit",
    "browse",
}  # fmt: skip
# Verbs that show a progress display: each takes -q/--quiet.
SHOWS_PROGRESS = {"run", "synth", "train", "finetune", "eval", "portfolio", "export"}
# Verbs whose work resumes when re-run into the same OUT: each takes --fresh ...
RESUMES = {"run", "synth", "train", "finetune", "eval", "portfolio", "annotate", "export"}
# Verbs that take a recipe (a RECIPE argument) take --preset.


def _commands(command=None, path=()):
    """(path, click command) for `syllabus` and every verb and sub-verb under it."""
    command = command or typer.main.get_command(cli.app)
    yield " ".join(path), command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


def _spelling(param) -> str:
    if param.param_type_name == "argument":
        return param.name.upper() + ("..." if param.nargs == -1 else "")
    names = sorted(param.opts, key=lambda o: (len(o), o)) + list(param.secondary_opts)
    return "/".join(names)


def current_flags() -> dict[str, list[str]]:
    return {
        path or "syllabus": sorted(_spelling(p) for p in command.params)
        for path, command in _commands()
    }


def _options(path: str) -> dict[str, object]:
    """A verb's options by each of their names (--out and -o both give the --out option)."""
    command = dict(_commands())[path]
    return {
        name: param
        for param in command.params
        if param.param_type_name == "option"
        for name in (*param.opts, *param.secondary_opts)
    }


def test_every_verbs_flags_are_the_frozen_ones():
    current = current_flags()
    changed = {
        verb: {"now": current.get(verb), "frozen": FLAGS.get(verb)}
        for verb in sorted(set(current) | set(FLAGS))
        if current.get(verb) != FLAGS.get(verb)
    }
    assert not changed, (
        f"the CLI's flags changed: {changed}\nIf this is deliberate, check it follows the "
        "convention in src/syllabus/cli.py's docstring, print the new table with "
        "`PYTHONPATH=src python -m tests.test_cli_flags`, paste it over FLAGS in "
        "tests/test_cli_flags.py, and update docs/cli.md."
    )


VERBS = [path for path, _ in _commands() if path]


@pytest.mark.parametrize("verb", VERBS)
def test_every_verbs_help_renders(verb, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    cli.cli_command().main([*verb.split(), "--help"], prog_name="syllabus", standalone_mode=False)
    shown = capsys.readouterr().out
    assert f"syllabus {verb}" in shown and "--help" in shown


def test_verbs_that_write_take_dash_o_out():
    flags = current_flags()
    for verb in WRITES_OUTPUT:
        assert "-o/--out" in flags[verb], verb
    for verb in VERBS:
        for name, param in _options(verb).items():
            # Where output goes has one spelling: no --output, --out-dir, --run-dir...
            if param.name in {"out", "run_dir", "output", "out_dir"}:
                assert _spelling(param) == "-o/--out", (verb, name)


def test_model_is_always_a_model_spec():
    seen = 0
    for verb in VERBS:
        options = _options(verb)
        if "--model" in options:
            text = (options["--model"].help or "").lower()
            assert "classifier" not in text and "syllabus fit" not in text, verb
            assert "packaged model" in text and ".gguf" in text and "http" in text, verb
            seen += 1
        if "--classifier" in options:
            assert "syllabus fit" in options["--classifier"].help, verb
    assert seen >= 3  # ask, annotate, eval


def test_workers_are_processes_and_tasks_are_shards():
    for verb in VERBS:
        options = _options(verb)
        if "--workers" in options:
            assert "process" in options["--workers"].help, verb
            assert "-w" not in options, verb
        if "--tasks" in options:
            assert "shard" in options["--tasks"].help.lower(), verb
    flags = current_flags()
    for verb in ("curate", "dedup", "decontam", "score"):
        assert "--tasks" in flags[verb] and "--workers" not in flags[verb], verb


def test_limit_is_n_and_samples_are_per_problem():
    for verb in VERBS:
        options = _options(verb)
        if "-n" in options or "--limit" in options:
            assert _spelling(options.get("-n") or options["--limit"]) == "-n/--limit", verb
        if "--samples" in options:
            assert "per problem" in options["--samples"].help, verb
        assert "--n" not in options, verb


def test_quiet_fresh_and_preset_where_the_convention_wants_them():
    flags = current_flags()
    for verb in VERBS:
        options = _options(verb)
        if "--quiet" in options:
            assert _spelling(options["--quiet"]) == "-q/--quiet", verb
    for verb in SHOWS_PROGRESS:
        assert "-q/--quiet" in flags[verb], verb
    for verb in RESUMES:
        assert "--fresh" in flags[verb], verb
    for verb in VERBS:
        if "RECIPE" in flags[verb]:
            assert "--preset" in flags[verb], verb


def test_the_verbs_that_say_they_resume_are_listed():
    """A new verb whose help says re-running resumes must join RESUMES (and take --fresh)."""
    for path, command in _commands():
        texts = [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]
        if path and any("resum" in text.lower() for text in texts):
            assert path in RESUMES, path


def format_table(flags: dict[str, list[str]]) -> str:
    lines = ["FLAGS: dict[str, list[str]] = {"]
    for verb, names in flags.items():
        line = f"    {json.dumps(verb)}: {json.dumps(names)},"
        if len(line) <= 100:
            lines.append(line)
            continue
        lines.append(f"    {json.dumps(verb)}: [")
        row = "       "
        for name in names:
            if len(row) + len(json.dumps(name)) + 2 > 100:
                lines.append(row.rstrip())
                row = "       "
            row += f" {json.dumps(name)},"
        lines += [row, "    ],"]
    return "\n".join([*lines, "}"])


if __name__ == "__main__":
    print(format_table(current_flags()))
