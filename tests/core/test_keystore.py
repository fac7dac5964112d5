"""The key store: one key per (group, value, window), wrapped at rest, race-safe across processes."""

from __future__ import annotations

import base64
import gc
import hashlib
import hmac
import multiprocessing as mp
import os
import uuid

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_strm.core import keystore as keystore_module
from airflow_provider_strm.core import masking as masking_module
from airflow_provider_strm.core.crypto import Keyset
from airflow_provider_strm.core.errors import KeyStoreError
from airflow_provider_strm.core.kek import AeadKey
from airflow_provider_strm.core.keystore import KeyStore, _sorted_uuid4_strings, keys_table, new_kek
from airflow_provider_strm.core.masking import hmac_sha256_masker

DAY = 86_400_000


@pytest.fixture
def sqlite_store(tmp_path) -> KeyStore:
    store = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}", new_kek())
    store.ensure_schema()
    return store


def test_sqlite_connections_write_ahead_and_keep_statement_journals_in_memory(sqlite_store: KeyStore) -> None:
    # a multi-row INSERT of new keys (which may fail on a key-link clash) keeps a statement journal: on a
    # temporary file, that was ~30k 4 KB writes for 64k keys; in memory it is a few MB for one statement
    with sqlite_store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA temp_store").scalar() == 2  # MEMORY
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def _subject_table_sql(url: str) -> str:
    with sa.create_engine(url).connect() as conn:
        return conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'strm_subject_keys'").scalar()


@pytest.mark.parametrize("made_before", [False, True], ids=["new store", "store made before (rowid table)"])
def test_subject_links_of_a_new_sqlite_store_are_one_btree_and_an_older_store_works_alike(
    tmp_path, made_before: bool
) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    if made_before:  # the table as stores made before it had no rowid were created
        with sa.create_engine(url).begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE strm_subject_keys (group_id VARCHAR(64) NOT NULL, subject_digest VARCHAR(64) NOT NULL, "
                "key_link VARCHAR(36) NOT NULL, PRIMARY KEY (group_id, subject_digest, key_link))"
            )
    store = KeyStore(url, new_kek())
    store.ensure_schema()
    assert ("WITHOUT ROWID" in _subject_table_sql(url)) is not made_before
    keys = store.get_or_create("g", [("a", 0), ("b", 0), ("c", 0)])
    links = {e: k.key_link for e, k in keys.items()}
    store.link_subjects("g", [("alice", links[("a", 0)]), ("alice", links[("b", 0)]), ("bob", links[("c", 0)])])
    store.link_subjects("g", [("alice", links[("a", 0)])])  # again: no error, no second row
    assert store.forget_subjects("g", ["alice"]) == {"subjects": 1, "keys_deleted": 2}
    assert set(store.keys_by_link(links.values())) == {links[("c", 0)]}
    assert store.removed(links.values()) == {links[("a", 0)]: "forgotten", links[("b", 0)]: "forgotten"}


@pytest.mark.parametrize(
    "group", ["6f1c2a9e-3b7d-4c55-9a0e-1d2b3c4d5e6f", "g", "o'brien'); DROP TABLE strm_keys; --", "grüppe", "x" * 65]
)
def test_subject_links_are_stored_under_any_group_id(sqlite_store: KeyStore, group: str) -> None:
    # SQLite writes a plain group id (a config's UUID) into the statement, any other one as a bound value
    keys = sqlite_store.get_or_create(group, [("a", 0), ("b", 0)])
    links = sorted(k.key_link for k in keys.values())
    digest = sqlite_store.subject_digester(group)
    pairs = {(digest("alice"), links[0]), (digest("alice"), links[1]), (digest("bob"), links[1])}
    sqlite_store.link_subject_digests(group, pairs)
    sqlite_store.link_subject_digests(group, list(pairs))  # again, as a list: no second row
    with sqlite_store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT group_id, subject_digest, key_link FROM strm_subject_keys").all()
    assert sorted(rows) == sorted((group, d, link) for d, link in pairs)
    assert sqlite_store.count_keys(group) == 2  # the key table is there
    assert sqlite_store.forget_subjects(group, ["bob"]) == {"subjects": 1, "keys_deleted": 1}


