"""The Jetson Linux (L4T) release and the JetPack it belongs to.

``/etc/nv_tegra_release`` starts with ``# R36 (release), REVISION: 3.0, GCID: …``; containers
built on NVIDIA's L4T images may lack the file but carry the ``nvidia-l4t-core`` package,
whose version (``36.3.0-20240506102626``) says the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RELEASE_LINE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)(?:\.(\d+))?")
_PACKAGE_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")

#: JetPack for each L4T release NVIDIA published (developer.nvidia.com/embedded/jetpack-archive).
#: Only exact releases: a release missing here is reported by its major line (see ``JETPACK_LINE``),
#: never by a guessed minor version.
JETPACK = {
    "32.4.3": "4.4", "32.4.4": "4.4.1", "32.5.0": "4.5", "32.5.1": "4.5.1", "32.5.2": "4.5.1", "32.6.1": "4.6",
    "32.7.1": "4.6.1", "32.7.2": "4.6.2", "32.7.3": "4.6.3", "32.7.4": "4.6.4", "32.7.5": "4.6.5", "32.7.6": "4.6.6",
    "34.1.0": "5.0 DP", "34.1.1": "5.0.1 DP", "35.1.0": "5.0.2", "35.2.1": "5.1", "35.3.1": "5.1.1",
    "35.4.1": "5.1.2", "35.5.0": "5.1.3", "35.6.0": "5.1.4",
    "36.2.0": "6.0 DP", "36.3.0": "6.0", "36.4.0": "6.1", "36.4.3": "6.2", "36.4.4": "6.2.1",
}
#: The JetPack major line of each L4T major release.
JETPACK_LINE = {32: 4, 34: 5, 35: 5, 36: 6, 38: 7}


@dataclass(frozen=True)
class L4TRelease:
    """An L4T release such as 36.3.0."""

    major: int
    minor: int
    patch: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def jetpack_major(self) -> int | None:
        """4, 5, 6 or 7; None for a release line edgedl does not know."""
        return JETPACK_LINE.get(self.major)

    @property
    def jetpack(self) -> str | None:
        """The exact JetPack (``6.0``), its line (``6.x``) for an unlisted release, or None."""
        exact = JETPACK.get(str(self))
        if exact:
            return exact
        return None if self.jetpack_major is None else f"{self.jetpack_major}.x"


def parse_nv_tegra_release(text: str) -> L4TRelease | None:
    """The release named on the first line of ``/etc/nv_tegra_release``."""
    match = _RELEASE_LINE.search(text)
    if match is None:
        return None
    return L4TRelease(int(match[1]), int(match[2]), int(match[3] or 0))


def parse_core_package(version: str) -> L4TRelease | None:
    """The release in an ``nvidia-l4t-core`` package version (``35.3.1-20230319081403``)."""
    match = _PACKAGE_VERSION.match(version)
    return None if match is None else L4TRelease(int(match[1]), int(match[2]), int(match[3] or 0))
