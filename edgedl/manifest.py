"""The bundle manifest (``edgedl.json``): what a runtime needs to know about a model.

The manifest is the contract between converters and runtimes. Its schema is
versioned; a reader refuses a manifest whose schema it does not understand
rather than guessing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedl.errors import BundleError
from edgedl.loading.model_file import read_regular_file
from edgedl.preprocess import PreprocessSpec
from edgedl.vocabulary import PRECISIONS, TASKS

SCHEMA_VERSION = 1
MANIFEST_NAME = "edgedl.json"
#: Far more than any manifest needs (labels included): a bigger file is refused before it is read.
MANIFEST_LIMIT = 16 << 20


@dataclass
class TensorInfo:
    """One model input or output: name, element type, shape (ints or symbolic names), layout."""

    name: str
    dtype: str
    shape: list[int | str]
    layout: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Manifest form."""
        data: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if self.layout is not None:
            data["layout"] = self.layout
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorInfo:
        """Parse the manifest form; dims must be integers or names, the layout a name."""
        shape, layout = data["shape"], data.get("layout")
        if not isinstance(shape, list) or not all(_is_int(d) or isinstance(d, str) for d in shape):
            raise ValueError(f"tensor {data['name']!r} shape must be a list of integers and names")
        if layout is not None and not isinstance(layout, str):
            raise ValueError(f"tensor {data['name']!r} layout must be a name like NCHW")
        return cls(str(data["name"]), str(data["dtype"]), shape, layout)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_spec_types(pre: dict[str, Any]) -> None:
    """PreprocessSpec checks values, not types: sizes must be integers and the arithmetic finite numbers."""
    for key in ("width", "height", "pad_value"):
        if key in pre and not _is_int(pre[key]):
            raise ValueError(f"preprocess {key} must be an integer")
    for key in ("scale", "mean", "std"):
        values = pre.get(key, [])
        for value in values if isinstance(values, list) else [values]:
            if not (_is_int(value) or isinstance(value, float)) or not math.isfinite(value):
                raise ValueError(f"preprocess {key} must be finite numbers")