def test_the_same_entity_and_window_gets_the_same_key(sqlite_store: KeyStore) -> None:
    first = sqlite_store.get_or_create("g", [("alice", 0), ("bob", 0), ("alice", DAY)])
    again = sqlite_store.get_or_create("g", [("alice", 0), ("carol", 0)])
    assert again[("alice", 0)].key_link == first[("alice", 0)].key_link
    assert again[("alice", 0)].keyset == first[("alice", 0)].keyset
    assert not again[("alice", 0)].created and again[("carol", 0)].created
    assert first[("alice", 0)].key_link != first[("alice", DAY)].key_link
    assert sqlite_store.count_keys("g") == 4


def test_groups_do_not_share_keys(sqlite_store: KeyStore) -> None:
    a = sqlite_store.get_or_create("g1", [("alice", 0)])[("alice", 0)]
    b = sqlite_store.get_or_create("g2", [("alice", 0)])[("alice", 0)]
    assert a.key_link != b.key_link and a.keyset != b.keyset


def test_an_empty_key_value_is_an_entity_like_any_other(sqlite_store: KeyStore) -> None:
    keys = sqlite_store.get_or_create("g", [("", 0), ("", 0), ("", DAY)])
    assert len(keys) == 2 and sqlite_store.count_keys() == 2


def test_keys_are_found_by_key_link(sqlite_store: KeyStore) -> None:
    stored = sqlite_store.get_or_create("g", [("alice", 0)])[("alice", 0)]
    found = sqlite_store.keys_by_link([stored.key_link, "00000000-0000-0000-0000-000000000000"])
    assert list(found) == [stored.key_link]
    assert found[stored.key_link].keyset == stored.keyset


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_keysets_by_link_are_the_keysets_of_keys_by_link(tmp_path, backend, request) -> None:
    # SQLite reads them on the driver's connection (a derive job's hot path), PostgreSQL through keys_by_link
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 'k.db'}"
    store = KeyStore(url, new_kek())
    store.ensure_schema()
    created = store.get_or_create("g", [(f"v{i}", DAY * (i % 3)) for i in range(2_500)])  # > one SELECT batch
    links = [k.key_link for k in created.values()]
    unknown = "00000000-0000-0000-0000-000000000000"
    found = store.keysets_by_link([*links, unknown, links[0]])
    assert found == {k.key_link: k.keyset for k in created.values()}
    assert found == {link: k.keyset for link, k in store.keys_by_link(links).items()}
    assert store.keysets_by_link([]) == {}


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(group=st.text(max_size=20), value=st.text(max_size=40))
def test_digests_are_the_hmac_of_group_kind_and_value(sqlite_store: KeyStore, group: str, value: str) -> None:
    # what existing key stores hold: the bulk paths (a digester per call) must give exactly these
    secret = sqlite_store._digest_secret or (sqlite_store.ensure_schema() or sqlite_store._digest_secret)
    assert secret is not None
    key = hmac.new(secret, f"{group}\x00{value}".encode(), hashlib.sha256).hexdigest()
    subject = hmac.new(secret, f"{group}\x00subject\x00{value}".encode(), hashlib.sha256).hexdigest()
    assert sqlite_store.digest(group, value) == key
    assert sqlite_store.digest(group, value, "subject") == subject
    assert sqlite_store._key_digests(group, [(value, 0), (value, DAY)]) == {(value, 0): key, (value, DAY): key}


