"""Tiled overview sink: ``tiled://SINK?cols=2&width=1280`` — every source in one picture, a grid of tiles.

SINK is any sink that shows pictures: ``tiled://overview.mp4``, ``tiled://grid/``, ``tiled://display``,
``tiled://rtsp://server:8554/overview``. The options below are the tiled sink's; any other option
stays with SINK (``tiled://overview.mkv?fps=10&fourcc=MJPG&cols=3``).

    cols=N      columns (default: the smallest square grid that holds the sources)
    sources=N   plan the grid for N sources (default: those that delivered before the first mosaic)
    width=W     mosaic width in pixels, even (default 1280)
    height=H    mosaic height in pixels, even (default: rows x a tile's width x the first source's height/width)

Each source's latest frame, annotated as the other picture sinks annotate it, is letterboxed into its
tile (sources in the order they first appeared, row by row) with the source's name at the tile's
bottom left. A mosaic is written once per round of sources: as soon as every source seen so far has
delivered a frame since the last mosaic, or sooner when one source delivers a second frame first (a
slow or stalled camera keeps its last frame in its tile), so the mosaic rate follows the fastest
source, not the sum of all. The first mosaic waits for the first source to come round again (or for
``sources=N`` sources), so the grid is planned from every source that is running; the last, partial
round is written at close.

The mosaic's size is fixed at the first mosaic (a video's frame size cannot change). A source that
appears when every tile is taken grows the grid (to the columns and rows above, for the new count)
and every tile shrinks to fit the same canvas; ``sources=N`` plans room for a known number of cameras.
"""

from __future__ import annotations

import functools
import math
from typing import ClassVar

import cv2
import numpy as np

from edgedl.errors import UsageError
from edgedl.results import Frame, Prediction, Result
from edgedl.sinks.base import FrameRenderer, Sink, SinkTarget

DEFAULT_WIDTH = 1280
MIN_TILE = 16  # pixels: the narrowest tile cols= and width= may plan
_MAX_COUNT = 100
_MAX_PIXELS = 8192
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TAG = (32, 32, 32)  # background of the source's name


def _whole_number(text: str, *, low: int, high: int, even: bool = False) -> int:
    """An option value: a whole number from ``low`` to ``high`` (and even, for picture sizes)."""
    kind = "an even number" if even else "a whole number"
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high or (even and value % 2):
        raise ValueError(f"must be {kind} from {low} to {high}")
    return value


