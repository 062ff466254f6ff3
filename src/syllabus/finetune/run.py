"""`syllabus finetune RECIPE -o OUT`: base -> data (decontaminated, rendered, audited) -> the
shared trainer -> merged weights -> exported GGUF -> base and fine-tuned evaluated side by side
on the files that would be served -> report.

Stages live in OUT/<stage> with the key of their config and inputs (store/stages.py): a
re-run skips what is done, resumes what was killed (training resumes exactly, evaluation from
its samples), and redoes a stage whose inputs changed. Training itself refuses to resume with
settings other than the checkpoint's (the trainer's own check), naming what changed.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from syllabus.backends.specs import backend_for, parse_model_spec
from syllabus.errors import UserError
from syllabus.eval.humaneval import ExecutionSettings
from syllabus.eval.run import EvalSettings, evaluate
from syllabus.export.onnx import onnx_from_hf
from syllabus.finetune.base import load_hf, prepare_base, read_base
from syllabus.finetune.config import FinetuneConfig
from syllabus.finetune.data import collect, decontaminate, read_labels, require_conversations
from syllabus.finetune.export import (
    export_adapter_gguf,
    export_model_gguf,
    merge_adapter,
)
from syllabus.finetune.render import Row, audit, build_rows, render, trainable
from syllabus.finetune.task import FinetuneTask, load_trainable, qlora_available
from syllabus.fingerprint import discard_results, path_digest
from syllabus.report import Evaluation, ReportData, compute_results, write_report
from syllabus.report.data import Arm, FunnelStep, ModelInfo, TaskSpec
from syllabus.report.sources import loss_curve, per_problem_scores
from syllabus.store.manifest import RunDir
from syllabus.store.stages import StageLog, run_stage, stage_key
from syllabus.train import parallel
from syllabus.train.config import LoopConfig
from syllabus.train.loop import format_mib
from syllabus.train.loop import run as train_loop
from syllabus.train.measure import peak_rss_mib

ARMS = ("base", "finetuned")

RESULTS = (
    "base", "data", "train", "adapter", "model", "merged", "export", "eval", "syllabus", "onnx",
    "adapter-f32.gguf", "report.html", "report.md", "report.json", "manifest.json",
)  # fmt: skip
"""What a fine-tuning run writes into OUT; `fresh` removes exactly these."""


@dataclass
class FinetuneResult:
    out: Path
    audit: dict
    """The mask audit (finetune/render.py `audit`): tokens per role, trained tokens, example."""
    decontam: dict
    train: dict
    """The training figures (train.json): steps, final_loss, val_loss, tokens_per_s, saved..."""
    data: dict = field(default_factory=dict)
    merge: dict | None = None
    exports: dict = field(default_factory=dict)
    report_data: ReportData | None = None
    """What report.html shows (base and fine-tuned side by side); None without evaluation."""
    results: Evaluation | None = None
    """The evaluation table computed from `report_data` (as report.json)."""
    report: Path | None = None
    log: StageLog = field(default_factory=StageLog)
    wall_time_s: float = 0.0
    peak_rss_mib: int = 0
    """Peak resident memory of the whole run's process (training's own is in `train`), MiB."""
    finished: bool = True


def _eval_files(config: FinetuneConfig) -> list[Path]:
    """Data files named by the evaluation tasks (custom=, choice=, exact=...): decontaminated against."""
    if not config.eval.enabled:
        return []
    return [Path(spec.partition("=")[2]) for spec in config.eval.tasks if "=" in spec]


# -- data --------------------------------------------------------------------------------------


def _split(items: list, fraction: float, seed: int) -> tuple[list, list]:
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    count = 0 if len(items) < 2 or not fraction else max(1, round(fraction * len(items)))
    held = set(order[:count])
    return [x for i, x in enumerate(items) if i not in held], [
        x for i, x in enumerate(items) if i in held
    ]


def check_packing(model, rows) -> dict:
    """The last conversation of a packed row must get the logits it gets alone: proof that the
    model's attention stops at the position reset (no leak from the conversations before it)."""
    row = next((r for r in rows if (r.positions[1:] == 0).any()), None)
    if row is None:
        return {"checked": False, "reason": "no row holds two conversations"}
    start = int((row.positions == 0).nonzero()[0][-1])
    ids = torch.from_numpy(row.ids)[None]
    positions = torch.from_numpy(row.positions)[None]
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=positions, use_cache=False).logits[0, start:]
        alone = model(input_ids=ids[:, start:], use_cache=False).logits[0]
    diff = float((packed - alone).abs().max())
    if not diff < 1e-3:
        raise UserError(
            f"finetune: with packing, this model's logits for a conversation change with the "
            f"conversations packed before it (max difference {diff:.2e}): its attention does not "
            "stop at the position reset. Set finetune.packing = false"
        )
    return {"checked": True, "max_abs_logit_diff": diff}