def test_digests_are_the_same_where_hmac_falls_back_to_its_python_hmac(sqlite_store: KeyStore, monkeypatch) -> None:
    # a digest module hmac cannot hand to OpenSSL (here a plain callable) makes hmac.HMAC compute in Python
    expected = sqlite_store.digest("g", "alice"), sqlite_store.digest("g", "alice", "subject")
    masked = hmac_sha256_masker(b"k" * 32)("alice")
    real = masking_module.hmac.new
    monkeypatch.setattr(masking_module.hmac, "new", lambda key, msg, _: real(key, msg, lambda *a: hashlib.sha256(*a)))
    assert masking_module.hmac.new(b"k", b"", None)._hmac is None  # the fallback is taken
    assert (sqlite_store.digest("g", "alice"), sqlite_store.digest("g", "alice", "subject")) == expected
    assert hmac_sha256_masker(b"k" * 32)("alice") == masked


def test_neither_raw_key_bytes_nor_raw_values_are_stored(sqlite_store: KeyStore) -> None:
    keys = sqlite_store.get_or_create("g", [("alice@example.com", 0)])
    key_bytes = keys[("alice@example.com", 0)].keyset.key_bytes
    needles = [key_bytes, base64.b64encode(key_bytes), b"alice@example.com"]
    with sqlite_store.engine.connect() as conn:
        for table in (keys_table,):
            for row in conn.execute(sa.select(table)):
                for value in row:
                    blob = value if isinstance(value, bytes) else str(value).encode()
                    assert not any(n in blob for n in needles)


def test_a_wrong_kek_is_a_clear_error_not_garbage(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    KeyStore(url, new_kek()).ensure_schema()
    with pytest.raises(KeyStoreError, match="wrong KEK"):
        KeyStore(url, new_kek()).ensure_schema()


def test_a_kek_must_be_32_bytes_of_base64() -> None:
    with pytest.raises(KeyStoreError, match="32 bytes"):
        KeyStore("sqlite://", base64.b64encode(b"short").decode())


def test_job_records_keep_the_state_history(sqlite_store: KeyStore) -> None:
    job = sqlite_store.create_job(group_id="g", kind="encrypt", file="a.csv", context={"dag_id": "d", "map_index": 3})
    sqlite_store.set_job_state(job, "STARTED")
    sqlite_store.set_job_state(job, "FINISHED", "Processed 1 records in 0 s. which is 1 records/s.", {"rows_in": 1})
    record = sqlite_store.job(job)
    assert record is not None
    assert [s["state"] for s in record["states"]] == ["PENDING", "STARTED", "FINISHED"]
    assert record["state"] == "FINISHED" and record["map_index"] == 3 and record["counters"] == {"rows_in": 1}


def _race_worker(url: str, kek: str, entities: list[tuple[str, int]], warm_up: bool, barrier, queue) -> None:  # type: ignore[no-untyped-def]
    store = KeyStore(url, kek)
    store.ensure_schema()
    if warm_up:  # a call that creates all its keys: the next one inserts without looking up first
        store.get_or_create("race", [(f"own-{uuid.uuid4()}", 0)])
    barrier.wait()
    keys = store.get_or_create("race", entities)
    queue.put({f"{v}|{w}": (k.key_link, k.keyset.to_tink_json(), k.created) for (v, w), k in keys.items()})


@pytest.mark.parametrize("warm_up", [False, True], ids=["look-up-first", "insert-first"])
@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_four_processes_creating_overlapping_keys_at_once_get_one_key_each(backend, warm_up, request, tmp_path) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 'race.db'}"
    kek = new_kek()
    KeyStore(url, kek).ensure_schema()
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(4), ctx.Queue()
    # each process asks for 3000 entities; neighbours overlap by half, all share the first 500
    sets = [
        [(f"v{i}", (i % 3) * DAY) for i in list(range(500)) + list(range(p * 1500, p * 1500 + 3000))] for p in range(4)
    ]
    procs = [ctx.Process(target=_race_worker, args=(url, kek, s, warm_up, barrier, queue)) for s in sets]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    merged: dict[str, tuple[str, str]] = {}
    creators: dict[str, int] = {}
    for result in results:
        for entity, (link, keyset, created) in result.items():
            assert merged.setdefault(entity, (link, keyset)) == (link, keyset), f"two keys for {entity}"
            creators[entity] = creators.get(entity, 0) + created
    expected = {f"{v}|{w}" for s in sets for v, w in s}
    assert set(merged) == expected
    assert set(creators.values()) == {1}, "each key is reported created by exactly one process"
    assert KeyStore(url, kek).count_keys("race") == len(expected) + (4 if warm_up else 0)


