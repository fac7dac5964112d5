"""SeenSet and LruCache: bounded memory bookkeeping for large files."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_strm.core.seen import LruCache, SeenSet


@given(st.lists(st.lists(st.text(max_size=3), max_size=20), max_size=20), st.integers(1, 8))
def test_seen_set_reports_each_item_once_in_first_use_order_whatever_spills(batches, limit) -> None:
    seen = SeenSet(memory_limit=limit)
    reported: list[str] = []
    try:
        for batch in batches:
            reported += seen.first_seen(batch)
    finally:
        everything = [item for batch in batches for item in batch]
        expected = list(dict.fromkeys(everything))
        assert len(seen) == len(expected)
        seen.close()
    assert reported == expected


def test_seen_set_moves_to_disk_past_its_memory_limit() -> None:
    seen = SeenSet(memory_limit=100)
    seen.first_seen(f"k{i}" for i in range(1000))
    assert seen._db is not None and len(seen._memory) <= 100
    assert seen.first_seen(["k5", "k999", "new"]) == ["new"]
    path = seen._path
    seen.close()
    assert path is not None
    import os

    assert not os.path.exists(path)


def test_items_the_caller_knows_are_new_skip_the_disk_but_are_seen_afterwards(monkeypatch) -> None:
    seen = SeenSet(memory_limit=2)
    seen.first_seen(["a", "b", "c", "d"])  # on disk now
    looked_up: list[list[str]] = []
    real = seen._on_disk
    monkeypatch.setattr(seen, "_on_disk", lambda items: looked_up.append(items) or real(items))
    assert seen.first_seen(["new", "a", "new2"], unseen={"new", "new2"}) == ["new", "new2"]
    assert looked_up == [["a"]]
    assert seen.first_seen(["new", "new2", "e"]) == ["e"]
    seen.close()


def test_lru_cache_evicts_the_least_recently_used() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    assert len(cache) == 2
