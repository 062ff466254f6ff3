"""What each export of a model costs: one table of file size, load time, prompt and generation
speed on this CPU, bits/byte on held-out text and agreement with the float32 model.

Every runtime is handed the same token ids (the model's own tokenizer), so the figures differ
only by what the export and its runtime compute:

- bits/byte: the held-out text cut into chunks of at most `window` tokens at line ends, each
  scored after the model's BOS (or EOS) token with backends/scoring.py's `score_tokens`, the
  function `syllabus eval` scores bits/byte with; bits over UTF-8 bytes of the text.
- top-1 agreement: the share of those positions where the export's most likely next token is
  the float32 model's.
- greedy agreement: the share of identical tokens, position by position, in `new_tokens`
  greedy continuations of `prompts` fixed prompts (the first tokens of the first chunks); a
  continuation runs its full length (end-of-text does not stop it), so every export is timed
  on the same number of tokens.
- speed: prompt processing of one `speed_prompt_tokens` prompt (best of three) and generation
  over the greedy continuations; load time from the file to a model ready to run.

The reference is the float32 model in transformers, the weights every export was made from.
"""

from __future__ import annotations

import json
import os
import platform
import sysconfig
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from syllabus.backends.scoring import score_tokens
from syllabus.errors import UserError
from syllabus.progress import progress_bar
from syllabus.ship.export import Exported, Target, reuse_or_export
from syllabus.ship.source import ModelSource
from syllabus.train.measure import cpu_model

LN2 = float(np.log(2))
RESULTS = ("measure.json", "measure.md")
"""What a measurement writes beside the exports (one directory per target)."""
DEFAULT_TEXT_MODULES = ("textwrap", "csv", "fractions", "heapq", "shlex", "calendar")
"""Held-out text when none is given: standard-library modules shipped with this Python (code,
docstrings and comments in English), the same bytes on every machine with Python 3.11."""


@dataclass(frozen=True)
class MeasureSettings:
    text: Path | None = None
    """Held-out text: a .txt file, a JSONL file or a Syllabus dataset; None for the default."""
    tokens: int = 4096
    """Held-out tokens scored for bits/byte and top-1 agreement."""
    window: int = 512
    prompts: int = 8
    prompt_tokens: int = 32
    new_tokens: int = 32
    speed_prompt_tokens: int = 256
    threads: int = 0
    """CPU threads for every runtime; 0 for all of this machine's cores."""

    def thread_count(self) -> int:
        return self.threads or os.cpu_count() or 1


@dataclass
class Row:
    target: str
    runtime: str
    path: str
    size_bytes: int
    load_s: float
    prompt_tok_s: float
    gen_tok_s: float
    bits_per_byte: float
    bpb_change: float
    """Relative change of bits/byte against the float32 reference (+0.01 = 1% worse)."""
    top1_agreement: float
    greedy_agreement: float
    notes: list[str] = field(default_factory=list)


