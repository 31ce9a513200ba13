"""Progress display for long steps (calibration, engine builds)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def counter(description: str, total: int, show: bool) -> Iterator[Callable[[], None]]:
    """Yield a ``tick()`` that advances a progress bar of ``total`` steps (silent when ``show`` is false)."""
    if not show or total <= 0:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)
