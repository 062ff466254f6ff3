"""Conversations -> token rows: the base's chat template, a loss mask on assistant tokens only,
truncation, packing without cross-conversation attention, and the audit that checks all of it.

The mask does not depend on `{% generation %}` markers in the template (few templates have
them): each message's span is where the rendering of the first i+1 messages extends the
rendering of the first i (with the generation prompt before an assistant turn, which is not
trained), so whatever the template adds, only the assistant's own text and its end-of-turn
token are trained. A template that renders no assistant text gives an empty mask, and the
audit refuses to train on it.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from syllabus.errors import UserError
from syllabus.finetune.data import Conversation

IGNORE = -100


@dataclass
class Example:
    id: str
    ids: list[int]
    trained: list[bool]
    """Whether token i is a target (the model learns to predict it)."""
    roles: list[str]
    truncated: bool = False
    answer_tokens: int = 0
    """Assistant tokens the template rendered, before truncation."""


@dataclass
class Rendered:
    examples: list[Example]
    dropped: Counter = field(default_factory=Counter)
    template_mismatches: int = 0


def _render(tokenizer, messages, generation: bool = False) -> str:
    if not messages:
        return ""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int, str]], bool]:
    """The full rendering and each message's character span (start, end, role): an assistant
    turn's span is all it adds after the generation prompt (its text and end-of-turn token),
    another message's only its own text (what the template adds around it counts as template).
    The flag says the template renders consistently."""
    full = _render(tokenizer, messages)
    out, consistent = [], True
    for i, message in enumerate(messages):
        assistant = message["role"] == "assistant"
        before = _render(tokenizer, messages[:i], generation=assistant)
        upto = _render(tokenizer, messages[: i + 1])
        if full.startswith(upto) and upto.startswith(before):
            start, end = len(before), len(upto)
            if not assistant:  # only the message's own text is its role's; the rest is template
                at = full.find(message["content"], start, end)
                start, end = (at, at + len(message["content"])) if at != -1 else (start, start)
            out.append((start, end, message["role"]))
            continue
        # Templates that rewrite earlier turns (e.g. drop old reasoning): find the text itself.
        consistent = False
        cursor = out[-1][1] if out else 0
        at = full.find(message["content"], cursor) if message["content"] else -1
        if at != -1:
            out.append((at, at + len(message["content"]), message["role"]))
    return full, out, consistent


def render(tokenizer, conversations: list[Conversation], seq_len: int) -> Rendered:
    result = Rendered([])
    for conversation in conversations:
        text, message_spans, consistent = spans(tokenizer, conversation.messages)
        result.template_mismatches += not consistent
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
        roles, trained = [], []
        for start, end in offsets:
            role = next((r for s, e, r in message_spans if s <= start < e), "template")
            roles.append(role)
            trained.append(role == "assistant" and end > start)
        if not any(trained):
            result.dropped["no assistant tokens in the rendered template"] += 1
            result.examples.append(Example(conversation.id, ids, trained, roles))
            continue
        example = Example(conversation.id, ids, trained, roles, answer_tokens=sum(trained))
        if len(ids) > seq_len:
            example = Example(
                conversation.id,
                ids[:seq_len],
                trained[:seq_len],
                roles[:seq_len],
                truncated=True,
                answer_tokens=example.answer_tokens,
            )
            if not any(example.trained[1:]):
                result.dropped[f"every answer token beyond seq_len {seq_len}"] += 1
        result.examples.append(example)
    return result


def trainable(example: Example) -> bool:
    # Token 0 is never a target: nothing before it predicts it.
    return any(example.trained[1:])


def marked(tokenizer, example: Example, limit: int = 1200) -> str:
    """The rendered example with trained tokens inside ⟦ ⟧."""
    pieces, inside = [], False
    for token, trained in zip(example.ids, example.trained, strict=True):
        if trained != inside:
            pieces.append("⟦" if trained else "⟧")
            inside = trained
        pieces.append(tokenizer.decode([token]))
    if inside:
        pieces.append("⟧")
    text = "".join(pieces)
    return text if len(text) <= limit else text[:limit] + " …"


def audit(tokenizer, rendered: Rendered, seq_len: int) -> dict:
    """Tokens per role, trained tokens per role, truncation, a marked example; refuses an empty
    mask and truncation that cuts every answer."""
    by_role: Counter = Counter()
    trained_by_role: Counter = Counter()
    for example in rendered.examples:
        for role, trained in zip(example.roles, example.trained, strict=True):
            by_role[role] += 1
            trained_by_role[role] += trained
    usable = [e for e in rendered.examples if trainable(e)]
    report = {
        "conversations": len(rendered.examples),
        "usable": len(usable),
        "dropped": dict(rendered.dropped),
        "truncated": sum(e.truncated for e in rendered.examples),
        "seq_len": seq_len,
        "template_mismatches": rendered.template_mismatches,
        "tokens_by_role": dict(by_role),
        "trained_tokens_by_role": {role: trained_by_role[role] for role in by_role},
        "trained_tokens": sum(trained_by_role.values()),
        "example": marked(tokenizer, usable[0] if usable else rendered.examples[0])
        if rendered.examples
        else "",
    }
    if not rendered.examples:
        raise UserError("finetune: no conversations to train on (check finetune.data)")
    if not any(e.answer_tokens for e in rendered.examples):
        raise UserError(
            "finetune mask audit: no token would be trained: the chat template renders no "
            f"assistant text ({rendered.dropped.get('no assistant tokens in the rendered template', 0)} "
            f"of {len(rendered.examples)} conversations). Rendered: {report['example'][:300]!r}. "
            "Use a template that renders assistant turns (finetune.chat_template)"
        )
    if not usable:
        raise UserError(
            f"finetune mask audit: truncation at seq_len {seq_len} cuts every answer; raise "
            "finetune.seq_len (the longest conversation has "
            f"{max(len(e.ids) for e in rendered.examples)} tokens before truncation)"
        )
    leaked = {role: n for role, n in trained_by_role.items() if n and role != "assistant"}
    assert not leaked, f"mask trains non-assistant tokens: {leaked}"
    return report


# -- rows ------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One training row: token ids, position ids (restarting per conversation) and targets
    (the next token of the same conversation where it is trained, else IGNORE)."""

    ids: np.ndarray
    positions: np.ndarray
    targets: np.ndarray

    @property
    def n_targets(self) -> int:
        return int((self.targets != IGNORE).sum())