@dataclass
class MeasureTable:
    model: dict
    settings: dict
    machine: dict
    texts: int
    scored_tokens: int
    scored_bytes: int
    rows: list[Row]
    wall_s: float

    def to_json(self) -> dict:
        return asdict(self)

    def row(self, target: str) -> Row:
        return next(r for r in self.rows if r.target == target)

    def markdown(self) -> str:
        head = (
            "| export | runtime | size MB | load s | prompt tok/s | gen tok/s | bits/byte | "
            "vs f32 | top-1 agree | greedy agree |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        )
        lines = [
            f"| {r.target} | {r.runtime} | {r.size_bytes / 1e6:,.1f} | {r.load_s:.2f} | "
            f"{r.prompt_tok_s:,.0f} | {r.gen_tok_s:,.1f} | {r.bits_per_byte:.4f} | "
            f"{r.bpb_change:+.2%} | {r.top1_agreement:.3f} | {r.greedy_agreement:.3f} |"
            for r in self.rows
        ]
        notes = [f"- {r.target}: {note}" for r in self.rows for note in r.notes]
        return head + "\n".join(lines) + ("\n\n" + "\n".join(notes) if notes else "") + "\n"


def fit_context(settings: MeasureSettings, source: ModelSource) -> MeasureSettings:
    """The settings within the model's context: windows no longer than it, and a prompt plus its
    continuation that fit (refused when they cannot)."""
    config = json.loads((source.hf_dir / "config.json").read_text())
    context = int(config.get("max_position_embeddings") or settings.window)
    if settings.prompt_tokens + 1 + settings.new_tokens > context:
        raise UserError(
            f"{source.spec}: a {settings.prompt_tokens}-token prompt and {settings.new_tokens} "
            f"generated tokens do not fit its {context}-token context; measure with fewer"
        )
    return replace(
        settings,
        window=min(settings.window, context - 1),  # and room for onnxruntime-genai's next token
        speed_prompt_tokens=min(settings.speed_prompt_tokens, context - 1),
    )


# -- held-out text --------------------------------------------------------------------------------


def held_out_texts(settings: MeasureSettings) -> list[str]:
    if settings.text is None:
        root = Path(sysconfig.get_paths()["stdlib"])
        return [(root / f"{name}.py").read_text(encoding="utf-8") for name in DEFAULT_TEXT_MODULES]
    path = Path(settings.text)
    if not path.exists():
        raise UserError(f"--text {path}: no such file or dataset")
    if path.suffix == ".txt":
        return [path.read_text(encoding="utf-8", errors="replace")]
    from syllabus.store import read_records

    try:
        records = read_records(path)
        texts = [r.text for r in records]
    except (ValueError, KeyError, OSError) as exc:
        raise UserError(
            f"--text {path}: not a text file, JSONL of records or dataset ({exc})"
        ) from None
    if not texts:
        raise UserError(f"--text {path}: no records")
    return texts


@dataclass(frozen=True)
class Chunk:
    text: str
    ids: list[int]
    """The model's start token, then the chunk's tokens."""
    bytes: int


def chunk_texts(texts: list[str], tokenizer, settings: MeasureSettings) -> list[Chunk]:
    """Cut texts at line ends into chunks of at most `window` tokens, until `tokens` are held."""
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if start is None:
        raise UserError("the model's tokenizer has neither a BOS nor an EOS token to start text")
    chunks: list[Chunk] = []

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    def emit(body: str) -> bool:
        """Add a chunk; True once enough tokens are held."""
        ids = encode(body)
        if len(ids) > settings.window - 1:  # a single line longer than the window
            ids = ids[: settings.window - 1]
            body = tokenizer.decode(ids)
        if ids:
            chunks.append(Chunk(body, [start, *ids], len(body.encode())))
        return sum(len(c.ids) - 1 for c in chunks) >= settings.tokens

    for text in texts:
        piece = ""
        for line in text.splitlines(keepends=True):
            if piece and len(encode(piece + line)) > settings.window - 1:
                if emit(piece):
                    return chunks
                piece = ""
            piece += line
        if piece and emit(piece):
            return chunks
    return chunks


# -- runtimes -------------------------------------------------------------------------------------


class Runtime(Protocol):
    name: str

    def logits(self, ids: list[int]) -> np.ndarray: ...

    def greedy(self, ids: list[int], n: int) -> tuple[list[int], float, float]:
        """n greedy tokens after `ids`; (tokens, prompt seconds, generation seconds)."""
        ...

    def close(self) -> None: ...


class TransformersRuntime:
    def __init__(self, hf_dir: Path, threads: int):
        import torch
        from transformers import AutoModelForCausalLM

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(
            hf_dir, dtype=torch.float32, local_files_only=True
        ).eval()
        import transformers

        self.name = f"transformers {transformers.__version__}"

    def logits(self, ids: list[int]) -> np.ndarray:
        with self.torch.no_grad():
            out = self.model(self.torch.tensor([ids]), use_cache=False)
        return out.logits[0].float().numpy()

    def greedy(self, ids: list[int], n: int) -> tuple[list[int], float, float]:
        torch = self.torch
        with torch.no_grad():
            started = time.perf_counter()
            out = self.model(torch.tensor([ids]), use_cache=True)
            prompt_s = time.perf_counter() - started
            tokens = [int(out.logits[0, -1].argmax())]
            started = time.perf_counter()
            for _ in range(n - 1):
                out = self.model(
                    torch.tensor([[tokens[-1]]]),
                    past_key_values=out.past_key_values,
                    use_cache=True,
                )
                tokens.append(int(out.logits[0, -1].argmax()))
        return tokens, prompt_s, time.perf_counter() - started

    def close(self) -> None:
        del self.model


class LlamaCppRuntime:
    """llama-cpp-python: one context for speed and greedy tokens (logits of the last position,
    as served), one with every position's logits for scoring, made when first needed."""

    def __init__(self, path: Path, threads: int, n_ctx: int):
        import llama_cpp

        self._llama_cpp = llama_cpp
        self.path, self.threads, self.n_ctx = str(path), threads, n_ctx
        self.llm = self._load(logits_all=False)
        self.scorer = None
        self.name = f"llama.cpp (llama-cpp-python {llama_cpp.__version__})"

    def _load(self, logits_all: bool):
        return self._llama_cpp.Llama(
            model_path=self.path,
            n_ctx=self.n_ctx,
            n_batch=self.n_ctx,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            logits_all=logits_all,
            verbose=False,
        )

    def logits(self, ids: list[int]) -> np.ndarray:
        if self.scorer is None:
            self.scorer = self._load(logits_all=True)
        self.scorer.reset()
        self.scorer.eval(list(ids))
        return np.array(self.scorer.scores[: len(ids)], dtype=np.float32)

    def _next_token(self) -> int:
        # Without logits_all llama-cpp-python keeps no scores: read the last position's logits
        # from the context, as its own sampler does.
        logits = self._llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, -1)
        return int(np.argmax(np.ctypeslib.as_array(logits, shape=(self.llm.n_vocab(),))))

    def greedy(self, ids: list[int], n: int) -> tuple[list[int], float, float]:
        llm = self.llm
        llm.reset()
        started = time.perf_counter()
        llm.eval(list(ids))
        prompt_s = time.perf_counter() - started
        tokens = [self._next_token()]
        started = time.perf_counter()
        for _ in range(n - 1):
            llm.eval([tokens[-1]])
            tokens.append(self._next_token())
        return tokens, prompt_s, time.perf_counter() - started

    def close(self) -> None:
        for llm in (self.llm, self.scorer):
            if llm is not None:
                llm.close()


