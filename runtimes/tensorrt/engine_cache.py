"""The engine cache: TensorRT plans in a bundle's ``engines/``, each under a key naming all it depends on.

A plan is stored untouched (``KEY.plan``, loadable by ``trtexec --loadEngine``) beside
a record (``KEY.json``) holding the full key and the plan's sha256. A plan is code for
the GPU, so it is deserialized only when its record matches the key asked for and
its bytes match the recorded hash; anything else is a miss and is rebuilt.

Writes are atomic (temporary file, fsync, rename; the record last, so a record never
points at a half-written plan), and an exclusive lock per key means two processes
that miss at once build the engine once: the second waits, then finds the first's.
A writer killed mid-write leaves at most a temporary file, which the next build of
that key removes; a disk that refuses the write is an :class:`OutputError`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edgedl.errors import BundleError, DeviceError
from edgedl.fsutil import atomic_write_bytes, partial_files, sha256_file, write_failure
from edgedl.loading.model_file import read_regular_file

log = logging.getLogger("edgedl.runtimes")
FORMAT = 1
RECORD_LIMIT = 1 << 20  # a record is a few hundred bytes; anything near this is not one
FULL_DISK_FIX = "free space on that disk and load again (the engine is rebuilt)"
T = TypeVar("T")


@dataclass(frozen=True)
class EngineKey:
    """Everything a plan depends on, and a file-name-safe id derived from all of it."""

    fields: dict[str, Any]

    @property
    def digest(self) -> str:
        text = json.dumps(self.fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def id(self) -> str:
        """``VARIANT-PRECISION-<16 hex>``: readable prefix, unique suffix."""
        return f"{self.fields.get('variant', 'model')}-{self.fields.get('precision', 'x')}-{self.digest[:16]}"


def engine_key(**fields: Any) -> EngineKey:
    """A key from named fields (model hash, precision, shapes, TensorRT, CUDA, GPU, DLA core, builder options)."""
    return EngineKey({"format": FORMAT, **fields})


class EngineCache:
    """Plans and their records in one folder (created on first write)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _paths(self, key: EngineKey) -> tuple[Path, Path, Path]:
        base = self.folder / key.id
        return base.with_suffix(".plan"), base.with_suffix(".json"), base.with_suffix(".lock")

    def plan_path(self, key: EngineKey) -> Path:
        """Where the plan for ``key`` is (or would be) stored."""
        return self._paths(key)[0]

    def load(self, key: EngineKey) -> bytes | None:
        """The plan for ``key`` if its record matches and its bytes are intact; None (with the reason logged) if not."""
        plan_path, record_path, _ = self._paths(key)
        if not record_path.exists():
            return None
        try:
            record = _read_record(record_path)
        except (OSError, ValueError, RecursionError) as exc:
            log.warning("engine record %s is unreadable (%s); rebuilding", record_path, exc)
            return None
        if not isinstance(record, dict) or record.get("key") != key.fields:
            log.warning("engine record %s does not match the requested key; rebuilding", record_path)
            return None
        size = record.get("plan_bytes")
        try:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ValueError("the record names no plan size")
            data = read_regular_file(plan_path, size)  # no more than the record promises: a plan can be large
        except (OSError, ValueError) as exc:
            log.warning("engine plan %s is unreadable (%s); rebuilding", plan_path, getattr(exc, "strerror", None) or exc)
            return None
        if hashlib.sha256(data).hexdigest() != record.get("plan_sha256"):
            log.warning("engine plan %s does not match its recorded sha256 (truncated or altered); rebuilding",
                        plan_path)
            return None
        return data

    def store(self, key: EngineKey, plan: bytes, details: dict[str, Any] | None = None) -> Path:
        """Write the plan, then its record, each atomically. Returns the plan's path.

        An ``OSError`` (a full disk) leaves neither: a plan without its record is never loaded, so it is removed.
        """
        plan_path, record_path, _ = self._paths(key)
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(plan_path, plan)
        record = {"key_id": key.id, "key": key.fields, "plan": plan_path.name, "plan_bytes": len(plan),
                  "plan_sha256": hashlib.sha256(plan).hexdigest(),
                  "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **(details or {})}
        try:
            atomic_write_bytes(record_path, (json.dumps(record, indent=2) + "\n").encode())
        except BaseException:
            self.remove(key)
            raise
        return plan_path

    def discard_partial(self, key: EngineKey) -> None:
        """Remove the temporary files a process killed while storing ``key`` left; call it holding :meth:`lock`."""
        plan_path, record_path, _ = self._paths(key)
        for path in partial_files(plan_path) + partial_files(record_path):
            log.info("removing %s, left by an interrupted engine write", path)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def remove(self, key: EngineKey) -> None:
        """Forget ``key``'s plan (record first, so no record outlives its plan)."""
        plan_path, record_path, _ = self._paths(key)
        for path in (record_path, plan_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    @contextlib.contextmanager
    def lock(self, key: EngineKey, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """Hold an exclusive, process-wide lock on ``key`` (released by the OS if the holder dies)."""
        import fcntl

        _, _, lock_path = self._paths(key)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fh = open(lock_path, "a+b")
        except OSError as exc:
            raise write_failure(exc, lock_path, FULL_DISK_FIX) from exc
        with fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait:
                    on_wait(f"another process is building engine {key.id}; waiting for it")
                started = time.monotonic()
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                log.info("waited %.1fs for engine %s", time.monotonic() - started, key.id)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def entries(self) -> list[dict[str, Any]]:
        """Every record in the folder, each with ``status``: ``ok``, ``plan missing`` or ``plan altered``."""
        found = []
        for record_path in sorted(self.folder.glob("*.json")):
            try:
                record = _read_record(record_path)
            except (OSError, ValueError, RecursionError):
                found.append({"key_id": record_path.stem, "key": {}, "status": "record unreadable"})
                continue
            if not isinstance(record, dict) or "plan_sha256" not in record:
                continue  # not an engine record (e.g. the CPU runtime timing)
            plan = record_path.with_suffix(".plan")  # never the record's own "plan" field: it could name any file
            if not plan.is_file():
                record["status"] = "plan missing"
            else:
                record["status"] = "ok" if sha256_file(plan) == record.get("plan_sha256") else "plan altered"
            found.append(record)
        return found


def _read_record(path: Path) -> Any:
    """A record's JSON; OSError, ValueError (not UTF-8 or JSON, too large) or RecursionError (nested too deep) if bad."""
    return json.loads(read_regular_file(path, RECORD_LIMIT).decode("utf-8"))


def writable(folder: Path) -> bool:
    """Whether engines can be written to ``folder`` (creating it if needed)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def get_or_build(cache: EngineCache, key: EngineKey, build: Callable[[], tuple[bytes, dict[str, Any]]],
                 deserialize: Callable[[bytes], T | None], allow_build: bool = True, rebuild: bool = False,
                 on_wait: Callable[[str], None] | None = None) -> tuple[T, bool]:
    """The deserialized engine for ``key`` and whether it was built now.

    A cached plan that the runtime refuses (another TensorRT, another GPU, corrupt) is
    rebuilt, like any other miss. Building happens under the key's lock, after looking
    again, so concurrent processes build it once.
    """

    def cached() -> T | None:
        plan = None if rebuild else cache.load(key)
        if plan is None:
            return None
        engine = deserialize(plan)
        if engine is None:
            log.warning("TensorRT refused cached engine %s (built by another TensorRT or GPU, or damaged); "
                        "rebuilding", cache.plan_path(key))
        return engine

    engine = cached()
    if engine is not None:
        return engine, False
    if not allow_build:
        raise BundleError(f"no usable engine cached for key {key.id}", path=cache.folder,
                          fix="run edgedl build on this device, or load with build=True")
    with cache.lock(key, on_wait):
        engine = cached()
        if engine is not None:
            return engine, False
        cache.discard_partial(key)
        plan, details = build()
        try:
            cache.store(key, plan, details)
        except OSError as exc:
            raise write_failure(exc, cache.plan_path(key), FULL_DISK_FIX) from exc
        engine = deserialize(plan)
        if engine is None:
            cache.remove(key)
            raise DeviceError(f"TensorRT could not load the engine it just built for {key.id}",
                              fix="re-run with --verbose to see TensorRT's log")
        return engine, True
