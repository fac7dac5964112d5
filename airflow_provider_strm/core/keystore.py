"""The key store: one key per (group, key-field value, UTC day), kept in SQL.

SQLite is the embedded default, PostgreSQL the deployment choice; both are
reached through SQLAlchemy Core, the hot paths (bulk inserts, SQLite reads) on
the driver's own connection, and a job's worker processes read without
SQLAlchemy (see :mod:`keyreader`). The store never holds raw identifiers: a
key-field value is stored as a keyed digest (HMAC-SHA256 under a per-store
secret). Keysets are wrapped at rest (AES-256-GCM, bound to their keyLink)
with the store's data-encryption key (DEK), itself wrapped by a
key-encryption key (KEK, see :mod:`kek`); a wrong KEK is detected when the
store opens, never turned into garbage.

Beyond STRM: forget a data subject (crypto-shredding: their keys are deleted
and tombstoned), purge expired keys, export keys as a STRM keys file, rotate
the KEK. Every such action leaves an audit record with counts, never values.

Key creation is bulk and race-safe: rows go in (digest, window) order, so
concurrent writers never wait on each other in opposite orders; PostgreSQL
takes them in one binary COPY that is all or nothing, and when some entity
turns out to exist (another process won it) the call falls back to
``INSERT .. ON CONFLICT DO NOTHING RETURNING`` and reads back the keys it lost.
So N processes asking for the same key at once all get the one that won.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import struct
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa

from airflow_provider_strm.core.crypto import Keyset
from airflow_provider_strm.core.errors import JobStartError, KeyStoreError
from airflow_provider_strm.core.kek import (
    AeadKey,
    KekProvider,
    LocalKek,
    aead_unwrap,
    aead_wrap,
    new_kek,
    parse_kek,
)
from airflow_provider_strm.core.keyreader import (
    KEYS_TABLE,
    KEYSETS_SQL,
    LINK_BATCH,
    TOMBSTONES_TABLE,
    KeyReader,
    StoredKey,
)
from airflow_provider_strm.core.memory import collector_paused

__all__ = ["KeyStore", "StoredKey", "create_engine", "new_kek", "parse_kek"]

SCHEMA_VERSION = 1
_BATCH = LINK_BATCH  # entities or links per SELECT statement: well below SQLite's variable limit (32766)
_SCHEMA_ATTEMPTS = 20  # tries to create a new SQLite store's tables while other processes create them too
_INSERT_BATCH = 5000  # rows per INSERT call (SQLAlchemy splits it into statements the database accepts)
_CALL_BATCH = 20_000  # entities per look-up-or-insert round (see get_or_create)
_SLICE = 1000  # new keys made per step: a PostgreSQL COPY sends each step while the next one is made
#: a group id that can be written into an SQL statement as a literal as it is (no quote, no other character)
_PLAIN_ID = re.compile(r"[0-9A-Za-z_.:-]{1,64}")
_KEY_COLUMNS = (
    "group_id",
    "key_digest",
    "window_start",
    "window_end",
    "key_link",
    "wrapped_keyset",
    "policy_id",
    "expires_at",
    "created_at",
)  # the key table's columns but its id, in the order of a new key row

metadata = sa.MetaData()


def _ascii(length: int) -> sa.types.TypeEngine:
    """A column of ASCII identifiers (hex digests, UUIDs): on PostgreSQL with the "C" collation (byte order).

    Its indexes then compare bytes, not by the database's locale rules: on a database with ICU en-US rules,
    1M new keys took 16.4-16.6 s against 18.2-22.7 s (no change measured on a C.UTF-8 database). Rows sort
    as Python sorts them (byte order: the order keys go in, and export order is SQLite's). Equality is the
    same under any deterministic collation, so stores made before (the database's collation) work alike.
    """
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


schema_table = sa.Table(
    "strm_schema",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

keys_table = sa.Table(
    KEYS_TABLE,
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("group_id", _ascii(64), nullable=False),
    sa.Column("key_digest", _ascii(64), nullable=False),
    sa.Column("window_start", sa.BigInteger, nullable=False),
    sa.Column("window_end", sa.BigInteger, nullable=False),
    sa.Column("key_link", _ascii(36), nullable=False, unique=True),
    sa.Column("wrapped_keyset", sa.LargeBinary, nullable=False),
    sa.Column("policy_id", sa.String(64)),
    sa.Column("expires_at", sa.BigInteger),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("group_id", "key_digest", "window_start", name="uq_strm_keys_entity_window"),
)

subject_keys_table = sa.Table(
    "strm_subject_keys",
    metadata,
    sa.Column("group_id", _ascii(64), primary_key=True),
    sa.Column("subject_digest", _ascii(64), primary_key=True),
    sa.Column("key_link", _ascii(36), primary_key=True),
    # SQLite: the rows are their primary key's B-tree (a rowid table keeps them twice: the table and the key's
    # index, ~25 MB against 16 MB for 64k links, and ~20% more time to insert). A store made before keeps its
    # rowid table: the statements are the same.
    sqlite_with_rowid=False,
)

tombstones_table = sa.Table(
    TOMBSTONES_TABLE,
    metadata,
    sa.Column("key_link", _ascii(36), primary_key=True),
    sa.Column("group_id", _ascii(64), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("removed_at", sa.BigInteger, nullable=False),
)

audit_table = sa.Table(
    "strm_audit",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(250)),
    sa.Column("group_id", sa.String(64)),
    sa.Column("details", sa.JSON),
)

checkpoints_table = sa.Table(
    "strm_checkpoints",
    metadata,
    sa.Column("job_key", sa.String(64), primary_key=True),
    sa.Column("part", sa.Integer, nullable=False),
    sa.Column("rows_done", sa.BigInteger, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("state", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

jobs_table = sa.Table(
    "strm_jobs",
    metadata,
    sa.Column("job_id", sa.String(36), primary_key=True),
    sa.Column("group_id", sa.String(64), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("file", sa.Text, nullable=False),
    sa.Column("dag_id", sa.String(250)),
    sa.Column("task_id", sa.String(250)),
    sa.Column("run_id", sa.String(250), index=True),
    sa.Column("map_index", sa.Integer),
    sa.Column("hostname", sa.String(250)),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("counters", sa.JSON),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

job_states_table = sa.Table(
    "strm_job_states",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column(
        "job_id", sa.String(36), sa.ForeignKey("strm_jobs.job_id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("state_time", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("message", sa.Text),
)


class KeyStore(KeyReader):
    """Keys and job records of one SQL database."""

    #: insert key rows (psycopg2, sqlite3) and read them (sqlite3) on the driver's connection rather than through
    #: SQLAlchemy
    raw_inserts = True

    def __init__(self, engine: sa.Engine | str, kek: str | bytes | KekProvider) -> None:
        if isinstance(engine, str):
            engine = create_engine(engine)
        self.engine = engine
        self.kek: KekProvider = LocalKek(kek) if isinstance(kek, (str, bytes)) else kek
        self._dek: bytes | None = None
        self._digest_secret: bytes | None = None
        self._dek_key: AeadKey | None = None  # the DEK's cipher, made once (see KeyReader._dek_cipher)
        self._dialect = (engine.dialect.name, engine.dialect.driver)
        self._expect_new = False  # the last get_or_create found none of its keys stored (see there)
        self._held: _HeldTransaction | None = None  # see batched()

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def batched(self, max_seconds: float = 2.0) -> Iterator[None]:
        """SQLite: this store's writes inside the block share one transaction, committed at least every
        ``max_seconds`` (at the first write after), by :meth:`commit`, by job states and checkpoints, and
        when the block ends; rolled back if it raises. Other databases: no change.

        SQLite rewrites every index page a transaction touches when it commits; key digests and links are
        random, so one transaction per chunk rewrites most of each index once per chunk. Nothing may be
        published that needs the block's keys before they are committed (commit first). Another process
        writing to the same file waits for at most ``max_seconds`` plus one chunk's work, within the busy
        timeout; this process must write through this store only (another connection would wait on it).
        """
        if self._dialect[0] != "sqlite" or self._held is not None:
            yield
            return
        conn = self.engine.connect()
        conn.begin()
        self._held = _HeldTransaction(conn, max_seconds, time.monotonic())
        try:
            yield
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            self._held = None
            conn.close()

    def commit(self) -> None:
        """Commit what a :meth:`batched` block has written so far (nothing to do outside one)."""
        if self._held is not None:
            self._held.commit()

    @contextmanager
    def _begin(self, *, batch: bool = False) -> Iterator[sa.Connection]:
        """A connection in a transaction, committed when the block ends; in a :meth:`batched` block, its
        transaction, committed then only if its time is up and ``batch`` (new keys and subject links)."""
        held = self._held
        if held is None:
            with self.engine.begin() as conn:
                yield conn
            return
        yield held.conn
        if not batch or time.monotonic() - held.since >= held.max_seconds:
            held.commit()

    def _connect(self) -> AbstractContextManager[sa.Connection]:
        """A connection to read with: the batched one (it sees what the batch wrote) or a new one."""
        return nullcontext(self._held.conn) if self._held is not None else self.engine.connect()

    # ------------------------------------------------------------------ schema

    @property
    def in_memory(self) -> bool:  # type: ignore[override]
        return self._dialect[0] == "sqlite" and self.engine.url.database in (None, "", ":memory:")

    def _open(self) -> None:
        self.ensure_schema()

    def ensure_schema(self) -> None:
        """Create the tables (idempotent, safe across processes) and check the schema version."""
        give_up = time.monotonic() + 60  # a lock held this long is not a race (SQLite itself waits up to 60 s)
        for attempt in range(_SCHEMA_ATTEMPTS):
            try:
                with self._begin() as conn:
                    metadata.create_all(conn, checkfirst=True)
                break
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError) as exc:
                # several processes creating a new store at once: another one created a table between the check
                # and the CREATE (PostgreSQL: a unique violation in its catalog or "already exists"; SQLite:
                # "already exists"), or holds SQLite's lock while it does; check again (a table at a time)
                racing = isinstance(exc, sa.exc.IntegrityError) or any(
                    text in str(exc) for text in ("already exists", "database is locked")
                )
                if not racing or attempt == _SCHEMA_ATTEMPTS - 1 or time.monotonic() > give_up:
                    raise JobStartError(f"key store {self._where()} is not reachable: {_short(exc)}") from None
                time.sleep(0.02 * (attempt + 1) * (1 + secrets.randbelow(100) / 100))
        with self._begin() as conn:
            rows = dict(conn.execute(sa.select(schema_table.c.name, schema_table.c.value)).all())
            if "dek" not in rows:  # a new store: its DEK is made (and wrapped by the KEK) exactly once
                dek = os.urandom(32)
                initial = [
                    {"name": "version", "value": str(SCHEMA_VERSION)},
                    {"name": "dek", "value": _b64(self.kek.wrap(dek, b"dek"))},
                    {"name": "kek_name", "value": self.kek.name},
                    {"name": "digest_secret", "value": _b64(aead_wrap(dek, os.urandom(32), b"digest-secret"))},
                ]
                self._insert_ignore(conn, schema_table, initial, ["name"])
                rows = dict(conn.execute(sa.select(schema_table.c.name, schema_table.c.value)).all())
        version = int(rows["version"])
        if version > SCHEMA_VERSION:
            raise KeyStoreError(
                f"key store schema version {version} is newer than this provider understands ({SCHEMA_VERSION})"
            )
        try:
            self._dek = self.kek.unwrap(base64.b64decode(rows["dek"]), b"dek")
        except KeyStoreError:
            raise KeyStoreError(
                f"the key-encryption key ({self.kek.name}) does not open key store {self._where()}, "
                f"which was wrapped with {rows.get('kek_name')}: wrong KEK for this store"
            ) from None
        self._digest_secret = aead_unwrap(self._dek, base64.b64decode(rows["digest_secret"]), b"digest-secret")

    def worker_spec(self) -> dict[str, object]:
        """This store as opened here, for a worker process of the same job: URL, DEK and digest secret, and
        the DB-API driver and its connect arguments (a worker process reads without SQLAlchemy, see
        :func:`~airflow_provider_strm.core.keyreader.open_worker_store`).

        Secret (it holds the unwrapped DEK): only ever hand it to a child process over a local pipe.
        """
        if self._dek is None:
            self.ensure_schema()
        dialect, url = self.engine.dialect, self.engine.url
        args, kwargs = dialect.create_connect_args(url)
        if dialect.name == "sqlite":
            kwargs = {**kwargs, "timeout": 60}  # as create_engine's: wait for a writer, do not fail
        return {
            "url": url.render_as_string(hide_password=False),
            "dek": self._dek,
            "digest_secret": self._digest_secret,
            "kek_name": self.kek.name,
            "driver": dialect.dbapi.__name__ if dialect.dbapi is not None else None,
            "connect": (list(args), dict(kwargs)),
        }

    @classmethod
    def from_worker_spec(cls, spec: dict[str, object]) -> KeyStore:
        """The store a worker process uses: already open, so the KEK (a KMS, say) is never called again."""
        store = cls(str(spec["url"]), _OpenedKek(str(spec["kek_name"])))
        store._dek = spec["dek"]  # type: ignore[assignment]
        store._digest_secret = spec["digest_secret"]  # type: ignore[assignment]
        return store

    def check(self) -> None:
        """Raise :class:`JobStartError` if the database cannot be reached."""
        try:
            with self._connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            raise JobStartError(f"key store {self._where()} is not reachable: {_short(exc)}") from None

    # ------------------------------------------------------------------ keys

    def _key_digests(self, group_id: str, entities: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
        """:meth:`digest` of each entity's key-field value (a repeated entity is digested twice: cheaper than a set)."""
        digest = self._digester(group_id)
        return {entity: digest(entity[0]) for entity in entities}

    def get_or_create(
        self,
        group_id: str,
        entities: Iterable[tuple[str, int]],
        *,
        window_ms: int = 86_400_000,
        policy_id: str | None = None,
        expires_at: int | None = None,
    ) -> dict[tuple[str, int], StoredKey]:
        """The key of each (key-field value, window start), creating missing ones in bulk.

        Returns a dict keyed like the input; ``StoredKey.created`` tells which
        keys this call created. Safe when several processes ask at once.
        Entities are taken ``_CALL_BATCH`` at a time: the look-up and insert temporaries
        (~0.5 KB a key) stay bounded for a chunk of many distinct entities.
        """
        items = entities if isinstance(entities, (list, tuple)) else list(entities)
        if len(items) > _CALL_BATCH:  # an entity repeated in a later round would be reported found, not created
            items = list(dict.fromkeys(items))
        out: dict[tuple[str, int], StoredKey] = {}
        for i in range(0, len(items), _CALL_BATCH):
            with collector_paused():  # resumed once this part's temporaries are gone
                out.update(self._get_or_create(group_id, items[i : i + _CALL_BATCH], window_ms, policy_id, expires_at))
        return out

    def _get_or_create(
        self,
        group_id: str,
        entities: Iterable[tuple[str, int]],
        window_ms: int,
        policy_id: str | None,
        expires_at: int | None,
    ) -> dict[tuple[str, int], StoredKey]:
        wanted = self._key_digests(group_id, entities)
        if not wanted:
            return {}
        # A bulk load of new entities skips the look-up: when the previous call found none of its keys stored,
        # this one inserts straight away (conflict-safe) and reads back only the keys that turn out to exist.
        found = {} if self._expect_new else self._select(group_id, wanted)
        # one order for every process: no lock-order deadlocks between concurrent inserts
        # (a bulk load looked nothing up: every entity is missing, no membership test per entity)
        todo = [(e, d) for e, d in wanted.items() if e not in found] if found else wanted.items()
        missing = sorted([(d, e[1], e) for e, d in todo])
        created = 0
        if missing:
            new = _NewKeys(self, group_id, missing, window_ms, policy_id, expires_at)
            inserted = self._insert_keys(new)  # one transaction per call
            if inserted is None:
                found.update(new.keys)
                created = len(new.keys)
            else:
                lost: dict[tuple[str, int], str] = {}
                for (digest, _, _), (entity, key) in zip(missing, new.keys, strict=True):
                    if key.key_link in inserted:
                        found[entity] = key
                    else:  # another process created it first: its key is the key
                        lost[entity] = digest
                created = len(missing) - len(lost)
                if lost:
                    found.update(self._select(group_id, lost))
        self._expect_new = created == len(wanted)
        return found

    def _insert_keys(self, new: _NewKeys) -> set[str] | None:
        """Insert new key rows, ignoring entities that exist; the key links inserted (None: every one)."""
        if self.raw_inserts and self._dialect == ("postgresql", "psycopg2") and self._copy_keys_pg(new):
            return None
        rows = new.rows()
        for attempt in range(5):
            try:
                with self._begin(batch=True) as conn:
                    if self.raw_inserts and self._dialect == ("postgresql", "psycopg2"):
                        return self._insert_keys_pg(conn, rows)
                    if self.raw_inserts and self._dialect[0] == "sqlite":
                        return self._insert_keys_sqlite(conn, rows)
                    inserted: set[str] = set()
                    index = ["group_id", "key_digest", "window_start"]
                    for i in range(0, len(rows), _INSERT_BATCH):
                        part = [dict(zip(_KEY_COLUMNS, row, strict=True)) for row in rows[i : i + _INSERT_BATCH]]
                        inserted.update(
                            self._insert_ignore(conn, keys_table, part, index, returning=keys_table.c.key_link)
                        )
                return inserted
            except sa.exc.OperationalError as exc:
                # PostgreSQL may still pick a deadlock victim under heavy contention; the insert is idempotent.
                if "deadlock" not in str(exc).lower() or attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def _copy_keys_pg(self, new: _NewKeys) -> bool:
        """PostgreSQL: COPY the new rows straight into the key table, streamed while they are made.

        All or nothing: False (and nothing inserted) when any entity already exists or a concurrent
        insert made this one a deadlock victim; the caller then takes the ``ON CONFLICT`` path.
        """
        from psycopg2 import errors
        from psycopg2.extensions import encodings

        sql = f"COPY {keys_table.name} ({', '.join(_KEY_COLUMNS)}) FROM STDIN (FORMAT binary)"
        try:
            with self._begin() as conn:
                driver_conn = conn.connection.driver_connection
                with driver_conn.cursor() as cursor:  # type: ignore[union-attr]
                    cursor.copy_expert(sql, new.copy_stream(encodings[driver_conn.encoding]))  # type: ignore[union-attr]
        except (errors.UniqueViolation, errors.DeadlockDetected):
            return False
        return True

    @staticmethod
    def _insert_keys_sqlite(conn: sa.Connection, rows: list[tuple]) -> set[str] | None:
        """SQLite: multi-row INSERT statements on the raw connection (no per-row SQLAlchemy work).

        None when every row went in (the usual case, told by the count of changed rows; RETURNING would cost
        ~15% of the insert); else the key links that did, looked up (new links exist only if inserted here).
        """
        per = 30_000 // len(_KEY_COLUMNS)  # rows per statement: below SQLite's 32,766 variables
        link_at = _KEY_COLUMNS.index("key_link")
        changed = 0
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            for i in range(0, len(rows), per):
                part = rows[i : i + per]
                marks = ",".join(["(" + ",".join("?" * len(_KEY_COLUMNS)) + ")"] * len(part))
                cursor.execute(
                    f"INSERT INTO {keys_table.name} ({', '.join(_KEY_COLUMNS)}) VALUES {marks} "
                    "ON CONFLICT (group_id, key_digest, window_start) DO NOTHING",
                    [value for row in part for value in row],
                )
                changed += cursor.rowcount
            if changed == len(rows):
                return None
            inserted: set[str] = set()
            links = [row[link_at] for row in rows]
            for i in range(0, len(links), _BATCH):
                part = links[i : i + _BATCH]
                cursor.execute(
                    f"SELECT key_link FROM {keys_table.name} WHERE key_link IN ({','.join('?' * len(part))})", part
                )
                inserted.update(r[0] for r in cursor.fetchall())
        finally:
            cursor.close()
        return inserted

    @staticmethod
    def _insert_keys_pg(conn: sa.Connection, rows: list[tuple]) -> set[str]:
        """PostgreSQL: INSERT .. ON CONFLICT DO NOTHING RETURNING through psycopg2's execute_values."""
        from psycopg2.extras import execute_values

        sql = (
            f"INSERT INTO {keys_table.name} ({', '.join(_KEY_COLUMNS)}) VALUES %s "
            "ON CONFLICT (group_id, key_digest, window_start) DO NOTHING RETURNING key_link"
        )
        with conn.connection.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
            returned = execute_values(cursor, sql, rows, page_size=_INSERT_BATCH, fetch=True)
        return {r[0] for r in returned}

    def keys_by_link(self, key_links: Iterable[str]) -> dict[str, StoredKey]:
        """The keys named by ``key_links`` that exist (unknown or forgotten links are absent)."""
        links = sorted(set(key_links))
        c = keys_table.c
        columns = (c.key_link, c.wrapped_keyset, c.window_start, c.policy_id, c.expires_at)
        unwrap, keyset = self._dek_cipher().unwrap, Keyset.from_secret_bytes
        out: dict[str, StoredKey] = {}
        with self._connect() as conn:
            for i in range(0, len(links), _BATCH):
                rows = conn.execute(sa.select(*columns).where(c.key_link.in_(links[i : i + _BATCH]))).all()
                for link, blob, window, policy, expires in rows:  # plain tuples: ~100k keys a second
                    out[link] = StoredKey(link, keyset(unwrap(blob, link.encode())), window, policy, expires)
        return out

    def keysets_by_link(self, key_links: Iterable[str]) -> dict[str, Keyset]:
        """The keysets named by ``key_links`` that exist: what :meth:`keys_by_link` gives, keysets only.

        SQLite: on the driver's connection, ~35% faster (a DeriveJob looks up every key of its file,
        each worker process the keys of its chunks).
        """
        if not (self.raw_inserts and self._dialect[0] == "sqlite"):
            return {link: stored.keyset for link, stored in self.keys_by_link(key_links).items()}
        with self._connect() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                return self._keysets(self._read_by_link(cursor, "?", KEYSETS_SQL, key_links))
            finally:
                cursor.close()

    def count_keys(self, group_id: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(keys_table)
        if group_id is not None:
            query = query.where(keys_table.c.group_id == group_id)
        with self._connect() as conn:
            return int(conn.execute(query).scalar_one())

    def _select(self, group_id: str, wanted: dict[tuple[str, int], str]) -> dict[tuple[str, int], StoredKey]:
        """Stored keys of the wanted entities."""
        if self._dialect[0] == "postgresql":
            return self._select_pg(group_id, wanted)
        if self.raw_inserts:
            return self._select_sqlite(group_id, wanted)
        by_digest_window = {(d, w): (v, w) for (v, w), d in wanted.items()}
        digests = sorted({d for d in wanted.values()})
        out: dict[tuple[str, int], StoredKey] = {}
        with self._connect() as conn:
            for i in range(0, len(digests), _BATCH):
                part = digests[i : i + _BATCH]
                query = sa.select(keys_table).where(
                    keys_table.c.group_id == group_id, keys_table.c.key_digest.in_(part)
                )
                for row in conn.execute(query):
                    entity = by_digest_window.get((row.key_digest, row.window_start))
                    if entity is not None:
                        out[entity] = self._stored(row)
        return out

    def _select_sqlite(self, group_id: str, wanted: dict[tuple[str, int], str]) -> dict[tuple[str, int], StoredKey]:
        """SQLite: on the driver's connection, the columns of a StoredKey only, of the wanted windows only
        (a re-run or a file of a day whose keys exist looks up every key: ~2x faster than SQLAlchemy rows)."""
        by_digest_window = {(d, e[1]): e for e, d in wanted.items()}
        digests = sorted(set(wanted.values()))
        windows = sorted({w for _, w in wanted})
        sql = (
            "SELECT key_digest, window_start, key_link, wrapped_keyset, policy_id, expires_at "
            f"FROM {keys_table.name} WHERE group_id = ? AND key_digest IN ({{}})"
        )
        if len(windows) <= _BATCH:  # a chunk's few days: fewer rows of the other windows of a key-field value
            sql += f" AND window_start IN ({','.join('?' * len(windows))})"
        else:
            windows = []
        unwrap, keyset = self._dek_cipher().unwrap, Keyset.from_secret_bytes
        out: dict[tuple[str, int], StoredKey] = {}
        with self._connect() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                for i in range(0, len(digests), _BATCH):
                    part = digests[i : i + _BATCH]
                    cursor.execute(sql.format(",".join("?" * len(part))), [group_id, *part, *windows])
                    for digest, window, link, blob, policy, expires in cursor.fetchall():
                        entity = by_digest_window.get((digest, window))
                        if entity is not None:
                            out[entity] = StoredKey(link, keyset(unwrap(blob, link.encode())), window, policy, expires)
            finally:
                cursor.close()
        return out

    def _select_pg(self, group_id: str, wanted: dict[tuple[str, int], str]) -> dict[tuple[str, int], StoredKey]:
        """PostgreSQL: one statement, one index probe per entity.

        The LATERAL .. LIMIT 1 keeps the planner from hashing the whole table, which it otherwise does
        once a group's keys are most of the table: a scan of every key per call.
        """
        by_digest_window = {(d, e[1]): e for e, d in wanted.items()}
        pairs = sorted(by_digest_window)
        query = sa.text(
            "SELECT k.key_digest, k.window_start, k.key_link, k.wrapped_keyset, k.policy_id, k.expires_at "
            "FROM unnest(CAST(:digests AS varchar[]), CAST(:windows AS bigint[])) AS e(key_digest, window_start) "
            f"CROSS JOIN LATERAL (SELECT * FROM {keys_table.name} k WHERE k.group_id = :group_id "
            "AND k.key_digest = e.key_digest AND k.window_start = e.window_start LIMIT 1) k"
        )
        params = {  # digests are hex and windows integers: array literals need no quoting
            "digests": "{" + ",".join(d for d, _ in pairs) + "}",
            "windows": "{" + ",".join(str(w) for _, w in pairs) + "}",
            "group_id": group_id,
        }
        unwrap = self._dek_cipher().unwrap
        out: dict[tuple[str, int], StoredKey] = {}
        with self._connect() as conn:
            rows = conn.execute(query, params).all()
        for digest, window, link, blob, policy, expires in rows:
            keyset = Keyset.from_secret_bytes(unwrap(bytes(blob), link.encode()))
            out[by_digest_window[(digest, window)]] = StoredKey(link, keyset, window, policy, expires)
        return out

    def _stored(self, row: sa.Row) -> StoredKey:
        keyset = Keyset.from_secret_bytes(self._unwrap(row.wrapped_keyset, row.key_link.encode()))
        return StoredKey(row.key_link, keyset, row.window_start, row.policy_id, row.expires_at)

    # ------------------------------------------------------------------ data subjects and key management

    def link_subjects(self, group_id: str, pairs: Iterable[tuple[str, str]]) -> None:
        """Remember which keys encrypted which data subject's records (as digests), so they can be forgotten."""
        self.link_subject_digests(group_id, self.digested_subjects(group_id, pairs))

    def digested_subjects(self, group_id: str, pairs: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """(data subject, key link) pairs as (subject digest, key link); the empty subject (no one's) is left out."""
        digest = self.subject_digester(group_id)
        digests: dict[str, str] = {}  # a subject has many keys: one digest each
        distinct: set[tuple[str, str]] = set()
        for subject, link in pairs:
            if subject != "":
                found = digests.get(subject)
                if found is None:
                    found = digests[subject] = digest(subject)
                distinct.add((found, link))
        return distinct

    def link_subject_digests(self, group_id: str, pairs: Iterable[tuple[str, str]]) -> None:
        """:meth:`link_subjects` with each subject already a :meth:`subject_digester` digest (made, say, by a
        worker process of the job: no subject value and no digest secret needed here)."""
        rows = sorted(pairs if isinstance(pairs, (set, frozenset)) else set(pairs))
        if not rows:
            return
        with self._begin(batch=True) as conn:
            if self.raw_inserts and self._dialect[0] == "sqlite":  # one C loop, no per-row SQLAlchemy work
                insert = f"INSERT INTO {subject_keys_table.name} (group_id, subject_digest, key_link) VALUES "
                cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
                try:
                    if _PLAIN_ID.fullmatch(group_id):  # written into the statement: each row binds its own 2 values
                        cursor.executemany(insert + f"('{group_id}', ?, ?) ON CONFLICT DO NOTHING", rows)
                    else:
                        cursor.executemany(insert + "(?, ?, ?) ON CONFLICT DO NOTHING", [(group_id, *r) for r in rows])
                finally:
                    cursor.close()
                return
            records = [{"group_id": group_id, "subject_digest": d, "key_link": link} for d, link in rows]
            for i in range(0, len(records), _BATCH):
                self._insert_ignore(
                    conn, subject_keys_table, records[i : i + _BATCH], ["group_id", "subject_digest", "key_link"]
                )

    def forget_subjects(self, group_id: str, subjects: Iterable[str], *, actor: str | None = None) -> dict[str, int]:
        """Crypto-shred data subjects: delete every key that encrypted their records, in all windows.

        Their ciphertexts can no longer be decrypted by anyone; derive jobs exclude their
        records with the reason ``forgotten``. Returns counts; the audit record holds no value.
        """
        digests = sorted(set(map(self._digester(group_id, "subject"), subjects)))
        with self._begin() as conn:
            links: set[str] = set()
            for i in range(0, len(digests), _BATCH):
                part = digests[i : i + _BATCH]
                links.update(
                    conn.execute(
                        sa.select(subject_keys_table.c.key_link).where(
                            subject_keys_table.c.group_id == group_id, subject_keys_table.c.subject_digest.in_(part)
                        )
                    ).scalars()
                )
                conn.execute(
                    subject_keys_table.delete().where(
                        subject_keys_table.c.group_id == group_id, subject_keys_table.c.subject_digest.in_(part)
                    )
                )
            deleted = self._remove_keys(conn, group_id, sorted(links), "forgotten")
            counts = {"subjects": len(digests), "keys_deleted": deleted}
            self._audit(conn, "forget_subjects", actor, group_id, counts)
        return counts

    def purge_expired(self, *, now_ms: int | None = None, group_id: str | None = None, actor: str | None = None) -> int:
        """Delete the keys whose ``expiresAt`` has passed (optionally of one group); returns how many."""
        now = _now_ms() if now_ms is None else now_ms
        query = sa.select(keys_table.c.group_id, keys_table.c.key_link).where(
            keys_table.c.expires_at.is_not(None), keys_table.c.expires_at <= now
        )
        if group_id is not None:
            query = query.where(keys_table.c.group_id == group_id)
        with self._begin() as conn:
            by_group: dict[str, list[str]] = {}
            for group, link in conn.execute(query):
                by_group.setdefault(group, []).append(link)
            total = sum(self._remove_keys(conn, g, links, "expired") for g, links in sorted(by_group.items()))
            self._audit(conn, "purge_expired", actor, group_id, {"keys_deleted": total, "now": now})
        return total

    def removed(self, key_links: Iterable[str]) -> dict[str, str]:
        """Why keys are gone: keyLink → ``forgotten`` | ``expired``, for the links that were removed."""
        links = sorted(set(key_links))
        out: dict[str, str] = {}
        with self._connect() as conn:
            for i in range(0, len(links), _BATCH):
                query = sa.select(tombstones_table.c.key_link, tombstones_table.c.reason).where(
                    tombstones_table.c.key_link.in_(links[i : i + _BATCH])
                )
                out.update(dict(conn.execute(query).all()))
        return out

    def export_keys(
        self, group_id: str, *, window_from: int | None = None, window_to: int | None = None
    ) -> Iterator[StoredKey]:
        """The keys of a group whose window starts in ``[window_from, window_to)``, oldest first."""
        query = sa.select(keys_table).where(keys_table.c.group_id == group_id)
        if window_from is not None:
            query = query.where(keys_table.c.window_start >= window_from)
        if window_to is not None:
            query = query.where(keys_table.c.window_start < window_to)
        query = query.order_by(keys_table.c.window_start, keys_table.c.key_link)
        with self._connect() as conn:
            for row in conn.execution_options(yield_per=1000).execute(query):
                yield self._stored(row)

    def rotate_kek(self, new_kek: KekProvider | str | bytes, *, actor: str | None = None) -> int:
        """Re-wrap every keyset under a fresh DEK wrapped by ``new_kek``; data keys do not change.

        One transaction: either everything is re-wrapped or nothing is. Returns the number of keys.
        """
        target: KekProvider = LocalKek(new_kek) if isinstance(new_kek, (str, bytes)) else new_kek
        if self._dek is None:
            self.ensure_schema()
        assert self._dek is not None and self._digest_secret is not None
        new_dek = os.urandom(32)
        count = 0
        with self._begin() as conn:
            rows = conn.execute(sa.select(keys_table.c.id, keys_table.c.key_link, keys_table.c.wrapped_keyset)).all()
            for i in range(0, len(rows), _BATCH):
                updates = [
                    {
                        "row_id": r.id,
                        "blob": aead_wrap(
                            new_dek, aead_unwrap(self._dek, r.wrapped_keyset, r.key_link.encode()), r.key_link.encode()
                        ),
                    }
                    for r in rows[i : i + _BATCH]
                ]
                conn.execute(
                    keys_table.update()
                    .where(keys_table.c.id == sa.bindparam("row_id"))
                    .values(wrapped_keyset=sa.bindparam("blob")),
                    updates,
                )
                count += len(updates)
            settings = {
                "dek": _b64(target.wrap(new_dek, b"dek")),
                "kek_name": target.name,
                "digest_secret": _b64(aead_wrap(new_dek, self._digest_secret, b"digest-secret")),
            }
            for name, value in settings.items():
                conn.execute(schema_table.update().where(schema_table.c.name == name).values(value=value))
            self._audit(
                conn, "rotate_kek", actor, None, {"keys_rewrapped": count, "from": self.kek.name, "to": target.name}
            )
        self.kek, self._dek = target, new_dek
        return count

    def groups(self) -> list[dict[str, object]]:
        """A summary per group: number of keys, first and last window, how many have expired."""
        now = _now_ms()
        expired = sa.func.sum(sa.case((keys_table.c.expires_at <= now, 1), else_=0))
        query = (
            sa.select(
                keys_table.c.group_id,
                sa.func.count().label("keys"),
                sa.func.min(keys_table.c.window_start).label("first_window"),
                sa.func.max(keys_table.c.window_start).label("last_window"),
                expired.label("expired"),
            )
            .group_by(keys_table.c.group_id)
            .order_by(keys_table.c.group_id)
        )
        with self._connect() as conn:
            return [dict(r._mapping) | {"expired": int(r.expired or 0)} for r in conn.execute(query)]

    def audit_log(self) -> list[dict[str, object]]:
        with self._connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(audit_table).order_by(audit_table.c.id))]

    def _remove_keys(self, conn: sa.Connection, group_id: str, links: list[str], reason: str) -> int:
        deleted = 0
        now = _now_ms()
        for i in range(0, len(links), _BATCH):
            part = links[i : i + _BATCH]
            deleted += conn.execute(keys_table.delete().where(keys_table.c.key_link.in_(part))).rowcount or 0
            tombs = [{"key_link": link, "group_id": group_id, "reason": reason, "removed_at": now} for link in part]
            self._insert_ignore(conn, tombstones_table, tombs, ["key_link"])
        return deleted

    def _audit(self, conn: sa.Connection, action: str, actor: str | None, group_id: str | None, details: dict) -> None:
        conn.execute(
            audit_table.insert().values(
                at=_now_ms(), action=action, actor=actor or _default_actor(), group_id=group_id, details=details
            )
        )

    # ------------------------------------------------------------------ job records

    def create_job(
        self,
        *,
        group_id: str,
        kind: str,
        file: str,
        context: dict[str, object] | None = None,
        job_id: str | None = None,
    ) -> str:
        """Record a new job in state PENDING; ``context`` may carry dag_id, task_id, run_id, map_index, hostname."""
        job_id = job_id or str(uuid.uuid4())
        now = _now_ms()
        ctx = {
            k: v for k, v in (context or {}).items() if k in ("dag_id", "task_id", "run_id", "map_index", "hostname")
        }
        with self._begin() as conn:
            conn.execute(
                jobs_table.insert().values(
                    job_id=job_id,
                    group_id=group_id,
                    kind=kind,
                    file=file,
                    state="PENDING",
                    created_at=now,
                    updated_at=now,
                    counters={},
                    **ctx,
                )
            )
            conn.execute(job_states_table.insert().values(job_id=job_id, state_time=now, state="PENDING", message=None))
        return job_id

    def set_job_state(
        self, job_id: str, state: str, message: str | None = None, counters: dict[str, object] | None = None
    ) -> None:
        now = _now_ms()
        values: dict[str, object] = {"state": state, "updated_at": now}
        if counters is not None:
            values["counters"] = counters
        with self._begin() as conn:
            conn.execute(jobs_table.update().where(jobs_table.c.job_id == job_id).values(**values))
            conn.execute(job_states_table.insert().values(job_id=job_id, state_time=now, state=state, message=message))

    def job(self, job_id: str) -> dict[str, object] | None:
        """A job record with its state history (oldest first), or None."""
        with self._connect() as conn:
            row = conn.execute(sa.select(jobs_table).where(jobs_table.c.job_id == job_id)).mappings().first()
            if row is None:
                return None
            states = (
                conn.execute(
                    sa.select(job_states_table.c.state_time, job_states_table.c.state, job_states_table.c.message)
                    .where(job_states_table.c.job_id == job_id)
                    .order_by(job_states_table.c.id)
                )
                .mappings()
                .all()
            )
        return {**dict(row), "states": [dict(s) for s in states]}

    def jobs(
        self,
        *,
        job_id: str | None = None,
        group_id: str | None = None,
        run_id: str | None = None,
        file_prefix: str | None = None,
    ) -> list[dict[str, object]]:
        """Job records (without history) matching all given filters, oldest first.

        ``file_prefix`` matches the input as jobs name it: ``conn_id:path`` (e.g. a partition's folder).
        """
        query = sa.select(jobs_table).order_by(jobs_table.c.created_at)
        for column, value in (("job_id", job_id), ("group_id", group_id), ("run_id", run_id)):
            if value is not None:
                query = query.where(jobs_table.c[column] == value)
        if file_prefix:
            query = query.where(jobs_table.c.file.startswith(file_prefix, autoescape=True))
        with self._connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
            for row in rows:
                last = conn.execute(
                    sa.select(job_states_table.c.message)
                    .where(job_states_table.c.job_id == row["job_id"])
                    .order_by(job_states_table.c.id.desc())
                    .limit(1)
                ).scalar()
                row["message"] = last
        return rows

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self, job_key: str) -> dict[str, object] | None:
        with self._connect() as conn:
            row = conn.execute(sa.select(checkpoints_table).where(checkpoints_table.c.job_key == job_key)).first()
        return dict(row._mapping) if row else None

    def save_checkpoint(self, job_key: str, part: int, rows_done: int, digest: str, state: dict) -> None:
        values = {"part": part, "rows_done": rows_done, "digest": digest, "state": state, "updated_at": _now_ms()}
        with self._begin() as conn:
            updated = conn.execute(
                checkpoints_table.update().where(checkpoints_table.c.job_key == job_key).values(**values)
            ).rowcount
            if not updated:
                conn.execute(checkpoints_table.insert().values(job_key=job_key, **values))

    def clear_checkpoint(self, job_key: str) -> None:
        with self._begin() as conn:
            conn.execute(checkpoints_table.delete().where(checkpoints_table.c.job_key == job_key))

    # ------------------------------------------------------------------ helpers

    def _insert_ignore(
        self,
        conn: sa.Connection,
        table: sa.Table,
        rows: Sequence[dict],
        index: list[str],
        returning: sa.Column | None = None,
    ) -> list[str]:
        if not rows:
            return []
        dialect = conn.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            raise KeyStoreError(f"key store dialect {dialect!r} is not supported (use sqlite or postgresql)")
        statement = insert(table).on_conflict_do_nothing(index_elements=index)
        if returning is None:
            conn.execute(statement, list(rows))
            return []
        return list(conn.execute(statement.returning(returning), list(rows)).scalars())

    def _where(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)


@dataclass
class _HeldTransaction:
    """The one write transaction of a :meth:`KeyStore.batched` block."""

    conn: sa.Connection
    max_seconds: float
    since: float

    def commit(self) -> None:
        self.conn.commit()
        self.conn.begin()
        self.since = time.monotonic()


class _NewKeys:
    """Key rows for missing entities (sorted (digest, window, entity) triples), made a slice at a time.

    Randomness is drawn in bulk: one ``os.urandom`` for the call's keyLinks (UUID version 4), and per
    slice one for the Tink key ids, one for the key bytes and one for the wrapping nonces. The keyLinks
    are handed out in sorted order, like the digests, so each index of the key table is filled front to
    back (the order of two random links says nothing). A PostgreSQL COPY streams the rows as they are
    made (:meth:`copy_stream`): the database inserts one slice while the next is generated.
    """

    def __init__(
        self,
        store: KeyStore,
        group_id: str,
        missing: list[tuple[str, int, tuple[str, int]]],
        window_ms: int,
        policy_id: str | None,
        expires_at: int | None,
    ) -> None:
        self.missing, self.group_id, self.window_ms = missing, group_id, window_ms
        self.policy_id, self.expires_at, self.created_at = policy_id, expires_at, _now_ms()
        self.cipher = store._dek_cipher()
        self.links = _sorted_uuid4_strings(len(missing))
        self.blobs: list[bytes] = []
        #: (entity, key) of each row, as if this call creates it
        self.keys: list[tuple[tuple[str, int], StoredKey]] = []

    def _make(self) -> int:
        """Make the next slice of keys; returns where it starts (== len(missing) when all are made)."""
        start = len(self.keys)
        end = min(start + _SLICE, len(self.missing))
        if start < end:
            links = self.links[start:end]
            keysets = Keyset.generate_many(end - start)
            self.blobs += self.cipher.wrap_many([k.to_secret_bytes() for k in keysets], [x.encode() for x in links])
            p, e = self.policy_id, self.expires_at
            self.keys += [
                (entity, StoredKey(link, keyset, w, p, e, True))
                for (_, w, entity), link, keyset in zip(self.missing[start:end], links, keysets, strict=True)
            ]
        return start

    def rows(self) -> list[tuple]:
        """Every new row, in the key table's column order (:data:`_KEY_COLUMNS`)."""
        while self._make() < len(self.missing):
            pass
        g, w_ms, p, e, now = self.group_id, self.window_ms, self.policy_id, self.expires_at, self.created_at
        return [
            (g, d, w, w + w_ms, link, blob, p, e, now)
            for (d, w, _), link, blob in zip(self.missing, self.links, self.blobs, strict=True)
        ]

    def copy_stream(self, encoding: str) -> _CopyStream:
        """A file-like object for ``COPY .. FROM STDIN (FORMAT binary)`` that makes the rows as they are read.

        ``encoding``: the connection's client encoding (Python codec name), for the group and policy ids.
        """
        return _CopyStream(self, encoding)


class _CopyStream:
    """What psycopg2's ``copy_expert`` reads: PostgreSQL binary COPY data, one slice of new keys per read."""

    _HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
    _TRAILER = b"\xff\xff"

    def __init__(self, keys: _NewKeys, encoding: str) -> None:
        self.keys = keys
        self.head = struct.pack(">h", len(_KEY_COLUMNS)) + _binary_field(keys.group_id, encoding)
        self.tail = b"".join(_binary_field(v, encoding) for v in (keys.policy_id, keys.expires_at, keys.created_at))
        self.state = "header"

    def read(self, size: int = -1) -> bytes:
        keys = self.keys
        if self.state == "done":
            return b""
        start = keys._make()
        if start == len(keys.missing):
            self.state = "done"
            return self._TRAILER
        end = len(keys.keys)
        head, tail, w_ms = self.head, self.tail, keys.window_ms
        blobs = keys.blobs[start:end]
        if len({len(b) for b in blobs}) != 1:  # the fixed-width row below would pad or cut one silently
            raise KeyStoreError("wrapped keysets of different sizes in one COPY slice")
        # a row: field count and group id, digest, window start and end, keyLink, wrapped keyset, the rest
        pack = struct.Struct(f">{len(head)}si64siqiqi36si{len(blobs[0])}s{len(tail)}s").pack
        parts = [self._HEADER] if self.state == "header" else []
        self.state = "rows"
        parts += [
            pack(head, 64, d.encode(), 8, w, 8, w + w_ms, 36, link.encode(), len(blob), blob, tail)
            for (d, w, _), link, blob in zip(keys.missing[start:end], keys.links[start:end], blobs, strict=True)
        ]
        return b"".join(parts)


def _binary_field(value: str | int | None, encoding: str) -> bytes:
    """One field of a binary COPY row: NULL, a bigint or a text value."""
    if value is None:
        return b"\xff\xff\xff\xff"
    if isinstance(value, int):
        return struct.pack(">iq", 8, value)
    data = value.encode(encoding)
    return struct.pack(">i", len(data)) + data


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UUID_DIGITS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])  # where a UUID's hex digits go


