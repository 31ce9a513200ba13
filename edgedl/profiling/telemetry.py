"""What the device was doing during a run: one :class:`TelemetrySample` per reading, kept in bounded memory."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

#: Sensors that report a constant rather than a temperature (the Nano's PMIC always reads 100 C,
#: Xavier's 50 C), so they say nothing about heat and are left out of thermal checks.
PLACEHOLDER_SENSORS = frozenset({"pmic"})


@dataclass
class TelemetrySample:
    """One reading. ``t`` is ``time.monotonic()`` when it was taken; anything a source cannot see stays None/empty.

    ``cpu_load``/``cpu_mhz`` hold one entry per core (None for a core that is off); loads are percent;
    ``temps_c`` maps lower-case sensor names to degrees C; ``power_mw`` maps rails to milliwatts, and
    ``total_mw`` is the board's input power (or the sum of the rails where no input rail is reported).
    """

    t: float
    cpu_load: list[float | None] = field(default_factory=list)
    cpu_mhz: list[float | None] = field(default_factory=list)
    gpu_load: float | None = None
    gpu_mhz: float | None = None
    emc_load: float | None = None
    emc_mhz: float | None = None
    ram_used_mb: float | None = None
    temps_c: dict[str, float] = field(default_factory=dict)
    power_mw: dict[str, float] = field(default_factory=dict)
    total_mw: float | None = None

    @property
    def cpu_max_mhz(self) -> float | None:
        """The fastest online core's clock."""
        online = [mhz for mhz in self.cpu_mhz if mhz is not None]
        return max(online) if online else None

    @property
    def cpu_load_mean(self) -> float | None:
        """Mean load of the online cores."""
        online = [load for load in self.cpu_load if load is not None]
        return sum(online) / len(online) if online else None

    @property
    def hottest_c(self) -> float | None:
        """The hottest real sensor (placeholders left out)."""
        real = [c for name, c in self.temps_c.items() if name not in PLACEHOLDER_SENSORS]
        return max(real) if real else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TelemetrySample:
        """Back from :meth:`as_dict` (``t`` stays relative to the report's start)."""
        return cls(**data)

    def as_dict(self, t0: float) -> dict[str, Any]:
        """JSON form with ``t`` in seconds since ``t0``."""
        return {"t": round(self.t - t0, 4), "cpu_load": self.cpu_load, "cpu_mhz": self.cpu_mhz, "gpu_load": self.gpu_load,
                "gpu_mhz": self.gpu_mhz, "emc_load": self.emc_load, "emc_mhz": self.emc_mhz, "ram_used_mb": self.ram_used_mb,
                "temps_c": self.temps_c, "power_mw": self.power_mw, "total_mw": self.total_mw}


def total_power(rails: dict[str, float], input_rails: tuple[str, ...]) -> float | None:
    """The first input rail present, else the sum of all rails (None without any)."""
    for name in input_rails:
        if name in rails:
            return rails[name]
    return sum(rails.values()) if rails else None


class SampleBuffer:
    """Samples in bounded memory over a run of any length.

    When ``capacity`` is reached every second sample is dropped and from then on only every
    second new one is kept (the stride doubles each time), so the buffer always covers the
    whole run, evenly, at a coarser interval the longer the run.
    """

    def __init__(self, capacity: int = 2000) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2")
        self.capacity = capacity
        self.stride = 1
        self._seen = 0
        self._items: list[TelemetrySample] = []
        self._lock = threading.Lock()

    def add(self, sample: TelemetrySample) -> None:
        with self._lock:
            keep = self._seen % self.stride == 0
            self._seen += 1
            if not keep:
                return
            self._items.append(sample)
            if len(self._items) >= self.capacity:
                self._items = self._items[::2]
                self.stride *= 2

    def snapshot(self) -> list[TelemetrySample]:
        """The samples kept so far, oldest first."""
        with self._lock:
            return list(self._items)