def _pieces(example: Example) -> tuple[list[int], list[int], list[int]]:
    ids = example.ids
    targets = [
        ids[i + 1] if i + 1 < len(ids) and example.trained[i + 1] else IGNORE
        for i in range(len(ids))
    ]
    return ids, list(range(len(ids))), targets


def build_rows(examples: list[Example], seq_len: int, packing: bool, seed: int) -> list[Row]:
    """Rows of at most seq_len tokens; with packing, conversations fill rows first-fit in a
    seeded order (a conversation is never split across rows)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    rows: list[tuple[list[int], list[int], list[int]]] = []
    for index in order:
        ids, positions, targets = _pieces(examples[index])
        if packing:
            for row in rows:
                if len(row[0]) + len(ids) <= seq_len:
                    row[0].extend(ids), row[1].extend(positions), row[2].extend(targets)
                    break
            else:
                rows.append((list(ids), list(positions), list(targets)))
        else:
            rows.append((list(ids), list(positions), list(targets)))
    return [
        Row(np.array(i, dtype=np.int64), np.array(p, dtype=np.int64), np.array(t, dtype=np.int64))
        for i, p, t in rows
    ]


def collate(rows: list[Row], pad_id: int) -> dict[str, np.ndarray]:
    """Pad to the longest row. The padding is a segment of its own (positions restart), so it
    never joins the attention of the conversation before it, and it has no targets."""
    length = max(len(r.ids) for r in rows)
    ids = np.full((len(rows), length), pad_id, dtype=np.int64)
    positions = np.zeros((len(rows), length), dtype=np.int64)
    targets = np.full((len(rows), length), IGNORE, dtype=np.int64)
    for i, row in enumerate(rows):
        n = len(row.ids)
        ids[i, :n], positions[i, :n], targets[i, :n] = row.ids, row.positions, row.targets
        positions[i, n:] = np.arange(length - n)
    return {"input_ids": ids, "position_ids": positions, "targets": targets}