def prepare_data(config: FinetuneConfig, seed: int, base_dir: Path, out: Path) -> dict:
    from transformers import AutoTokenizer

    collected = collect(
        config.data.datasets,
        config.data.kinds,
        config.data.heldout,
        seed,
        config.data.system,
        config.data.log_split,
        read_labels(Path(config.data.labels)) if config.data.labels else None,
    )
    if collected.heldout:
        with (out / "heldout.jsonl").open("w") as sink:
            for problem in collected.heldout:
                sink.write(json.dumps(problem) + "\n")
    conversations = collected.conversations[: config.data.limit]
    kept, decontam = decontaminate(
        conversations, config.decontam, _eval_files(config), collected.heldout, out / "decontam"
    )
    require_conversations(collected, config.data, len(kept), decontam)
    train_convs, val_convs = _split(kept, config.data.val_fraction, seed)
    tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
    rendered = render(tokenizer, train_convs, config.seq_len)
    report = audit(tokenizer, rendered, config.seq_len)
    examples = [e for e in rendered.examples if trainable(e)]
    val_examples = [
        e for e in render(tokenizer, val_convs, config.seq_len).examples if trainable(e)
    ]
    train_rows = build_rows(examples, config.seq_len, config.packing, seed)
    val_rows = build_rows(val_examples, config.seq_len, config.packing, seed + 1)
    packing = {"checked": False, "reason": "packing off"}
    if config.packing:
        model, _ = load_hf(base_dir)
        packing = check_packing(model.eval(), train_rows)
        del model
    torch.save(
        {"train": [vars(r) for r in train_rows], "val": [vars(r) for r in val_rows]},
        out / "rows.pt",
    )
    summary = {
        "skipped_records": dict(collected.skipped),
        "labelled_calls": collected.labelled,
        "conversations": len(conversations),
        "heldout_problems": len(collected.heldout),
        "after_decontam": len(kept),
        "train_conversations": len(train_convs),
        "val_conversations": len(val_convs),
        "train_rows": len(train_rows),
        "val_rows": len(val_rows),
        "train_tokens": int(sum(len(r.ids) for r in train_rows)),
        "trained_tokens": int(sum(r.n_targets for r in train_rows)),
        "packing": packing,
        "audit": report,
        "decontam": decontam,
    }
    (out / "audit.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    (out / "example.txt").write_text(report["example"] + "\n")
    return summary


def _load_rows(data_dir: Path):
    saved = torch.load(data_dir / "rows.pt", weights_only=False)
    return [Row(**r) for r in saved["train"]], [Row(**r) for r in saved["val"]]


# -- training ----------------------------------------------------------------------------------


def train_model(
    config: FinetuneConfig,
    base: dict,
    data_dir: Path,
    out: Path,
    show_progress: bool,
) -> dict | None:
    """Train with the shared loop into out/train; write out/adapter (LoRA) or out/model (full).
    None when stopped early."""
    from transformers import AutoTokenizer

    train_rows, val_rows = _load_rows(data_dir)
    world = parallel.init_world()
    try:
        settings = config.train
        rows_per_step = settings.batch_size * settings.grad_accum * world.size
        steps = settings.max_steps or (
            math.ceil(settings.epochs * len(train_rows) / rows_per_step)
            if settings.epochs
            else None
        )
        loop = LoopConfig(**settings.model_dump(exclude={"epochs", "max_steps"}), max_steps=steps)
        torch.manual_seed(settings.seed)
        model = load_trainable(Path(base["hf_dir"]), config, world.device)
        tokenizer = AutoTokenizer.from_pretrained(base["hf_dir"], local_files_only=True)
        task = FinetuneTask(
            model,
            train_rows,
            val_rows,
            config,
            tokenizer.pad_token_id,
            {"source": base["source"], "fingerprint": base["fingerprint"]},
            world,
        )
        result = train_loop(task, loop, out / "train", world, show_progress=show_progress)
        if steps is not None and result.steps < steps and not loop.max_time_s:
            return None
        previous = out / "train" / "train.json"
        if math.isnan(result.final_loss) and previous.exists():
            # Already trained: this call took no step, the figures are the training call's.
            saved = json.loads(previous.read_text())
            if saved.get("steps") == result.steps:
                return saved
        target = out / ("model" if config.method == "full" else "adapter")
        if world.is_main:
            model.save_pretrained(target, safe_serialization=True)
            tokenizer.save_pretrained(target)
        summary = {**result.figures(), "parameters": task.parameters, "saved": str(target)}
        (out / "train" / "train.json").write_text(json.dumps(summary, indent=2))
        return summary
    finally:
        parallel.shutdown(world)


# -- evaluation -------------------------------------------------------------------------------


def _task_groups(config: FinetuneConfig, data_dir: Path) -> dict[str, list[str]]:
    """Evaluation output name -> task specs; `heldout` becomes humaneval on its own problems."""
    groups: dict[str, list[str]] = {}
    for spec in config.eval.tasks:
        if spec == "heldout":
            groups["heldout"] = [f"humaneval={data_dir / 'heldout.jsonl'}"]
        else:
            groups.setdefault("tasks", []).append(spec)
    return groups


def evaluate_gguf(
    gguf: Path, config: FinetuneConfig, data_dir: Path, out: Path, show: bool
) -> dict:
    settings = EvalSettings(
        max_tokens=config.eval.max_tokens,
        limit=config.eval.limit,
        prompt_style=config.eval.prompt_style,
        execution=ExecutionSettings(workers=config.eval.workers),
    )
    summaries = {}
    with backend_for(str(gguf)) as backend:
        for name, specs in _task_groups(config, data_dir).items():
            summaries[name] = evaluate(
                backend, specs, out / name, settings, show_progress=show
            ).to_json()
    return summaries


# -- the whole run -----------------------------------------------------------------------------


def finetune_recipe(
    recipe,
    out: Path,
    *,
    recipe_path: Path | None = None,
    show_progress: bool = True,
    fresh: bool = False,
) -> FinetuneResult:
    config: FinetuneConfig | None = recipe.finetune
    if config is None:
        raise UserError(f"{recipe_path or recipe.name}: no [finetune] table")
    if config.method == "qlora":  # before any work: say at once that this machine cannot
        qlora_available(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(out)
    if fresh:
        discard_results(out, RESULTS)
    started = time.time()
    log = StageLog()
    inputs = {f"data:{p}": Path(p) for p in config.data.datasets}
    inputs.update({f"eval:{p}": p for p in _eval_files(config)})
    if recipe_path is not None:
        inputs["recipe"] = Path(recipe_path)
    with RunDir(out, stage="finetune", config=config, inputs=inputs) as manifest:
        template = Path(config.chat_template) if config.chat_template else None
        base_key = stage_key(
            "base",
            config.base,
            parse_model_spec(config.base, what="finetune.base", endpoints=False).contents(),
            path_digest(template) if template else None,
        )
        run_stage(
            "base",
            out / "base",
            base_key,
            lambda d: prepare_base(config.base, d, template).to_json(),
            log,
        )
        base = read_base(out / "base").to_json()
        data_key = stage_key(
            "data",
            base_key,
            config.data,
            config.decontam,
            config.seq_len,
            config.packing,
            recipe.seed,
            [path_digest(Path(p)) for p in config.data.datasets],
            path_digest(Path(config.data.labels)) if config.data.labels else None,
            [path_digest(p) for p in _eval_files(config)],
        )
        data = run_stage(
            "data",
            out / "data",
            data_key,
            lambda d: prepare_data(config, recipe.seed, Path(base["hf_dir"]), d),
            log,
        )
        result = FinetuneResult(out, data["audit"], data["decontam"], {}, data=data, log=log)
        start = time.time()
        train = train_model(config, base, out / "data", out, show_progress)
        log.times["train"] = round(time.time() - start, 2)
        if train is None:
            result.finished = False
            return result
        result.train = train
        trained_dir = out / ("model" if config.method == "full" else "adapter")
        # The weights and their config, not the model card peft rewrites beside them.
        weights = stage_key(
            [path_digest(f) for f in sorted(trained_dir.glob("*.safetensors"))],
            [path_digest(f) for f in sorted(trained_dir.glob("*config.json"))],
        )
        served = trained_dir
        if config.method != "full" and config.merge:
            train_rows, _ = _load_rows(out / "data")
            check = [r.ids.tolist() for r in train_rows[:2]]
            result.merge = run_stage(
                "merge",
                out / "merged",
                stage_key("merge", weights),
                lambda d: _merge(Path(base["hf_dir"]), trained_dir, d, check),
                log,
            )
            served = out / "merged"
        quant = config.eval.quant
        export_key = stage_key("export", weights, config.export, quant, base["fingerprint"])
        result.exports = run_stage(
            "export",
            out / "export",
            export_key,
            lambda d: _export(config, base, served, trained_dir, quant, d),
            log,
        )
        manifest.extra["exports"] = result.exports
        if config.eval.enabled:
            evaluations = {}
            for arm in ARMS:
                gguf = Path(result.exports[f"{arm}_gguf"])
                key = stage_key("eval", export_key, arm, config.eval, data_key)
                evaluations[arm] = run_stage(
                    f"eval {arm}",
                    out / "eval" / arm,
                    key,
                    lambda d, g=gguf: evaluate_gguf(g, config, out / "data", d, show_progress),
                    log,
                )
            result.report_data = _report_data(recipe, config, result)
            result.report = _write_report(result)
            result.results = compute_results(result.report_data)
        result.wall_time_s = round(time.time() - started, 1)
        result.peak_rss_mib = peak_rss_mib()
        manifest.extra["result"] = {
            "train": result.train,
            "merge": result.merge,
            "stage_times_s": log.times,
            "wall_time_s": result.wall_time_s,
            "peak_rss_mib": result.peak_rss_mib,
        }
    return result


def _merge(base_dir: Path, adapter: Path, out: Path, check: list[list[int]]) -> dict:
    return merge_adapter(base_dir, adapter, out, check)


def _export(config, base: dict, served: Path, trained: Path, quant: str, out: Path) -> dict:
    """GGUF of the served model and of the base (same converter, same type), and what the
    recipe asks for: HF (already written), ONNX, the LoRA adapter for llama.cpp."""
    gguf_source = Path(base["gguf"]) if base.get("gguf") else None
    plain = config.method == "full" or served != trained  # whole weights, not only an adapter
    exports = {"hf": str(served)}
    if "gguf" in config.export or config.eval.enabled:
        exports["base_gguf"] = str(
            export_model_gguf(Path(base["hf_dir"]), out / f"base-{quant}.gguf", quant, gguf_source)
        )
        if plain:
            exports["finetuned_gguf"] = str(
                export_model_gguf(served, out / f"finetuned-{quant}.gguf", quant, gguf_source)
            )
        if config.method != "full":
            exports["adapter_gguf"] = str(
                export_adapter_gguf(trained, Path(base["hf_dir"]), out / "adapter-f32.gguf")
            )
    if "onnx" in config.export:
        if not plain:
            raise UserError("finetune.export onnx needs merged weights: set finetune.merge = true")
        exports["onnx"] = str(_export_onnx(served, out))
    return exports


def _export_onnx(served: Path, out: Path) -> Path:
    """ONNX of the served (merged) HF model, its own tokenizer and special ids beside it."""
    return onnx_from_hf(served, out / "onnx").path


def _report_data(recipe, config: FinetuneConfig, result: FinetuneResult) -> ReportData:
    """Base and fine-tuned as two arms of one report, evaluated on the same problems."""
    out = result.out
    groups = _task_groups(config, out / "data")
    tasks: dict[str, TaskSpec] = {}
    arms = []
    for arm in ARMS:
        scores = {}
        for group, specs in groups.items():
            for spec in specs:
                name = spec.partition("=")[0]
                label = "heldout" if group == "heldout" else name
                values = per_problem_scores(out / "eval" / arm / group / name / "samples.jsonl")
                scores[label] = {"0": list(values.values())}
                tasks[label] = TaskSpec(
                    f"held-out exercises pass@1 ({len(values)} problems)"
                    if label == "heldout"
                    else f"{name} ({len(values)} problems)",
                    lower_is_better=name in {"humaneval-bpb", "bpb"},
                )
        finetuned = arm == "finetuned"
        arms.append(
            Arm(
                name=arm,
                description=f"{config.method} fine-tune, as GGUF {config.eval.quant}"
                if finetuned
                else f"{config.base} as GGUF {config.eval.quant}",
                funnel=_funnel(result) if finetuned else [],
                model=ModelInfo(gguf=result.exports[f"{arm}_gguf"]),
                curves={"0": loss_curve(out / "train" / "log.jsonl")} if finetuned else {},
                eval=scores,
            )
        )
    return ReportData(
        name=recipe.name,
        created_at=time.strftime("%Y-%m-%d %H:%M:%S"),
        baseline="base",
        primary="humaneval" if "humaneval" in tasks else next(iter(tasks), None),
        tasks=tasks,
        arms=arms,
        manifest={
            "base": config.base,
            "method": config.method,
            "train": result.train,
            "mask_audit": {k: v for k, v in result.audit.items() if k != "example"},
            "decontamination": result.decontam,
            "merge_check": result.merge,
            "exports": result.exports,
            "stage_times_s": result.log.times,
        },
    )


def _write_report(result: FinetuneResult) -> Path:
    """report.html and report.md (the shared renderer), then the fine-tuning section of
    report.md: the mask audit, the rendered example, decontamination and the merge check."""
    out = result.out
    write_report(result.report_data, out)
    with (out / "report.md").open("a") as report:
        report.write("\n## Fine-tuning\n\n")
        report.write(
            f"Mask audit: {json.dumps({k: v for k, v in result.audit.items() if k != 'example'})}\n\n"
        )
        report.write("Rendered training example (trained tokens inside ⟦ ⟧):\n\n```\n")
        report.write(result.audit["example"] + "\n```\n\n")
        removed = result.decontam.get("removed_ids") or []
        report.write(f"Decontamination removed {len(removed)} conversations: {removed}\n\n")
        if result.merge:
            report.write(f"Merge check: {json.dumps(result.merge)}\n\n")
        train = result.train
        report.write(
            f"Training: {train['steps']} steps, {train['tokens_per_s']:,.0f} tok/s "
            f"({train['dtype']}), peak resident memory {format_mib(train.get('peak_rss_mib'))}\n"
        )
    return out / "report.html"


def _funnel(result: FinetuneResult) -> list[FunnelStep]:
    """Conversations through the data stage; tokens are the base model's tokenizer tokens."""
    data, mask = result.data, result.audit
    return [
        FunnelStep("conversations", data["conversations"]),
        FunnelStep("after decontamination", data["after_decontam"]),
        FunnelStep(
            "training (less validation)",
            data["train_conversations"],
            sum(mask["tokens_by_role"].values()),
            "tokenizer",
        ),
        FunnelStep(
            "trained tokens (assistant)", mask["usable"], mask["trained_tokens"], "tokenizer"
        ),
    ]
