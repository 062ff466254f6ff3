from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from syllabus.common.benchmarks import load_problems
from syllabus.errors import UserError
from syllabus.finetune.data import Conversation, collect, log_messages
from syllabus.finetune.render import audit, build_rows, render, trainable
from syllabus.recipe import load_recipe
from tests.conftest import REPO
from tests.finetune.conftest import losses, write_finetune_recipe

DIALOGUE = [
    {"role": "user", "content": "What is a list?"},
    {"role": "assistant", "content": "An ordered collection of items."},
    {"role": "user", "content": "Can it change?"},
    {"role": "assistant", "content": "Yes: lists are mutable."},
]


@pytest.fixture(scope="session")
def tiny_hf(tiny_base, tmp_path_factory) -> Path:
    """The tiny GGUF brought in as `syllabus finetune` brings a base: an HF directory."""
    from syllabus.finetune.base import prepare_base

    out = tmp_path_factory.mktemp("tiny-hf") / "base"
    prepare_base(str(tiny_base), out)
    return out


@pytest.fixture(scope="session")
def tokenizer(tiny_hf):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_hf, local_files_only=True)


def trained_text(tokenizer, example) -> list[str]:
    """The trained runs of tokens, decoded."""
    runs, current = [], []
    for token, trained in zip(example.ids, example.trained, strict=True):
        if trained:
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    return runs


# -- the mask ------------------------------------------------------------------------------------


def test_mask_trains_every_assistant_turn_and_nothing_else(tokenizer):
    rendered = render(tokenizer, [Conversation("d", "dialogue", "", DIALOGUE)], seq_len=512)
    example = rendered.examples[0]
    assert trained_text(tokenizer, example) == [
        "An ordered collection of items.<|im_end|>\n",
        "Yes: lists are mutable.<|im_end|>\n",
    ]
    report = audit(tokenizer, rendered, 512)
    assert report["trained_tokens_by_role"]["user"] == 0
    assert report["trained_tokens_by_role"]["template"] == 0  # the default system prompt too
    assert report["tokens_by_role"]["user"] > 0 and report["tokens_by_role"]["template"] > 0
    assert report["trained_tokens_by_role"]["assistant"] == report["trained_tokens"] > 0
    assert "⟦Yes: lists are mutable.<|im_end|>\n⟧" in report["example"]


def test_mask_audit_refuses_a_template_without_an_assistant_turn(tokenizer):
    import copy

    broken = copy.deepcopy(tokenizer)
    broken.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'user' %}<|im_start|>user\n{{ m['content'] }}"
        "<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
        "{% endif %}"
    )
    rendered = render(broken, [Conversation("d", "dialogue", "", DIALOGUE)], seq_len=512)
    with pytest.raises(UserError, match="mask audit: no token would be trained"):
        audit(broken, rendered, 512)


def test_mask_audit_refuses_truncation_that_cuts_every_answer(tokenizer):
    rendered = render(tokenizer, [Conversation("d", "dialogue", "", DIALOGUE)], seq_len=20)
    assert not trainable(rendered.examples[0])
    with pytest.raises(UserError, match="truncation at seq_len 20 cuts every answer"):
        audit(tokenizer, rendered, 20)


def test_packed_rows_attend_only_within_their_conversation(tiny_hf, tokenizer):
    from syllabus.finetune.base import load_hf
    from syllabus.finetune.render import collate

    model, _ = load_hf(tiny_hf)
    conversations = [
        Conversation(str(i), "dialogue", "", DIALOGUE[: 2 + 2 * (i % 2)]) for i in range(3)
    ]
    examples = render(tokenizer, conversations, seq_len=512).examples
    rows = build_rows(examples, 512, packing=True, seed=0)
    assert len(rows) == 1 and (rows[0].positions == 0).sum() == 3  # all three in one row
    batch = {k: torch.from_numpy(v) for k, v in collate(rows, tokenizer.pad_token_id).items()}
    with torch.no_grad():
        packed = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).logits[0]
        # Without the position resets the same row leaks: the control shows the check can fail.
        leaky = model(input_ids=batch["input_ids"], use_cache=False).logits[0]
    starts = list(np.flatnonzero(rows[0].positions == 0)) + [len(rows[0].ids)]
    for start, end in zip(starts, starts[1:], strict=False):
        alone = model(input_ids=batch["input_ids"][:, start:end], use_cache=False).logits[0]
        assert torch.allclose(packed[start:end], alone, atol=1e-4)
    last = starts[-2]
    assert not torch.allclose(leaky[last:], packed[last:], atol=1e-3)


