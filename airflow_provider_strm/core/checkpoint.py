"""Checkpoints: a long file is committed in parts, so a retried job resumes after the last part.

Each output is written as numbered part objects in a hidden folder next to it
(``<prefix>/.strm-parts/<job key>/<name>/00000``); a part is committed (on S3
an uploaded object, locally a renamed file) when the job records a
checkpoint. Only when the whole file is done are the parts concatenated into
the output's final name — outputs are never visible half-written — and the
parts deleted. A retry of the same job (same group, input and outputs) finds
the checkpoint in the key store, checks that the input's records up to it are
unchanged (a running digest), skips them, and appends to the parts: the
outputs end byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import PurePosixPath

from airflow_provider_strm.core.csvio import RecordChunk
from airflow_provider_strm.core.storage import PendingObject, Storage

PARTS_DIR = ".strm-parts"


def parts_prefix(final_path: str, job_key: str) -> str:
    path = PurePosixPath(final_path)
    folder = str(path.parent) if str(path.parent) != "." else ""
    base = f"{folder}/{PARTS_DIR}" if folder else PARTS_DIR
    return f"{base}/{job_key}/{path.name}"


class PartedOutput(PendingObject):
    """A pending output written as committed parts; :meth:`commit` assembles the final object."""

    def __init__(self, storage: Storage, final_path: str, job_key: str, first_part: int = 0) -> None:
        self.path = final_path
        self.storage = storage
        self.prefix = parts_prefix(final_path, job_key)
        self.part = first_part
        self._pending: PendingObject | None = None

    def write(self, data: bytes) -> int:
        if self._pending is None:
            self._pending = self.storage.open_write(f"{self.prefix}/{self.part:05d}")
        return self._pending.write(data)

    def checkpoint(self) -> None:
        """Commit what was written since the last checkpoint as the next part."""
        if self._pending is None:
            self._pending = self.storage.open_write(f"{self.prefix}/{self.part:05d}")
        self._pending.commit()
        self._pending = None
        self.part += 1

    def committed_parts(self) -> list[str]:
        return [f"{self.prefix}/{n:05d}" for n in range(self.part)]

    def read_committed(self) -> Iterator[bytes]:
        for name in self.committed_parts():
            with self.storage.open_read(name) as fh:
                while block := fh.read(1 << 20):
                    yield block

    def commit(self) -> None:
        self.checkpoint()
        final = self.storage.open_write(self.path)
        try:
            for block in self.read_committed():
                final.write(block)
            final.commit()
        except BaseException:
            final.abort()
            raise
        self.discard_parts()

    def abort(self) -> None:
        # committed parts stay: they are what a retry resumes from
        if self._pending is not None:
            self._pending.abort()
            self._pending = None

    def discard_parts(self) -> None:
        self.storage.delete_tree(self.prefix)


class RecordDigest:
    """A running digest of the records read, to tell that a resumed input is the input checkpointed."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def update(self, chunk: RecordChunk) -> None:
        columns = chunk.columns
        for i in range(len(chunk.rows)):
            self._hash.update("\x1f".join(col[i] for col in columns).encode("utf-8", "surrogateescape") + b"\x1e")
        for bad in chunk.bad:
            self._hash.update(f"{bad.row}\x1f{bad.text}\x1e".encode("utf-8", "surrogateescape"))

    def hexdigest(self) -> str:
        return self._hash.copy().hexdigest()


def job_key(*parts: object) -> str:
    """A stable name for "this job on this input with these outputs", shared by every retry."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:24]
