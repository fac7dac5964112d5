"""What a job's worker process needs of the key store, without SQLAlchemy.

An EncryptJob's worker process digests data subjects; a DeriveJob's reads keysets and tombstones by
key link. Both take the store as the task's process opened it (DEK, digest secret, database address)
and read on the database's own DB-API driver (sqlite3, psycopg2): importing SQLAlchemy would cost
every worker process ~0.2 s and ~20 MB, more than the reads it does. The task's process keeps the
full :class:`~airflow_provider_strm.core.keystore.KeyStore`, which shares the digest and key-reading
code here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from airflow_provider_strm.core.crypto import Keyset
from airflow_provider_strm.core.kek import AeadKey
from airflow_provider_strm.core.masking import hmac_sha256_hex

KEYS_TABLE = "strm_keys"
TOMBSTONES_TABLE = "strm_key_tombstones"
LINK_BATCH = 2000  # key links per SELECT statement: well below SQLite's variable limit (32766)
#: DB-API parameter styles a worker process reads with (others: the full key store, SQLAlchemy and all)
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


class StoredKey(NamedTuple):
    """A data key as the engine sees it. ``keyset`` is secret: never log or return it.

    A named tuple, not a frozen dataclass: a job makes one per key it creates or reads (a million for
    1M new keys), and a tuple is made in a third of the time (~0.5 µs against 1.4 µs).
    """

    key_link: str
    keyset: Keyset
    window_start: int
    policy_id: str | None
    expires_at: int | None
    created: bool = False

    def __repr__(self) -> str:  # keep key material out of logs and tracebacks
        return f"StoredKey(key_link={self.key_link!r}, window_start={self.window_start})"


class KeyReader:
    """Digests of key-field values and data subjects, and keys read by link: the key store's read side."""

    _dek: bytes | None = None
    _digest_secret: bytes | None = None
    _dek_key: AeadKey | None = None  # the DEK's cipher, made once (see _dek_cipher)

    #: an SQLite database in this process's memory: another process (a worker of the job) cannot read it
    in_memory = False

    def _open(self) -> None:
        """Load the DEK and digest secret."""
        raise NotImplementedError

    def digest(self, group_id: str, value: str, kind: str = "key") -> str:
        """The keyed digest stored instead of a key-field (or data-subject) value."""
        return self._digester(group_id, kind)(value)

    def subject_digester(self, group_id: str) -> Callable[[str], str]:
        """The digest of a data subject of the group, as the key store records it."""
        return self._digester(group_id, "subject")

    def _digester(self, group_id: str, kind: str = "key") -> Callable[[str], str]:
        """:meth:`digest` of one group and kind, for many values: the HMAC of their common prefix is made once."""
        if self._digest_secret is None:
            self._open()
        assert self._digest_secret is not None
        prefix = f"{group_id}\x00" if kind == "key" else f"{group_id}\x00{kind}\x00"
        return hmac_sha256_hex(self._digest_secret, prefix.encode())  # HMAC(secret, prefix + value)

    def _dek_cipher(self) -> AeadKey:
        if self._dek is None:
            self._open()
        assert self._dek is not None
        if self._dek_key is None or self._dek_key.key is not self._dek:  # the DEK changes on KEK rotation
            self._dek_key = AeadKey(self._dek)
        return self._dek_key

    def _unwrap(self, blob: bytes, bound_to: bytes) -> bytes:
        return self._dek_cipher().unwrap(blob, bound_to)

    def keysets_by_link(self, key_links: Iterable[str]) -> dict[str, Keyset]:
        """The keysets named by ``key_links`` that exist (unknown or forgotten links are absent)."""
        raise NotImplementedError

    def removed(self, key_links: Iterable[str]) -> dict[str, str]:
        """Why keys are gone: keyLink → ``forgotten`` | ``expired``, for the links that were removed."""
        raise NotImplementedError

    def commit(self) -> None:
        """Commit held writes (nothing to do for a reader)."""

    def _read_by_link(self, cursor: Any, placeholder: str, sql: str, key_links: Iterable[str]) -> Iterable[tuple]:
        """Rows of ``sql`` (its ``IN ({})`` filled with placeholders) for the links, a batch at a time."""
        links = sorted(set(key_links))
        for i in range(0, len(links), LINK_BATCH):
            part = links[i : i + LINK_BATCH]
            cursor.execute(sql.format(",".join([placeholder] * len(part))), part)
            yield from cursor.fetchall()

    def _keysets(self, rows: Iterable[tuple]) -> dict[str, Keyset]:
        """Keysets of (key link, wrapped keyset) rows."""
        unwrap, keyset = self._dek_cipher().unwrap, Keyset.from_secret_bytes
        return {link: keyset(unwrap(bytes(blob), link.encode())) for link, blob in rows}


KEYSETS_SQL = f"SELECT key_link, wrapped_keyset FROM {KEYS_TABLE} WHERE key_link IN ({{}})"
REMOVED_SQL = f"SELECT key_link, reason FROM {TOMBSTONES_TABLE} WHERE key_link IN ({{}})"


class WorkerKeyStore(KeyReader):
    """The key store in a job's worker process: reads on a DB-API connection of its own, opened when first used.

    Anything else (an EncryptJob's record-by-record path creates keys in the worker process) goes to the
    full key store, made from the same spec when first needed.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self._spec = spec
        self._store: Any = None
        self._driver = importlib.import_module(str(spec["driver"]))
        self._placeholder = _PLACEHOLDERS[self._driver.paramstyle]
        self._dek, self._digest_secret = spec["dek"], spec["digest_secret"]
        self._connection: Any = None

    def __getattr__(self, name: str) -> Any:  # what a reader does not have: the full store's
        if name.startswith("_"):
            raise AttributeError(name)
        if self._store is None:
            from airflow_provider_strm.core.keystore import KeyStore

            self._store = KeyStore.from_worker_spec(self._spec)
        return getattr(self._store, name)

    def _open(self) -> None:
        raise AssertionError("a worker process's key store is opened by the task's process")

    def _cursor(self) -> Any:
        if self._connection is None:
            args, kwargs = self._spec["connect"]
            self._connection = self._driver.connect(*args, **kwargs)
        return self._connection.cursor()

    def keysets_by_link(self, key_links: Iterable[str]) -> dict[str, Keyset]:
        return self._keysets(self._read(KEYSETS_SQL, key_links))

    def removed(self, key_links: Iterable[str]) -> dict[str, str]:
        return dict(self._read(REMOVED_SQL, key_links))

    def _read(self, sql: str, key_links: Iterable[str]) -> list[tuple]:
        """Every row of ``sql`` for the links (see :meth:`_read_by_link`), on this process's connection."""
        cursor = self._cursor()
        try:
            return list(self._read_by_link(cursor, self._placeholder, sql, key_links))
        finally:
            cursor.close()
            self._connection.rollback()  # no transaction left open between chunks (PostgreSQL would hold it)


def open_worker_store(spec: dict[str, Any]) -> KeyReader:
    """The key store of a worker process, from what ``KeyStore.worker_spec`` gave: on the database's own
    driver when its parameter style is known, else the full key store (which imports SQLAlchemy)."""
    driver = spec.get("driver")
    if driver is not None and getattr(importlib.import_module(str(driver)), "paramstyle", None) in _PLACEHOLDERS:
        return WorkerKeyStore(spec)
    from airflow_provider_strm.core.keystore import KeyStore

    return KeyStore.from_worker_spec(spec)
