"""How edgedl.device looks at a machine: files under a root folder, and commands through a replaceable runner.

Every detector takes ``root`` (``/`` on a real machine, a fixture tree in tests) and a
:data:`Runner` (:func:`run_command` on a real machine, recorded outputs in tests), so the
same code reads a Jetson, a container or a copy of either.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Exit status a timed-out command reports, as coreutils ``timeout`` does.
TIMEOUT_STATUS = 124


@dataclass(frozen=True)
class CommandResult:
    """What a command printed and how it exited."""

    returncode: int
    stdout: str
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


#: ``runner(argv, timeout_s)``: the command's result, or None when the program is not installed.
Runner = Callable[[Sequence[str], float], CommandResult | None]


def run_command(argv: Sequence[str], timeout: float = 3.0) -> CommandResult | None:
    """Run ``argv`` without a shell; None when ``argv[0]`` is not on PATH.

    A command that outlives ``timeout`` is killed and reported with status 124, so a wedged
    driver tool (nvidia-smi on a hung GPU) costs seconds, never a hang.
    """
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, errors="replace", timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return CommandResult(TIMEOUT_STATUS, "", f"{argv[0]} timed out after {timeout:g} s")
    except OSError as exc:
        return CommandResult(126, "", f"{argv[0]} could not run: {exc}")
    return CommandResult(done.returncode, done.stdout, done.stderr)


def read_text(root: Path, path: str) -> str | None:
    """The text of ``root/path`` (``path`` as on the machine, e.g. ``/proc/meminfo``), or None if unreadable."""
    try:
        return (root / path.lstrip("/")).read_text(errors="replace")
    except OSError:
        return None


def device_tree_strings(root: Path, path: str) -> list[str]:
    """A device-tree property as its NUL-separated strings (the kernel ends each with a NUL)."""
    text = read_text(root, path)
    return [] if text is None else [part.strip() for part in text.split("\0") if part.strip()]
