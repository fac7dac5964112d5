"""Bounded-memory bookkeeping for jobs whose files may hold millions of distinct keys.

:class:`SeenSet` remembers strings (key links) in memory up to a limit, then
moves them to a temporary SQLite file, so a job's memory stays flat however
many distinct keys a file has. :class:`LruCache` keeps the most recently used
entries only.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections import OrderedDict
from collections.abc import Iterable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_SQL_BATCH = 500  # variables per statement: below SQLite's limit

#: Keys a job keeps between chunks (not their ciphers: an AES-SIV object holds ~4 KB of OpenSSL state,
#: so ciphers live for one chunk only); bounded so memory stays flat for any file.
KEY_CACHE_SIZE = 15_000


class SeenSet:
    """Strings seen so far; in memory up to ``memory_limit`` entries, on a temporary disk file after that."""

    def __init__(self, memory_limit: int = 50_000) -> None:
        self.memory_limit = memory_limit
        self._memory: set[str] = set()
        self._db: sqlite3.Connection | None = None
        self._path: str | None = None

    def __len__(self) -> int:
        on_disk = 0 if self._db is None else self._db.execute("SELECT count(*) FROM seen").fetchone()[0]
        return len(self._memory) + on_disk

    def first_seen(self, items: Iterable[str], unseen: frozenset[str] | set[str] = frozenset()) -> list[str]:
        """The items not seen before, in order of first appearance, each once; all are seen afterwards.

        ``unseen``: items the caller knows were never seen (say keys it just created): not looked up on disk.
        """
        memory = self._memory
        new: list[str] = []
        fresh: set[str] = set()
        for item in items:
            if item not in memory and item not in fresh:
                fresh.add(item)
                new.append(item)
        if self._db is not None and new:
            on_disk = self._on_disk([item for item in new if item not in unseen])
            if on_disk:
                new = [item for item in new if item not in on_disk]
        memory.update(new)
        if len(memory) > self.memory_limit:
            self._spill()
        return new

    def update(self, items: Iterable[str]) -> None:
        self.first_seen(items)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._path is not None:
            try:
                os.unlink(self._path)
            except FileNotFoundError:
                pass
            self._path = None

    def _on_disk(self, items: list[str]) -> set[str]:
        if not items:
            return set()
        assert self._db is not None
        found: set[str] = set()
        for i in range(0, len(items), _SQL_BATCH):
            part = items[i : i + _SQL_BATCH]
            marks = ",".join("?" * len(part))
            found.update(r[0] for r in self._db.execute(f"SELECT item FROM seen WHERE item IN ({marks})", part))
        return found

    def _spill(self) -> None:
        if self._db is None:
            fd, self._path = tempfile.mkstemp(prefix="strm-seen-", suffix=".db")
            os.close(fd)
            self._db = sqlite3.connect(self._path)
            self._db.execute("PRAGMA journal_mode=OFF")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute("CREATE TABLE seen (item TEXT PRIMARY KEY) WITHOUT ROWID")
        self._db.executemany("INSERT OR IGNORE INTO seen VALUES (?)", ((item,) for item in self._memory))
        self._db.commit()
        self._memory = set()

    def __del__(self) -> None:
        self.close()


class LruCache(Generic[K, V]):
    """At most ``size`` entries; the least recently used goes first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)