@pytest.mark.parametrize("raw_inserts", [True, False])
def test_both_insert_paths_create_each_missing_key_once(sqlite_store: KeyStore, raw_inserts: bool) -> None:
    sqlite_store.raw_inserts = raw_inserts
    first = sqlite_store.get_or_create("g", {(f"v{i}", 0) for i in range(5000)})
    second = sqlite_store.get_or_create("g", {(f"v{i}", 0) for i in range(4000, 9000)})
    assert all(k.created for k in first.values()) and len(first) == 5000
    assert sum(k.created for k in second.values()) == 4000
    assert all(second[(f"v{i}", 0)].key_link == first[(f"v{i}", 0)].key_link for i in range(4000, 5000))
    assert sqlite_store.count_keys("g") == 9000
    # what a fresh read of the store gives is what the creating call returned
    again = sqlite_store.keys_by_link([k.key_link for k in second.values()])
    assert all(again[k.key_link].keyset == k.keyset for k in second.values())


def test_a_call_larger_than_one_round_gives_every_entity_its_one_key(sqlite_store: KeyStore, monkeypatch) -> None:
    monkeypatch.setattr(keystore_module, "_CALL_BATCH", 700)  # rounds of 700 entities
    existing = sqlite_store.get_or_create("g", [(f"v{i}", 0) for i in range(500)])
    entities = [(f"v{i}", 0) for i in range(2_000)] + [("v3", 0), ("v600", 0)]  # repeated in the last round
    keys = sqlite_store.get_or_create("g", iter(entities))
    assert set(keys) == set(entities) and sqlite_store.count_keys("g") == 2_000
    assert {e for e, k in keys.items() if not k.created} == set(existing)  # v600 was made by this call
    assert all(keys[e].key_link == k.key_link for e, k in existing.items())
    assert keys[("v600", 0)].key_link == sqlite_store.get_or_create("g", [("v600", 0)])[("v600", 0)].key_link


@pytest.mark.parametrize("windows", [4, 2_100])  # beyond 2000 distinct windows, they are filtered here, not in SQL
def test_both_look_up_paths_find_exactly_the_stored_keys_of_the_wanted_windows(sqlite_store: KeyStore, windows) -> None:
    made = sqlite_store.get_or_create("g", {(f"v{i}", DAY * (i % windows)) for i in range(3_000)})
    made.update(sqlite_store.get_or_create("g", {(f"v{i}", -DAY) for i in range(100)}))  # windows not wanted
    wanted = {(f"v{i}", DAY * (i % windows)) for i in range(0, 3_000, 2)} | {("v1", -DAY), ("new", 0), ("v2", -DAY)}
    digests = sqlite_store._key_digests("g", wanted)
    found = {}
    for raw in (True, False):
        sqlite_store.raw_inserts = raw
        found[raw] = sqlite_store._select("g", digests)
    assert found[True] == found[False]
    assert set(found[True]) == wanted - {("new", 0)}
    assert all(found[True][e] == made[e]._replace(created=False) for e in found[True])


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_a_call_that_inserts_without_looking_up_returns_keys_another_store_made(backend, request, tmp_path) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 'keys.db'}"
    kek = new_kek()
    mine, other = KeyStore(url, kek), KeyStore(url, kek)
    assert all(k.created for k in mine.get_or_create("g", {(f"a{i}", 0) for i in range(300)}).values())
    theirs = other.get_or_create("g", {(f"b{i}", 0) for i in range(200)})
    # mine found nothing stored last time, so it inserts first: 200 of these 500 exist already
    keys = mine.get_or_create("g", {(f"b{i}", 0) for i in range(500)})
    assert {e for e, k in keys.items() if k.created} == {(f"b{i}", 0) for i in range(200, 500)}
    assert all(keys[e].key_link == k.key_link and keys[e].keyset == k.keyset for e, k in theirs.items())
    assert mine.count_keys("g") == 800
    # now it looks up first again, and finds what it made
    again = mine.get_or_create("g", [("a1", 0), ("b450", 0), ("c", 0)])
    assert [again[e].created for e in [("a1", 0), ("b450", 0), ("c", 0)]] == [False, False, True]
    assert again[("b450", 0)].keyset == keys[("b450", 0)].keyset


