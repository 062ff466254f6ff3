"""A local Hugging Face checkpoint directory run through transformers (e.g. models Syllabus trains).

Never downloads: the path must hold `config.json`, weights and tokenizer files.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

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
from syllabus.backends.scoring import windows
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
        batch_size: int = 8,
        batch_scored_tokens: int = 512,
    ):
        """`batch_size` rows (sequences) per forward pass when scoring log-likelihoods, with at
        most `batch_scored_tokens` scored positions: each holds a vocabulary of logits, and on
        2 CPU cores SmolLM2's 250-token texts scored one per pass ran no slower than 8 padded
        together (6.2 s vs 6.3-9.1 s for 32), while short continuations gain from batching."""
        super().__init__(defaults=defaults, cache=cache, concurrency=1)
        self.batch_size = batch_size
        self.batch_scored_tokens = batch_scored_tokens
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
        params = request.params
        if request.mode == "chat":
            prompt = self.tokenizer.apply_chat_template(
                [m.model_dump() for m in request.messages],
                tokenize=False,
                add_generation_prompt=True,
            )
        else:
            prompt = request.prompt
        prompt_ids = self.tokenizer(
            prompt, return_tensors="pt", add_special_tokens=request.mode != "chat"
        )["input_ids"].to(self.device)
        kwargs: dict[str, Any] = {
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
            new_tokens, step_logits = self._generate_in_context(
                prompt_ids, params.max_tokens, params.stop, kwargs
            )
        text = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
        finish = "length" if len(new_tokens) >= params.max_tokens else "stop"
        for stop in params.stop:
            cut = text.find(stop)
            if cut != -1:
                text, finish = text[:cut], "stop"
        logprobs = None
        if params.logprobs:
            logprobs = []
            for token_id, logits in zip(new_tokens, step_logits, strict=False):
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
            usage=Usage(prompt_tokens=int(prompt_ids.shape[1]), completion_tokens=len(new_tokens)),
            logprobs=logprobs,
            model=self.model_id,
        )

    @property
    def context_length(self) -> int:
        return getattr(self.model.config, "max_position_embeddings", None) or 2048

    def _generate_in_context(self, prompt_ids, max_new: int, stop: list[str], kwargs: dict):
        """New token ids (and each step's logits when asked), attending to at most the model's
        context: like `syllabus generate`, each token is predicted from the last
        `context_length` tokens. One `generate` call while prompt and output fit; past that one
        call per token over a window that slides (the prompt's start drops out)."""
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        sequence, new, logits = prompt_ids, [], []
        while len(new) < max_new:
            window = sequence[:, -self.context_length :]
            # The last token of a call is predicted from window + step - 1 tokens.
            step = min(max_new - len(new), self.context_length - window.shape[1] + 1)
            out = self.model.generate(
                input_ids=window,
                attention_mask=torch.ones_like(window),
                max_new_tokens=step,
                **kwargs,
            )
            produced = out.sequences[0, window.shape[1] :].tolist()
            new += produced
            logits += list(out.logits or [])
            sequence = torch.cat([sequence, out.sequences[:, window.shape[1] :]], dim=1)
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            if len(produced) < step or eos & set(produced) or any(s in text for s in stop):
                break
        return new, logits

    # -- log-likelihood -------------------------------------------------------------------------

    def _encode_pairs(self, pairs: list[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
        """Context and continuation tokenized apart (as lm-eval-harness does); an empty context
        is the BOS token (EOS where there is none), so the first token is scored too."""
        if not pairs:
            return []
        contexts = self.tokenizer([c for c, _ in pairs], add_special_tokens=True)["input_ids"]
        continuations = self.tokenizer([x for _, x in pairs], add_special_tokens=False)["input_ids"]
        first = (
            self.tokenizer.bos_token_id
            if self.tokenizer.bos_token_id is not None
            else self.tokenizer.eos_token_id
        )
        return [
            (list(start) if context and start else [first], list(continuation))
            for (context, _), start, continuation in zip(
                pairs, contexts, continuations, strict=True
            )
        ]

    def _loglikelihood(self, context: str, continuation: str) -> LogLikelihood:
        return self._loglikelihood_many([(context, continuation)])[0]

    def _loglikelihood_many(self, pairs: list[tuple[str, str]]) -> list[LogLikelihood]:
        """Score many (context, continuation) pairs with few forward passes.

        Continuations that share a context (the choices of one question) run the context once
        (several contexts left-padded into one pass) and then together on copies of its
        key/value cache. Everything else becomes rows (one per pass of `scoring.windows`: the
        whole pair when it fits the context), sorted longest first and padded together into
        batches, as lm-eval-harness does. Only the positions that predict a scored token go
        through the output layer.
        """
        encoded = self._encode_pairs(pairs)
        totals = [0.0] * len(pairs)
        wrong = [0] * len(pairs)
        shared: dict[tuple[int, ...], list[int]] = {}
        for index, (start, continuation) in enumerate(encoded):
            if continuation:  # an empty continuation has log-probability 0
                shared.setdefault(tuple(start), []).append(index)
        rows: list[_Row] = []
        groups: list[tuple[list[int], list[int]]] = []
        with self._lock, torch.inference_mode():
            for start, members in shared.items():
                longest = max(len(encoded[i][1]) for i in members)
                if len(members) > 1 and len(start) + longest <= self.context_length:
                    groups.append((list(start), members))
                    continue
                for index in members:
                    tokens = encoded[index][0] + encoded[index][1]
                    for begin, position, end in windows(
                        len(tokens), len(encoded[index][0]), self.context_length
                    ):
                        # The last token is only predicted, never fed.
                        rows.append(
                            _Row(
                                tokens[begin : end - 1],
                                position - 1 - begin,
                                tokens[position:end],
                                index,
                            )
                        )
            groups.sort(key=lambda group: len(group[0]), reverse=True)
            for batch in range(0, len(groups), self.batch_size):
                self._score_shared_contexts(
                    groups[batch : batch + self.batch_size], encoded, totals, wrong
                )
            rows.sort(key=lambda row: len(row.fed), reverse=True)
            for batch in _batches(rows, self.batch_size, self.batch_scored_tokens):
                for row, (logprob, misses) in zip(batch, self._score_rows(batch), strict=True):
                    totals[row.owner] += logprob
                    wrong[row.owner] += misses
        return [
            LogLikelihood(logprob=total, tokens=len(continuation), greedy=misses == 0)
            for total, misses, (_, continuation) in zip(totals, wrong, encoded, strict=True)
        ]

    def _score_rows(self, rows: list[_Row], past=None, past_mask=None) -> list[tuple[float, int]]:
        """(sum of log-probs of its targets, targets not the argmax) for each row, in one pass.

        Rows are right-padded: causal attention keeps padding out of every real position. With
        `past` (a key/value cache, one entry per row) the rows continue it; `past_mask` (rows x
        cached positions) says which cached positions are real (contexts were left-padded).
        """
        width = max(len(row.fed) for row in rows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        keep = torch.zeros((len(rows), width), dtype=torch.bool)
        real = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row.fed)] = torch.tensor(row.fed)
            keep[i, row.offset : row.offset + len(row.targets)] = True
            real[i, : len(row.fed)] = 1
        extra = {}
        if past is not None:
            extra = {
                "past_key_values": past,
                "use_cache": True,
                "attention_mask": torch.cat([past_mask.long(), real], dim=1).to(self.device),
                "position_ids": (past_mask.sum(dim=1, keepdim=True) + torch.arange(width)).to(
                    self.device
                ),
            }
        targets = torch.tensor([t for row in rows for t in row.targets], device=self.device)
        owners = torch.repeat_interleave(
            torch.arange(len(rows)), torch.tensor([len(row.targets) for row in rows])
        ).to(self.device)
        logits = self.model(
            ids.to(self.device),
            logits_to_keep=keep.to(self.device),
            **({"use_cache": False} | extra),
        ).logits.float()  # (kept positions, vocabulary), row-major like `targets`
        chosen = logits.gather(1, targets[:, None])[:, 0] - logits.logsumexp(dim=-1)
        sums = torch.zeros(len(rows), dtype=torch.float64, device=self.device)
        sums.index_add_(0, owners, chosen.double())
        misses = torch.zeros(len(rows), dtype=torch.long, device=self.device)
        misses.index_add_(0, owners, (logits.argmax(dim=-1) != targets).long())
        return list(zip(sums.tolist(), misses.tolist(), strict=True))

    def _score_shared_contexts(self, groups, encoded, totals, wrong) -> None:
        """Contexts of several groups in one left-padded pass, their caches kept; each
        continuation's first token from its context's last logits, the rest of every
        continuation in batches on copies of its context's cache."""
        width = max(len(start) for start, _ in groups)
        ids = torch.full((len(groups), width), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((len(groups), width), dtype=torch.bool)
        for g, (start, _) in enumerate(groups):
            ids[g, width - len(start) :] = torch.tensor(start)
            mask[g, width - len(start) :] = True
        positions = (mask.long().cumsum(dim=1) - 1).clamp(min=0)
        out = self.model(
            ids.to(self.device),
            attention_mask=mask.long().to(self.device),
            position_ids=positions.to(self.device),
            use_cache=True,
            logits_to_keep=1,
        )
        last = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        rows, sources = [], []
        for g, (_, members) in enumerate(groups):
            for index in members:
                first = encoded[index][1][0]
                totals[index] += float(last[g, first])
                wrong[index] += int(int(last[g].argmax()) != first)
                if len(encoded[index][1]) > 1:
                    rows.append(_Row(encoded[index][1][:-1], 0, encoded[index][1][1:], index))
                    sources.append(g)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i].fed), reverse=True)
        rows, sources = [rows[i] for i in order], [sources[i] for i in order]
        done = 0
        for batch in _batches(rows, 4 * self.batch_size, self.batch_scored_tokens):
            chosen = torch.tensor(sources[done : done + len(batch)], device=self.device)
            done += len(batch)
            past = copy.deepcopy(out.past_key_values)
            past.batch_select_indices(chosen)
            results = self._score_rows(batch, past, mask.to(self.device)[chosen])
            for row, (logprob, misses) in zip(batch, results, strict=True):
                totals[row.owner] += logprob
                wrong[row.owner] += misses


class _Row(NamedTuple):
    """Tokens fed in one pass; the logits at positions offset.. predict `targets` (of pair
    `owner`), and the last target is the token after the last one fed."""

    fed: list[int]
    offset: int
    targets: list[int]
    owner: int


def _batches(rows: list[_Row], size: int, scored_tokens: int) -> Iterator[list[_Row]]:
    """Consecutive rows, at most `size` per batch and at most `scored_tokens` scored positions
    (each is a vocabulary-wide row of logits); a longer row goes alone."""
    batch: list[_Row] = []
    scored = 0
    for row in rows:
        if batch and (len(batch) == size or scored + len(row.targets) > scored_tokens):
            yield batch
            batch, scored = [], 0
        batch.append(row)
        scored += len(row.targets)
    if batch:
        yield batch
