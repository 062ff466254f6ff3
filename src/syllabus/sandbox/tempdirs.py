"""The sandbox's directories in the temp folders: named by their owner, removed, swept.

Every directory the sandbox makes there is named `syllabus-sandbox-<kind>-<pid>-<random>`,
<pid> being the process that owns it: "launcher" (one per process, in the system temp folder:
the launcher's bytecode and the warm launchers' logs) and "run" (one per program, in
`RUN_PARENT`). A process removes its own when it is done with them (context managers, and atexit
for the per-process one). What a process that could not clean up leaves behind (SIGKILL, a
forked worker ending with os._exit) is removed by the next process that starts a sandbox:
`sweep` takes the directories of this uid whose owner is no longer running, and never a live
process's.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

PREFIX = "syllabus-sandbox-"
_OWNED = re.compile(rf"{PREFIX}[a-z]+-(?P<pid>[0-9]+)-")


def make(kind: str, parent: str) -> Path:
    """A new private directory `syllabus-sandbox-<kind>-<this pid>-<random>` in `parent`."""
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-{os.getpid()}-", dir=parent))


def owner(name: str) -> int | None:
    """The pid in a directory name made by `make`, or None for any other name."""
    match = _OWNED.match(name)
    return int(match["pid"]) if match else None


def running(pid: int) -> bool:
    """Whether a process with this pid exists (one of another user's counts too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove(path: Path) -> None:
    """Remove a directory tree, also one a program left read-only or mode 000 (rlimits level)."""

    def unlock(function, target, _exc):
        with contextlib.suppress(OSError):  # a leftover directory beats a raise here
            os.chmod(os.path.dirname(target), 0o700)
            os.chmod(target, 0o700)
            function(target)

    if path.exists():
        shutil.rmtree(path, onerror=unlock)


def remove_if_owner(path: Path, pid: int) -> None:
    """At exit: a forked child inherits its parent's atexit hooks and must not run this one."""
    if os.getpid() == pid:
        remove(path)


def sweep(parents: Iterable[str]) -> list[Path]:
    """Remove the directories in `parents` that this uid's dead processes left; returns them.

    Only names made by `make`, only directories owned by this uid (never another user's, even
    as root), and only where no process with the owner's pid runs. A recycled pid keeps a
    leftover until that process ends too, which errs on the side of keeping.
    """
    uid = os.geteuid()
    removed = []
    for parent in dict.fromkeys(parents):
        try:
            entries = list(os.scandir(parent))
        except OSError:
            continue
        for entry in entries:
            pid = owner(entry.name)
            if pid is None or pid == os.getpid():
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or running(pid):
                continue
            path = Path(entry.path)
            remove(path)
            removed.append(path)
    return removed