def test_postgresql_rows_hold_what_the_creating_call_returned(pg_url: str) -> None:
    store = KeyStore(pg_url, new_kek())
    group, policy = "gr\toup\t\\ é", "pol\nicy"  # tab, newline, backslash, non-ASCII survive
    keys = store.get_or_create(group, {(f"v{i}", 3 * DAY) for i in range(2500)}, policy_id=policy, expires_at=9 * DAY)
    assert len(keys) == 2500 and all(k.created for k in keys.values())
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(keys_table)).all()
    assert len(rows) == 2500
    assert {(r.group_id, r.window_start, r.window_end, r.policy_id, r.expires_at) for r in rows} == {
        (group, 3 * DAY, 4 * DAY, policy, 9 * DAY)
    }
    assert {r.key_digest for r in rows} == {store.digest(group, v) for v, _ in keys}
    stored = store.keys_by_link(k.key_link for k in keys.values())
    assert all(stored[k.key_link].keyset == k.keyset for k in keys.values())
    assert all((k.policy_id, k.expires_at, k.window_start) == (policy, 9 * DAY, 3 * DAY) for k in keys.values())
    # and a look-up returns the same keys, not created
    again = KeyStore(pg_url, store.kek).get_or_create(group, list(keys)[:100], policy_id=policy)
    assert all(not k.created and k.keyset == keys[e].keyset for e, k in again.items())


_ASCII_COLUMNS = [
    ("strm_keys", "group_id"),
    ("strm_keys", "key_digest"),
    ("strm_keys", "key_link"),
    ("strm_subject_keys", "group_id"),
    ("strm_subject_keys", "subject_digest"),
    ("strm_subject_keys", "key_link"),
    ("strm_key_tombstones", "key_link"),
    ("strm_key_tombstones", "group_id"),
]


@pytest.mark.parametrize("made_before", [False, True], ids=["new store", "store made before (database collation)"])
def test_postgresql_identifier_columns_compare_bytes_and_an_older_store_works_alike(
    pg_url: str, made_before: bool
) -> None:
    store = KeyStore(pg_url, new_kek())
    store.ensure_schema()
    with store.engine.begin() as conn:
        if made_before:  # the columns as stores made before had them
            for table, column in _ASCII_COLUMNS:
                kind = f'VARCHAR({36 if "link" in column else 64}) COLLATE "default"'
                conn.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {kind}")
        collations = conn.exec_driver_sql(
            "SELECT table_name, column_name, collation_name FROM information_schema.columns "
            "WHERE table_name IN ('strm_keys', 'strm_subject_keys', 'strm_key_tombstones') "
            "AND collation_name IS NOT NULL"
        ).all()
    by_column = {(t, c): name for t, c, name in collations}
    assert all((by_column.get(col) == "C") is not made_before for col in _ASCII_COLUMNS), by_column
    keys = store.get_or_create("g", [(f"v{i}", DAY * (i % 2)) for i in range(3000)])
    links = sorted(k.key_link for k in keys.values())
    assert all(not k.created for k in store.get_or_create("g", list(keys)[:50]).values())
    store.link_subjects("g", [("alice", links[0]), ("alice", links[1]), ("bob", links[2])])
    assert store.forget_subjects("g", ["alice"]) == {"subjects": 1, "keys_deleted": 2}
    assert store.removed(links[:3]) == {links[0]: "forgotten", links[1]: "forgotten"}
    window = {k.key_link: k.window_start for k in keys.values()}
    exported = [k.key_link for k in store.export_keys("g")]
    assert exported == sorted(links[2:], key=lambda link: (window[link], link))  # oldest first, then byte order


