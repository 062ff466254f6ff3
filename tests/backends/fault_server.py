"""A tiny OpenAI-shaped HTTP server that misbehaves on cue, for testing retries."""

from __future__ import annotations

import json
import threading
import time

from tests.local_http import LocalJSONServer


def ok_body(text: str = "hello") -> bytes:
    return json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "model": "fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "text": text,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        }
    ).encode()


class FaultServer(LocalJSONServer):
    """Each POST takes the next step of `script`: ("ok", text), ("status", code, retry_after),
    ("slow", seconds), ("garbage", body). When the script runs out, it answers ok."""

    def __init__(self):
        self.script: list[tuple] = []
        self.requests: list[tuple[float, dict]] = []
        self._lock = threading.Lock()
        super().__init__()

    def handle(self, body, headers):
        with self._lock:
            self.requests.append(
                (time.monotonic(), {"body": body, "auth": headers.get("authorization")})
            )
            step = self.script.pop(0) if self.script else ("ok", "hello")
        kind = step[0]
        if kind == "slow":
            time.sleep(step[1])
            step = ("ok", "late")
            kind = "ok"
        if kind == "ok":
            return 200, ok_body(step[1]), {}
        if kind == "status":
            retry = {"Retry-After": str(step[2])} if len(step) > 2 and step[2] is not None else {}
            return step[1], b'{"error": "nope"}', retry
        return 200, step[1], {}  # garbage
