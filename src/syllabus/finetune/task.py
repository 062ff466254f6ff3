"""Fine-tuning as a task of the shared training loop: a Hugging Face model (every weight, LoRA
adapters through peft, or LoRA on a 4-bit base), rows of rendered conversations, and the mean
cross-entropy over assistant tokens.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from syllabus.errors import UserError
from syllabus.finetune.render import IGNORE, Row, collate
from syllabus.train import parallel
from syllabus.train.loop import Batch, StepBatches, TrainTask


def rows_fingerprint(rows: list[Row]) -> str:
    digest = hashlib.sha256()
    for row in rows:
        digest.update(row.ids.tobytes() + row.positions.tobytes() + row.targets.tobytes())
    return digest.hexdigest()[:16]


def qlora_available(device: torch.device) -> None:
    if device.type != "cuda":
        raise UserError(
            'finetune.method = "qlora" needs a CUDA GPU (bitsandbytes\' 4-bit kernels); on this '
            'machine use method = "lora" (the same adapters on a full-precision base, which is '
            "also what a 135M-1B model needs on a CPU)"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UserError(
            'finetune.method = "qlora" needs bitsandbytes: pip install bitsandbytes==0.50.2'
        ) from None


def load_trainable(base_dir: Path, config, device: torch.device):
    """The model to train: the base, wrapped per `config.method`."""
    from transformers import AutoModelForCausalLM

    from syllabus.finetune.base import load_hf

    if config.method == "qlora":
        qlora_available(device)
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )
        model = AutoModelForCausalLM.from_pretrained(
            base_dir, local_files_only=True, quantization_config=quantization, device_map={"": 0}
        )
        model.config.use_cache = False
        model = prepare_model_for_kbit_training(model)
    else:
        model, _ = load_hf(base_dir, device=str(device))
    if config.gradient_checkpointing:
        # Non-reentrant: gradients reach the adapters though the layer inputs need none.
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
    if config.method == "full":
        return model
    from peft import LoraConfig, get_peft_model

    known = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in config.lora.targets if t not in known]
    if missing:
        raise UserError(
            f"finetune.lora.targets: {', '.join(missing)} not in the base model (its linear "
            f"layers: {', '.join(sorted(n for n in known if n.endswith('_proj')))})"
        )
    lora = LoraConfig(
        r=config.lora.rank,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=list(config.lora.targets),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def token_loss(model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy of the targets; logits only where there is a target (a 49k
    vocabulary times every position would dominate the step)."""
    targets = inputs["targets"]
    keep = (targets != IGNORE).any(dim=0).nonzero().squeeze(1)
    out = model(
        input_ids=inputs["input_ids"],
        position_ids=inputs["position_ids"],
        use_cache=False,
        logits_to_keep=keep,
    )
    logits = out.logits
    return F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)),
        targets[:, keep].reshape(-1),
        ignore_index=IGNORE,
    )


def matmul_flops_per_token(model: torch.nn.Module, output_share: float) -> float:
    """Forward and backward FLOPs of one token through the model's weights, counting what is
    computed: 2 per weight forward, 2 for its input's gradient, 2 more for its own gradient
    where it is trained (LoRA: the adapters only); nothing for the input embedding (a lookup);
    the output projection only at the `output_share` of positions `token_loss` keeps.

    Attention scores are left out, and they outweigh the input gradients autograd skips below
    the first trained layer: the figure is a floor of the work, so MFU never overstates it.
    """
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    head_weight = head.weight if head is not None else None
    flops = 0.0
    for param in model.parameters():  # a tied embedding is one parameter, seen once
        per_use = 4 + 2 * param.requires_grad
        if param is head_weight:
            flops += per_use * param.numel() * output_share
        elif param is not embedding:
            flops += per_use * param.numel()
    return flops