def test_new_key_links_are_random_version_4_uuids_in_sorted_order() -> None:
    links = _sorted_uuid4_strings(5000)
    assert len(set(links)) == 5000 and links == sorted(links)
    assert _sorted_uuid4_strings(0) == [] and len(_sorted_uuid4_strings(1)) == 1
    for link in links:
        parsed = uuid.UUID(link)
        assert str(parsed) == link and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # the random bits are all used: every hex digit position but the version takes several values
    assert all(len({link[i] for link in links}) > 1 for i in range(36) if i not in (8, 13, 14, 18, 23))


def test_new_keysets_have_tink_key_ids_and_64_random_bytes() -> None:
    keysets = Keyset.generate_many(5000)
    assert all(0 < k.key_id < 2**31 and len(k.key_bytes) == 64 for k in keysets)
    assert len({k.key_bytes for k in keysets}) == 5000 and len({k.key_id for k in keysets}) > 4990
    assert max(k.key_id for k in keysets) > 2**30  # the top bit that is kept is random


def test_keys_wrapped_in_bulk_open_only_under_their_own_key_link() -> None:
    cipher = AeadKey(os.urandom(32))
    secrets_, links = [os.urandom(68) for _ in range(50)], [str(uuid.uuid4()).encode() for _ in range(50)]
    blobs = cipher.wrap_many(secrets_, links)
    assert [cipher.unwrap(b, link) for b, link in zip(blobs, links, strict=True)] == secrets_
    assert len({b[1:13] for b in blobs}) == 50  # a fresh nonce each
    with pytest.raises(KeyStoreError, match="does not open"):
        cipher.unwrap(blobs[0], links[1])


def test_a_key_call_leaves_the_garbage_collector_as_it_found_it(sqlite_store: KeyStore) -> None:
    assert gc.isenabled()
    sqlite_store.get_or_create("g", [("a", 0)])
    assert gc.isenabled()
    gc.disable()
    try:
        sqlite_store.get_or_create("g", [("b", 0)])
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(TypeError):
        sqlite_store.get_or_create("g", [("c", "day one")])  # type: ignore[list-item]  # fails mid-call
    assert gc.isenabled()


def test_postgresql_look_ups_tell_windows_of_one_value_apart(pg_url: str) -> None:
    store = KeyStore(pg_url, new_kek())
    first = store.get_or_create("g", [(v, w * DAY) for v in ("alice", "bob") for w in range(3)])
    store.get_or_create("other", [("alice", 0)])
    again = store.get_or_create("g", [("alice", DAY), ("bob", 2 * DAY), ("alice", 3 * DAY)])
    assert not again[("alice", DAY)].created and not again[("bob", 2 * DAY)].created
    assert again[("alice", DAY)].keyset == first[("alice", DAY)].keyset
    assert again[("bob", 2 * DAY)].key_link == first[("bob", 2 * DAY)].key_link
    assert again[("alice", 3 * DAY)].created and store.count_keys("g") == 7
    # (that call inserted first, the store having just made only new keys; this one looks up first)
    thrice = store.get_or_create("g", list(again))
    assert {e: (k.key_link, k.created) for e, k in thrice.items()} == {e: (k.key_link, False) for e, k in again.items()}