@dataclass
class Variant:
    """One model file of the bundle at one precision, for one kind of runtime."""

    file: str
    precision: str
    target: str
    sha256: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Manifest form."""
        return {"file": self.file, "precision": self.precision, "target": self.target,
                "sha256": self.sha256, "details": self.details}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Variant:
        """Parse the manifest form."""
        return cls(str(data["file"]), str(data["precision"]), str(data["target"]), str(data["sha256"]),
                   dict(data.get("details", {})))


@dataclass
class Manifest:
    """Everything recorded about a converted model."""

    name: str
    source: dict[str, Any]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    variants: dict[str, Variant]
    task: str = "raw"
    labels: list[str] = field(default_factory=list)
    preprocess: PreprocessSpec | None = None
    preprocess_input: str | None = None
    calibration: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    edgedl_version: str = ""
    created: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def precisions(self) -> list[str]:
        """The precisions present, in a stable order."""
        present = {v.precision for v in self.variants.values()}
        return [p for p in PRECISIONS if p in present] + sorted(present - set(PRECISIONS))

    def to_dict(self) -> dict[str, Any]:
        """Manifest form (plain JSON types)."""
        return {
            "schema_version": self.schema_version,
            "edgedl_version": self.edgedl_version,
            "created": self.created,
            "name": self.name,
            "source": self.source,
            "task": self.task,
            "labels": self.labels,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "preprocess": None if self.preprocess is None else {
                "input": self.preprocess_input, **self.preprocess.to_dict()},
            "precisions": self.precisions,
            "variants": {k: v.to_dict() for k, v in self.variants.items()},
            "calibration": self.calibration,
            "validation": self.validation,
        }

    def dumps(self) -> str:
        """Serialized manifest text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any, path: Path | None = None) -> Manifest:
        """Parse and check a manifest; refuse schemas this version does not understand."""
        if not isinstance(data, dict):
            raise BundleError("manifest is not a JSON object", path=path, fix="re-run edgedl convert")
        version = data.get("schema_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise BundleError("manifest has no integer schema_version", path=path,
                              fix="re-run edgedl convert to rebuild the bundle")
        if version > SCHEMA_VERSION:
            raise BundleError(f"manifest schema {version} is newer than this edgedl understands "
                              f"(schema {SCHEMA_VERSION})", path=path, fix="pip install -U edgedl")
        if version < 1:
            raise BundleError(f"manifest schema {version} is not valid", path=path, fix="re-run edgedl convert")
        try:
            pre = data.get("preprocess")
            spec = None
            if pre is not None:
                pre = dict(pre)
                pre_input = pre.pop("input", None)
                if pre_input is not None and not isinstance(pre_input, str):
                    raise ValueError("preprocess input must be a tensor name")
                _check_spec_types(pre)
                spec = PreprocessSpec.from_dict(pre)
            else:
                pre_input = None
            manifest = cls(
                name=str(data["name"]),
                source=dict(data["source"]),
                inputs=[TensorInfo.from_dict(t) for t in data["inputs"]],
                outputs=[TensorInfo.from_dict(t) for t in data["outputs"]],
                variants={str(k): Variant.from_dict(v) for k, v in dict(data["variants"]).items()},
                task=str(data.get("task", "raw")),
                labels=[str(x) for x in data.get("labels", [])],
                preprocess=spec,
                preprocess_input=pre_input,
                calibration=dict(data.get("calibration") or {}),
                validation=dict(data.get("validation") or {}),
                edgedl_version=str(data.get("edgedl_version", "")),
                created=str(data.get("created", "")),
                schema_version=version,
            )
        except BundleError:
            raise
        except Exception as exc:  # KeyError, TypeError, ValueError, UsageError from the spec
            raise BundleError(f"manifest is malformed ({exc!r})", path=path,  # repr: one line whatever the values hold
                              fix="re-run edgedl convert to rebuild the bundle") from exc
        if manifest.task not in TASKS:
            raise BundleError(f"unknown task {manifest.task!r}", path=path, fix=f"use one of {', '.join(TASKS)}")
        if not manifest.variants:
            raise BundleError("manifest lists no model variants", path=path, fix="re-run edgedl convert")
        for variant in manifest.variants.values():
            if Path(variant.file).is_absolute() or ".." in Path(variant.file).parts:
                raise BundleError(f"variant file {variant.file!r} points outside the bundle", path=path,
                                  fix="rebuild the bundle with edgedl convert")
        return manifest

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """Read ``edgedl.json`` from disk."""
        try:
            text = read_regular_file(path, MANIFEST_LIMIT).decode("utf-8")
        except FileNotFoundError:
            raise BundleError("no edgedl.json manifest here", path=path.parent,
                              fix="pass a folder made by edgedl convert") from None
        except (OSError, ValueError) as exc:  # unreadable, a pipe or device, too large, not UTF-8
            raise BundleError(f"cannot read manifest ({getattr(exc, 'strerror', None) or exc})", path=path,
                              fix="re-run edgedl convert") from None
        try:
            data = json.loads(text)
            json.dumps(data, ensure_ascii=False).encode("utf-8")  # text that could never be printed or written out
        except json.JSONDecodeError as exc:
            raise BundleError(f"manifest is not valid JSON ({exc.msg} at line {exc.lineno})", path=path,
                              fix="re-run edgedl convert to rebuild the bundle") from None
        except UnicodeEncodeError:
            raise BundleError("manifest holds text that is not valid Unicode (an unpaired surrogate escape)", path=path,
                              fix="re-run edgedl convert to rebuild the bundle") from None
        except (ValueError, RecursionError):  # a number of thousands of digits, or nesting deeper than Python's stack
            raise BundleError("manifest is not valid JSON (a number too long or nesting too deep)", path=path,
                              fix="re-run edgedl convert to rebuild the bundle") from None
        return cls.from_dict(data, path)
