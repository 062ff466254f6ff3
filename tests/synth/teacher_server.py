"""A scripted teacher behind a real OpenAI-compatible HTTP server on 127.0.0.1.

It recognises Syllabus's shipped prompts and answers each one deterministically from the
prompt and seed (like a seeded model), so runs are reproducible; `faults` makes chosen calls
misbehave (HTTP errors, empty or truncated answers, garbage, code that does not parse)."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time

from tests.local_http import LocalJSONServer

WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "maple",
    "copper",
    "violet",
    "harbor",
    "lantern",
    "meadow",
    "signal",
    "quartz",
    "ember",
    "willow",
    "falcon",
    "orbit",
    "canyon",
    "pepper",
    "tulip",
    "marble",
    "glacier",
    "cedar",
    "comet",
    "sparrow",
]


def _pick(key: str, n: int) -> int:
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % n


def _prose(key: str, words: int) -> str:
    """Varied text so that different prompts never look like near-duplicates."""
    out = [WORDS[_pick(f"{key}/{i}", len(WORDS))] for i in range(words)]
    sentences = [" ".join(out[i : i + 9]).capitalize() + "." for i in range(0, words, 9)]
    return " ".join(sentences)


def good_answer(prompt: str, seed: int) -> str:
    key = f"{prompt}/{seed}"
    if "numbered list" in prompt and "sections" in prompt:
        count = int(re.search(r"its (\d+) sections", prompt).group(1))
        return "\n".join(f"{i}. Part {i} of {_prose(key + str(i), 2)}" for i in range(1, count + 1))
    if "numbered list" in prompt and "topics" in prompt:
        return "1. Loops\n2. Recursion\n3. Classes\n"
    if prompt.startswith("This Python function and its tests fail"):
        name = re.search(r"def (\w+)\(", prompt).group(1)
        k = int(re.search(r"\+ (\d+)", prompt).group(1))
        return f'```python\ndef {name}(a: int, b: int) -> int:\n    """Doc."""\n    return a + b + {k}\n```'
    if "Write one small Python function" in prompt:
        k = _pick(key, 50) + 1
        name = f"add_{_prose(key, 1).rstrip('.').lower()}_{k}"
        code = f'def {name}(a: int, b: int) -> int:\n    """Return a plus b plus {k}."""\n    return a + b + {k}\n'
        return f"Here it is:\n```python\n{code}```"
    if "assert statements that call" in prompt:
        name = re.search(r"call `(\w+)`", prompt).group(1)
        k = int(re.search(r"plus b plus (\d+)", prompt).group(1))
        return (
            "```python\n"
            + "".join(f"assert {name}({a}, 2) == {a + 2 + k}\n" for a in (1, 5, 9))
            + "```"
        )
    if "word problem" in prompt:
        n = _pick(key, 20) + 2
        return (
            f"Problem: A box holds {n} {_prose(key, 1).rstrip('.').lower()}s and we buy 3 boxes. How many in all?\n"
            f"Solution: Each box holds {n}, so 3 boxes hold 3 * {n} = {3 * n}.\nAnswer: {3 * n}"
        )
    if "prints only the final number" in prompt:
        n = int(re.search(r"holds (\d+)", prompt).group(1))
        return f"```python\nprint(3 * {n})\n```"
    if "conversation between" in prompt:
        return "\n".join(
            f"{'Student' if i % 2 == 0 else 'Teacher'}: {_prose(f'{key}/{i}', 12)}"
            for i in range(6)
        )
    return _prose(key, 160)  # a textbook section


def completion_answer(prompt: str, seed: int) -> str:
    """A base model continuing the completion-mode exercise prompt: a function in HumanEval's
    shape whose second docstring example is wrong (so it must be taken out), then the start of
    the next function, which the generator must cut off (this server ignores stop strings)."""
    key = f"{prompt}/{seed}"
    k = _pick(key, 50) + 1
    name = f"add_{_prose(key, 1).rstrip('.').lower()}_{k}"
    return (
        f'def {name}(a: int, b: int) -> int:\n    """Return a plus b plus {k}.\n'
        f"    >>> {name}(1, 2)\n    {3 + k}\n"
        f"    >>> {name}(5, 2)\n    {7 + k + 1}\n"
        f"    >>> {name}(9, 2)\n    {11 + k}\n"
        f'    """\n    return a + b + {k}\n\n\n# Topic: more\ndef next_one(x: int) -> int:\n'
    )


class TeacherServer(LocalJSONServer):
    """`faults`: {call number (1-based): fault} with fault one of "500", "429", "empty",
    "truncated", "garbage", "bad code", "hang"; `delay` seconds per answer."""

    def __init__(
        self, faults: dict[int, str] | None = None, delay: float = 0.0, answer=good_answer
    ):
        self.faults = dict(faults or {})
        self.delay = delay
        self.answer = answer
        self.calls = 0
        self.prompts: list[str] = []
        self.models: list[tuple[str, str]] = []
        """(model asked for, "chat" or "complete") per call."""
        self._lock = threading.Lock()
        super().__init__()

    def handle(self, body, headers):
        completion = "prompt" in body  # /v1/completions: a plain prompt to continue
        prompt = body["prompt"] if completion else body["messages"][-1]["content"]
        with self._lock:
            self.calls += 1
            fault = self.faults.get(self.calls)
            self.prompts.append(prompt)
            self.models.append((body.get("model"), "complete" if completion else "chat"))
        if self.delay:
            time.sleep(self.delay)
        text = (completion_answer if completion else self.answer)(prompt, body.get("seed", 0))
        finish = "stop"
        if fault in ("500", "429"):
            return int(fault), b'{"error": {"message": "teacher overloaded"}}', {}
        if fault == "garbage":
            return 200, b"<html>proxy error</html>", {}
        if fault == "hang":
            time.sleep(30)
        if fault == "empty":
            text = ""
        elif fault == "truncated":
            text, finish = text[: len(text) // 3], "length"
        elif fault == "bad code":
            text = text.replace("return a + b", "return a +* b").replace("Problem:", "Problme")
        choice = {"index": 0, "finish_reason": finish}
        choice.update(
            {"text": text} if completion else {"message": {"role": "assistant", "content": text}}
        )
        payload = {
            "id": "x",
            "object": "text_completion" if completion else "chat.completion",
            "model": "scripted-teacher",
            "choices": [choice],
            "usage": {
                "prompt_tokens": len(prompt) // 4,
                "completion_tokens": max(1, len(text) // 4),
            },
        }
        return 200, json.dumps(payload).encode(), {}