class OnnxRuntime:
    """onnxruntime on Syllabus's ONNX graph (token ids -> logits, no KV cache: each generated
    token runs the whole sequence again, as a consumer of this graph would)."""

    def __init__(self, directory: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(directory / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.name = f"onnxruntime {ort.__version__}"

    def logits(self, ids: list[int]) -> np.ndarray:
        (logits,) = self.session.run(["logits"], {"input_ids": np.array([ids], dtype=np.int64)})
        return logits[0].astype(np.float32)

    def greedy(self, ids: list[int], n: int) -> tuple[list[int], float, float]:
        started = time.perf_counter()
        tokens = [int(self.logits(ids)[-1].argmax())]
        prompt_s = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(n - 1):
            tokens.append(int(self.logits(list(ids) + tokens)[-1].argmax()))
        return tokens, prompt_s, time.perf_counter() - started

    def close(self) -> None:
        del self.session


class GenaiRuntime:
    """onnxruntime-genai on its own layout (genai_config.json): the KV cache and greedy search
    as a device app running it would have them."""

    def __init__(self, directory: Path, threads: int):
        import onnxruntime_genai as og

        config = og.Config(str(directory))
        options = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
        config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
        self.og, self.model = og, og.Model(config)
        self.name = f"onnxruntime-genai {og.__version__}"

    def _generator(self, length: int):
        params = self.og.GeneratorParams(self.model)
        # min_length: the end-of-text token does not stop it (every export runs `n` tokens).
        params.set_search_options(do_sample=False, max_length=length, min_length=length)
        return self.og.Generator(self.model, params)

    def logits(self, ids: list[int]) -> np.ndarray:
        generator = self._generator(len(ids) + 1)
        generator.append_tokens(list(ids))
        return np.asarray(generator.get_output("logits"), dtype=np.float32)[0]

    def greedy(self, ids: list[int], n: int) -> tuple[list[int], float, float]:
        generator = self._generator(len(ids) + n)
        started = time.perf_counter()
        generator.append_tokens(list(ids))  # runs the prompt
        prompt_s = time.perf_counter() - started
        tokens: list[int] = []
        started = time.perf_counter()
        while not generator.is_done():
            generator.generate_next_token()
            tokens.append(int(generator.get_next_tokens()[0]))
        return tokens, prompt_s, time.perf_counter() - started

    def close(self) -> None:
        del self.model


def open_runtime(exported: Exported, settings: MeasureSettings, n_ctx: int) -> Runtime:
    threads = settings.thread_count()
    fmt = exported.target.format
    if fmt == "hf":
        return TransformersRuntime(exported.path, threads)
    if fmt == "gguf":
        return LlamaCppRuntime(exported.path, threads, n_ctx)
    if fmt == "ollama":  # what Ollama runs: llama.cpp on the directory's GGUF
        return LlamaCppRuntime(next(Path(exported.path).glob("*.gguf")), threads, n_ctx)
    if fmt == "onnx":
        return OnnxRuntime(exported.path, threads)
    if fmt == "onnx-genai":
        return GenaiRuntime(exported.path, threads)
    raise UserError(f"no runtime to measure {exported.target} with")


# -- the measurement ------------------------------------------------------------------------------


@dataclass
class Observed:
    """What one runtime computed: per-chunk bits and argmax tokens, greedy tokens, timings."""

    bits: float
    argmax: list[np.ndarray]
    greedy: list[list[int]]
    load_s: float
    prompt_tok_s: float
    gen_tok_s: float


def observe(runtime: Runtime, load_s: float, chunks: list[Chunk], prompts, speed_prompt, n: int):
    argmax: list[np.ndarray] = []

    def logits_for(ids):
        logits = runtime.logits(list(ids))
        argmax.append(logits.argmax(axis=-1)[:-1])
        return logits

    total = 0.0
    for chunk in chunks:
        logprob, _, _ = score_tokens(chunk.ids, 1, len(chunk.ids), logits_for)
        total += logprob
    prompt_times = [runtime.greedy(speed_prompt, 1)[1] for _ in range(3)]
    greedy, gen_s, generated = [], 0.0, 0
    for prompt in prompts:
        tokens, _, seconds = runtime.greedy(prompt, n)
        greedy.append(tokens)
        gen_s += seconds
        generated += n - 1
    return Observed(
        bits=-total / LN2,
        argmax=argmax,
        greedy=greedy,
        load_s=load_s,
        prompt_tok_s=len(speed_prompt) / min(prompt_times),
        gen_tok_s=generated / gen_s if gen_s else float("nan"),
    )


def _agreement(a: list, b: list) -> float:
    same = sum(int(np.sum(np.asarray(x) == np.asarray(y))) for x, y in zip(a, b, strict=True))
    total = sum(len(x) for x in a)
    return same / total if total else float("nan")


def machine() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()}


def measure_exports(
    source: ModelSource,
    targets: list[Target],
    directory: Path,
    settings: MeasureSettings,
    *,
    show_progress: bool = True,
) -> MeasureTable:
    """Export `source` as each target into `directory` (reusing matching exports), measure each
    in its runtime against the float32 model, and write measure.json and measure.md there."""
    from transformers import AutoTokenizer

    started = time.time()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    settings = fit_context(settings, source)
    tokenizer = AutoTokenizer.from_pretrained(source.hf_dir, local_files_only=True)
    chunks = chunk_texts(held_out_texts(settings), tokenizer, settings)
    if not chunks:
        raise UserError("the held-out text is empty: give --text a file with text in it")
    prompts = [c.ids[: settings.prompt_tokens + 1] for c in chunks[: settings.prompts]]
    speed_prompt = [i for c in chunks for i in c.ids][: settings.speed_prompt_tokens]
    n_ctx = max(settings.window, settings.speed_prompt_tokens, settings.prompt_tokens + 1)
    n_ctx += settings.new_tokens + 8
    reference_target = Target("hf", "f32")
    plan = [reference_target] + [t for t in targets if t != reference_target]
    rows: list[Row] = []
    reference: Observed | None = None
    with progress_bar(show_progress, "{task.fields[target]}") as bar:
        task = bar.add_task("measure exports", total=len(plan), target="")
        for target in plan:
            bar.update(task, target=str(target))
            exported, reused = reuse_or_export(source, target, directory)
            began = time.perf_counter()
            runtime = open_runtime(exported, settings, n_ctx)
            load_s = time.perf_counter() - began
            try:
                seen = observe(runtime, load_s, chunks, prompts, speed_prompt, settings.new_tokens)
            finally:
                runtime.close()
            if reference is None:
                reference = seen
            bpb = seen.bits / sum(c.bytes for c in chunks)
            ref_bpb = reference.bits / sum(c.bytes for c in chunks)
            notes = list(exported.notes) + (
                ["export reused (same weights, same exporter)"] if reused else []
            )
            rows.append(
                Row(
                    target=str(target),
                    runtime=runtime.name,
                    path=str(exported.path),
                    size_bytes=exported.size_bytes,
                    load_s=round(seen.load_s, 3),
                    prompt_tok_s=round(seen.prompt_tok_s, 1),
                    gen_tok_s=round(seen.gen_tok_s, 2),
                    bits_per_byte=round(bpb, 5),
                    bpb_change=round(bpb / ref_bpb - 1, 5),
                    top1_agreement=round(_agreement(seen.argmax, reference.argmax), 4),
                    greedy_agreement=round(_agreement(seen.greedy, reference.greedy), 4),
                    notes=notes,
                )
            )
            bar.update(task, advance=1)
    table = MeasureTable(
        model=source.to_json(),
        settings={
            **asdict(settings),
            "text": str(settings.text)
            if settings.text
            else "stdlib: " + ", ".join(DEFAULT_TEXT_MODULES),
            "threads": settings.thread_count(),
        },
        machine=machine(),
        texts=len(chunks),
        scored_tokens=sum(len(c.ids) - 1 for c in chunks),
        scored_bytes=sum(c.bytes for c in chunks),
        rows=rows,
        wall_s=round(time.time() - started, 1),
    )
    (directory / "measure.json").write_text(json.dumps(table.to_json(), indent=2))
    (directory / "measure.md").write_text(table.markdown())
    return table
