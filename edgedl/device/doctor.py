"""``edgedl doctor``: everything that decides what edgedl can do on this machine, each problem with its fix.

    report = run_checks(["tensorrt", "gstreamer"])
    print(render(report))
    error = missing_error(report)      # a MissingDependencyError (exit 9) when a required capability is absent

Every check reads the machine through ``root`` and ``runner`` (see ``edgedl.device.probe``), so tests
run them against fixture trees and recorded command outputs. Commands have short timeouts; nothing
here can hang, and on a machine without a GPU the whole run takes about a second.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edgedl.device.checks_media import check_cameras, check_opencv
from edgedl.device.checks_platform import check_jetson, check_packages, check_system
from edgedl.device.checks_runtimes import check_gpu, check_runtimes, check_tensorrt
from edgedl.device.jetson import detect_jetson
from edgedl.device.probe import Runner, run_command
from edgedl.device.python_env import PythonEnv
from edgedl.device.report import CAPABILITIES, Context, DoctorReport, Section
from edgedl.errors import MissingDependencyError, UsageError

_MARKS = {"ok": "✓", "info": "·", "warn": "!", "fail": "✗"}


def parse_require(require: str | Iterable[str] | None) -> list[str]:
    """``"tensorrt,gstreamer"`` or ``["tensorrt", "camera"]`` → known capability names, or a UsageError."""
    if require is None:
        return []
    parts = [require] if isinstance(require, str) else list(require)
    names = [name.strip().lower() for part in parts for name in part.split(",") if name.strip()]
    unknown = [name for name in names if name not in CAPABILITIES]
    if unknown:
        raise UsageError(f"--require {','.join(unknown)}: unknown capability",
                         fix=f"use a comma-separated list of {', '.join(CAPABILITIES)}")
    return list(dict.fromkeys(names))


def run_checks(require: str | Iterable[str] | None = None, root: Path = Path("/"), *, runner: Runner = run_command,
               python: PythonEnv | None = None) -> DoctorReport:
    """Check this machine (files under ``root``, commands through ``runner``, the interpreter ``python``)."""
    required = parse_require(require)
    ctx = Context(root=root, runner=runner, python=python or PythonEnv.current(), jetson=detect_jetson(root, runner))
    sections: list[Section | None] = [check_system(ctx), check_jetson(ctx), check_packages(ctx), check_runtimes(ctx),
                                      check_gpu(ctx), check_tensorrt(ctx), check_opencv(ctx), check_cameras(ctx)]
    return DoctorReport([s for s in sections if s is not None], ctx.capabilities, required, ctx.jetson)


def render(report: DoctorReport) -> str:
    """The report as text: the sections, then the problems with their fixes, then the capabilities."""
    width = max(len(item.label) for section in report.sections for item in section.items)
    lines: list[str] = []
    for section in report.sections:
        lines.append(section.title)
        lines += [f"  {_MARKS[item.status]} {item.label:<{width}}  {item.value}" for item in section.items]
        lines.append("")
    problems = report.problems
    lines.append(f"Problems: {len(problems) or 'none'}")
    for item in problems:
        lines.append(f"  {_MARKS[item.status]} {item.label}: {item.value}")
        if item.fix:
            lines.append(f"      fix: {item.fix}")
    lines.append("")
    have = [name for name, cap in report.capabilities.items() if cap.available]
    lines.append(f"Capabilities: {', '.join(have) or 'none'}")
    for name in report.required:
        cap = report.capabilities[name]
        state = "present" if cap.available else f"MISSING: {cap.detail}" + (f" — fix: {cap.fix}" if cap.fix else "")
        lines.append(f"  required {name}: {state}")
    return "\n".join(lines)


def to_json(report: DoctorReport) -> dict[str, Any]:
    """The report as JSON-ready data: sections, capabilities, requirements and the raw Jetson facts."""
    jetson = None
    if report.jetson is not None:
        jetson = dataclasses.asdict(report.jetson)
        jetson.update(l4t=str(report.jetson.l4t) if report.jetson.l4t else None, jetpack=report.jetson.jetpack,
                      family=report.jetson.family)
    return {
        "ok": report.ok,
        "required": report.required,
        "missing": report.missing,
        "capabilities": {name: dataclasses.asdict(cap) for name, cap in report.capabilities.items()},
        "sections": [{"title": s.title, "items": [dataclasses.asdict(i) for i in s.items]} for s in report.sections],
        "problems": [dataclasses.asdict(item) for item in report.problems],
        "jetson": jetson,
    }


def missing_error(report: DoctorReport) -> MissingDependencyError | None:
    """The error to exit with when ``--require`` named capabilities this machine lacks (exit code 9)."""
    if not report.missing:
        return None
    details = "; ".join(f"{name} ({report.capabilities[name].detail})" for name in report.missing)
    fixes = "; ".join(f"{name}: {report.capabilities[name].fix}" for name in report.missing
                      if report.capabilities[name].fix)
    return MissingDependencyError(f"required but missing here: {details}", fix=fixes or "see edgedl doctor's report")
