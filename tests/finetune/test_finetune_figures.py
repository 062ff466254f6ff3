"""What a fine-tune reports of its cost: FLOPs per token that count the work done (so MFU is not
overstated), and the peak resident memory, in train.json, the result and the manifest."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from syllabus.finetune.config import LLAMA_LINEAR
from syllabus.finetune.render import IGNORE
from syllabus.finetune.task import matmul_flops_per_token, token_loss
from syllabus.recipe import load_recipe
from tests.finetune.conftest import write_finetune_recipe


def tiny_lora(tied: bool, checkpointing: bool = False, dropout: float = 0.0):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        tie_word_embeddings=tied,
    )  # fmt: skip
    # Attention as plain matmuls, which torch's counter sees (it does not see the CPU's fused
    # attention kernel, which does the same work).
    config._attn_implementation = "eager"
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=LLAMA_LINEAR)
    model = LlamaForCausalLM(config)
    if checkpointing:  # as load_trainable does it
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
    return get_peft_model(model, lora).train()


@pytest.mark.parametrize("tied", [True, False])
def test_lora_flops_per_token_is_a_floor_of_what_torch_counts(tied):
    model = tiny_lora(tied)
    length = 48
    ids = torch.randint(0, 1000, (1, length))
    targets = torch.full((1, length), IGNORE)
    targets[0, 24:] = ids[0, 24:]  # the answer: the second half
    inputs = {"input_ids": ids, "position_ids": torch.arange(length)[None], "targets": targets}
    with FlopCounterMode(display=False) as counter:
        token_loss(model, inputs).backward()
    counted = counter.get_total_flops() / length
    estimate = matmul_flops_per_token(model, output_share=0.5)

    # Written out: every weight but the input embedding (a lookup) forward (2) and back to its
    # input (2), the adapters' own gradients (2 more), the output projection at half the positions.
    vocab, dim = 1000, 64
    body = sum(
        p.numel()
        for n, p in model.named_parameters()
        if "embed_tokens" not in n and "lm_head" not in n
    )
    adapters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert estimate == pytest.approx(4 * body + 2 * adapters + 4 * vocab * dim * 0.5)
    # Never above the work torch counts (attention scores come on top, outweighing the first
    # layer's input gradients autograd skips), and most of it.
    assert 0.7 * counted < estimate <= counted


def test_gradient_checkpointing_gives_the_same_loss_and_adapter_gradients():
    """The memory option changes what is kept, not what is computed (LoRA dropout on)."""
    length = 48
    ids = torch.randint(0, 1000, (1, length))
    targets = torch.full((1, length), IGNORE)
    targets[0, 10:] = ids[0, 10:]
    inputs = {"input_ids": ids, "position_ids": torch.arange(length)[None], "targets": targets}
    results = []
    for checkpointing in (False, True):
        model = tiny_lora(True, checkpointing=checkpointing, dropout=0.1)
        torch.manual_seed(1)
        loss = token_loss(model, inputs)
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        results.append((loss.detach(), grads))
    (loss, grads), (loss_ckpt, grads_ckpt) = results
    assert torch.equal(loss, loss_ckpt) and grads.keys() == grads_ckpt.keys()
    assert all(torch.allclose(grads[n], grads_ckpt[n], atol=1e-6) for n in grads)


def test_a_finetune_records_its_peak_memory(tiny_base, exercises, tmp_path):
    from syllabus.finetune.run import finetune_recipe

    recipe = write_finetune_recipe(
        tmp_path, tiny_base, [exercises],
        train={"max_steps": 2, "eval_every": 2, "checkpoint_every": 2}, merge=False,
    )  # fmt: skip
    result = finetune_recipe(load_recipe(recipe), tmp_path / "out", show_progress=False)
    saved = json.loads((tmp_path / "out" / "train" / "train.json").read_text())
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())["result"]
    total_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    # torch, transformers and the model are in this process: hundreds of MB, not all of RAM.
    assert 100 < saved["peak_rss_mib"] <= result.peak_rss_mib < total_mib
    assert result.train == saved and manifest["peak_rss_mib"] == result.peak_rss_mib
    assert saved["mfu"] is None or 0 < saved["mfu"] <= 1
    assert saved["peak_flops"] > 0 and saved["peak_source"] in {"measured", "cached"}
