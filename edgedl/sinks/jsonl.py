"""JSON lines sink: ``results.jsonl`` — one JSON object per frame, for logs, dashboards and offline analysis.

Unlike the video sink, this one writes to the final name directly, and on purpose: every line is a
complete record, written with a single unbuffered ``write`` as the frame's result arrives, so a
process that is killed leaves every line it finished (and at most loses the one in flight), and
``tail -f results.jsonl`` follows a live run. A temporary file renamed at close would instead lose
the whole log on a crash. The file is created at the first result, so a run that fails to start
leaves nothing behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgedl.results import Result
from edgedl.sinks.base import Sink, SinkTarget, already_exists, check_output_file, output_failed


def to_record(result: Result) -> dict[str, Any]:
    """A result as plain JSON types: frame id and time, source, latency, drops, stage timings, detections, classes,
    mask shape. A detection has a ``track_id`` when a tracker gave it one."""
    dets = result.detections
    boxes = dets.boxes.astype(np.float64).round(2).tolist()
    scores = dets.scores.astype(np.float64).round(4).tolist()
    class_ids = dets.class_ids.tolist()
    tracks = [{"track_id": t} if t >= 0 else {} for t in dets.track_ids.tolist()]
    return {
        "frame_id": result.frame_id,
        "timestamp": round(result.timestamp, 6),
        "source": result.source,
        "origin": result.frame.source,  # the frame's own origin: a folder source's image file, else the source
        "latency_ms": round(result.latency_ms, 3),
        "dropped": result.dropped,
        "timings": {stage: round(ms, 3) for stage, ms in result.timings.items()},
        "detections": [{"box": box, "score": score, "class_id": cid, "label": dets.label(cid), **track}
                       for box, score, cid, track in zip(boxes, scores, class_ids, tracks, strict=True)],
        "classes": [{"class_id": c.class_id, "label": c.label, "score": round(float(c.score), 4)} for c in result.classes],
        "mask_shape": None if result.mask is None else list(result.mask.shape),
    }


class JsonLinesSink(Sink):
    """One :func:`to_record` object per line (``overlay`` and ``fps`` do not apply)."""

    suffixes: ClassVar[tuple[str, ...]] = (".jsonl",)

    def __init__(self, target: SinkTarget, *, fps: float, overlay: bool, overwrite: bool) -> None:
        super().__init__(target)
        self.path = Path(target.location)
        check_output_file(self.path, overwrite)
        self.overwrite = overwrite
        self._fd: int | None = None

    def _write(self, result: Result) -> None:
        line = memoryview((json.dumps(to_record(result), separators=(",", ":")) + "\n").encode())
        try:
            if self._fd is None:
                self._fd = self._create()
            while line:  # a regular file takes the line in one write unless the disk fills up
                line = line[os.write(self._fd, line):]
        except OSError as exc:
            raise output_failed(self.path, exc) from None

    def _create(self) -> int:
        # O_EXCL without overwrite: a file that appeared since the sink was opened is still not replaced.
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if self.overwrite else os.O_EXCL)
        try:
            return os.open(self.path, flags, 0o666)
        except FileExistsError:
            raise already_exists(self.path) from None

    def _finish(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
