"""The lifecycle every batch job shares: STRM states, atomic outputs, counts.

A job reads one input file in chunks and writes one or more outputs. States
follow STRM: PENDING (recorded) → STARTED (input, outputs and key store
opened) → RUNNING (progress at least every 10 s) → FINISHED, or
ERROR_STARTING (retry-worthy) / ERROR. Outputs are pending objects committed
only after the last record; on any failure they are discarded.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
import types
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from airflow_provider_strm.core.checkpoint import PartedOutput, RecordDigest, job_key
from airflow_provider_strm.core.config import BatchJobConfig, DataLocation
from airflow_provider_strm.core.contract import DataContract
from airflow_provider_strm.core.csvio import DEFAULT_CHUNK_ROWS, ArrowRecordChunk, BadRow, RecordChunk
from airflow_provider_strm.core.errors import (
    ConfigError,
    CsvFormatError,
    JobStartError,
    RecordError,
    StrmError,
    TooManyBadRecords,
)
from airflow_provider_strm.core.formats import RecordReader, RecordWriter, gunzipped, record_reader, record_writer
from airflow_provider_strm.core.memory import (
    arrow_memory_pool,
    collector_paused,
    job_memory_pool,
    keep_freed_memory,
    release_arrow_memory,
    use_job_memory_pool,
)
from airflow_provider_strm.core.shared import Exchange, Outbox, OutboxWriter, SharedBytes, SharedTable, read_table
from airflow_provider_strm.core.storage import PendingObject, Storage

if TYPE_CHECKING:  # a worker process never imports the key store (nor SQLAlchemy): see core.keyreader
    from airflow_provider_strm.core.keystore import KeyStore

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 10.0
DEAD_LETTER_HEADER = ("row", "reason", "field", "record")

#: Resolves a data connector (an Airflow connection id, or None for plain paths) to its storage.
StorageResolver = Callable[[str | None], Storage]


@dataclass
class JobResult:
    """What a job reports: never key material, never record values.

    Always ``rows_in == rows_out + dead_lettered + excluded`` (for a derive job,
    per derived output: see ``targets``).
    """

    job_id: str
    state: str
    kind: str
    group_id: str
    source: str
    rows_in: int = 0
    rows_out: int = 0
    dead_lettered: int = 0
    excluded: int = 0
    keys_created: int = 0
    keys_reused: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)
    targets: list[dict[str, object]] = field(default_factory=list)
    #: records excluded from every output whatever their consent, by reason (``forgotten``, ``expired``)
    excluded_by_reason: dict[str, int] = field(default_factory=dict)
    #: validation rules that failed with ``on_failure: warn``
    warnings: list[str] = field(default_factory=list)
    #: records a resumed job skipped because an earlier attempt had committed them (counted in rows_in)
    rows_resumed: int = 0
    message: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def counters(self) -> dict[str, int]:
        names = ("rows_in", "rows_out", "dead_lettered", "excluded", "keys_created", "keys_reused", "bytes_out")
        return {k: getattr(self, k) for k in names}


def group_of(config: BatchJobConfig, source_path: str) -> str:
    """The job's key group: the configured group id, else a group of its own derived from the file."""
    if config.batch_job_group_id:
        return config.batch_job_group_id
    # Stable per file so a re-run of the same file without a group id reuses its keys.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"strm-file:{config.source_data.connection_id}:{source_path}"))


def describe(loc: DataLocation, path: str) -> str:
    """A location as users name it: ``conn_id:path`` (or the plain path)."""
    return path if loc.connection_id is None else f"{loc.connection_id}:{path}"


