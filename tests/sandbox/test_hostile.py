"""Hostile programs at every isolation level this machine offers, as root and as a user.

Real users are not root, so as root each test also drops to a throwaway uid (setpriv) whose
home holds a canary file and a Unix-socket listener, and runs the sandbox from there. Every
claim is checked from outside the sandbox: the listener's pending connections, the host's
free memory while the program runs, the scores the sandbox gives.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

import syllabus
from syllabus.sandbox import ExecResult, Limits, SandboxError, run_python

pytestmark = pytest.mark.timeout(300)

ROOT = os.geteuid() == 0
SRC = Path(syllabus.__file__).resolve().parents[1]  # the syllabus under test, for the driver
THROWAWAY_UID = 2_000_000 + os.getpid() % 100_000  # no passwd entry needed by setpriv


def _available(level: str) -> bool:
    try:
        return run_python("pass", isolation=level, limits=Limits(wall_seconds=5)).passed
    except SandboxError:
        return False


def _interpreter_for_others() -> str | None:
    """A Python with this one's version that a uid without any rights can run."""

    def usable(path: str) -> bool:
        path = os.path.realpath(path)
        if not os.path.isfile(path) or not os.stat(path).st_mode & stat.S_IXOTH:
            return False
        parts = Path(path).parents
        return all(os.stat(p).st_mode & stat.S_IXOTH for p in parts)

    candidates = [getattr(sys, "_base_executable", sys.executable), sys.executable]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates += [f"/usr/bin/{version}", f"/usr/local/bin/{version}"]
    return next((c for c in candidates if usable(c)), None)


@dataclass
class Case:
    """Who runs the sandbox (this process, or a throwaway uid) and at which level."""

    level: str
    user: str  # "self" or "throwaway"

    def __str__(self) -> str:
        return f"{self.level}-as-{'root' if ROOT and self.user == 'self' else 'user'}"


def _cases() -> list[Case]:
    cases = []
    for level in ("namespace", "userns"):
        if _available(level):
            cases.append(Case(level, "self"))
    if ROOT and shutil.which("setpriv") and _interpreter_for_others():
        cases.append(Case("userns", "throwaway"))
    return cases


NAMESPACE_CASES = _cases()
# The rlimits level hides nothing (the program runs as the caller); it still must neither
# let a program forge a pass nor take the machine's memory.
ALL_CASES = [*NAMESPACE_CASES, Case("rlimits", "self")]
if ROOT and shutil.which("setpriv") and _interpreter_for_others():
    ALL_CASES.append(Case("rlimits", "throwaway"))


def test_as_root_the_unprivileged_user_is_tested_too():
    # The point of these tests is what a user without root gets: never skip that silently.
    if ROOT:
        assert any(case.user == "throwaway" for case in NAMESPACE_CASES), (
            "cannot drop to a throwaway uid here (setpriv, or a Python that uid can run, missing)"
        )


# ---------------------------------------------------------------------------------- fixtures


@dataclass
class Home:
    """A user's home with a secret and a listening Unix socket, plus host listeners."""

    path: Path
    uid: int
    canary: Path
    secret: str
    unix: socket.socket
    unix_path: Path
    abstract: socket.socket
    abstract_name: str
    tcp: socket.socket

    def pending_connections(self) -> list[str]:
        """Which listener has a connection waiting (the program reached it)."""
        reached = []
        for name, listener in (("unix", self.unix), ("abstract", self.abstract), ("tcp", self.tcp)):
            try:
                connection, _ = listener.accept()
                connection.close()
                reached.append(name)
            except BlockingIOError:
                pass
        return reached


