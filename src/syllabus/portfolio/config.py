"""PORTFOLIO.toml: candidates (models and configurations of them), their prices, the team's
tasks with a quality bar, a latency objective and a volume each, cascades, and what to serve.

Paths (task data, retrieval corpora, the route log) are relative to the TOML file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from syllabus.config import StrictModel, at_least, between, format_validation_error, load_toml
from syllabus.errors import UserError
from syllabus.finetune.config import DecontamConfig, LogSplit, LoraConfig, TrainSettings

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]


class PriceConfig(StrictModel):
    """What a call costs. Hosted APIs: USD per million prompt and completion tokens.
    Self-hosted: USD per hour of the hardware and the share of that hour it serves traffic;
    the USD per token then comes from the throughput measured in this run, never $0."""

    usd_per_mtok_in: Annotated[float, at_least(0)] | None = None
    usd_per_mtok_out: Annotated[float, at_least(0)] | None = None
    usd_per_hour: Annotated[float, at_least(0)] | None = None
    utilisation: Annotated[float, between(0.01, 1)] = 0.5
    """Share of each paid hour the hardware spends answering (idle time is paid too)."""

    @model_validator(mode="after")
    def _one_kind(self) -> PriceConfig:
        api = self.usd_per_mtok_in is not None or self.usd_per_mtok_out is not None
        hourly = self.usd_per_hour is not None
        if api == hourly:
            raise ValueError(
                "give either usd_per_mtok_in and usd_per_mtok_out (an API) or usd_per_hour "
                "(self-hosted hardware, priced from the measured throughput)"
            )
        if api and (self.usd_per_mtok_in is None or self.usd_per_mtok_out is None):
            raise ValueError("an API price needs both usd_per_mtok_in and usd_per_mtok_out")
        return self

    @property
    def self_hosted(self) -> bool:
        return self.usd_per_hour is not None


class AssumedTokens(StrictModel):
    """Token counts to price a candidate that could not be measured (no API key): an
    assumption, and labelled as one wherever it is shown."""

    prompt_tokens: Annotated[int, at_least(0)]
    completion_tokens: Annotated[int, at_least(0)]


class RetrievalConfig(StrictModel):
    """RAG instead of fine-tuning: BM25 top-k passages of a local corpus in the prompt."""

    corpus: str
    """A Syllabus dataset, a JSONL file (`text` field) or a directory of .txt/.md/.rst/.py."""
    passages: Annotated[int, between(1, 10)] = 2
    max_chars: Annotated[int, at_least(100)] = 600
    template: str = "Context:\n{passages}\n\n{prompt}"
    """How the passages join the prompt; needs {passages} and {prompt}."""

    @model_validator(mode="after")
    def _placeholders(self) -> RetrievalConfig:
        if "{passages}" not in self.template or "{prompt}" not in self.template:
            raise ValueError("retrieval.template needs both {passages} and {prompt}")
        return self


class BuildConfig(StrictModel):
    """A candidate the portfolio makes: `base` fine-tuned on `data` by `syllabus finetune`'s
    trainer (a stage of the portfolio's OUT, cached by its settings and data), its exported
    GGUF measured like any other candidate. `sizes` also trains it on the first N records of
    `data` for each N, for the data-size curve (how much data is enough)."""

    base: str
    """The model to specialise: a packaged model (smollm2), a .gguf or a HF directory."""
    data: str
    """JSONL chat records (`{"messages": [...]}`, as `syllabus finetune` reads them),
    relative to the TOML file, or a `syllabus route` log. The candidate itself trains on all
    of them (of a log with `log_split`, on its training part)."""
    log_split: LogSplit | None = None
    """`data` is a route log: train only on the calls outside this split's held-out part. A
    `kind = "log"` task on the same log must use the same split (checked)."""
    labels: str | None = None
    """`data` is a route log: the team's right answers for its calls (JSONL of `messages` or
    `prompt`, and `reference`, as a log task's `references`; relative to the TOML file). A
    labelled call is trained on its label instead of the answer served."""
    sizes: list[Annotated[int, at_least(2)]] = Field(default_factory=list)
    """Smaller training sets (the first N records) to measure as well: the data-size curve."""
    seed: Annotated[int, at_least(0)] = 0
    method: Literal["lora", "full"] = "lora"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    seq_len: Annotated[int, between(16, 131072)] = 256
    packing: bool = True
    val_fraction: Annotated[float, between(0, 0.5)] = 0.1
    """Share of each training set held out for the validation loss."""
    decontam: DecontamConfig = Field(default_factory=lambda: DecontamConfig(humaneval=False))
    """Training records sharing an n-gram with these benchmarks and with every task's own
    data (always added: the portfolio measures on them) are removed before training."""
    train: TrainSettings = Field(default_factory=lambda: TrainSettings(epochs=2.0))
    quant: Literal["f32", "f16", "q8_0"] = "q8_0"
    """GGUF type of the exported model that is measured (and served)."""


class CandidateConfig(StrictModel):
    """A model spec as `syllabus eval --model` takes it (or a `build` table that makes one),
    and how it is prompted."""

    name: Name
    model: str | None = None
    """Packaged model (smollm2, gemma3-270m), a .gguf, a HF or `syllabus train` directory (a
    fine-tuned model is just another of these), or an OpenAI-compatible base URL."""
    build: BuildConfig | None = None
    """Instead of `model`: fine-tune a base on the team's data and measure the result."""
    api_model: str = "default"
    api_key_env: str | None = None
    max_retries: Annotated[int, between(0, 20)] = 2
    """URL candidates: retries of a failed call (a route falls through to the next model after)."""
    timeout_s: Annotated[float, at_least(0.1)] = 120.0
    skip_without_key: bool = False
    """When api_key_env is unset: report this candidate's cost from `assume` instead of failing."""
    prompt_style: Literal["completion", "chat"] = "completion"
    system_prompt: str | None = None
    retrieval: RetrievalConfig | None = None
    json_schema: dict[str, Any] | None = None
    """Constrained output (the backend must support it: embedded GGUF and most servers do)."""
    grammar: str | None = None
    """A GBNF grammar (llama.cpp backends)."""
    price: PriceConfig
    assume: AssumedTokens | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CandidateConfig:
        if (self.model is None) == (self.build is None):
            raise ValueError("give either model (a model spec) or build (a table that makes one)")
        if self.system_prompt is not None and self.prompt_style != "chat":
            raise ValueError("system_prompt needs prompt_style = 'chat'")
        if self.json_schema is not None and self.grammar is not None:
            raise ValueError("give json_schema or grammar, not both")
        if self.skip_without_key and not self.api_key_env:
            raise ValueError("skip_without_key needs api_key_env")
        if self.skip_without_key and self.assume is None:
            raise ValueError(
                "skip_without_key needs an `assume` table (prompt_tokens, completion_tokens) "
                "to price the candidate when it cannot be measured"
            )
        return self

    @property
    def measurable(self) -> bool:
        """False when its API key is absent and it may be skipped."""
        return not (self.skip_without_key and not os.environ.get(self.api_key_env or ""))


class FormatConfig(StrictModel):
    """An output format the task requires: JSON matching a schema. Compliance is measured on
    its own, and a non-compliant answer does not pass."""

    json_schema: dict[str, Any]
    answer_field: str | None = None
    """Score the value of this field (else the whole JSON text)."""


class TaskConfig(StrictModel):
    name: Name
    kind: Literal["custom", "exact", "log", "humaneval"] = "custom"
    """custom: JSONL with prompt + tests or reference (as `syllabus eval`); exact: numeric
    answers; log: a `syllabus route` log (the answers served become the references);
    humaneval: HumanEval problems executed as `syllabus eval --task humaneval` executes them."""
    data: str | None = None
    """The task's file; humaneval without one: the 164 bundled problems."""
    limit: Annotated[int, at_least(1)] | None = None
    shots: Annotated[int, at_least(0)] = 0
    """exact: k-shot examples from the start of the file."""
    quality_threshold: Annotated[float, between(0, 1)]
    """Pass rate the team needs; met only when the confidence interval's lower bound reaches it."""
    p95_latency_s: Annotated[float, at_least(0.001)]
    daily_volume: Annotated[int, at_least(0)]
    max_tokens: Annotated[int, at_least(1)] = 32
    """humaneval: 384 unless set (`syllabus eval`'s default: a whole function body)."""
    format: FormatConfig | None = None
    split: LogSplit | None = None
    """log: measure only on the held-out part of this split of the log's calls (what a build
    or `syllabus finetune` with the same `log_split` does not train on)."""
    references: str | None = None
    """log: a JSONL file of the right answers the team holds for its traffic (`messages` or
    `prompt`, and `reference`: labels computed by a checker program, written by a person, or
    taken from a bigger model), joined to each call by its request; every call measured must
    have one. Unset: the answer served is the reference (agreement with the model served)."""

    @model_validator(mode="after")
    def _kind(self) -> TaskConfig:
        if self.data is None and self.kind != "humaneval":
            raise ValueError(f"a {self.kind} task needs `data` (its file)")
        if self.kind != "log" and (self.split is not None or self.references is not None):
            raise ValueError("`split` and `references` are options of a log task (kind = 'log')")
        if self.kind == "humaneval":
            if self.format is not None:
                raise ValueError("a humaneval task is scored by its unit tests: no `format`")
            if "max_tokens" not in self.model_fields_set:
                self.max_tokens = 384
        return self


class CascadeConfig(StrictModel):
    """`first` answers; the call goes to `then` when the check fails."""

    name: Name
    first: str
    then: str
    check: Literal["tests", "format", "agreement", "logprob"]
    """tests: the item's unit tests (evaluation only); format: the task's JSON format;
    agreement: share of `samples` extra samples that agree with the answer; logprob: mean
    log-probability of the answer's tokens."""
    samples: Annotated[int, between(2, 20)] = 4
    temperature: Annotated[float, between(0.05, 2)] = 0.8
    threshold: float | None = None
    """Escalate when the score is below this. Unset: calibrated by `syllabus portfolio`."""
    tasks: list[str] | None = None
    """Tasks to evaluate it on (default: every task the check applies to)."""


class RouteConfig(StrictModel):
    serve: str
    """A candidate or a cascade."""
    task: str | None = None
    """The task whose format and calibrated threshold apply (a cascade's check needs it)."""
    fallbacks: list[str] = Field(default_factory=list)
    """Candidates tried in order when the served model fails (errors, not answers)."""
    api_key_env: str | None = None
    """Clients must send `Authorization: Bearer <this variable's value>`."""
    log: str = "route-log.jsonl"
    max_request_bytes: Annotated[int, at_least(256)] = 1_000_000
    max_tokens: Annotated[int, at_least(1)] = 512
    default_max_tokens: Annotated[int, at_least(1)] = 128


class PortfolioConfig(StrictModel):
    name: Name
    seed: Annotated[int, at_least(0)] = 0
    temperature: Annotated[float, between(0, 2)] = 0.0
    confidence: Annotated[float, between(0.5, 0.999)] = 0.95
    days_per_month: Annotated[float, at_least(1)] = 30.0
    calibration_share: Annotated[float, between(0.1, 0.9)] = 0.5
    """Share of each task's items that calibrates cascade thresholds; the rest reports them."""
    workers: Annotated[int, between(1, 64)] = 2
    """Sandbox processes that run unit tests."""
    candidates: list[CandidateConfig] = Field(min_length=1)
    tasks: list[TaskConfig] = Field(min_length=1)
    cascades: list[CascadeConfig] = Field(default_factory=list)
    route: RouteConfig | None = None

    @model_validator(mode="after")
    def _references(self) -> PortfolioConfig:
        candidates = {c.name for c in self.candidates}
        cascades = {c.name for c in self.cascades}
        tasks = {t.name for t in self.tasks}
        for kind, names in (
            ("candidate", [c.name for c in self.candidates]),
            ("task", [t.name for t in self.tasks]),
            ("cascade", [c.name for c in self.cascades]),
        ):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"{kind} names must be unique: {', '.join(duplicates)}")
        if clash := candidates & cascades:
            raise ValueError(f"a cascade has a candidate's name: {', '.join(sorted(clash))}")
        for cascade in self.cascades:
            for stage in (cascade.first, cascade.then):
                if stage not in candidates:
                    raise ValueError(f"cascade {cascade.name}: no candidate named {stage!r}")
            if cascade.first == cascade.then:
                raise ValueError(f"cascade {cascade.name}: first and then are the same candidate")
            for task in cascade.tasks or []:
                if task not in tasks:
                    raise ValueError(f"cascade {cascade.name}: no task named {task!r}")
        if self.route is not None:
            if self.route.serve not in candidates | cascades:
                raise ValueError(f"route.serve: no candidate or cascade named {self.route.serve!r}")
            for name in self.route.fallbacks:
                if name not in candidates:
                    raise ValueError(f"route.fallbacks: no candidate named {name!r}")
            if self.route.task is not None and self.route.task not in tasks:
                raise ValueError(f"route.task: no task named {self.route.task!r}")
        return self

    def candidate(self, name: str) -> CandidateConfig:
        return next(c for c in self.candidates if c.name == name)

    def task(self, name: str) -> TaskConfig:
        return next(t for t in self.tasks if t.name == name)

    def cascade(self, name: str) -> CascadeConfig | None:
        return next((c for c in self.cascades if c.name == name), None)


