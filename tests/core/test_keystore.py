"""The key store: one key per (group, value, window), wrapped at rest, race-safe across processes."""

from __future__ import annotations

import base64
import multiprocessing as mp

import pytest
import sqlalchemy as sa

from airflow_provider_strm.core.errors import KeyStoreError
from airflow_provider_strm.core.keystore import KeyStore, keys_table, new_kek

DAY = 86_400_000


@pytest.fixture
def sqlite_store(tmp_path) -> KeyStore:
    store = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}", new_kek())
    store.ensure_schema()
    return store


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


def _race_worker(url: str, kek: str, entities: list[tuple[str, int]], barrier, queue) -> None:  # type: ignore[no-untyped-def]
    store = KeyStore(url, kek)
    store.ensure_schema()
    barrier.wait()
    keys = store.get_or_create("race", entities)
    queue.put({f"{v}|{w}": (k.key_link, k.keyset.to_tink_json()) for (v, w), k in keys.items()})


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_four_processes_creating_overlapping_keys_at_once_get_one_key_each(backend, request, tmp_path) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 'race.db'}"
    kek = new_kek()
    KeyStore(url, kek).ensure_schema()
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(4), ctx.Queue()
    # each process asks for 3000 entities; neighbours overlap by half, all share the first 500
    sets = [
        [(f"v{i}", (i % 3) * DAY) for i in list(range(500)) + list(range(p * 1500, p * 1500 + 3000))] for p in range(4)
    ]
    procs = [ctx.Process(target=_race_worker, args=(url, kek, s, barrier, queue)) for s in sets]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    merged: dict[str, tuple[str, str]] = {}
    for result in results:
        for entity, key in result.items():
            assert merged.setdefault(entity, key) == key, f"two keys for {entity}"
    expected = {f"{v}|{w}" for s in sets for v, w in s}
    assert set(merged) == expected
    assert KeyStore(url, kek).count_keys("race") == len(expected)


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
