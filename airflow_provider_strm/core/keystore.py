"""The key store: one key per (group, key-field value, UTC day), kept in SQL.

SQLite is the embedded default, PostgreSQL the deployment choice; both are
reached through SQLAlchemy Core. The store never holds raw identifiers: a
key-field value is stored as a keyed digest (HMAC-SHA256 under a per-store
secret). Keysets are wrapped at rest (AES-256-GCM) with a key-encryption key
(KEK) the caller supplies; the digest secret is wrapped the same way, so a
wrong KEK is detected at open time instead of producing garbage.

Key creation is bulk and race-safe: ``INSERT .. ON CONFLICT DO NOTHING`` then
read back, so N processes asking for the same key at once all get the one
that won.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from airflow_provider_strm.core.crypto import Keyset
from airflow_provider_strm.core.errors import JobStartError, KeyStoreError

SCHEMA_VERSION = 1
_WRAP_VERSION = b"\x01"
_BATCH = 400  # entities per SELECT / INSERT statement: below SQLite's variable limit

metadata = sa.MetaData()

schema_table = sa.Table(
    "strm_schema",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

keys_table = sa.Table(
    "strm_keys",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("group_id", sa.String(64), nullable=False),
    sa.Column("key_digest", sa.String(64), nullable=False),
    sa.Column("window_start", sa.BigInteger, nullable=False),
    sa.Column("window_end", sa.BigInteger, nullable=False),
    sa.Column("key_link", sa.String(36), nullable=False, unique=True),
    sa.Column("wrapped_keyset", sa.LargeBinary, nullable=False),
    sa.Column("policy_id", sa.String(64)),
    sa.Column("expires_at", sa.BigInteger),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("group_id", "key_digest", "window_start", name="uq_strm_keys_entity_window"),
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


def parse_kek(value: str | bytes) -> bytes:
    """A KEK given as base64 (or raw bytes): exactly 32 bytes."""
    if isinstance(value, bytes) and len(value) == 32:
        return value
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KeyStoreError("the key-encryption key must be 32 bytes, base64-encoded") from None
    if len(raw) != 32:
        raise KeyStoreError(f"the key-encryption key must be 32 bytes, got {len(raw)}")
    return raw


def new_kek() -> str:
    """A fresh random KEK, base64, for a connection's ``kek_secret``."""
    return base64.b64encode(os.urandom(32)).decode()


@dataclass(frozen=True)
class StoredKey:
    """A data key as the engine sees it. ``keyset`` is secret: never log or return it."""

    key_link: str
    keyset: Keyset
    window_start: int
    policy_id: str | None
    expires_at: int | None
    created: bool = False

    def __repr__(self) -> str:  # keep key material out of logs and tracebacks
        return f"StoredKey(key_link={self.key_link!r}, window_start={self.window_start})"


