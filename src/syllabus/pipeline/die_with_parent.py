"""`python -m syllabus.pipeline.die_with_parent PARENT_PID COMMAND...`: become COMMAND (exec),
set to receive SIGTERM when the process that started it dies, even by SIGKILL (Linux).

`syllabus run` starts torchrun through this, so a run killed mid-training takes torchrun (which
then stops its workers) with it: a run started again must not find an orphan still training
into the same directory. prctl(PR_SET_PDEATHSIG) survives exec; it is set here rather than in a
`preexec_fn`, which is unsafe in a process with threads (the run's progress display has one).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    parent, command = int(argv[0]), argv[1:]
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        sys.exit(1)  # the parent died before the line above: nobody is left to signal us
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