def test_packing_is_refused_when_the_model_would_leak(tiny_hf, tokenizer):
    from syllabus.finetune.base import load_hf
    from syllabus.finetune.run import check_packing

    model, _ = load_hf(tiny_hf)
    conversations = [Conversation(str(i), "dialogue", "", DIALOGUE) for i in range(2)]
    rows = build_rows(render(tokenizer, conversations, 512).examples, 512, True, 0)
    assert check_packing(model, rows)["max_abs_logit_diff"] < 1e-4
    model.config.use_cache = True  # a KV cache switches transformers' packed-sequence mask off

    def with_cache(**kwargs):
        kwargs["use_cache"] = True
        return type(model).forward(model, **kwargs)

    model.forward = with_cache
    with pytest.raises(UserError, match="packing = false"):
        check_packing(model, rows)


# -- data ----------------------------------------------------------------------------------------


def test_chat_log_lines_become_conversations(tmp_path):
    log = tmp_path / "route-log.jsonl"
    answer = {"choices": [{"message": {"role": "assistant", "content": "4"}}]}
    log.write_text(
        json.dumps({"messages": [{"role": "user", "content": "2+2?"}], "response": answer})
        + "\n"
        + json.dumps({"messages": DIALOGUE})
        + "\n"
        # as `syllabus route` logs calls: the answer in `completion`, failures with a status
        + json.dumps({"status": "ok", "messages": DIALOGUE[:1], "completion": "A sequence."})
        + "\n"
        + json.dumps({"status": "error", "messages": DIALOGUE[:1], "completion": None})
        + "\n"
    )
    collected = collect([str(log)], ["exercise"], 0.0, 0, None)
    assert [c.messages[-1] for c in collected.conversations] == [
        {"role": "assistant", "content": "4"},
        DIALOGUE[-1],
        {"role": "assistant", "content": "A sequence."},
    ]
    assert collected.skipped == {"log: failed call": 1}
    with pytest.raises(UserError, match=r"log.jsonl:9: unknown role 'robot'"):
        log_messages({"messages": [{"role": "robot", "content": "x"}]}, f"{log}:9")


def test_heldout_exercises_are_problems_their_solutions_pass(exercises, tmp_path):
    from syllabus.eval import humaneval

    collected = collect([str(exercises)], ["exercise", "dialogue"], 0.5, 0, None)
    assert len(collected.heldout) == 3
    prompts = {p["prompt"] for p in collected.heldout}
    trained = " ".join(c.text() for c in collected.conversations)
    assert not any(prompt in trained for prompt in prompts)  # held out means not trained on
    path = tmp_path / "heldout.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in collected.heldout))
    problems = load_problems(path)
    results = humaneval.execute(
        {p.task_id: p for p in problems}, [(p.task_id, p.canonical_solution) for p in problems]
    )
    assert all(r.passed for r in results)
    stubs = humaneval.execute(
        {p.task_id: p for p in problems}, [(p.task_id, "    return None\n") for p in problems]
    )
    assert not any(r.passed for r in stubs)


def test_decontamination_removes_a_conversation_holding_a_humaneval_problem(
    tiny_hf, exercises, tmp_path
):
    from syllabus.finetune.config import FinetuneConfig
    from syllabus.finetune.run import prepare_data
    from syllabus.store import DatasetWriter
    from syllabus.types import Record

    problem = load_problems()[0]
    leaked = tmp_path / "leaked"
    with DatasetWriter(leaked) as writer:
        writer.write(
            Record(
                text="leak",
                kind="dialogue",
                meta={
                    "messages": [
                        {"role": "user", "content": "Solve this."},
                        {
                            "role": "assistant",
                            "content": problem.prompt + problem.canonical_solution,
                        },
                    ]
                },
            )
        )
    config = FinetuneConfig(
        base=str(tiny_hf), data={"datasets": [str(exercises), str(leaked)]}, seq_len=256,
        eval={"enabled": False}, train={"max_steps": 1},
    )  # fmt: skip
    out = tmp_path / "data"
    out.mkdir()
    summary = prepare_data(config, 0, tiny_hf, out)
    removed = summary["decontam"]
    assert removed["removed"] == 1 and removed["by_benchmark"] == {"humaneval": 1}
    report = json.loads((out / "decontam" / "decontam-humaneval.json").read_text())
    assert report["hits"][0]["item_id"] == problem.task_id
    assert summary["after_decontam"] == summary["conversations"] - 1


