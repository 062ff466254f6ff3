"""`syllabus sandbox check`: what protects this machine, shown by hostile probes.

Each probe runs a small hostile program in the sandbox and checks the outcome from outside: a
canary file the check writes in your home, listeners it opens (a Unix socket in your home, an
abstract socket, TCP on 127.0.0.1), the host's free memory while a forked memory bomb runs, and
the score of a program that forges its own pass.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from syllabus.sandbox.runner import (
    ISOLATION_LEVELS,
    IsolationLevel,
    Limits,
    isolation_level,
    run_python,
)

QUICK = Limits(wall_seconds=10, cpu_seconds=10)


@dataclass
class Probe:
    name: str
    protected: bool
    detail: str


def check(isolation: IsolationLevel | None = None) -> tuple[IsolationLevel, list[Probe]]:
    """The isolation level and the outcome of each probe."""
    level = isolation or isolation_level()
    probes = [
        _home(level),
        _sockets(level),
        _network(level),
        _memory(level),
        _forgery(level),
    ]
    return level, probes


def describe(level: IsolationLevel) -> str:
    return ISOLATION_LEVELS[level]


# ------------------------------------------------------------------------------------ probes


@contextlib.contextmanager
def _in_home() -> Iterator[Path]:
    """A private directory in the caller's home (or a temporary one if the home is read-only)."""
    tag = f".syllabus-sandbox-check-{uuid.uuid4().hex[:8]}"
    try:
        directory = Path.home() / tag
        directory.mkdir(mode=0o700)
    except OSError:
        directory = Path(tempfile.mkdtemp(prefix=tag))
    try:
        yield directory
    finally:
        for entry in directory.iterdir():
            entry.unlink()
        directory.rmdir()


def _home(level: IsolationLevel) -> Probe:
    with _in_home() as directory:
        secret = uuid.uuid4().hex
        canary = directory / "id_ed25519"
        canary.write_text(secret)
        code = (
            "import os\n"
            f"for attempt in (lambda: open({str(canary)!r}).read(), "
            f"lambda: os.listdir({str(Path.home())!r})):\n"
            "    try:\n        print('got', attempt())\n"
            "    except OSError as exc:\n        print('refused', type(exc).__name__)\n"
        )
        result = run_python(code, isolation=level, limits=QUICK)
    read = secret in result.stdout
    listed = directory.name in result.stdout  # the home's listing shows the check's directory
    if read:
        return Probe("home directory", False, f"a program read {canary} (your files are exposed)")
    if listed:
        return Probe("home directory", False, f"a program listed {Path.home()}")
    return Probe("home directory", True, f"{Path.home()} is not in the program's view")


def _sockets(level: IsolationLevel) -> Probe:
    with _in_home() as directory, contextlib.ExitStack() as stack:
        path = directory / "agent.sock"
        unix = stack.enter_context(socket.socket(socket.AF_UNIX))
        unix.bind(str(path))
        abstract_name = f"syllabus-sandbox-check-{uuid.uuid4().hex[:8]}"
        abstract = stack.enter_context(socket.socket(socket.AF_UNIX))
        abstract.bind("\0" + abstract_name)
        tcp = stack.enter_context(socket.socket())
        tcp.bind(("127.0.0.1", 0))
        listeners = {"a Unix socket in your home": unix, "an abstract socket": abstract}
        listeners["TCP on 127.0.0.1"] = tcp
        for listener in listeners.values():
            listener.listen(4)
            listener.setblocking(False)
        code = (
            "import socket\n"
            f"for family, address in ((socket.AF_UNIX, {str(path)!r}), "
            f"(socket.AF_UNIX, '\\0' + {abstract_name!r}), "
            f"(socket.AF_INET, ('127.0.0.1', {tcp.getsockname()[1]}))):\n"
            "    try:\n"
            "        client = socket.socket(family)\n        client.settimeout(1)\n"
            "        client.connect(address)\n        client.sendall(b'x')\n"
            "    except OSError:\n        pass\n"
        )
        run_python(code, isolation=level, limits=QUICK)
        reached = []
        for name, listener in listeners.items():
            with contextlib.suppress(BlockingIOError):
                listener.accept()[0].close()
                reached.append(name)
    if reached:
        return Probe("host sockets", False, "a program connected to " + ", ".join(reached))
    if level == "rlimits":
        return Probe(
            "host sockets",
            False,
            "refused by Python's socket module only (ctypes or a child process get around it)",
        )
    return Probe("host sockets", True, "no connection reached the listeners the check opened")