def test_a_batch_shares_one_transaction_that_others_see_when_it_ends(sqlite_store: KeyStore, tmp_path) -> None:
    other = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}", sqlite_store.kek)
    with sqlite_store.batched(max_seconds=3600):
        first = sqlite_store.get_or_create("g", [("alice", 0), ("bob", 0)])
        sqlite_store.link_subjects("g", [("subject-1", first[("alice", 0)].key_link)])
        again = sqlite_store.get_or_create("g", [("alice", 0)])  # this store sees its own uncommitted keys
        assert again[("alice", 0)].key_link == first[("alice", 0)].key_link and not again[("alice", 0)].created
        assert sqlite_store.keys_by_link([first[("bob", 0)].key_link])
        assert other.count_keys() == 0  # not committed yet
    assert other.count_keys() == 2
    assert other.forget_subjects("g", ["subject-1"])["keys_deleted"] == 1  # the subject link was committed too


def test_a_batch_that_fails_keeps_no_key_but_keeps_job_states_and_what_was_committed(sqlite_store: KeyStore) -> None:
    job_id = sqlite_store.create_job(group_id="g", kind="encrypt", file="f.csv")
    with pytest.raises(RuntimeError), sqlite_store.batched(max_seconds=3600):
        sqlite_store.get_or_create("g", [("alice", 0)])
        sqlite_store.commit()  # e.g. before a checkpoint: from here on these keys are kept
        sqlite_store.get_or_create("g", [("bob", 0)])
        sqlite_store.set_job_state(job_id, "RUNNING", "half way")  # committed at once, with bob's key
        sqlite_store.get_or_create("g", [("carol", 0)])
        raise RuntimeError("the job failed")
    assert sqlite_store.count_keys() == 2  # alice and bob; carol's key was rolled back
    assert [s["state"] for s in sqlite_store.job(job_id)["states"]] == ["PENDING", "RUNNING"]  # type: ignore[index]


def test_a_batch_commits_once_its_time_is_up(sqlite_store: KeyStore, tmp_path) -> None:
    other = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}", sqlite_store.kek)
    with sqlite_store.batched(max_seconds=0):
        sqlite_store.get_or_create("g", [("alice", 0)])
        assert other.count_keys() == 1  # another process's writer waits at most max_seconds (plus a chunk)


def test_a_batch_changes_nothing_on_postgresql(pg_url: str) -> None:
    store = KeyStore(pg_url, new_kek())
    store.ensure_schema()
    other = KeyStore(pg_url, store.kek)
    group = f"g-{uuid.uuid4()}"
    with store.batched(max_seconds=3600):
        store.get_or_create(group, [("alice", 0)])
        assert other.count_keys(group) == 1  # committed per call: concurrent tasks on PostgreSQL never wait


def _open_new_store(url: str, kek: str, barrier, queue) -> None:  # type: ignore[no-untyped-def]
    barrier.wait()
    try:
        store = KeyStore(url, kek)
        store.ensure_schema()
        queue.put(("ok", store.digest("g", "alice")))
    except Exception as exc:  # reported to the test, which names it
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_processes_opening_a_new_store_at_the_same_moment_all_open_it(backend, request, tmp_path) -> None:
    """The first tasks of a new deployment (say a scheduled and a manual run's sensors) create its tables at once:
    every one opens the store, and all get the same store (one DEK and digest secret)."""
    ctx = mp.get_context("spawn")
    kek = new_kek()
    for attempt in range(4):  # a new store each time: a fresh SQLite file, an emptied PostgreSQL database
        if backend == "postgresql":
            url = request.getfixturevalue("pg_url")
            engine = sa.create_engine(url)
            with engine.begin() as conn:
                conn.execute(sa.text("DROP SCHEMA public CASCADE"))
                conn.execute(sa.text("CREATE SCHEMA public"))
            engine.dispose()
        else:
            url = f"sqlite:///{tmp_path / f'{attempt}.db'}"
        barrier, queue = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open_new_store, args=(url, kek, barrier, queue)) for _ in range(4)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert [status for status, _ in results] == ["ok"] * 4, results
        assert len({digest for _, digest in results}) == 1
