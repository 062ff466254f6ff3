"""A local Hugging Face checkpoint directory run through transformers (e.g. models Syllabus trains).

Never downloads: the path must hold `config.json`, weights and tokenizer files.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from syllabus.backends.base import (
    Backend,
    Completion,
    LogLikelihood,
    Request,
    SamplingParams,
    TokenLogprob,
    Usage,
)
from syllabus.backends.cache import ResponseCache
from syllabus.backends.scoring import score_tokens
from syllabus.errors import BackendError, UserError
from syllabus.fingerprint import path_digest


class HFBackend(Backend):
    kind = "hf"

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        defaults: SamplingParams | None = None,
        cache: ResponseCache | None = None,
    ):
        super().__init__(defaults=defaults, cache=cache, concurrency=1)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = Path(path).expanduser()
        if not (self.path / "config.json").exists():
            raise UserError(
                f"{self.path}: not a Hugging Face checkpoint directory (no config.json)"
            )
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(
                self.path, local_files_only=True, dtype=getattr(torch, dtype)
            ).to(device)
        except (OSError, ValueError) as exc:
            raise BackendError(
                f"{self.path}: transformers could not load the checkpoint ({exc})"
            ) from None
        self.model.eval()
        self.device = device
        self.dtype = dtype
        self.files = path_digest(self.path)  # weights, config and tokenizer, hashed in full
        caps = {"complete", "logprobs", "seed", "loglikelihood"}
        if getattr(self.tokenizer, "chat_template", None):
            caps.add("chat")
        self.capabilities = frozenset(caps)
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return f"{self.path.name}/{self.files[:16]}"

    @property
    def identity(self) -> dict[str, Any]:
        import torch
        import transformers

        return {
            "kind": self.kind,
            "files": self.files,
            "dtype": self.dtype,
            "device": self.device,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        }

    @property
    def endpoint(self) -> str:
        return str(self.path)

    def _generate(self, request: Request) -> Completion:
        import torch

        params = request.params
        if request.mode == "chat":
            prompt = self.tokenizer.apply_chat_template(
                [m.model_dump() for m in request.messages],
                tokenize=False,
                add_generation_prompt=True,
            )
        else:
            prompt = request.prompt
        inputs = self.tokenizer(
            prompt, return_tensors="pt", add_special_tokens=request.mode != "chat"
        ).to(self.device)
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "return_dict_in_generate": True,
            "output_logits": bool(params.logprobs),
            "pad_token_id": self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id,
        }
        if params.temperature > 0:
            kwargs.update(
                do_sample=True,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k or None,
            )
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=params.stop, tokenizer=self.tokenizer)
        with self._lock, torch.inference_mode():
            if params.seed is not None:
                torch.manual_seed(params.seed)
            out = self.model.generate(**inputs, **kwargs)
        new_tokens = out.sequences[0, inputs["input_ids"].shape[1] :]
        text = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
        finish = "length" if len(new_tokens) >= params.max_tokens else "stop"
        for stop in params.stop:
            cut = text.find(stop)
            if cut != -1:
                text, finish = text[:cut], "stop"
        logprobs = None
        if params.logprobs:
            logprobs = []
            for token_id, logits in zip(new_tokens.tolist(), out.logits, strict=False):
                logp = torch.log_softmax(logits[0].float(), dim=-1)
                top = torch.topk(logp, params.logprobs)
                alternatives: dict[str, float] = {}
                for value, index in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                    # Distinct ids can decode to the same text (partial UTF-8): keep the likeliest.
                    alternatives.setdefault(self.tokenizer.decode([index]), value)
                logprobs.append(
                    TokenLogprob(
                        token=self.tokenizer.decode([token_id]),
                        logprob=float(logp[token_id]),
                        top=alternatives,
                    )
                )
        return Completion(
            text=text,
            finish_reason=finish,
            usage=Usage(
                prompt_tokens=int(inputs["input_ids"].shape[1]), completion_tokens=len(new_tokens)
            ),
            logprobs=logprobs,
            model=self.model_id,
        )

    def _loglikelihood(self, context: str, continuation: str) -> LogLikelihood:
        import torch

        start = self.tokenizer(context, add_special_tokens=True)["input_ids"] if context else []
        if not start:
            first = (
                self.tokenizer.bos_token_id
                if self.tokenizer.bos_token_id is not None
                else self.tokenizer.eos_token_id
            )
            start = [first]
        tokens = start + self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
        window = getattr(self.model.config, "max_position_embeddings", 2048)

        def logits_for(ids):
            with torch.inference_mode():
                return (
                    self.model(torch.tensor([list(ids)], device=self.device))
                    .logits[0]
                    .float()
                    .cpu()
                    .numpy()
                )

        with self._lock:
            total, count, greedy = score_tokens(tokens, len(start), window, logits_for)
        return LogLikelihood(logprob=total, tokens=count, greedy=greedy)
