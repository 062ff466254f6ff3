"""`syllabus eval` end to end over HTTP: an oracle server answering with canonical solutions."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from syllabus.common.benchmarks import load_problems
from tests.conftest import run_cli

SOLUTIONS = {p.prompt: p.canonical_solution for p in load_problems()}


class Oracle:
    """OpenAI-compatible /completions that answers each HumanEval prompt with `answer(prompt)`."""

    def __init__(self, answer):
        self.calls = 0
        oracle = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                oracle.calls += 1
                text = (
                    answer(body["prompt"]) + "\ndef unrelated():\n    pass\n"
                )  # must be cut at the stop
                payload = json.dumps(
                    {
                        "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.slow
def test_canonical_answers_score_one_and_runs_resume(tmp_path):
    oracle = Oracle(lambda prompt: SOLUTIONS[prompt])
    try:
        out = tmp_path / "eval"
        args = ["eval", "--model", oracle.url, "--task", "humaneval", "-o", str(out), "-q"]
        result = run_cli(*args)
        assert result.returncode == 0, result.stderr
        summary = json.loads((out / "summary.json").read_text())
        scores = summary["tasks"]["humaneval"]["scores"]
        assert scores["pass@1"]["value"] == 1.0 and scores["pass@1"]["problems"] == 164
        settings = summary["settings"]
        assert (
            settings["backend"] == "openai"
            and settings["temperature"] == 0.0
            and settings["isolation"]
        )
        rows = [
            json.loads(line)
            for line in (out / "humaneval" / "samples.jsonl").read_text().splitlines()
        ]
        assert len(rows) == 164 and all(
            row["passed"] and "unrelated" not in row["completion"] for row in rows
        )
        calls = oracle.calls
        again = run_cli(*args)
        assert again.returncode == 0 and oracle.calls == calls  # nothing redone
        assert "pass@1" in again.stdout
    finally:
        oracle.close()


@pytest.mark.slow
def test_empty_answers_score_zero(tmp_path):
    oracle = Oracle(lambda prompt: "")
    try:
        out = tmp_path / "eval"
        result = run_cli(
            "eval",
            "--model",
            oracle.url,
            "--task",
            "humaneval",
            "--limit",
            "10",
            "-o",
            str(out),
            "-q",
        )
        assert result.returncode == 0, result.stderr
        scores = json.loads((out / "summary.json").read_text())["tasks"]["humaneval"]["scores"]
        assert scores["pass@1"]["value"] == 0.0 and scores["pass@1"]["problems"] == 10
    finally:
        oracle.close()


def test_bad_model_spec_is_a_clear_error(tmp_path):
    result = run_cli(
        "eval",
        "--model",
        str(tmp_path / "nothing"),
        "--task",
        "humaneval",
        "-o",
        str(tmp_path / "o"),
    )
    assert (
        result.returncode == 2
        and "not a packaged model" in result.stderr
        and "Traceback" not in result.stderr
    )
