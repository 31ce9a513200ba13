"""Child processes for tests: started as a terminal would start them, and never outliving their test.

However the suite itself was launched (in the background, under nohup, by a CI runner with no
standard input), a child the tests start sees what a user's shell gives it: SIGINT at its default
(so Python turns Ctrl-C into KeyboardInterrupt) and a standard input that is there but empty. When
its test ends, passed, failed or timed out, the child and everything it started are killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _sigint_default() -> None:
    # A process started with SIGINT ignored (`cmd &` in a non-interactive shell, nohup, many CI runners) passes the
    # ignore on through exec, and Python then installs no KeyboardInterrupt handler: the signal tests would hang.
    # Popen's restore_signals=True resets only SIGPIPE, SIGXFZ and SIGXFSZ, so SIGINT is reset here, between fork
    # and exec. preexec_fn is unsafe only for code that takes a lock another thread may hold at the fork; this
    # makes one sigaction call.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_child(args: list[str], **popen: Any) -> subprocess.Popen[str]:
    """Start ``args`` in a process group of its own, with SIGINT at its default, stdin empty and text pipes.

    ``popen`` goes to :class:`subprocess.Popen` and may override ``stdin`` and ``text``. Pair it with
    :func:`stop_child`, or use :func:`child_process`.
    """
    # stdin: a suite run with standard input closed would hand the child a closed fd 0 (its first open file would
    # become its stdin); one run at a terminal would let the child read the terminal.
    options: dict[str, Any] = {"stdin": subprocess.DEVNULL, "text": True, **popen}
    return subprocess.Popen(args, start_new_session=True, preexec_fn=_sigint_default, **options)


def stop_child(child: subprocess.Popen[str]) -> None:
    """SIGKILL ``child`` and everything it started (its process group), reap it and close its pipes.

    Harmless for a child that has already ended.
    """
    try:
        os.killpg(child.pid, signal.SIGKILL)  # its own group (start_new_session): grandchildren go too
    except (ProcessLookupError, PermissionError):
        pass  # the child and every process it started have ended (macOS answers EPERM for a group of zombies)
    child.wait()
    for stream in (child.stdin, child.stdout, child.stderr):
        if stream is not None:
            stream.close()


@contextmanager
def child_process(args: list[str], **popen: Any) -> Iterator[subprocess.Popen[str]]:
    """:func:`start_child` for the ``with`` block; the child is stopped when the block ends, however it ends."""
    child = start_child(args, **popen)
    try:
        yield child
    finally:
        stop_child(child)