def test_qlora_on_cpu_is_refused_with_what_to_use(tiny_base, exercises, tmp_path):
    from syllabus.finetune.run import finetune_recipe

    recipe = write_finetune_recipe(tmp_path, tiny_base, [exercises], method="qlora")
    with pytest.raises(UserError, match=r'qlora" needs a CUDA GPU.*use method = "lora"'):
        finetune_recipe(load_recipe(recipe), tmp_path / "out", show_progress=False)


# -- a whole run: adapters, merge, exports ------------------------------------------------------


@pytest.fixture(scope="module")
def finetuned(tiny_base, exercises, tmp_path_factory):
    from syllabus.finetune.run import finetune_recipe

    work = tmp_path_factory.mktemp("finetuned")
    recipe = write_finetune_recipe(
        work, tiny_base, [exercises], export=["gguf", "onnx"],
        eval={"enabled": False, "quant": "f32"},
    )  # fmt: skip
    return finetune_recipe(load_recipe(recipe), work / "out", show_progress=False)


def chat_ids(tokenizer, messages) -> list[int]:
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]


PROMPTS = [
    [{"role": "user", "content": "Write a function that doubles a number."}],
    [{"role": "user", "content": "What is a list?"}],
    [{"role": "user", "content": "def add(a, b):\n    return a + b  # 12345 héllo"}],
]


@pytest.mark.slow
def test_adapter_saves_and_loads(finetuned, tiny_hf):
    from peft import PeftModel

    from syllabus.finetune.base import load_hf

    checkpoint = torch.load(finetuned.out / "train" / "checkpoint.pt", weights_only=False)
    base, tokenizer = load_hf(tiny_hf)
    ids = chat_ids(tokenizer, PROMPTS[0])
    before = _logits(base, ids)
    loaded = PeftModel.from_pretrained(base, finetuned.out / "adapter")
    state = {k: v for k, v in loaded.state_dict().items() if "lora_" in k}
    assert state.keys() == checkpoint["model"].keys()
    assert all(torch.equal(state[k], checkpoint["model"][k]) for k in state)
    assert not torch.allclose(_logits(loaded, ids), before, atol=1e-3)  # it does something


@pytest.mark.slow
def test_a_finished_run_started_again_redoes_nothing_and_keeps_its_figures(finetuned):
    from syllabus.finetune.run import finetune_recipe

    again = finetune_recipe(
        load_recipe(finetuned.out.parent / "finetune.toml"), finetuned.out, show_progress=False
    )
    assert again.train == finetuned.train and again.train["final_loss"] > 0
    assert {"base", "data", "merge", "export"} <= set(again.log.skipped)
    assert again.exports == finetuned.exports


@pytest.mark.slow
def test_merged_weights_give_the_logits_of_base_plus_adapter(finetuned, tiny_hf):
    from peft import PeftModel

    from syllabus.finetune.base import load_hf

    assert finetuned.merge["max_abs_logit_diff"] < 1e-4
    base, tokenizer = load_hf(tiny_hf)
    adapted = PeftModel.from_pretrained(base, finetuned.out / "adapter").eval()
    merged, _ = load_hf(finetuned.out / "merged")
    for messages in PROMPTS:
        ids = chat_ids(tokenizer, messages)
        assert torch.allclose(_logits(adapted, ids), _logits(merged, ids), atol=1e-4)


def _greedy_hf(model, ids: list[int], n: int) -> list[int]:
    out = list(ids)
    for _ in range(n):
        out.append(int(_logits(model, out)[-1].argmax()))
    return out[len(ids) :]


def _greedy_llama_cpp(llm, ids: list[int], n: int) -> list[int]:
    llm.reset()
    out = []
    for token in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0):
        out.append(token)
        if len(out) == n:
            break
    return out