@pytest.fixture
def home(request) -> Home:
    """As root: a throwaway user's home under /home. Otherwise: a directory in our own home."""
    tag = uuid.uuid4().hex[:12]
    if ROOT:
        path, uid = Path(f"/home/syllabus-hostile-{tag}"), THROWAWAY_UID
    else:
        path, uid = Path.home() / f".syllabus-hostile-{tag}", os.getuid()
    (path / ".ssh").mkdir(parents=True)
    secret = f"-----BEGIN OPENSSH PRIVATE KEY----- {uuid.uuid4().hex}"
    canary = path / ".ssh" / "id_ed25519"
    canary.write_text(secret)
    canary.chmod(0o600)
    unix_path = path / "agent.sock"
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(unix_path))
    unix.listen(8)
    unix.setblocking(False)
    unix_path.chmod(0o777)  # only the sandbox may stand between the program and the agent
    abstract_name = f"syllabus-hostile-{tag}"
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind("\0" + abstract_name)
    abstract.listen(8)
    abstract.setblocking(False)
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    tcp.setblocking(False)
    for entry in (path, path / ".ssh", canary, unix_path):
        os.lchown(entry, uid, uid)
    path.chmod(0o700)
    yield Home(path, uid, canary, secret, unix, unix_path, abstract, abstract_name, tcp)
    for listener in (unix, abstract, tcp):
        listener.close()
    shutil.rmtree(path)


def run(case: Case, code: str, home: Home | None = None, limits: Limits | None = None):
    """Run `code` in the sandbox as the case's user; the ExecResult."""
    limits = limits or Limits(wall_seconds=10, cpu_seconds=10)
    if case.user == "self":
        return run_python(code, isolation=case.level, limits=limits)
    return _run_as_throwaway(case, code, home, limits)


DRIVER = """
import json, sys
job = json.loads(sys.stdin.read())
from syllabus.sandbox import Limits, run_python
result = run_python(job["code"], isolation=job["level"], limits=Limits(**job["limits"]))
print(result.model_dump_json())
"""


def _run_as_throwaway(case: Case, code: str, home: Home | None, limits: Limits) -> ExecResult:
    job = {"code": code, "level": case.level, "limits": limits.model_dump()}
    output = as_throwaway(DRIVER, json.dumps(job), home)
    return ExecResult.model_validate_json(output.strip().splitlines()[-1])


