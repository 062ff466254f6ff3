"""The `[finetune]` table of a recipe: base model, data, method, training, export, evaluation."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from syllabus.config import StrictModel, at_least, between
from syllabus.curate.config import DecontamConfig
from syllabus.train.config import LoopConfig

CONVERSATION_KINDS = ("exercise", "dialogue", "reasoning")
LLAMA_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LoraConfig(StrictModel):
    rank: Annotated[int, between(1, 1024)] = 16
    alpha: Annotated[float, at_least(0.0)] = 32.0
    """Scale of the update is alpha / rank (peft's `lora_alpha`)."""
    dropout: Annotated[float, between(0, 0.9)] = 0.05
    targets: list[str] = Field(default_factory=lambda: list(LLAMA_LINEAR), min_length=1)
    """Module names to adapt (peft's `target_modules`): Llama's attention and MLP projections."""


class LogSplit(StrictModel):
    """A route log divided into the calls a round trains on and the calls it is measured on: a
    call is held out when a seeded hash of its request (its messages, or its prompt) falls
    under `heldout`. The same request is always in the same part, so a repeated request cannot
    be trained on in one part and measured in the other, and a call's part never depends on
    the other calls (appending traffic to the log moves none). `syllabus finetune` and
    portfolio builds train only on the training part; a `kind = "log"` task with this `split`
    is measured only on the held-out part."""

    heldout: Annotated[float, between(0.01, 0.99)] = 0.3
    """Share of the requests held out for measurement."""
    seed: Annotated[int, at_least(0)] = 0


class DataConfig(StrictModel):
    datasets: list[str] = Field(min_length=1)
    """Syllabus datasets (exercises, dialogues, reasoning) or JSONL chat logs of
    OpenAI-style `{"messages": [...]}` records (e.g. what `syllabus route` writes)."""
    kinds: list[Literal["exercise", "dialogue", "reasoning"]] = Field(
        default_factory=lambda: list(CONVERSATION_KINDS), min_length=1
    )
    """Record kinds of Syllabus datasets to turn into conversations (others are counted, skipped)."""
    system: str | None = None
    """A system message put first in every conversation (default: none; the template's own)."""
    heldout: Annotated[float, between(0, 0.9)] = 0.0
    """Share of exercises kept out of training and evaluated as the task's own test
    (`heldout` in [finetune.eval] tasks), chosen with the recipe's seed."""
    val_fraction: Annotated[float, between(0, 0.5)] = 0.1
    """Share of the training conversations held out for the validation loss (at least one)."""
    limit: Annotated[int, at_least(1)] | None = None
    """Use at most this many conversations (smoke runs)."""
    log_split: LogSplit | None = None
    """Chat logs: train only on the calls outside this split's held-out part (a `kind =
    "log"` portfolio task with the same `split` is measured on that part)."""
    labels: str | None = None
    """Chat logs: a JSONL file of the team's right answers for logged requests (`messages` or
    `prompt`, and `reference`: what a `kind = "log"` task reads as `references`). A logged call
    with a label is trained on the label, not on the answer served (a failed call too); a call
    without one keeps its served answer. Relative to the working directory."""


class EvalConfig(StrictModel):
    enabled: bool = True
    """false: no before/after evaluation (the exports are still written)."""
    tasks: list[str] = Field(default_factory=lambda: ["humaneval"])
    """`syllabus eval` task specs (humaneval, custom=FILE, ...) plus `heldout`: the held-out
    exercises as HumanEval-style problems. Run on the exported GGUF of the base and of the
    fine-tuned model, side by side."""
    prompt_style: Literal["chat", "completion"] = "chat"
    limit: Annotated[int, at_least(1)] | None = None
    max_tokens: Annotated[int, at_least(16)] = 512
    quant: Literal["f32", "f16", "q8_0"] = "q8_0"
    """GGUF type of the files evaluated (and served); the base is exported the same way."""
    workers: Annotated[int, between(1, 64)] = 2

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, tasks: list[str]) -> list[str]:
        from syllabus.eval.run import TASKS

        for spec in tasks:
            name = spec.partition("=")[0]
            if name != "heldout" and name not in TASKS:
                raise ValueError(f"unknown task {name!r}; use heldout or one of {', '.join(TASKS)}")
        return tasks