@pytest.mark.slow
def test_merged_gguf_and_adapter_gguf_give_the_same_greedy_tokens_in_llama_cpp(finetuned):
    from llama_cpp import Llama

    from syllabus.backends.embedded import avoid_amx_repack
    from syllabus.finetune.base import load_hf

    avoid_amx_repack()
    merged, tokenizer = load_hf(finetuned.out / "merged")
    served = Llama(finetuned.exports["finetuned_gguf"], n_ctx=512, verbose=False, logits_all=False)
    with_adapter = Llama(
        finetuned.exports["base_gguf"], n_ctx=512, verbose=False,
        lora_path=finetuned.exports["adapter_gguf"],
    )  # fmt: skip
    for messages in PROMPTS:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert served.tokenize(text.encode(), add_bos=False, special=True) == ids
        expected = _greedy_hf(merged, ids, 12)
        assert _greedy_llama_cpp(served, ids, 12) == expected
        assert _greedy_llama_cpp(with_adapter, ids, 12) == expected


@pytest.mark.slow
def test_onnx_export_gives_the_merged_logits(finetuned):
    import onnxruntime

    from syllabus.finetune.base import load_hf

    merged, tokenizer = load_hf(finetuned.out / "merged")
    onnx_dir = Path(finetuned.exports["onnx"])
    session = onnxruntime.InferenceSession(str(onnx_dir / "model.onnx"))
    ids = chat_ids(tokenizer, PROMPTS[1])
    (logits,) = session.run(None, {"input_ids": np.array([ids], dtype=np.int64)})
    assert np.allclose(logits[0], _logits(merged, ids).numpy(), atol=1e-4)
    config = json.loads((onnx_dir / "config.json").read_text())
    assert config["eos_token_id"] == tokenizer.eos_token_id  # <|im_end|>, not a Syllabus EOT


@pytest.mark.slow
def test_finetune_killed_and_resumed_equals_an_uninterrupted_run(tiny_base, exercises, tmp_path):
    from safetensors.torch import load_file

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    settings = {
        "merge": False, "export": [], "eval": {"enabled": False},
        "train": {"max_steps": 16, "checkpoint_every": 4},
        "lora": {"dropout": 0.1},  # dropout draws random numbers: their state must resume too
    }  # fmt: skip
    cli = [sys.executable, "-m", "syllabus.cli", "finetune"]
    whole_dir, killed_dir = tmp_path / "whole", tmp_path / "killed"
    whole_dir.mkdir(), killed_dir.mkdir()
    whole = write_finetune_recipe(whole_dir, tiny_base, [exercises], **settings)
    subprocess.run(
        [*cli, str(whole), "-o", str(whole_dir / "out"), "-q"], check=True, env=env, cwd=REPO
    )
    killed = write_finetune_recipe(killed_dir, tiny_base, [exercises], **settings)
    out = killed_dir / "out"
    proc = subprocess.Popen([*cli, str(killed), "-o", str(out), "-q"], env=env, cwd=REPO)
    log = out / "train" / "log.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and len(losses(out / "train") if log.exists() else {}) < 6:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(losses(out / "train")) < 16
    subprocess.run([*cli, str(killed), "-o", str(out), "-q"], check=True, env=env, cwd=REPO)
    assert losses(out / "train") == losses(whole_dir / "out" / "train")
    a = load_file(whole_dir / "out" / "adapter" / "adapter_model.safetensors")
    b = load_file(out / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_syllabus_export_takes_a_finetune_output_as_its_merged_model(finetuned, tmp_path):
    """`syllabus export OUT`: the merged weights with the base's tokenizer, the same GGUF
    tokens as finetune's own export of them."""
    from llama_cpp import Llama

    from syllabus.ship.export import Target, export_model
    from syllabus.ship.source import resolve_source

    source = resolve_source(finetuned.out)
    assert source.kind == "finetune" and source.hf_dir == finetuned.out / "merged"
    ours = export_model(source, Target("gguf", "f32"), tmp_path / "ours.gguf").path
    theirs = Path(finetuned.exports["finetuned_gguf"])

    def greedy(path: Path) -> list[int]:
        llm = Llama(model_path=str(path), n_ctx=128, n_threads=2, verbose=False)
        try:
            ids = llm.tokenize(b"def add(a, b):", add_bos=False, special=False)
            stream = llm.generate(ids, temp=0.0, top_k=1)
            return [next(stream) for _ in range(8)]
        finally:
            llm.close()

    assert greedy(ours) == greedy(theirs)