def _letterbox(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` scaled to fit ``width x height`` with its aspect kept, centred on black."""
    scale = min(width / image.shape[1], height / image.shape[0])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    tile = np.zeros((height, width, 3), np.uint8)
    x, y = (width - size[0]) // 2, (height - size[1]) // 2
    tile[y:y + size[1], x:x + size[0]] = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return tile


def _name_tag(tile: np.ndarray, text: str) -> None:
    """``text`` in white on a dark tag at the bottom left of ``tile`` (drawn in place)."""
    height = tile.shape[0]
    scale = max(0.35, min(tile.shape[:2]) / 700)
    thickness = max(1, round(scale * 1.5))
    pad = max(2, round(scale * 4))
    (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    cv2.rectangle(tile, (0, height - text_h - baseline - 2 * pad), (text_w + 2 * pad, height - 1), _TAG, cv2.FILLED)
    cv2.putText(tile, text, (pad, height - baseline - pad), _FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)


class TiledSink(Sink):
    """Every source's latest annotated frame as a tile of one mosaic, written to ``inner`` once per round of sources.

    ``mosaics`` counts the mosaics written; ``frames`` (as for every sink) the results that arrived.
    """

    schemes: ClassVar[tuple[str, ...]] = ("tiled",)
    options = {"cols": functools.partial(_whole_number, low=1, high=_MAX_COUNT),
               "sources": functools.partial(_whole_number, low=1, high=_MAX_COUNT),
               "width": functools.partial(_whole_number, low=MIN_TILE, high=_MAX_PIXELS, even=True),
               "height": functools.partial(_whole_number, low=MIN_TILE, high=_MAX_PIXELS, even=True)}
    pictures: ClassVar[bool] = True
    nests: ClassVar[bool] = True

    def __init__(self, target: SinkTarget, *, fps: float, overlay: bool, overwrite: bool, inner: Sink) -> None:
        super().__init__(target)
        if not inner.pictures:
            raise UsageError(f"{target.uri}: a mosaic needs a sink that shows pictures, not {type(inner).__name__}",
                             fix="for example tiled://overview.mp4, tiled://grid/ or tiled://display")
        self.cols: int | None = target.options.get("cols")
        self.sources: int | None = target.options.get("sources")
        self.width: int = target.options.get("width", DEFAULT_WIDTH)
        self.height: int | None = target.options.get("height")
        if self.cols is not None and self.sources is not None and self.cols > self.sources:
            raise UsageError(f"{target.uri}: cols={self.cols} is more than sources={self.sources}",
                             fix="lower cols= or raise sources=")
        if self.cols is not None and self.width // self.cols < MIN_TILE:
            raise UsageError(f"{target.uri}: cols={self.cols} leaves tiles under {MIN_TILE} pixels wide in width={self.width}",
                             fix="lower cols= or raise width=")
        self.mosaics = 0
        self._inner = inner
        self._overlay = overlay
        self._renderers: dict[str, FrameRenderer] = {}  # one per source, so each tile shows its own source's rate
        self._frames: dict[str, np.ndarray] = {}  # each source's latest annotated frame, in order of appearance
        self._fresh: set[str] = set()  # sources with a frame since the last mosaic
        self._latest = (0.0, 0.0, 0)  # the last result's timestamp, latency and drops, for the mosaic's Result
        self._canvas: np.ndarray | None = None
        self._grid = (0, 0)  # columns, rows

    @property
    def stop_requested(self) -> bool:  # type: ignore[override]
        """Whether the sink the mosaic goes to wants the stream to end (q pressed in a display window)."""
        return self._inner.stop_requested

    def _write(self, result: Result) -> None:
        source = result.source
        if source in self._fresh:  # it came round again before the others did: do not wait for them
            self._emit()
        if source not in self._renderers:
            self._renderers[source] = FrameRenderer(self._overlay)
        self._frames[source] = self._renderers[source](result)
        self._fresh.add(source)
        self._latest = (result.timestamp, result.latency_ms, result.dropped)
        if self._canvas is not None:
            if len(self._frames) > self._grid[0] * self._grid[1]:
                self._layout(self._canvas)
            else:
                self._paint(self._canvas, source)
        planned = len(self._frames) if self._canvas is not None else self.sources
        if planned is not None and len(self._fresh) >= planned:
            self._emit()

    def _emit(self) -> None:
        """Write the mosaic of every source's latest frame (making the canvas the first time)."""
        if self._canvas is None:
            self._canvas = self._layout(self._new_canvas())
        self._fresh.clear()  # before writing: a mosaic the inner sink refused is not tried again at close
        timestamp, latency_ms, dropped = self._latest
        frame = Frame(self._canvas.copy(), self.mosaics, timestamp, self.uri)
        self._inner.write(Result(frame, Prediction(), None, {}, latency_ms, dropped))
        self.mosaics += 1

    def _new_canvas(self) -> np.ndarray:
        """A black canvas ``width`` wide and ``height`` high, else as high as a grid of tiles shaped like the first frame."""
        cols, rows = self._plan()
        first = next(iter(self._frames.values()))
        tiles_high = rows * (self.width // cols) * first.shape[0] / first.shape[1]
        height = self.height or min(_MAX_PIXELS, 2 * max(1, round(tiles_high / 2)))
        return np.zeros((height, self.width, 3), np.uint8)

    def _plan(self) -> tuple[int, int]:
        """Columns and rows for the sources so far, or for ``sources=N`` while fewer have appeared."""
        count = max(len(self._frames), self.sources or 0)
        cols = self.cols or math.ceil(math.sqrt(count))
        return cols, math.ceil(count / cols)

    def _layout(self, canvas: np.ndarray) -> np.ndarray:
        """Plan the grid for the sources so far and paint every tile onto ``canvas`` afresh; returns it."""
        self._grid = self._plan()
        canvas[:] = 0
        for source in self._frames:
            self._paint(canvas, source)
        return canvas

    def _paint(self, canvas: np.ndarray, source: str) -> None:
        cols, rows = self._grid
        tile_w, tile_h = canvas.shape[1] // cols, canvas.shape[0] // rows
        index = list(self._frames).index(source)
        x, y = index % cols * tile_w, index // cols * tile_h
        tile = _letterbox(self._frames[source], tile_w, tile_h)
        _name_tag(tile, source or "(unnamed source)")
        canvas[y:y + tile_h, x:x + tile_w] = tile

    def _finish(self) -> None:
        try:
            if self._fresh:  # the last round, however far it got
                self._emit()
        finally:
            self._inner.close()
