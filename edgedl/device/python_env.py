"""The Python interpreter running edgedl: its version, whether it is a virtualenv that can see the
system's packages, and which distributions are installed, all without importing them."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

#: pip's OpenCV distributions: all provide ``cv2``, none is built with GStreamer.
OPENCV_WHEELS = ("opencv-python-headless", "opencv-python", "opencv-contrib-python", "opencv-contrib-python-headless")
_REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


@dataclass(frozen=True)
class PythonEnv:
    """Facts about an interpreter. ``system_interpreter``: it is (or the venv was made from) the OS's Python
    in ``/usr``, the one apt's Python packages are built for. ``system_site``: the system's dist-packages are
    on its path (not a venv, or a venv made with ``--system-site-packages``)."""

    version: str
    executable: str
    prefix: str
    in_venv: bool
    system_site: bool
    system_interpreter: bool

    @property
    def sees_system_packages(self) -> bool:
        """Whether modules apt installed in /usr/lib/python3*/dist-packages are importable here."""
        return self.system_interpreter and self.system_site

    @classmethod
    def current(cls) -> PythonEnv:
        """This interpreter."""
        in_venv = sys.prefix != sys.base_prefix
        system_site = True
        if in_venv:
            config = Path(sys.prefix, "pyvenv.cfg")
            text = config.read_text(errors="replace") if config.is_file() else ""
            system_site = re.search(r"^include-system-site-packages\s*=\s*true\s*$", text, re.M | re.I) is not None
        return cls(f"{sys.version_info.major}.{sys.version_info.minor}", sys.executable, sys.prefix, in_venv, system_site,
                   sys.base_prefix == "/usr")


def dist_version(*names: str) -> tuple[str, str] | None:
    """(distribution, version) of the first of ``names`` installed, read from its metadata (nothing is imported)."""
    for name in names:
        try:
            return name, importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def module_origin(name: str) -> str | None:
    """Where ``import name`` would load from, without importing it; None when it cannot be found."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    return spec.origin or next(iter(spec.submodule_search_locations or []), None) or name


def requirements(dist: str) -> list[tuple[str, str, str | None]]:
    """``dist``'s declared requirements as (name, full text, extra or None); empty when it is not installed."""
    try:
        declared = importlib.metadata.requires(dist) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    result = []
    for text in declared:
        name = _REQUIREMENT_NAME.match(text)
        extra = _EXTRA.search(text)
        if name:
            result.append((name[0], text.split(";")[0].strip(), extra[1] if extra else None))
    return result


def system_module_dirs(root: Path, module: str) -> dict[str, Path]:
    """``{python version: folder}`` of a module installed by apt (``/usr/lib/python3.X/dist-packages/MODULE``
    or ``/usr/lib/python3/dist-packages/MODULE*``); the shared ``python3`` folder is reported as ``3``."""
    found: dict[str, Path] = {}
    for folder in sorted((root / "usr/lib").glob("python3*/dist-packages")):
        if (folder / module).exists() or any(folder.glob(f"{module}.*")):
            found[folder.parent.name.removeprefix("python")] = folder
    return found


def usable_system_dir(dirs: dict[str, Path], version: str) -> tuple[Path, str] | None:
    """Of ``system_module_dirs``' result, the folder Python ``version`` can load, and the system interpreter
    that loads it (``/usr/bin/python3.10``), or None."""
    if version in dirs:
        return dirs[version], f"/usr/bin/python{version}"
    if "3" in dirs:
        return dirs["3"], "/usr/bin/python3"
    return None