def _network(level: IsolationLevel) -> Probe:
    if level == "rlimits":
        return Probe(
            "network",
            False,
            "no network namespace: Python's socket module refuses, but ctypes or a child "
            "process get around it",
        )
    code = (
        "import socket\n"
        "print(sorted(name for _, name in socket.if_nameindex()))\n"
        "try:\n"
        "    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).connect(('192.0.2.1', 53))\n"
        "    print('routed')\n"
        "except OSError as exc:\n"
        "    print('unrouted', exc)\n"
    )
    result = run_python(code, isolation=level, limits=QUICK)
    if result.status != "passed":
        return Probe("network", True, f"no socket at all ({result.summary()})")
    if "routed" in result.stdout.split():
        return Probe("network", False, "a program has a route out of this machine")
    interfaces = result.stdout.splitlines()[0]
    return Probe("network", True, f"a network namespace of its own (interfaces {interfaces})")


BOMB = """
import os, time
children = 0
for _ in range({children}):
    try:
        pid = os.fork()
    except OSError:
        break
    children += 1
    if pid == 0:
        try:
            held = b"\\1" * ({chunk} << 20)
            time.sleep(1.5)
        finally:
            os._exit(0)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


def _memory(level: IsolationLevel) -> Probe:
    budget, children, chunk = 128, 16, 64  # the bomb asks for 1 GiB against 128 MiB
    lowest, stop = [_available_mib()], threading.Event()
    before = lowest[0]

    def watch() -> None:
        while not stop.is_set():
            lowest[0] = min(lowest[0], _available_mib())
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        limits = Limits(memory_mib=budget, wall_seconds=15, cpu_seconds=15)
        result = run_python(
            BOMB.format(children=children, chunk=chunk), isolation=level, limits=limits
        )
    finally:
        stop.set()
        watcher.join()
    taken = max(0, before - lowest[0])
    how = {
        "cgroup-v2": "one cgroup v2 (memory.max, pids.max) for the run's process tree",
        "cgroup-v1": "one cgroup v1 memory limit for the run's process tree",
        "per-process": "no cgroup could be made: fewer processes, each with its share as its "
        "address-space limit",
    }.get(result.memory_budget or "", "unknown")
    asked = children * chunk
    detail = f"{how}; a forked bomb asking {asked} MiB against a budget of {budget} MiB"
    if result.memory_peak_mib is not None:  # the cgroup's own account of the whole tree
        detail += f" peaked at {result.memory_peak_mib:.0f} MiB"
        return Probe("memory budget", result.memory_peak_mib <= budget, detail)
    # Without a cgroup, only the host's free memory tells (other processes move it too).
    detail += f" took {taken} MiB of the host's free memory"
    return Probe("memory budget", taken < (asked + budget) // 2, detail)


def _available_mib() -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return 0


FORGERY = """
import os
for fd in range(256):
    try:
        os.write(fd, b"\\0\\0VERDICT\\0status=ok")
    except OSError:
        pass
os._exit(0)
assert False, "the tests"
"""


def _forgery(level: IsolationLevel) -> Probe:
    result = run_python(FORGERY, isolation=level, limits=QUICK)
    if result.passed:
        return Probe("forged verdicts", False, "a program passed without running its tests")
    return Probe(
        "forged verdicts",
        True,
        f"a program that writes a verdict and exits early scores {result.status}",
    )


def report_lines(level: IsolationLevel, probes: list[Probe]) -> list[str]:
    lines = [f"isolation level: {level} ({os.uname().sysname} {os.uname().release})"]
    lines.append(f"  {describe(level)}")
    for probe in probes:
        mark = "ok     " if probe.protected else "EXPOSED"
        lines.append(f"{mark} {probe.name}: {probe.detail}")
    if not all(probe.protected for probe in probes):
        lines.append("Run untrusted code only where every line says ok (see the README's Sandbox).")
    return lines
