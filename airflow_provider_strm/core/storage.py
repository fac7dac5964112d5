"""Where files live: a small interface over local disk, S3 and GCS.

The engine reads and writes through a :class:`Storage`; the Airflow layer
(`hooks/connector.py`) builds one from a connection id. Paths are keys inside
the storage's root (a bucket, or a folder on disk), ``/``-separated.

Writes are never visible half-done: :meth:`Storage.open_write` returns a
:class:`PendingObject` that becomes visible at its final name only on
:meth:`PendingObject.commit`; :meth:`PendingObject.abort` (or an exception)
leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from airflow_provider_strm.core.errors import JobStartError


class PendingObject(ABC):
    """A write in progress. ``write`` streams bytes; ``commit`` publishes; ``abort`` discards."""

    path: str

    @abstractmethod
    def write(self, data: bytes) -> int: ...

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def abort(self) -> None: ...

    # file-like conveniences so pyarrow/csv writers can target a PendingObject
    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        return None

    @property
    def closed(self) -> bool:
        return False


class Storage(ABC):
    """A bucket or folder holding the job's files."""

    #: Human-readable location used in messages and lineage, e.g. ``s3://bucket``.
    url: str

    @abstractmethod
    def open_read(self, path: str) -> BinaryIO:
        """A binary stream of the object at ``path``; raise ``FileNotFoundError`` if absent."""

    @abstractmethod
    def open_write(self, path: str) -> PendingObject:
        """Start writing ``path``; nothing is visible there until ``commit``."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Paths of the objects under ``prefix`` (recursive), sorted."""

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def delete(self, path: str) -> None: ...

    def check(self) -> None:
        """Raise :class:`JobStartError` if the storage cannot be reached."""
        return None

    def delete_tree(self, prefix: str) -> None:
        """Delete every object under ``prefix`` (a folder)."""
        for path in self.list(prefix):
            self.delete(path)

    def describe(self, path: str) -> str:
        return f"{self.url.rstrip('/')}/{path.lstrip('/')}"


class _LocalPending(PendingObject):
    def __init__(self, final: Path) -> None:
        self.path = str(final)
        self._final = final
        final.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
        self._fh = open(self._tmp, "wb")  # noqa: SIM115 - closed in commit/abort

    def write(self, data: bytes) -> int:
        return self._fh.write(data)

    def commit(self) -> None:
        self._fh.close()
        os.replace(self._tmp, self._final)

    def abort(self) -> None:
        self._fh.close()
        self._tmp.unlink(missing_ok=True)


class LocalStorage(Storage):
    """Files under a root folder (``root=None``: paths are taken as they are)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else None
        self.url = f"file://{self.root.resolve()}" if self.root is not None else "file://"

    def _full(self, path: str) -> Path:
        return self.root / path.lstrip("/") if self.root is not None else Path(path)

    def open_read(self, path: str) -> BinaryIO:
        return open(self._full(path), "rb")  # noqa: SIM115 - caller closes

    def open_write(self, path: str) -> PendingObject:
        return _LocalPending(self._full(path))

    def list(self, prefix: str) -> list[str]:
        base = self._full(prefix)
        if base.is_file():
            return [prefix]
        if not base.is_dir():
            return []
        found: list[str] = []
        for p in base.rglob("*"):
            if p.is_file() and not p.name.startswith("."):
                rel = p.relative_to(self.root) if self.root is not None else p
                found.append(str(rel))
        return sorted(found)

    def exists(self, path: str) -> bool:
        return self._full(path).exists()

    def delete(self, path: str) -> None:
        full = self._full(path)
        if full.is_dir():
            shutil.rmtree(full)
        else:
            full.unlink(missing_ok=True)

    def delete_tree(self, prefix: str) -> None:
        folder = self._full(prefix)
        shutil.rmtree(folder, ignore_errors=True)
        # drop the folders that only held it (e.g. .strm-parts/<job>/)
        stop = self.root.resolve() if self.root is not None else None
        parent = folder.parent
        while parent != stop and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent

    def check(self) -> None:
        if self.root is not None and not self.root.is_dir():
            raise JobStartError(f"local data connector root {self.root} is not a folder")

    def iter_chunks(self, path: str, size: int = 1 << 20) -> Iterator[bytes]:
        with self.open_read(path) as fh:
            while chunk := fh.read(size):
                yield chunk