class FinetuneTask(TrainTask):
    """Rows of rendered conversations, shuffled per epoch with (seed, epoch)."""

    def __init__(
        self,
        model: torch.nn.Module,
        train_rows: list[Row],
        val_rows: list[Row],
        config,
        pad_id: int,
        base: dict,
        world: parallel.World,
    ):
        if world.distributed and config.method == "qlora":
            raise UserError("finetune: qlora runs on one GPU; start it without torchrun")
        self.model = model
        self.train_rows, self.val_rows = train_rows, val_rows
        self._orders: dict[int, np.ndarray] = {}
        self.settings = config.train
        self.method = config.method
        self.pad_id = pad_id
        self.global_rows = self.settings.batch_size * self.settings.grad_accum * world.size
        self.tokens_per_step = self.global_rows * config.seq_len
        self._describe = {
            "base": base,
            "method": config.method,
            "lora": config.lora.model_dump() if config.method != "full" else None,
            "seq_len": config.seq_len,
            "packing": config.packing,
            "rows": {
                "train": len(train_rows),
                "val": len(val_rows),
                "fingerprint": rows_fingerprint(train_rows + val_rows),
            },
        }
        trainable = sum(p.numel() for _, p in self.trainable())
        frozen = sum(p.numel() for p in model.parameters()) - trainable
        self.parameters = {"trainable": trainable, "frozen": frozen}
        # token_loss keeps logits where a row has a target: with one row per micro-batch exactly
        # the targets, with more the union of their columns (the share below is then a floor).
        tokens = sum(len(r.ids) for r in train_rows)
        targets = sum(r.n_targets for r in train_rows)
        self._flops_per_token = matmul_flops_per_token(model, targets / max(tokens, 1))

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            rng = np.random.default_rng([self.settings.seed, epoch])
            self._orders[epoch] = rng.permutation(len(self.train_rows))
        return self._orders[epoch]

    def _global_rows(self, step: int) -> list[Row]:
        """Rows start * G ... of the endless sequence of per-epoch permutations."""
        n, out = len(self.train_rows), []
        first = step * self.global_rows
        for index in range(first, first + self.global_rows):
            epoch, within = divmod(index, n)
            out.append(self.train_rows[int(self._order(epoch)[within])])
        return out

    def _batch(self, rows: list[Row], device) -> Batch:
        arrays = collate(rows, self.pad_id)
        inputs = {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}
        return Batch(inputs, targets=sum(r.n_targets for r in rows))

    def micro_batches(self, step: int, world: parallel.World) -> StepBatches:
        rows = self._global_rows(step)
        size = self.settings.batch_size
        batches = []
        for micro in range(self.settings.grad_accum):
            index = (micro * world.size + world.rank) * size
            batches.append(self._batch(rows[index : index + size], world.device))
        return StepBatches(batches, sum(r.n_targets for r in rows), sum(len(r.ids) for r in rows))

    def val_batches(self, world: parallel.World) -> list[Batch]:
        size = self.settings.batch_size
        mine = self.val_rows[world.rank :: world.size][: size * self.settings.eval_batches]
        return [self._batch(mine[i : i + size], world.device) for i in range(0, len(mine), size)]

    def loss(self, module, batch: Batch) -> torch.Tensor:
        return token_loss(module, batch.inputs)

    def describe(self) -> dict:
        return self._describe

    def flops_per_token(self) -> float:
        return self._flops_per_token

    def saved_state(self, state_dict: dict) -> dict:
        if self.method == "full":
            return state_dict
        names = {name for name, _ in self.trainable()}
        return {k: v for k, v in state_dict.items() if k in names}

    def load_saved_state(self, saved: dict) -> None:
        if self.method == "full":
            self.model.load_state_dict(saved)
            return
        result = self.model.load_state_dict(saved, strict=False)
        names = {name for name, _ in self.trainable()}
        if result.unexpected_keys or names - set(saved):
            raise UserError(
                "the checkpoint's adapter does not fit this model "
                f"({len(result.unexpected_keys)} unexpected, {len(names - set(saved))} missing tensors)"
            )