def _sorted_uuid4_strings(n: int) -> list[str]:
    """``n`` random UUIDs (version 4, as ``str(uuid.uuid4())``) from one draw of randomness, in sorted order.

    Sorted as 16-byte strings, then written out, all in numpy: the order of their text (hex digits keep byte
    order). ~0.5 µs a UUID against ~1.2 µs for formatting each and sorting the strings.
    """
    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant (10xx): 2 random bits of that digit kept
    raw = raw[np.argsort(raw.view("S16").ravel(), kind="stable")]
    nibbles = np.empty((n, 32), dtype=np.uint8)
    nibbles[:, 0::2], nibbles[:, 1::2] = raw >> 4, raw & 0x0F
    chars = np.full((n, 36), ord("-"), dtype=np.uint8)
    chars[:, _UUID_DIGITS] = _HEX_DIGITS[nibbles]
    text = chars.tobytes().decode("ascii")
    return [text[i : i + 36] for i in range(0, 36 * n, 36)]


class _OpenedKek:
    """The KEK of a store that a parent process already opened: a worker never wraps or unwraps with it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def wrap(self, plaintext: bytes, context: bytes) -> bytes:
        raise KeyStoreError(f"a worker process cannot use the key-encryption key ({self.name})")

    unwrap = wrap


def create_engine(url: str) -> sa.Engine:
    """An engine for a key-store URL; SQLite gets a busy timeout so concurrent writers wait, not fail."""
    if url.startswith("sqlite"):
        # few cached statements: a multi-row INSERT of another size is another statement of ~1 MB
        connect_args = {"timeout": 60, "cached_statements": 8}
        engine = sa.create_engine(url, connect_args=connect_args, hide_parameters=True)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            # statement journals (a multi-row INSERT keeps one) in memory, not ~30k page writes to a temporary
            # file per 64k new keys; durability is the WAL's and the database's, as before
            cur.execute("PRAGMA temp_store=MEMORY")
            cur.close()

        return engine
    # hide_parameters: an error must never print wrapped keys or digests into a log
    return sa.create_engine(url, pool_pre_ping=True, hide_parameters=True)


def _default_actor() -> str:
    import getpass
    import socket

    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except Exception:  # no user name in some containers
        return socket.gethostname()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