def load_portfolio(path: Path | str) -> tuple[PortfolioConfig, Path]:
    """The validated portfolio and the directory its relative paths start from."""
    path = Path(path)
    data, text = load_toml(path)
    try:
        config = PortfolioConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError(format_validation_error(path, text, exc)) from None
    base = path.resolve().parent
    for task in config.tasks:
        if task.kind != "log" and task.data and not resolve(base, task.data).exists():
            raise UserError(f"{path}: task {task.name}: data file {task.data} does not exist")
    logs = _check_log_splits(config, base, path)
    for candidate in config.candidates:
        build = candidate.build
        # A route log a task reads is written by serving this same file: it may not exist yet.
        data = resolve(base, build.data) if build else None
        if data is not None and data.resolve() not in logs and not data.exists():
            raise UserError(
                f"{path}: candidate {candidate.name}: build data {candidate.build.data} "
                "does not exist"
            )
        if candidate.retrieval and not resolve(base, candidate.retrieval.corpus).exists():
            raise UserError(
                f"{path}: candidate {candidate.name}: retrieval corpus "
                f"{candidate.retrieval.corpus} does not exist"
            )
    return config, base


def _check_log_splits(config: PortfolioConfig, base: Path, path: Path) -> set[Path]:
    """A build may train on a route log a task measures on only through the same split, so no
    call measured can be a call trained on. Returns the logs the tasks read."""
    measured = {
        resolve(base, t.data).resolve(): t for t in config.tasks if t.kind == "log" and t.data
    }
    for candidate in config.candidates:
        build = candidate.build
        task = measured.get(resolve(base, build.data).resolve()) if build else None
        if task is None:
            continue
        if task.split is None or build.log_split != task.split:
            raise UserError(
                f"{path}: candidate {candidate.name} trains on {build.data}, which task "
                f"{task.name} measures on: give both the same split (the task's `split`, the "
                "build's `log_split`), so the calls measured are never trained on"
            )
    return set(measured)


def resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path
