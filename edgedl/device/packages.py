"""Installed Debian packages (``dpkg-query``): how JetPack's CUDA, TensorRT and OpenCV versions are known
without importing them."""

from __future__ import annotations

from edgedl.device.probe import Runner

#: One line per package: status abbreviation (``ii`` = installed), name, version, tab-separated.
DPKG_QUERY = ("dpkg-query", "-W", "-f=${db:Status-Abbrev}\t${Package}\t${Version}\n")


def installed_packages(runner: Runner) -> dict[str, str]:
    """``{package: version}`` of every installed package; empty where there is no dpkg."""
    result = runner(DPKG_QUERY, 5.0)
    if result is None or not result.ok:
        return {}
    packages = {}
    for line in result.stdout.splitlines():
        fields = line.split("\t")
        # "rc" (removed, config left) and half-installed packages do not count.
        if len(fields) == 3 and fields[0].startswith("ii"):
            packages[fields[1]] = fields[2]
    return packages


def first_version(packages: dict[str, str], *prefixes: str) -> tuple[str, str] | None:
    """(name, version) of the first installed package, in ``prefixes`` order, whose name starts with a prefix."""
    for prefix in prefixes:
        for name in sorted(packages, reverse=True):  # cuda-cudart-12-6 before cuda-cudart-12-2
            if name.startswith(prefix):
                return name, packages[name]
    return None


def upstream(version: str) -> str:
    """``10.3.0.30-1+cuda12.5`` → ``10.3.0.30``: the Debian revision and build suffixes dropped."""
    return version.split(":", 1)[-1].split("-", 1)[0].split("+", 1)[0]
