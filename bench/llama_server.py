"""Build llama.cpp's own `llama-server` once, into a cache directory, and start it.

llama-cpp-python's bundled server runs one request at a time; llama.cpp's `llama-server` has
parallel slots and continuous batching, which is what a team serving a teacher runs. PyPI ships
no binary of it, but the llama-cpp-python sdist vendors the llama.cpp source, so the benchmark
builds from that (cmake, ~7 min on 2 cores) and reuses the binary afterwards.

    python bench/llama_server.py            # build (or find) it and print its path
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"
CACHE = (
    Path(os.environ.get("SYLLABUS_CACHE_DIR", Path.home() / ".cache" / "syllabus")) / "llama-server"
)


def build(cache: Path = CACHE) -> Path:
    binary = cache / "bin" / "llama-server"
    if binary.exists():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        tmp = Path(tmp)
        print(
            f"downloading the {LLAMA_CPP_PYTHON} sdist for its vendored llama.cpp ...", flush=True
        )
        subprocess.run(
            [sys.executable, "-m", "pip", "download", LLAMA_CPP_PYTHON, "--no-binary", ":all:",
             "--no-deps", "-d", str(tmp)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        sdist = next(tmp.glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        source = next(tmp.glob("llama_cpp_python-*/vendor/llama.cpp"))
        build_dir = tmp / "build"
        print(
            f"building llama-server with cmake ({os.cpu_count()} cores, ~7 min on 2) ...",
            flush=True,
        )
        subprocess.run(
            ["cmake", "-S", str(source), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
             "-DLLAMA_CURL=OFF", "-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=OFF"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        subprocess.run(
            ["cmake", "--build", str(build_dir), "--target", "llama-server", "-j", str(os.cpu_count() or 1)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        built = next(build_dir.rglob("llama-server"))
        binary.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built, binary.with_suffix(".tmp"))
        os.replace(binary.with_suffix(".tmp"), binary)
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model: Path, parallel: int = 4, ctx_per_slot: int = 2048, threads: int | None = None):
    """Start llama-server on 127.0.0.1; returns (process, base_url) once it answers /health."""
    port = free_port()
    threads = threads or os.cpu_count() or 1
    proc = subprocess.Popen(
        [str(build()), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
         "--parallel", str(parallel), "-c", str(ctx_per_slot * parallel), "-t", str(threads),
         "--cont-batching", "--log-disable"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama-server exited with {proc.returncode}")
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return proc, base + "/v1"
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("llama-server did not become healthy in 120 s")


if __name__ == "__main__":
    t0 = time.perf_counter()
    path = build()
    print(f"{path} ({time.perf_counter() - t0:.0f} s)")
