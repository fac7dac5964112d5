"""Shared memory between a job's process and its workers: real POSIX shared memory (/dev/shm)."""

from __future__ import annotations

import csv
import errno
import logging
import os
import resource
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

from airflow_provider_strm.core import shared
from airflow_provider_strm.core.config import BatchJobConfig, load_batch_job_config
from airflow_provider_strm.core.contract import DataContract, load_data_contract
from airflow_provider_strm.core.derive import DeriveJob
from airflow_provider_strm.core.encrypt import EncryptJob
from airflow_provider_strm.core.errors import RecordError
from airflow_provider_strm.core.kek import new_kek
from airflow_provider_strm.core.keystore import KeyStore
from airflow_provider_strm.core.shared import Exchange, OutboxWriter, read_table
from airflow_provider_strm.core.storage import LocalStorage

SHM = Path("/dev/shm")
pytestmark = pytest.mark.skipif(not SHM.is_dir(), reason="POSIX shared memory is /dev/shm on Linux")


def _table(rows: int, width: int = 20) -> pa.Table:
    values = [f"value-{i:0{width}d}" for i in range(rows)]
    return pa.table({"a": values, "b": values[::-1]}).slice(1)  # a slice: offsets not from 0


@pytest.fixture
def made(monkeypatch) -> list[str]:  # type: ignore[no-untyped-def]
    """Names of the blocks of shared memory made while the test runs (watched, not changed)."""
    names: list[str] = []
    real = shared.Block.__init__

    def init(self, size):  # type: ignore[no-untyped-def]
        real(self, size)
        names.append(self.name)

    monkeypatch.setattr(shared.Block, "__init__", init)
    return names


def test_a_chunk_and_records_cross_and_the_names_go_once_taken(made, monkeypatch) -> None:
    monkeypatch.setattr(shared, "COPY_BLOCK", 1000)  # read back in several pieces
    exchange = Exchange()
    try:
        table = _table(5000)
        handed = exchange.put_table((0, 0), table, outbox=True)
        assert handed is not None
        sent, box = handed
        assert box is not None and box.size >= sent.size
        assert all((SHM / name).exists() for name in made) and len(made) == 2
        assert read_table(sent).equals(table)
        writer = OutboxWriter(box)
        first, second = os.urandom(4321), b"x" * 10
        refs = [writer.put(first), writer.put(second)]
        assert refs[0] is not None and refs[1] is not None and refs[1].offset == len(first)
        exchange.taken(sent, box, writer.overflow)
        assert not any((SHM / name).exists() for name in made), "names removed once the worker has the blocks"
        pieces = list(exchange.read(refs[0]))
        assert len(pieces) == 5 and b"".join(pieces) == first  # still mapped: only the names went
        assert b"".join(exchange.read(refs[1])) == second
    finally:
        exchange.close()


def _resident_kb(name: str) -> int | None:
    """Resident memory of this process's mappings of the block ``name`` (None: not mapped here)."""
    total, inside = None, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if "-" in line.split(" ", 1)[0]:  # a mapping's first line: address range, ..., path (and " (deleted)")
            inside = f"/dev/shm/{name}" in line
        elif inside and line.startswith("Rss:"):
            total = (total or 0) + int(line.split()[1])
    return total


def test_blocks_are_written_without_page_faults_and_never_count_in_resident_memory(made) -> None:
    exchange = Exchange()
    try:
        table = _table(100_000, width=40)  # ~10 MB, as a chunk
        records = b"z" * 5_000_000
        first = exchange.put_table((0, 0), table, outbox=True)  # the slot's blocks made, their space reserved
        assert first is not None and first[1] is not None
        read_table(first[0]), OutboxWriter(first[1])  # as a worker: opened, then their names go
        exchange.taken(*first, 0)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        handed = exchange.put_table((0, 0), table, outbox=True)
        assert handed is not None and handed[1] is not None
        sent, box = handed
        ref = OutboxWriter(box).put(records)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        pages = (sent.size + len(records)) // resource.getpagesize()
        assert faults < pages // 10, f"{faults} page faults writing {pages} pages: written through a mapping"
        assert read_table(sent).equals(table)
        assert ref is not None and b"".join(exchange.read(ref)) == records
        assert len(made) == 2
        for name in made:
            assert _resident_kb(name) == 0, "written and read on the descriptor: no page of it is resident here"
        exchange.taken(sent, box, 0)
    finally:
        exchange.close()


def test_a_chunk_of_many_record_batches_goes_in_with_few_writes(monkeypatch) -> None:
    """Arrow parses a chunk in batches of a few hundred records, each written in many small pieces: gathered."""
    batches = _table(40_000).to_batches(max_chunksize=500)
    table = pa.Table.from_batches(batches)
    calls: list[int] = []
    real = os.pwrite

    def pwrite(fd: int, data, offset: int) -> int:  # type: ignore[no-untyped-def]
        calls.append(memoryview(data).nbytes)
        return real(fd, data, offset)

    monkeypatch.setattr(shared.os, "pwrite", pwrite)
    exchange = Exchange()
    try:
        handed = exchange.put_table((0, 0), table, outbox=False)
        assert handed is not None
        assert len(batches) == 80 and len(calls) < 40, f"{len(calls)} writes for {len(batches)} record batches"
        assert sum(calls) == handed[0].size
        assert read_table(handed[0]).equals(table)
    finally:
        exchange.close()