class KeyStore:
    """Keys and job records of one SQL database."""

    def __init__(self, engine: sa.Engine | str, kek: str | bytes) -> None:
        if isinstance(engine, str):
            engine = create_engine(engine)
        self.engine = engine
        self._aead = AESGCM(parse_kek(kek))
        self._digest_secret: bytes | None = None

    # ------------------------------------------------------------------ schema

    def ensure_schema(self) -> None:
        """Create the tables (idempotent, safe across processes) and check the schema version."""
        try:
            with self.engine.begin() as conn:
                metadata.create_all(conn, checkfirst=True)
        except sa.exc.OperationalError as exc:
            raise JobStartError(f"key store {self._where()} is not reachable: {_short(exc)}") from None
        except sa.exc.IntegrityError:
            pass  # another process created the same tables at the same moment
        with self.engine.begin() as conn:
            self._insert_ignore(conn, schema_table, [{"name": "version", "value": str(SCHEMA_VERSION)}], ["name"])
            secret = os.urandom(32)
            wrapped = base64.b64encode(self._wrap(secret, b"digest-secret")).decode()
            self._insert_ignore(conn, schema_table, [{"name": "digest_secret", "value": wrapped}], ["name"])
            rows = dict(conn.execute(sa.select(schema_table.c.name, schema_table.c.value)).all())
        version = int(rows["version"])
        if version > SCHEMA_VERSION:
            raise KeyStoreError(
                f"key store schema version {version} is newer than this provider understands ({SCHEMA_VERSION})"
            )
        try:
            self._digest_secret = self._unwrap(base64.b64decode(rows["digest_secret"]), b"digest-secret")
        except KeyStoreError:
            raise KeyStoreError(
                f"the key-encryption key does not open key store {self._where()}: wrong KEK for this store"
            ) from None

    def check(self) -> None:
        """Raise :class:`JobStartError` if the database cannot be reached."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            raise JobStartError(f"key store {self._where()} is not reachable: {_short(exc)}") from None

    # ------------------------------------------------------------------ keys

    def digest(self, group_id: str, value: str) -> str:
        """The keyed digest stored instead of a key-field value."""
        if self._digest_secret is None:
            self.ensure_schema()
        assert self._digest_secret is not None
        return hmac.new(self._digest_secret, f"{group_id}\x00{value}".encode(), hashlib.sha256).hexdigest()

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
        """
        wanted = {(v, w): self.digest(group_id, v) for v, w in set(entities)}
        found = self._select(group_id, wanted)
        missing = [e for e in wanted if e not in found]
        created: set[str] = set()
        if missing:
            now = _now_ms()
            rows = []
            for value, window in missing:
                link = str(uuid.uuid4())
                keyset = Keyset.generate()
                rows.append(
                    {
                        "group_id": group_id,
                        "key_digest": wanted[(value, window)],
                        "window_start": window,
                        "window_end": window + window_ms,
                        "key_link": link,
                        "wrapped_keyset": self._wrap(keyset.to_tink_json().encode(), link.encode()),
                        "policy_id": policy_id,
                        "expires_at": expires_at,
                        "created_at": now,
                    }
                )
                created.add(link)
            # One order for every process (no lock-order deadlocks) and one short transaction per batch.
            rows.sort(key=lambda r: (r["key_digest"], r["window_start"]))
            for i in range(0, len(rows), _BATCH):
                self._insert_batch(rows[i : i + _BATCH])
            found.update(self._select(group_id, {e: wanted[e] for e in missing}, created))
        return found

    def _insert_batch(self, rows: list[dict[str, object]]) -> None:
        for attempt in range(5):
            try:
                with self.engine.begin() as conn:
                    self._insert_ignore(conn, keys_table, rows, ["group_id", "key_digest", "window_start"])
                return
            except sa.exc.OperationalError as exc:
                # PostgreSQL may still pick a deadlock victim under heavy contention; the insert is idempotent.
                if "deadlock" not in str(exc).lower() or attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def keys_by_link(self, key_links: Iterable[str]) -> dict[str, StoredKey]:
        """The keys named by ``key_links`` that exist (unknown or forgotten links are absent)."""
        links = sorted(set(key_links))
        out: dict[str, StoredKey] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(links), _BATCH):
                part = links[i : i + _BATCH]
                for row in conn.execute(sa.select(keys_table).where(keys_table.c.key_link.in_(part))):
                    out[row.key_link] = self._stored(row, False)
        return out

    def count_keys(self, group_id: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(keys_table)
        if group_id is not None:
            query = query.where(keys_table.c.group_id == group_id)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def _select(
        self, group_id: str, wanted: dict[tuple[str, int], str], created: set[str] | None = None
    ) -> dict[tuple[str, int], StoredKey]:
        by_digest_window = {(d, w): (v, w) for (v, w), d in wanted.items()}
        digests = sorted({d for d in wanted.values()})
        out: dict[tuple[str, int], StoredKey] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(digests), _BATCH):
                part = digests[i : i + _BATCH]
                query = sa.select(keys_table).where(
                    keys_table.c.group_id == group_id, keys_table.c.key_digest.in_(part)
                )
                for row in conn.execute(query):
                    entity = by_digest_window.get((row.key_digest, row.window_start))
                    if entity is not None:
                        out[entity] = self._stored(row, created is not None and row.key_link in created)
        return out

    def _stored(self, row: sa.Row, created: bool) -> StoredKey:
        keyset = Keyset.from_tink_json(self._unwrap(row.wrapped_keyset, row.key_link.encode()).decode())
        return StoredKey(row.key_link, keyset, row.window_start, row.policy_id, row.expires_at, created)

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
        with self.engine.begin() as conn:
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
        with self.engine.begin() as conn:
            conn.execute(jobs_table.update().where(jobs_table.c.job_id == job_id).values(**values))
            conn.execute(job_states_table.insert().values(job_id=job_id, state_time=now, state=state, message=message))

    def job(self, job_id: str) -> dict[str, object] | None:
        """A job record with its state history (oldest first), or None."""
        with self.engine.connect() as conn:
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

    # ------------------------------------------------------------------ helpers

    def _wrap(self, plaintext: bytes, bound_to: bytes) -> bytes:
        nonce = os.urandom(12)
        return _WRAP_VERSION + nonce + self._aead.encrypt(nonce, plaintext, bound_to)

    def _unwrap(self, blob: bytes, bound_to: bytes) -> bytes:
        if not blob or blob[:1] != _WRAP_VERSION:
            raise KeyStoreError("a wrapped key has an unknown format")
        try:
            return self._aead.decrypt(blob[1:13], blob[13:], bound_to)
        except InvalidTag:
            raise KeyStoreError("a wrapped key does not open with this key-encryption key") from None

    def _insert_ignore(self, conn: sa.Connection, table: sa.Table, rows: Sequence[dict], index: list[str]) -> None:
        if not rows:
            return
        dialect = conn.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            raise KeyStoreError(f"key store dialect {dialect!r} is not supported (use sqlite or postgresql)")
        conn.execute(insert(table).on_conflict_do_nothing(index_elements=index), list(rows))

    def _where(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)


def create_engine(url: str) -> sa.Engine:
    """An engine for a key-store URL; SQLite gets a busy timeout so concurrent writers wait, not fail."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