class BatchJob:
    """Base of EncryptJob and DeriveJob: one input file, chunked, through the STRM lifecycle."""

    kind = "job"
    #: whether worker processes give their encoded records back through shared memory (see :mod:`shared`);
    #: else through a spool file (see :func:`spool`), which keeps them out of this process's memory
    shared_outputs = False

    def __init__(
        self,
        config: BatchJobConfig,
        contract: DataContract,
        key_store: KeyStore | None,
        storages: StorageResolver,
        *,
        input_location: DataLocation,
        input_path: str,
        group_id: str,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        checkpoint_rows: int | None = None,
        context: dict[str, object] | None = None,
        job_id: str | None = None,
        workers: int = 1,
    ) -> None:
        if not input_path:
            raise StrmError(f"{self.kind} job has no input file: set it in the config or pass its path")
        self.config = config
        self.contract = contract
        self.key_store = key_store
        self.storages = storages
        self.input_location = input_location
        self.input_path = input_path
        self.group_id = group_id
        self.chunk_rows = chunk_rows
        self.checkpoint_rows = checkpoint_rows if key_store is not None else None
        self._first_part = 0
        self.context = context or {}
        self.job_id = job_id or str(uuid.uuid4())
        self.input_name = describe(input_location, input_path)
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self._pools: list[ProcessPoolExecutor] = []
        self._pools_closing: threading.Thread | None = None
        self._exchange: Exchange | None = None  # shared memory with the worker processes
        self._spool_dir: str | None = None  # where worker processes leave their encoded chunks (see spool)
        #: output name → (location, path) of what the job committed
        self.locations: dict[str, tuple[DataLocation, str]] = {}

    # ------------------------------------------------------------------ subclass hooks

    def check_header(self, header: list[str]) -> None:
        """Refuse an input whose columns cannot work (raise CsvFormatError naming the column)."""

    def open_outputs(self, header: list[str], pending: list[PendingObject]) -> None:
        """Open the outputs (append each pending object to ``pending``, in commit order reversed)."""
        raise NotImplementedError

    def validate_chunk(self, chunk: RecordChunk) -> list[BadRow]:
        """Records of the chunk that cannot be processed (a bad value), each with its reason."""
        return []

    def process_chunk(self, chunk: RecordChunk, result: JobResult) -> None:
        """Process the chunk's good records (bad ones were removed and dead-lettered)."""
        raise NotImplementedError

    def finish(self, result: JobResult) -> None:
        """Fill in outputs and byte counts once every chunk is processed."""

    def next_chunk_rows(self, chunk: RecordChunk | None) -> int | None:
        """How many records the chunk after ``chunk`` should hold (None: as many as now).

        Asked before the first chunk (``chunk`` None), then for each chunk as read, in file order, in one
        process or with workers alike (so both cut a file the same way); never when the job keeps
        checkpoints, which fall between chunks of ``chunk_rows``.
        """
        return None

    def _resize_chunks(self, reader: RecordReader, chunk: RecordChunk | None) -> None:
        if not self.checkpoint_rows:
            rows = self.next_chunk_rows(chunk)
            if rows is not None:
                reader.chunk_rows = rows

    def checkpoint_state(self) -> dict[str, object]:
        """What a resumed job needs besides the counters (JSON-serialisable, no secrets)."""
        return {}

    def restore(self, state: dict[str, object]) -> None:
        """Take back :meth:`checkpoint_state` when resuming (outputs are open)."""

    def flush(self) -> None:
        """Write out whatever processed records are still held back (before a checkpoint)."""

    def close(self) -> None:
        """Release what the job holds (worker processes, temporary files), whatever the outcome."""
        if self._pools_closing is not None:
            self._pools_closing.join()
            self._pools_closing = None
        for pool in self._pools:
            pool.shutdown(wait=True, cancel_futures=True)
        self._pools = []
        if self._exchange is not None:
            self._exchange.close()
            self._exchange = None
        if self._spool_dir is not None:
            shutil.rmtree(self._spool_dir, ignore_errors=True)  # chunks of a failed job not yet written
            self._spool_dir = None

    # ------------------------------------------------------------------ worker processes (workers > 1)

    def parallel_reason(self) -> str | None:
        """Why this job runs in one process although ``workers > 1`` (None: it can use them)."""
        if self.checkpoint_rows:
            return "checkpoints need records committed in order by one process"
        return None

    def worker_spec(self) -> WorkerSpec:
        """What a worker process needs to build a copy of this job (picklable; see :class:`WorkerSpec`)."""
        raise NotImplementedError

    def work_on_chunk(self, chunk: RecordChunk) -> object:
        """Worker side: validate and process a chunk, return what :meth:`absorb` needs (picklable)."""
        raise NotImplementedError

    def split_chunk(self, chunk: RecordChunk) -> tuple[RecordChunk, list[BadRow], JobResult]:
        """Worker side: the chunk's good records, its bad ones (unreadable or invalid), fresh counters."""
        bad = chunk.bad + self.validate_chunk(chunk)
        if bad:
            chunk = chunk.without({b.row for b in bad})
        return chunk, bad, JobResult(self.job_id, "RUNNING", self.kind, self.group_id, self.input_name)

    def prepare_chunk(self, chunk: RecordChunk, result: JobResult) -> object:
        """Parent side, in file order, before a worker takes the chunk: what to send it (default: the chunk)."""
        return chunk

    def absorb(self, done: object, result: JobResult) -> None:
        """Parent side, in file order: write and count what :meth:`work_on_chunk` returned."""
        raise NotImplementedError

    def worker_writes(self, work: object) -> bool:
        """Whether the worker process given ``work`` (from :meth:`prepare_chunk`) writes to the key store."""
        return False

    def _process_parallel(self, reader: RecordReader, result: JobResult, started: float) -> None:
        """Chunks are read here, processed by worker processes, and written here in file order."""
        self._spool_dir = tempfile.mkdtemp(prefix="strm-spool-")
        # spawn, not fork: an Airflow task process has threads, and a forked copy of them can deadlock;
        # spawned without the task's main module (see _WorkerProcess)
        # one single-process pool per worker, chunks in turn: each worker uses the same few blocks of
        # shared memory (see _hand_over), which stay mapped in its process
        spec = self.worker_spec()
        self._pools = [
            ProcessPoolExecutor(
                1,
                mp_context=_WorkerContext(),
                initializer=_start_worker,
                initargs=(spec, self._spool_dir),
            )
            for _ in range(self.workers)
        ]
        self._exchange = Exchange()
        # (future, whether its worker writes to the key store, what went through shared memory)
        in_flight: deque[tuple[Future[tuple[object, int]], bool, _Handoff | None]] = deque()
        last_progress = time.monotonic()
        for i, chunk in enumerate(reader.chunks()):
            result.rows_in += len(chunk) + len(chunk.bad)
            self._resize_chunks(reader, chunk)
            worker = i % self.workers
            with collector_paused():
                work = self.prepare_chunk(chunk, result)
                # a worker holds at most two chunks (see the bound below): two slots of shared memory each
                handoff = self._hand_over(work, (worker, i // self.workers % 2))
                future = self._pools[worker].submit(_work_on_chunk, work if handoff is None else handoff)
                in_flight.append((future, self.worker_writes(work), handoff))
            while len(in_flight) > self.workers:  # bounded (one chunk ahead per worker): memory stays flat
                self._absorb_next(in_flight, result)
                release_arrow_memory()
            if time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                last_progress = time.monotonic()
                self._state(
                    "RUNNING", f"Processed {result.rows_in} records in {int(last_progress - started)} s.", result
                )
        # the file is read: while the workers finish the last chunks, this process writes what it holds back
        # and commits the key store's batch (a job's last writes and commit would otherwise wait until they are
        # done; committing sooner than at the end is always allowed)
        committed = False
        while in_flight:
            if not in_flight[0][0].done():
                self.flush()
                if not committed and self.key_store is not None:
                    self.key_store.commit()
                    committed = True
            self._absorb_next(in_flight, result)
        # no work is left: the workers exit (and free their memory) while this process finishes the outputs;
        # close() waits for them
        pools = self._pools

        def workers_exit() -> None:
            for pool in pools:
                pool.shutdown(wait=True)

        self._pools_closing = threading.Thread(target=workers_exit, name="strm-workers-exit", daemon=True)
        self._pools_closing.start()

    def _hand_over(self, work: object, slot: tuple[int, int]) -> _Handoff | None:
        """``work`` with its Arrow chunk written to shared memory (None: it goes through the pipe as it is)."""
        chunk = work if isinstance(work, ArrowRecordChunk) else getattr(work, "chunk", None)
        if not isinstance(chunk, ArrowRecordChunk) or self._exchange is None:
            return None
        shared = self._exchange.put_table(slot, chunk.table, outbox=self.shared_outputs)
        if shared is None:
            return None
        rest = None if chunk is work else dataclasses.replace(work, chunk=None)  # type: ignore[type-var]
        return _Handoff(rest, chunk.first_row, *shared)

    def _absorb_next(
        self, in_flight: deque[tuple[Future[tuple[object, int]], bool, _Handoff | None]], result: JobResult
    ) -> None:
        # this process's key-store writes share one transaction (SQLite, see run): a worker that writes too
        # must not wait on it while this process waits on that worker, so it is committed before any such wait
        future, _, handoff = in_flight[0]
        if not future.done() and self.key_store is not None and any(writes for _, writes, _ in in_flight):
            self.key_store.commit()
        in_flight.popleft()
        done, overflow = future.result()
        if handoff is not None and self._exchange is not None:
            self._exchange.taken(handoff.table, handoff.outbox, overflow)
        self.absorb(done, result)

    def write_back(self, writer: RecordWriter, data: bytes | Spooled | SharedBytes, rows: int) -> None:
        """Write encoded records a worker process gave back (see :func:`spool`), counting ``rows``."""
        if isinstance(data, SharedBytes):
            assert self._exchange is not None
            for block in self._exchange.read(data):
                writer.write_encoded(block, rows)
                rows = 0  # counted once
            if rows:
                writer.write_encoded(b"", rows)
        else:
            write_spooled(writer, data, rows)

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> JobResult:
        with arrow_memory_pool(job_memory_pool()):  # see there: less memory, fewer page faults
            return self._run()

    def _run(self) -> JobResult:
        result = JobResult(self.job_id, "PENDING", self.kind, self.group_id, self.input_name)
        started = time.monotonic()
        self._record_start()
        pending: list[PendingObject] = []
        self.job_key = job_key(self.kind, self.group_id, self.input_name, repr(self.config), self.chunk_rows)
        resume = self._load_checkpoint()
        try:
            stream, reader = self._open(pending)
            self._state("STARTED", None, result)
            with stream:
                self._state("RUNNING", "Started processing records.", result)
                # one key-store transaction for many chunks (SQLite), committed before any output
                with self.key_store.batched() if self.key_store is not None else nullcontext():
                    self._process_all(reader, pending, result, started, resume)
            #: which parser delivered the records ("arrow", "python", "arrow+python"): the fast path or not
            self.reader_parser = getattr(reader, "parser", "python")
            self.finish(result)
            self._check_bad_ratio(result)
            # outputs opened first are committed last: keys files before the data that needs them
            for p in reversed(pending):
                p.commit()
            pending.clear()
            if self.checkpoint_rows:
                self.key_store.clear_checkpoint(self.job_key)  # type: ignore[union-attr]
        except JobStartError as exc:
            self._discard(pending)
            self._state("ERROR_STARTING", str(exc), result)
            raise
        except BaseException as exc:
            self._discard(pending)
            self._state("ERROR", str(exc) if isinstance(exc, StrmError) else type(exc).__name__, result)
            raise
        finally:
            self.close()
        result.seconds = round(time.monotonic() - started, 3)
        rate = int(result.rows_in / result.seconds) if result.seconds > 0 else result.rows_in
        result.message = f"Processed {result.rows_in} records in {int(result.seconds)} s. which is {rate} records/s."
        if result.warnings:
            self._state("RUNNING", "Validation warnings: " + "; ".join(result.warnings), result)
        self._state("FINISHED", result.message, result)
        return result

    def _load_checkpoint(self) -> dict[str, object] | None:
        if not self.checkpoint_rows or self.key_store is None:
            return None
        checkpoint = self.key_store.checkpoint(self.job_key)
        self._first_part = int(checkpoint["part"]) if checkpoint else 0  # type: ignore[call-overload]
        return checkpoint

    def _process_all(
        self,
        reader: RecordReader,
        pending: list[PendingObject],
        result: JobResult,
        started: float,
        resume: dict[str, object] | None,
    ) -> None:
        if self.workers > 1:
            reason = self.parallel_reason()
            if reason is None:
                return self._process_parallel(reader, result, started)
            log.warning("%s: running in one process instead of %d: %s", self.input_name, self.workers, reason)
        digest = RecordDigest()
        skip = 0
        if resume is not None:
            skip = int(resume["rows_done"])  # type: ignore[call-overload]
        last_progress = time.monotonic()
        since_checkpoint = 0
        for chunk in reader.chunks():
            size = len(chunk) + len(chunk.bad)
            if reader.rows_read <= skip:
                digest.update(chunk)  # records an earlier attempt committed: checked, not processed
                result.rows_resumed += size
                if reader.rows_read == skip:
                    self._resume(resume, digest, result)  # type: ignore[arg-type]
                continue
            if chunk.first_row <= skip:
                raise StrmError(f"checkpoint at record {skip} does not fall between chunks of {self.chunk_rows}")
            if self.checkpoint_rows:
                digest.update(chunk)  # only a checkpoint needs it
            result.rows_in += size
            self._resize_chunks(reader, chunk)
            with collector_paused():
                bad = chunk.bad + self.validate_chunk(chunk)
                if bad:
                    self.reject(bad, result)
                    chunk = chunk.without({b.row for b in bad})
                if len(chunk):
                    self.process_chunk(chunk, result)
            release_arrow_memory()
            since_checkpoint += size
            if self.checkpoint_rows and since_checkpoint >= self.checkpoint_rows:
                self._checkpoint(pending, reader.rows_read, digest, result)
                since_checkpoint = 0
            if time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                last_progress = time.monotonic()
                self._state(
                    "RUNNING", f"Processed {result.rows_in} records in {int(last_progress - started)} s.", result
                )

    def _resume(self, resume: dict[str, object], digest: RecordDigest, result: JobResult) -> None:
        """The records up to the checkpoint were read again: check they are the same, then take its state back."""
        try:
            if digest.hexdigest() != resume["digest"]:
                raise StrmError(f"{self.input_name} changed since the checkpoint of an earlier attempt")
            state = dict(resume["state"])  # type: ignore[call-overload]
            for name, value in dict(state.pop("counters")).items():
                setattr(result, name, value)
            self.restore(state)
        except (StrmError, OSError) as exc:
            self.key_store.clear_checkpoint(self.job_key)  # type: ignore[union-attr]
            raise StrmError(
                f"cannot resume: {exc}; the checkpoint is cleared, run the job again to start over"
            ) from None

    def _checkpoint(
        self, pending: list[PendingObject], rows_done: int, digest: RecordDigest, result: JobResult
    ) -> None:
        self.flush()
        self.key_store.commit()  # type: ignore[union-attr]  # the keys of the records the parts hold, first
        for p in pending:
            p.checkpoint()  # type: ignore[attr-defined]
        counters = {**result.counters(), "excluded_by_reason": dict(result.excluded_by_reason)}
        state = {"counters": counters, **self.checkpoint_state()}
        part = pending[0].part if pending else 0  # type: ignore[attr-defined]
        self.key_store.save_checkpoint(self.job_key, part, rows_done, digest.hexdigest(), state)  # type: ignore[union-attr]
        self._state("RUNNING", f"Checkpoint: {rows_done} records committed in part {part}.", result)

    def _open(self, pending: list[PendingObject]) -> tuple[BinaryIO, RecordReader]:
        """Open input and outputs, check the key store: every failure here is ERROR_STARTING."""
        try:
            if self.key_store is not None:
                self.key_store.check()
            stream = self._open_input()
        except FileNotFoundError:
            raise JobStartError(f"input file {self.input_name} does not exist") from None
        except StrmError:
            raise
        except Exception as exc:  # connector libraries raise their own types; all mean "could not start"
            raise JobStartError(f"cannot open {self.input_name}: {type(exc).__name__}: {exc}") from exc
        try:
            reader = record_reader(
                stream,
                data_format=self.input_location.data_format,
                charset=self.input_location.charset,
                name=self.input_name,
                chunk_rows=self.chunk_rows,
                reopen=self._open_input,
            )
            self.check_header(reader.header)
            self._resize_chunks(reader, None)
            self.open_outputs(reader.header, pending)
            self.open_dead_letters(pending)
        except BaseException:
            stream.close()
            raise
        return stream, reader

    def _open_input(self) -> BinaryIO:
        """The input from its start, gunzipped if it is gzipped (the CSV reader's fast path opens it twice)."""
        stream = self.storages(self.input_location.connection_id).open_read(self.input_path)
        return gunzipped(stream, self.input_name) if self.input_location.gzipped(self.input_path) else stream

    def open_dead_letters(self, pending: list[PendingObject]) -> None:
        dead = self.config.dead_letter
        self.dead_letters: RecordWriter | None = None
        if dead is not None:
            path = dead.target.output_path(self.input_path, f"{self.kind}-dead-letters")
            self.dead_letters = self.open_output(dead.target, path, list(DEAD_LETTER_HEADER), pending)
            self.dead_letter_path = describe(dead.target, path)
            self._dead_letter_rel = path

    def publish(self, result: JobResult, name: str, loc: DataLocation, path: str) -> None:
        """Report an output in the summary (``conn_id:path``) and remember where it is."""
        result.outputs[name] = describe(loc, path)
        self.locations[name] = (loc, path)

    def reject(self, bad: list[BadRow], result: JobResult) -> None:
        """Dead-letter bad records, or fail on the first one when the job has no dead-letter target."""
        bad = sorted(bad, key=lambda b: b.row)
        if getattr(self, "dead_letters", None) is None:
            first = bad[0]
            raise RecordError(self.input_name, first.row, first.reason, field=first.field)
        assert self.dead_letters is not None
        self.dead_letters.write_columns(
            [[str(b.row) for b in bad], [b.reason for b in bad], [b.field for b in bad], [b.text for b in bad]]
        )
        result.dead_lettered += len(bad)
        limit = self.config.dead_letter.max_bad_records if self.config.dead_letter else None
        if limit is not None and result.dead_lettered > limit:
            raise TooManyBadRecords(
                f"{self.input_name}: {result.dead_lettered} bad records, more than max_bad_records={limit} "
                f"(last: {bad[-1].reason} in row #{bad[-1].row})"
            )

    def _check_bad_ratio(self, result: JobResult) -> None:
        dead = self.config.dead_letter
        if dead is None or result.rows_in == 0:
            return
        if dead.max_bad_ratio is not None and result.dead_lettered / result.rows_in > dead.max_bad_ratio:
            raise TooManyBadRecords(
                f"{self.input_name}: {result.dead_lettered} of {result.rows_in} records are bad, "
                f"more than max_bad_ratio={dead.max_bad_ratio}"
            )
        if self.dead_letters is not None:
            dead = self.config.dead_letter
            self.publish(result, f"{self.kind}_dead_letters", dead.target, self._dead_letter_rel)

    def open_output(
        self, loc: DataLocation, path: str, header: list[str], pending: list[PendingObject]
    ) -> RecordWriter:
        """A writer of ``path`` in ``loc``'s format (keys files and dead letters: always plain CSV, see config)."""
        if self.checkpoint_rows and loc.data_format == "parquet":
            raise ConfigError(
                "checkpoint_rows",
                f"{describe(loc, path)} is Parquet, which cannot be committed in parts: "
                "run without checkpoints or write csv or json_lines",
            )
        try:
            storage = self.storages(loc.connection_id)
            if self.checkpoint_rows:
                sink: PendingObject = PartedOutput(storage, path, self.job_key, self._first_part)
            else:
                sink = storage.open_write(path)
        except StrmError:
            raise
        except Exception as exc:
            raise JobStartError(f"cannot write {describe(loc, path)}: {type(exc).__name__}: {exc}") from exc
        pending.append(sink)
        writer = record_writer(
            sink,
            header,
            data_format=loc.data_format,
            charset=loc.charset,
            gzipped=loc.gzipped(path),
            write_header=self._first_part == 0,
        )
        pending[-1] = writer.sink  # type: ignore[assignment]  # what commits the output: a gzip or Parquet wrapper
        return writer

    def _record_start(self) -> None:
        if self.key_store is None:
            return
        try:
            self.key_store.create_job(
                group_id=self.group_id, kind=self.kind, file=self.input_name, context=self.context, job_id=self.job_id
            )
        except StrmError:
            raise
        except Exception as exc:
            raise JobStartError(f"key store not reachable: {type(exc).__name__}") from exc

    def _state(self, state: str, message: str | None, result: JobResult) -> None:
        result.state = state
        if self.key_store is None:
            return
        try:
            self.key_store.set_job_state(self.job_id, state, message, result.counters())
        except Exception:  # a failing status write must not hide the job's own outcome
            log.warning("could not record state %s of job %s", state, self.job_id, exc_info=True)

    @staticmethod
    def _discard(pending: list[PendingObject]) -> None:
        for p in pending:
            try:
                p.abort()
            except Exception:
                log.warning("could not discard the partial output %s", p.path, exc_info=True)


def require_columns(header: list[str], name: str, needed: dict[str, str | None]) -> None:
    """``needed`` maps a setting's path to the column it names; each must be in the header."""
    for what, column in needed.items():
        if column is not None and column not in header:
            raise CsvFormatError(f"{name} has no column {column!r} ({what}); its columns are {header}")


class WorkerSpec:
    """Builds, inside a worker process, the copy of a job that processes its chunks there."""

    def build(self) -> BatchJob:
        raise NotImplementedError


_worker: BatchJob | None = None
_worker_spool_dir: str | None = None

_SPOOL_BLOCK = 1 << 20


@dataclass(frozen=True)
class Spooled:
    """Encoded records a worker process left in a file of the job's spool folder (``size`` bytes)."""

    path: str
    size: int


def spool(data: bytes, *, disk: bool = True) -> bytes | Spooled | SharedBytes:
    """Worker side: a chunk's encoded records, to return to the parent.

    Into the chunk's block of shared memory if the job gave it one (see :attr:`BatchJob.shared_outputs`)
    and they fit. Else through a spool file if ``disk``, else as bytes through the result pipe.

    A spool file rather than the result pipe: the parent then copies them to the output in
    blocks and never holds a chunk's whole output (MBs per chunk and worker, which its allocator kept long
    after: ~85 MB of its peak RSS at 1M rows on 2 cores) and does not unpickle it. Bytes as they are
    outside a worker process. Only for what the final output holds anyway and that is safe on the worker's
    local disk: an EncryptJob's records (PII encrypted); never decrypted records (DeriveJob).
    The files are private (0600 in a 0700 folder) and deleted once copied or when the job ends.
    """
    if _outbox is not None:
        shared = _outbox.put(data)
        if shared is not None:
            return shared
    if _worker_spool_dir is None or not disk:
        return data
    fd, path = tempfile.mkstemp(dir=_worker_spool_dir, suffix=".chunk")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return Spooled(path, len(data))


def write_spooled(writer: RecordWriter, data: bytes | Spooled, rows: int) -> None:
    """Parent side: write what :func:`spool` returned (the file is deleted once copied)."""
    if isinstance(data, bytes):
        writer.write_encoded(data, rows)
        return
    try:
        with open(data.path, "rb") as f:
            while block := f.read(_SPOOL_BLOCK):
                writer.write_encoded(block, rows)
                rows = 0  # counted once
        if rows:
            writer.write_encoded(b"", rows)
    finally:
        os.unlink(data.path)


_BLAS_THREADS = "OPENBLAS_NUM_THREADS"


class _WorkerProcess(multiprocessing.context.SpawnProcess):
    """A spawned process that does not import its parent's ``__main__`` module, nor start BLAS threads.

    A spawned process imports the main module of its parent first, as ``__mp_main__``. In an Airflow
    task that is the ``airflow`` command (the scheduler's or a Celery worker's), which imports Airflow:
    ~2 s and ~15 MB more per worker process, for nothing: a worker runs only this package's code.
    """

    def start(self) -> None:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")  # no spec, no file: nothing to import
        # numpy's OpenBLAS starts a thread per core at import that spins for a while, waiting for matrix work
        # a worker never gives it (~0.05 s of CPU per worker process, taken from the cores the job runs on)
        blas = os.environ.get(_BLAS_THREADS)
        os.environ[_BLAS_THREADS] = blas or "1"
        try:
            super().start()
        finally:
            if main is not None:
                sys.modules["__main__"] = main
            if blas is None:
                del os.environ[_BLAS_THREADS]
            else:
                os.environ[_BLAS_THREADS] = blas


class _WorkerContext(multiprocessing.context.SpawnContext):
    Process = _WorkerProcess


def _start_worker(spec: WorkerSpec, spool_dir: str | None = None) -> None:
    global _worker, _worker_spool_dir
    keep_freed_memory()  # this process only works on chunks: see there
    use_job_memory_pool()
    _worker = spec.build()
    _worker_spool_dir = spool_dir


@dataclass(frozen=True)
class _Handoff:
    """Work for a worker process whose Arrow chunk is in shared memory (``work``: what held it, else None)."""

    work: object
    first_row: int
    table: SharedTable
    outbox: Outbox | None

    def opened(self) -> object:
        """Worker side: the work as it was, its chunk read back."""
        chunk = ArrowRecordChunk(self.first_row, read_table(self.table))
        return chunk if self.work is None else dataclasses.replace(self.work, chunk=chunk)  # type: ignore[type-var]


_outbox: OutboxWriter | None = None


def _work_on_chunk(work: object) -> tuple[object, int]:
    """Worker side: what :meth:`BatchJob.work_on_chunk` gives, and the bytes its outbox could not hold."""
    global _outbox
    assert _worker is not None, "worker process not started"
    try:
        if isinstance(work, _Handoff):
            _outbox = None if work.outbox is None else OutboxWriter(work.outbox)
            work = work.opened()
        with collector_paused():
            done = _worker.work_on_chunk(work)  # type: ignore[arg-type]
        return done, _outbox.overflow if _outbox is not None else 0
    finally:
        _outbox = None
        release_arrow_memory()


def no_storage(_conn_id: str | None) -> Storage:
    """The storage resolver of a worker process's job copy: it reads and writes nothing itself."""
    raise AssertionError("a worker process does not open storage")
