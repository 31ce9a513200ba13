"""A bundle: a ``NAME.edgedl/`` folder holding the manifest and the model files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgedl.errors import BundleError, UsageError
from edgedl.fsutil import sha256_file
from edgedl.manifest import MANIFEST_NAME, Manifest, Variant

BUNDLE_SUFFIX = ".edgedl"


@dataclass
class Bundle:
    """An opened bundle. Use :meth:`open`; the manifest has been checked."""

    path: Path
    manifest: Manifest

    @classmethod
    def open(cls, path: str | Path, verify: bool = True) -> Bundle:
        """Open a bundle folder, check its manifest and (by default) its file hashes."""
        path = Path(path)
        if not path.exists():
            raise BundleError("no such bundle", path=path, fix="check the path or run edgedl convert first")
        if not path.is_dir():
            raise BundleError("not a bundle folder", path=path,
                              fix="pass the NAME.edgedl folder that edgedl convert wrote")
        bundle = cls(path, Manifest.read(path / MANIFEST_NAME))
        if verify:
            bundle.verify()
        return bundle

    def verify(self) -> None:
        """Check that every variant file exists and matches its recorded sha256."""
        for key, variant in self.manifest.variants.items():
            file = self.path / variant.file
            if not file.is_file():
                raise BundleError(f"variant {key!r} file {variant.file} is missing", path=self.path,
                                  fix="re-run edgedl convert to rebuild the bundle")
            if sha256_file(file) != variant.sha256:
                raise BundleError(f"variant {key!r} file {variant.file} was altered (sha256 mismatch)",
                                  path=file, fix="re-run edgedl convert to rebuild the bundle")

    def variant(self, key: str) -> Variant:
        """The variant recorded under ``key`` (for example ``fp32`` or ``int8``)."""
        try:
            return self.manifest.variants[key]
        except KeyError:
            have = ", ".join(self.manifest.variants)
            raise UsageError(f"bundle has no variant {key!r} (it has {have})", path=self.path,
                             fix="re-run edgedl convert with the precision you want") from None

    def file(self, key: str) -> Path:
        """Path of a variant's model file."""
        return self.path / self.variant(key).file

    @property
    def name(self) -> str:
        """The model's name."""
        return self.manifest.name

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r}, variants={list(self.manifest.variants)})"