class TrainSettings(LoopConfig):
    """The shared loop's settings, with fine-tuning defaults, and `epochs` as the budget."""

    batch_size: Annotated[int, at_least(1)] = 4
    lr: Annotated[float, between(1e-7, 1.0)] = 2e-4
    warmup_steps: Annotated[int, at_least(0)] = 5
    weight_decay: Annotated[float, between(0, 1)] = 0.0
    beta2: Annotated[float, between(0, 1)] = 0.999
    eval_every: Annotated[int, at_least(1)] = 25
    eval_batches: Annotated[int, at_least(1)] = 50
    checkpoint_every: Annotated[int, at_least(1)] = 25
    dtype: Literal["auto", "float32", "bfloat16"] = "float32"
    epochs: Annotated[float, at_least(0.01)] | None = 2.0
    """Passes over the training conversations; sets max_steps when it is not given."""


class FinetuneConfig(StrictModel):
    base: str
    """The model to specialise: a packaged GGUF (smollm2), a .gguf file, a Hugging Face
    checkpoint directory or a `syllabus train` directory. GGUF weights are de-quantized."""
    method: Literal["lora", "full", "qlora"] = "lora"
    """lora (peft adapters on a frozen base), full (every weight), qlora (LoRA on a 4-bit
    base through bitsandbytes; CUDA only)."""
    lora: LoraConfig = Field(default_factory=LoraConfig)
    data: DataConfig
    seq_len: Annotated[int, between(16, 131072)] = 1024
    """Longest training row; longer conversations are cut (the audit counts what it costs)."""
    packing: bool = True
    """Several conversations per row, each attending only to itself (positions restart)."""
    chat_template: str | None = None
    """A Jinja2 chat template file to use instead of the base tokenizer's."""
    decontam: DecontamConfig = Field(default_factory=DecontamConfig)
    """Training conversations sharing an n-gram with HumanEval, the recipe's eval files, the
    held-out exercises or these benchmarks are removed before training."""
    train: TrainSettings = Field(default_factory=TrainSettings)
    gradient_checkpointing: bool = False
    """Keep only each layer's input through the forward pass and recompute the rest in the
    backward: activation memory from every layer's intermediates to one layer's, for about a
    third more compute; the losses are the same (dropout is replayed)."""
    merge: bool = True
    """LoRA: also write merged weights (checked against base + adapter)."""
    export: list[Literal["hf", "gguf", "onnx"]] = Field(default_factory=lambda: ["gguf"])
    eval: EvalConfig = Field(default_factory=EvalConfig)
    """Before/after evaluation on the exported GGUF files."""

    @model_validator(mode="after")
    def _check(self) -> FinetuneConfig:
        if not (self.train.epochs or self.train.max_steps or self.train.max_time_s):
            raise ValueError("set a budget: train.epochs, train.max_steps or train.max_time_s")
        if self.train.max_tokens:
            raise ValueError(
                "train.max_tokens is not a fine-tuning budget; use train.epochs or train.max_steps"
            )
        heldout_task = self.eval.enabled and "heldout" in self.eval.tasks
        if heldout_task and not self.data.heldout:
            raise ValueError("eval task heldout needs data.heldout > 0 (e.g. 0.2)")
        if "onnx" in self.export and self.method != "full" and not self.merge:
            raise ValueError("ONNX export of a LoRA run needs merged weights (set merge = true)")
        if self.eval.enabled and self.method != "full" and not self.merge:
            raise ValueError(
                "evaluating a LoRA run needs merged weights to export (set merge = true)"
            )
        return self
