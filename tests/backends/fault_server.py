"""A tiny OpenAI-shaped HTTP server that misbehaves on cue, for testing retries."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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


class FaultServer:
    """Each POST takes the next step of `script`: ("ok", text), ("status", code, retry_after),
    ("slow", seconds), ("garbage", body). When the script runs out, it answers ok."""

    def __init__(self):
        self.script: list[tuple] = []
        self.requests: list[tuple[float, dict]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(
                        (
                            time.monotonic(),
                            {"body": body, "auth": self.headers.get("authorization")},
                        )
                    )
                    step = server.script.pop(0) if server.script else ("ok", "hello")
                kind = step[0]
                if kind == "slow":
                    time.sleep(step[1])
                    step = ("ok", "late")
                    kind = "ok"
                if kind == "ok":
                    payload, code, headers = ok_body(step[1]), 200, {}
                elif kind == "status":
                    payload, code = b'{"error": "nope"}', step[1]
                    headers = (
                        {"Retry-After": str(step[2])}
                        if len(step) > 2 and step[2] is not None
                        else {}
                    )
                else:  # garbage
                    payload, code, headers = step[1], 200, {}
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
