"""Shared fixtures: real embedded models, a real llama.cpp OpenAI server, a scripted faulty server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from syllabus.sandbox import tempdirs
from syllabus.sandbox.runner import RUN_PARENT
from syllabus.store import DatasetWriter
from syllabus.types import Record
from tests.train.conftest import stdlib_files, tiny_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_response_cache(tmp_path, monkeypatch):
    """Each test gets its own response cache so results never leak between tests."""
    monkeypatch.setenv("SYLLABUS_CACHE_DIR", str(tmp_path / "cache"))


# Fixtures that load a real model, start a server, train or fine-tune (directly or through the
# fixtures they use): every test that uses one is `slow`, so `make check` (pytest -m "not slow")
# skips it wherever it lives, and a new test on such a fixture is sorted without a marker.
SLOW_FIXTURES = frozenset(
    {
        "smollm2_path",  # tests that load the packaged GGUF themselves
        "smollm2",
        "llama_server",
        "smollm2_gguf",  # tests/finetune: the base model made from it
        "smollm2_hf",  # tests/eval: the GGUF converted to a transformers checkpoint
        "gemma",  # tests/eval: gemma3-270m loaded
        "route",  # tests/portfolio: a router over real models
        "packed",  # tests/train: the trainer's runs
        "trained",
        "realistic",  # tests/train: a model with a 4,096-token tokenizer
        "tiny_base",
        "tiny_hf",
        "finetuned",
        "fair_run",  # tests/pipeline: a whole `syllabus run`
    }
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def pytest_sessionfinish(session, exitstatus):
    """Leave no sandbox directory behind: the kill-and-resume tests SIGKILL processes that held
    some, and the next process to start a sandbox would sweep them; the suite does it now."""
    tempdirs.sweep([tempfile.gettempdir(), RUN_PARENT])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    from syllabus.backends import resolve_model

    return resolve_model("smollm2")[0]


@pytest.fixture(scope="session")
def smollm2(smollm2_path):
    from syllabus.backends.embedded import EmbeddedBackend

    backend = EmbeddedBackend(str(smollm2_path), n_ctx=1024)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def llama_server(smollm2_path, tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server on 127.0.0.1, serving SmolLM2."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(smollm2_path),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "1024",
                "--model_alias",
                "smollm2",
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(base + "/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("llama_cpp.server did not start within 90 s")
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_cli(
    *args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run the real `syllabus` entry point in a subprocess."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "syllabus.cli", *args],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- the tiny trained model (tests/train, tests/export) -------------------------------------------


@pytest.fixture(scope="session")
def code_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "stdlib"
    with DatasetWriter(out) as writer:
        for path in (
            stdlib_files("json", 10) + stdlib_files("email", 30) + stdlib_files("collections", 5)
        ):
            writer.write(
                Record(
                    text=path.read_text(encoding="utf-8", errors="replace"),
                    kind="code",
                    source=str(path),
                )
            )
    return out


@pytest.fixture(scope="session")
def tokenizer_dir(code_dataset, tmp_path_factory) -> Path:
    from syllabus.store import open_dataset
    from syllabus.train.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("tok")
    train_tokenizer((r.text for r in open_dataset(code_dataset)), out, vocab_size=512)
    return out


@pytest.fixture(scope="session")
def packed(code_dataset, tokenizer_dir, tmp_path_factory) -> Path:
    from syllabus.train.pack import PackSource, pack

    out = tmp_path_factory.mktemp("packed")
    pack([PackSource(code_dataset)], tokenizer_dir, out, val_fraction=0.1)
    return out


@pytest.fixture(scope="session")
def trained(packed, tmp_path_factory) -> Path:
    """A tiny model trained for 150 steps: peaked enough for greedy decoding to be stable."""
    from syllabus.train.pretrain import train

    out = tmp_path_factory.mktemp("trained")
    train(tiny_config(packed, out, max_steps=150, lr=1e-2, eval_every=50), show_progress=False)
    return out