def as_throwaway(script: str, stdin: str, home: Home | None) -> str:
    """Run a Python script that imports syllabus as the throwaway uid; its standard output."""
    import pydantic

    site_packages = str(Path(pydantic.__file__).parent.parent)
    uid = home.uid if home else THROWAWAY_UID
    user_home = str(home.path) if home else "/"
    prelude = f"import sys\nsys.path[:0] = {[str(SRC), site_packages]!r}\n"
    command = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    command += [_interpreter_for_others(), "-S", "-c", prelude + script]
    env = {"PATH": "/usr/bin:/bin", "HOME": user_home, "LANG": "C.UTF-8"}
    done = subprocess.run(
        command, input=stdin, capture_output=True, text=True, env=env, cwd="/", timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# ------------------------------------------------------------------------- what it can see

SNOOP = """
import glob, os
home = {home!r}
for attempt in (
    lambda: open({canary!r}).read(),
    lambda: os.listdir(home),
    lambda: [open(p).read() for p in glob.glob(home + "/.ssh/*")],
    lambda: os.listdir("/home"),
):
    try:
        print("got", attempt())
    except OSError as exc:
        print("refused", type(exc).__name__)
"""


@pytest.mark.parametrize("case", NAMESPACE_CASES, ids=str)
def test_a_users_home_and_its_keys_are_invisible(case, home):
    result = run(case, SNOOP.format(home=str(home.path), canary=str(home.canary)), home)
    assert result.status == "passed", result
    assert home.secret not in result.stdout + result.stderr
    assert "got []" in result.stdout  # /home is empty in the view...
    assert result.stdout.count("refused FileNotFoundError") == 2  # ...so the home is not there


REACH = """
import socket
def attempt(family, address):
    try:
        client = socket.socket(family)
        client.settimeout(1)
        client.connect(address)
        client.sendall(b"hello from the sandbox")
        print("connected", address)
    except OSError as exc:
        print("refused", address, type(exc).__name__)
attempt(socket.AF_UNIX, {unix!r})
attempt(socket.AF_UNIX, "\\0" + {abstract!r})
attempt(socket.AF_INET, ("127.0.0.1", {port}))
"""


@pytest.mark.parametrize("case", NAMESPACE_CASES, ids=str)
def test_no_socket_of_the_host_is_reachable(case, home):
    code = REACH.format(
        unix=str(home.unix_path), abstract=home.abstract_name, port=home.tcp.getsockname()[1]
    )
    result = run(case, code, home)
    assert result.status == "passed", result
    assert "connected" not in result.stdout, result.stdout
    assert home.pending_connections() == []


VIEW = """
import json, os
def listing(path):
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        return type(exc).__name__
dev = {{name: os.readlink("/dev/" + name) if os.path.islink("/dev/" + name) else "device"
       for name in os.listdir("/dev")}}
try:
    open("/usr/syllabus-written", "w")
    wrote = "yes"
except OSError as exc:
    wrote = type(exc).__name__
print(json.dumps({{
    "top": listing("/"), "dirs": {{d: listing(d) for d in
        ["/home", "/run", "/var", "/mnt", "/media", "/srv", "/etc", "/tmp"]}},
    "root": listing("/root"), "sys": os.path.exists("/sys"), "dev": dev, "wrote": wrote,
    "pids": [int(p) for p in os.listdir("/proc") if p.isdigit()],
}}))
"""


@pytest.mark.parametrize("case", NAMESPACE_CASES, ids=str)
def test_the_program_sees_only_the_interpreter_and_its_scratch(case):
    result = run(case, VIEW.format())
    assert result.status == "passed", result
    view = json.loads(result.stdout)
    assert all(entries == [] for entries in view["dirs"].values()), view["dirs"]
    assert not view["sys"]
    assert view["dev"] == {"null": "device", "zero": "device", "urandom": "device", "shm": "../tmp"}
    assert view["wrote"] == "OSError"  # read-only (EROFS)
    assert view["pids"] == [1]  # its own /proc: only itself
    # /root holds nothing but the way to an interpreter installed there (pyenv)
    python = os.path.realpath(sys.executable)
    assert view["root"] in ([], [python.split("/")[2]] if python.startswith("/root/") else [])


# ------------------------------------------------------------------------------- forgeries

FORGERIES = {
    "verdict record to every inherited descriptor": """
import os
for fd in range(1024):
    for record in (b"\\0\\0VERDICT\\0status=ok", b"\\0syllabus-account\\0" + bytes(16) + b"0000000bstatus=ok"):
        try:
            os.write(fd, record)
        except OSError:
            pass
os._exit(0)
""",
    "os._exit(0) before the tests": "import os\nos._exit(0)\n",
    "sys.exit(0) before the tests": "import sys\nsys.exit(0)\n",
    "exit() before the tests": "exit()\n",
    "printed marker, then exit": (
        "print('\\0\\0VERDICT\\0status=ok', flush=True)\n"
        "import sys\nsys.stdout.write('status=ok\\n')\nsys.stdout.flush()\nimport os\nos._exit(0)\n"
    ),
    "exec of another program that exits 0": (
        "import os, sys\nos.execv(sys.executable, [sys.executable, '-S', '-c', 'pass'])\n"
    ),
    "a thread ends the process while the tests run": (
        "import os, threading, time\n"
        "threading.Thread(target=lambda: (time.sleep(0.05), os._exit(0))).start()\n"
        "time.sleep(1)\n"
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_a_program_cannot_forge_its_own_pass(case):
    failing_tests = "\nassert 1 + 1 == 3, 'the tests fail'\n"
    for name, forgery in FORGERIES.items():
        result = run(case, forgery + failing_tests)
        assert not result.passed, f"{name}: {result}"
        assert result.status in ("error", "failed"), f"{name}: {result}"
    # the control: the same tests, honestly passing
    assert run(case, "print('honest')\nassert 1 + 1 == 2\n").passed


# ----------------------------------------------------------------------------------- memory

BOMB = """
import os, time
reports_r, reports_w = os.pipe()
children = 0
for _ in range({children}):
    try:
        pid = os.fork()
    except OSError:
        break
    children += 1
    if pid == 0:
        try:
            held = b"\\1" * ({chunk_mib} << 20)  # written, so really resident
            os.write(reports_w, b"+")
            time.sleep(2)
        finally:
            os._exit(0)
os.close(reports_w)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
print("forked", children, "allocated", len(os.read(reports_r, 1000)))
"""


def _available_mib() -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    raise AssertionError("no MemAvailable in /proc/meminfo")


@pytest.mark.slow
@pytest.mark.parametrize("case", ALL_CASES, ids=str)
def test_a_forked_memory_bomb_stays_within_the_budget(case):
    # 16 children of 200 MiB each: 3.2 GiB together, against a budget of 256 MiB for the run.
    budget, children, chunk = 256, 16, 200
    lowest = [_available_mib()]
    before = lowest[0]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            lowest[0] = min(lowest[0], _available_mib())
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        limits = Limits(memory_mib=budget, wall_seconds=20, cpu_seconds=20)
        result = run(case, BOMB.format(children=children, chunk_mib=chunk), limits=limits)
    finally:
        stop.set()
        watcher.join()
    taken = before - lowest[0]
    # Other processes on the machine move its free memory too: allow them 1 GiB, far less
    # than the 3.2 GiB the bomb takes when nothing holds it.
    assert taken < budget + 1024, f"the host lost {taken} MiB during the run: {result}"
    # Killed by the budget (cgroup), or children refused (per-process limits): never all held.
    assert result.status in ("passed", "memory", "error"), result


# ------------------------------------------------------------------------ sandbox check


CHECK = """
import json
from syllabus.sandbox.check import check
level, probes = check("userns")
print(json.dumps([[probe.name, probe.protected, probe.detail] for probe in probes]))
"""


@pytest.mark.skipif(not ROOT or not shutil.which("setpriv"), reason="needs root to drop to a uid")
def test_sandbox_check_as_a_user_without_root(home):
    probes = json.loads(as_throwaway(CHECK, "", home).strip().splitlines()[-1])
    exposed = [(name, detail) for name, protected, detail in probes if not protected]
    assert not exposed, exposed
    assert len(probes) == 5


@pytest.mark.slow
@pytest.mark.skipif(not NAMESPACE_CASES, reason="no namespace can be made here: all is weak")
def test_sandbox_check_says_what_protects_and_what_does_not():
    from tests.conftest import run_cli

    strong = run_cli("sandbox", "check")
    assert strong.returncode == 0, strong.stdout + strong.stderr
    assert "EXPOSED" not in strong.stdout and strong.stdout.count("\nok ") == 5
    weak = run_cli("sandbox", "check", "--isolation", "rlimits")
    assert weak.returncode == 1
    assert "EXPOSED home directory" in weak.stdout and "isolation level: rlimits" in weak.stdout
    wrong = run_cli("sandbox", "check", "--isolation", "chroot")
    assert wrong.returncode == 2 and "--isolation" in wrong.stderr


COUNT_FORKS = """
import os, time
children = []
for _ in range(16):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(2)
        os._exit(0)
    children.append(pid)
print(len(children))
for pid in children:
    os.kill(pid, 9)
"""


@pytest.mark.skipif(not ROOT or not shutil.which("setpriv"), reason="needs root to drop to a uid")
def test_without_a_cgroup_the_budget_is_split_between_few_processes(home):
    # 1 GiB without a cgroup: 4 processes of 256 MiB each, the program and three children.
    case = Case("userns", "throwaway")
    limits = Limits(memory_mib=1024, wall_seconds=10, cpu_seconds=10)
    result = run(case, COUNT_FORKS, home, limits)
    assert result.memory_budget == "per-process", result
    assert result.status == "passed" and result.stdout.split() == ["3"], result
