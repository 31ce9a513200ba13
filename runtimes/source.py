"""What a backend loads: the model files by variant, the I/O description and where engines are cached.

A bundle gives all of these from its checked manifest. A bare ONNX file gives one
FP32 variant, loaded through the same safety checks as ``edgedl convert``, and
caches engines in the user's cache folder rather than beside the model.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedl.errors import InputFileError, UsageError
from edgedl.fsutil import sha256_file
from edgedl.manifest import MANIFEST_NAME, Manifest, TensorInfo

log = logging.getLogger("edgedl.runtimes")


@dataclass(frozen=True)
class ModelFile:
    """One variant's ONNX file, checked against its recorded sha256 when the source was opened."""

    key: str
    path: Path
    sha256: str
    precision: str
    target: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelSource:
    """A model ready for a backend: a bundle or a bare ONNX file."""

    name: str
    path: Path
    files: dict[str, ModelFile]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    engine_dir: Path
    manifest: Manifest | None = None
    calibration_cache: Path | None = None

    @classmethod
    def open(cls, path: str | Path, verify: bool = True) -> ModelSource:
        """Open a bundle folder (manifest and file hashes checked) or an ONNX file (safety checks)."""
        path = Path(path)
        if path.is_dir() or (not path.exists() and path.suffix != ".onnx") or path.name == MANIFEST_NAME:
            return cls._from_bundle(path.parent if path.name == MANIFEST_NAME else path, verify)
        return cls._from_onnx(path)

    @classmethod
    def _from_bundle(cls, path: Path, verify: bool) -> ModelSource:
        from edgedl.bundle import Bundle

        bundle = Bundle.open(path, verify=verify)
        m = bundle.manifest
        files = {key: ModelFile(key, bundle.path / v.file, v.sha256, v.precision, v.target, dict(v.details))
                 for key, v in m.variants.items()}
        cache = None
        trt = m.variants.get("int8-trt")
        name = (trt.details.get("calibration_cache") if trt else None) or "calibration.cache"
        if (bundle.path / name).is_file() and ".." not in Path(name).parts and not Path(name).is_absolute():
            cache = bundle.path / name
        return cls(m.name, bundle.path, files, m.inputs, m.outputs, bundle.path / "engines", m, cache)

    @classmethod
    def _from_onnx(cls, path: Path) -> ModelSource:
        from edgedl.loading.onnx_io import describe_io
        from edgedl.loading.onnx_load import load_onnx

        if path.suffix.lower() != ".onnx" and path.is_file():
            raise InputFileError("is neither a bundle folder nor an .onnx file", path=path,
                                 fix="pass a NAME.edgedl folder from edgedl convert, or an ONNX model")
        proto = load_onnx(path)
        inputs, outputs = describe_io(proto)
        digest = sha256_file(path)
        files = {"fp32": ModelFile("fp32", path, digest, "fp32", "any")}
        return cls(path.stem, path, files, inputs, outputs, user_cache_dir() / f"{path.stem}-{digest[:12]}")

    def file(self, key: str) -> ModelFile:
        """The variant ``key``; a clear error listing what the model has when it is absent."""
        try:
            return self.files[key]
        except KeyError:
            raise UsageError(f"{self.path.name} has no {key!r} variant (it has {', '.join(self.files)})", path=self.path,
                             fix="re-run edgedl convert with the precision you want, or pick another precision") from None

    def has(self, key: str) -> bool:
        """Whether the variant ``key`` is present."""
        return key in self.files

    def speedup(self, key: str) -> float | None:
        """The variant's CPU speed-up over FP32 measured by ``convert``, when recorded."""
        if self.manifest is None:
            return None
        entry = self.manifest.validation.get("variants", {}).get(key, {})
        value = entry.get("speedup_vs_fp32")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def task(self) -> str:
        """The manifest's task (``raw`` for a bare ONNX file)."""
        return self.manifest.task if self.manifest else "raw"


def user_cache_dir() -> Path:
    """``$EDGEDL_CACHE_DIR``, else ``$XDG_CACHE_HOME/edgedl``, else ``~/.cache/edgedl``; engines live under it."""
    if os.environ.get("EDGEDL_CACHE_DIR"):
        return Path(os.environ["EDGEDL_CACHE_DIR"]) / "engines"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgedl" / "engines"
