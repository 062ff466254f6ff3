"""Nothing left behind in the temp folders: finished runs clean up, killed ones are swept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from syllabus.sandbox import tempdirs
from syllabus.sandbox.runner import RUN_PARENT

REPO = Path(__file__).resolve().parents[2]
PARENTS = sorted({tempfile.gettempdir(), RUN_PARENT})

# A process that uses the sandbox both ways (one-shot and warm), says where its directories
# are, then waits for a line on stdin before it exits normally.
USER = textwrap.dedent(
    """
    import os, sys
    from syllabus.sandbox import Limits, Sandbox, run_python
    from syllabus.sandbox import runner

    quick = Limits(wall_seconds=10)
    assert run_python("print(1)", limits=quick).passed
    sandbox = Sandbox(workers=1)
    assert sandbox.run("print(2)", limits=quick).passed
    print(os.getpid(), runner._process_dir, sandbox._logdir, flush=True)
    sys.stdin.readline()
    if sys.argv[1] == "close":
        sandbox.close()
    """
)


def start_user(mode: str) -> tuple[subprocess.Popen, int, list[Path]]:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    process = subprocess.Popen(
        [sys.executable, "-c", USER, mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    pid, *paths = process.stdout.readline().split()
    return process, int(pid), [Path(path) for path in paths]


def owned_by(pid: int) -> list[Path]:
    return [
        Path(parent, name)
        for parent in PARENTS
        for name in os.listdir(parent)
        if tempdirs.owner(name) == pid
    ]


@pytest.mark.parametrize("mode", ["close", "leave-open"])
def test_a_finished_process_leaves_nothing_behind(mode):
    process, pid, (own_dir, logdir) = start_user(mode)
    try:
        # While it runs, its directory is there and says whose it is.
        assert own_dir.is_dir() and logdir.is_dir() and logdir.parent == own_dir
        assert owned_by(pid) == [own_dir]
        assert own_dir.name.startswith(f"syllabus-sandbox-launcher-{pid}-")
    finally:
        process.communicate("\n", timeout=60)
    assert process.returncode == 0
    assert owned_by(pid) == []


def test_a_killed_process_is_swept_by_the_next_start_and_a_live_one_never():
    killed, killed_pid, (killed_dir, _) = start_user("close")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    # A run directory a killed process held, with a read-only corner its program made.
    run_dir = Path(RUN_PARENT, f"syllabus-sandbox-run-{killed_pid}-x")
    (run_dir / "work" / "locked").mkdir(parents=True)
    (run_dir / "work" / "locked").chmod(0o000)
    assert killed_dir.is_dir() and run_dir.is_dir()  # SIGKILL: no clean-up ran
    # The next process that starts a sandbox sweeps the dead one's directories...
    live, live_pid, (live_dir, _) = start_user("close")
    try:
        assert not killed_dir.exists() and not run_dir.exists()
        assert owned_by(killed_pid) == []
        # ...and never a live one's: neither another process's start nor a sweep here.
        other, _, _ = start_user("close")
        other.communicate("\n", timeout=60)
        assert live_dir not in tempdirs.sweep(PARENTS)
        assert live_dir.is_dir() and owned_by(live_pid) == [live_dir]
    finally:
        live.communicate("\n", timeout=60)
    assert owned_by(live_pid) == []


def test_sweep_keeps_other_users_and_other_names(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    foreign = tmp_path / f"syllabus-sandbox-run-{dead.pid}-abc"
    mine = tmp_path / f"syllabus-sandbox-run-{dead.pid}-def"
    unrelated = tmp_path / "syllabus-sandbox-launcher-abc12345"  # no owner in the name
    plain_file = tmp_path / f"syllabus-sandbox-run-{dead.pid}-file"
    for path in (foreign, mine, unrelated):
        path.mkdir()
    plain_file.write_text("not a directory")
    if os.geteuid() == 0:
        os.chown(foreign, 65534, 65534)
    else:
        foreign.rmdir()
    assert tempdirs.sweep([str(tmp_path)]) == [mine]
    assert unrelated.is_dir() and plain_file.is_file()
    assert foreign.is_dir() == (os.geteuid() == 0)


def test_a_forked_child_makes_its_own_directory_and_leaves_the_parents():
    code = textwrap.dedent(
        """
        import os
        from syllabus.sandbox import Limits, run_python, runner
        assert run_python("pass", limits=Limits(wall_seconds=10)).passed
        parent_dir = runner._process_dir
        child = os.fork()
        if child == 0:
            ok = run_python("pass", limits=Limits(wall_seconds=10)).passed
            mine = runner._process_dir
            os._exit(0 if ok and mine != parent_dir and mine.is_dir() else 1)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert parent_dir.is_dir()
        print(child)
        """
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    child = int(done.stdout.strip())
    # The child ended with os._exit (no atexit): its directory waits for the next sweep.
    leftover = owned_by(child)
    assert len(leftover) == 1
    assert leftover[0] in tempdirs.sweep(PARENTS)
    assert owned_by(child) == []
