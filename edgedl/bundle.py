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
        """Check that every variant file is a file inside the bundle and matches its recorded sha256."""
        root = self.path.resolve()
        for key, variant in self.manifest.variants.items():
            file = self.path / variant.file
            # as written when it is a plain name; quoted and cut when it would break the one-line message
            name = variant.file if variant.file.isprintable() and len(variant.file) <= 80 else repr(variant.file[:80])
            try:
                inside = file.resolve().is_relative_to(root)  # a link planted in the folder can lead anywhere
                present = file.is_file()
                digest = sha256_file(file) if inside and present else ""
            except (OSError, ValueError, RuntimeError) as exc:  # unreadable, a name too long, NUL bytes, link loops
                reason = getattr(exc, "strerror", None) or exc
                raise BundleError(f"variant {key!r} file {name} cannot be read ({reason})",
                                  path=self.path, fix="re-run edgedl convert to rebuild the bundle") from None
            if not inside:
                raise BundleError(f"variant {key!r} file {name} links outside the bundle", path=self.path,
                                  fix="rebuild the bundle with edgedl convert; do not link its files from elsewhere")
            if not present:
                raise BundleError(f"variant {key!r} file {name} is missing", path=self.path,
                                  fix="re-run edgedl convert to rebuild the bundle")
            if digest != variant.sha256:
                raise BundleError(f"variant {key!r} file {name} was altered (sha256 mismatch)",
                                  path=file, fix="re-run edgedl convert to rebuild the bundle")
            if file.suffix == ".onnx":
                _check_weights_inside(file)

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


def _check_weights_inside(file: Path) -> None:
    """Refuse a variant whose weights come from outside it the way ``edgedl convert`` refuses its input.

    The hash covers the ONNX file, not external data beside it, and ONNX Runtime, which loads the file
    by path, refuses ``../``, absolute paths and symlinks but reads a hard-linked file: a shipped bundle
    could make a secret its weights, and a model can output its weights.
    """
    import onnx

    from edgedl.loading.onnx_load import check_external_data

    try:
        model = onnx.load_model(str(file), load_external_data=False)
    except Exception:  # not a model at all: nothing to read from elsewhere, and the runtime refuses it
        return
    check_external_data(model, file)