def test_blocks_grow_with_larger_chunks_and_outputs(made) -> None:
    exchange = Exchange()
    try:
        small = exchange.put_table((1, 0), _table(100), outbox=True)
        assert small is not None and small[1] is not None
        writer = OutboxWriter(small[1])
        too_big = b"y" * (small[1].size + 1)
        assert writer.put(too_big) is None and writer.overflow == len(too_big)
        exchange.taken(small[0], small[1], writer.overflow)
        table = _table(200_000, width=40)  # ~13 MB: more than the first block holds
        large = exchange.put_table((1, 0), table, outbox=True)
        assert large is not None and large[1] is not None
        assert large[0].name != small[0].name and read_table(large[0]).equals(table)
        assert large[1].size >= small[1].size + len(too_big), "the outbox grew to what did not fit"
        assert OutboxWriter(large[1]).put(too_big) is not None
        # another slot has blocks of its own, and no block goes to a slot's worker without its outbox
        other = exchange.put_table((1, 1), _table(10), outbox=False)
        assert other is not None and other[1] is None and other[0].name not in {large[0].name, small[0].name}
    finally:
        exchange.close()
    assert not any((SHM / name).exists() for name in made)


@dataclass
class Reference:
    """The STRM reference job on a local bucket with a fresh SQLite key store, its file encrypted."""

    config: BatchJobConfig
    contract: DataContract
    store: KeyStore
    bucket: Path

    def storages(self, conn_id: str | None) -> LocalStorage:
        return LocalStorage(self.bucket)

    def derive(self, **kwargs) -> bytes:  # type: ignore[no-untyped-def]
        DeriveJob(self.config, self.contract, self.store, self.storages, **kwargs).run()
        return (self.bucket / "uci_online_retail/decrypted-0.csv").read_bytes()


@pytest.fixture
def reference(strm_reference: Path, tmp_path: Path) -> Reference:
    (tmp_path / "bucket").mkdir()
    shutil.copy(strm_reference / "uci_online_retail.csv", tmp_path / "bucket")
    store = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}", new_kek())
    store.ensure_schema()
    return Reference(
        load_batch_job_config(strm_reference / "batch-job-config.json"),
        load_data_contract(strm_reference / "online-retail-contract.json"),
        store,
        tmp_path / "bucket",
    )


def _no_room(fd: int, offset: int, size: int) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_without_room_in_shared_memory_a_job_uses_pipes(reference, monkeypatch, caplog) -> None:
    """A full /dev/shm (a container's is often 64 MB), simulated by failing the space reservation."""
    exchange = Exchange()
    monkeypatch.setattr(shared.os, "posix_fallocate", _no_room)
    assert exchange.put_table((0, 0), _table(10), outbox=True) is None
    assert "No space left" in (exchange.reason or "")
    ref = reference
    EncryptJob(ref.config, ref.contract, ref.store, ref.storages).run()
    one = ref.derive()
    with caplog.at_level(logging.WARNING, logger="airflow_provider_strm.core.shared"):
        assert ref.derive(workers=2, chunk_rows=2_000) == one
    assert "no shared memory for worker processes" in caplog.text and "using pipes" in caplog.text


def test_worker_processes_leave_nothing_in_shared_memory(reference, made) -> None:
    ref = reference
    EncryptJob(ref.config, ref.contract, ref.store, ref.storages, workers=2, chunk_rows=3_000).run()
    assert len(made) == 4, "the encrypt job's chunks went through shared memory (2 workers x 2 slots)"
    encrypted = ref.bucket / "uci_online_retail/encrypted.csv"
    assert ref.derive(workers=2, chunk_rows=3_000) == ref.derive()
    assert len(made) == 4 + 8, "and the derive job's chunks and derived records"
    assert not any((SHM / name).exists() for name in made)
    # a job that fails in a worker process (a ciphertext that does not decrypt) leaves nothing either
    lines = encrypted.read_bytes().split(b"\r\n")
    column = next(csv.reader([lines[0].decode()])).index("CustomerID")
    row = next(i for i in range(7000, len(lines)) if next(csv.reader([lines[i].decode()]))[column])
    ciphertext = next(csv.reader([lines[row].decode()]))[column].encode()
    lines[row] = lines[row].replace(ciphertext, ciphertext[:-4] + (b"AAAA" if ciphertext[-4:] != b"AAAA" else b"BBBB"))
    encrypted.write_bytes(b"\r\n".join(lines))
    with pytest.raises(RecordError, match=f"row #{row}"):
        ref.derive(workers=2, chunk_rows=3_000)
    assert not any((SHM / name).exists() for name in made)
