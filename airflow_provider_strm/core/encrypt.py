"""EncryptJob: one source file → an encrypted file and a keys file, STRM-compatible.

Data flows one way: records (chunks) → timestamps and windows → keys (bulk,
from the key store) → ciphertexts → writers. Nothing is visible at the
targets until the whole file is done; keys reach the key store (per chunk)
before any output is committed.
"""

from __future__ import annotations

import csv
import io
import logging
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_strm.core.checkpoint import PartedOutput
from airflow_provider_strm.core.columnar import (
    as_array,
    distinct,
    distinct_binary,
    gather,
    groups_in_order,
    int64_column,
    integers,
    packed_utf8_column,
    repeat,
)
from airflow_provider_strm.core.config import BatchJobConfig
from airflow_provider_strm.core.consent import ConsentExtractor, ConsentLevels, format_levels
from airflow_provider_strm.core.contract import DataContract
from airflow_provider_strm.core.crypto import (
    Keyset,
    encrypt_columns,
    encrypt_grouped,
    pack_keysets,
    token_lengths,
    unpack_keysets,
)
from airflow_provider_strm.core.csvio import DEFAULT_CHUNK_ROWS, ArrowRecordChunk, BadRow, CsvRecordWriter, RecordChunk
from airflow_provider_strm.core.errors import CsvFormatError, TimestampFormatError
from airflow_provider_strm.core.formats import record_writer
from airflow_provider_strm.core.job import (
    BatchJob,
    JobResult,
    StorageResolver,
    WorkerSpec,
    group_of,
    no_storage,
    require_columns,
    spool,
)
from airflow_provider_strm.core.keyfiles import KEYS_HEADER, key_lines, key_rows, write_keys
from airflow_provider_strm.core.keyreader import StoredKey, open_worker_store
from airflow_provider_strm.core.seen import KEY_CACHE_SIZE, LruCache, SeenSet
from airflow_provider_strm.core.storage import PendingObject
from airflow_provider_strm.core.timestamps import DAY_MS, TimestampParser
from airflow_provider_strm.core.validation import FileChecks

if TYPE_CHECKING:  # a worker process never imports the key store (nor SQLAlchemy): see core.keyreader
    from airflow_provider_strm.core.keystore import KeyStore

log = logging.getLogger(__name__)

META_COLUMNS = (
    "strmMeta.eventContractRef",
    "strmMeta.nonce",
    "strmMeta.timestamp",
    "strmMeta.keyLink",
    "strmMeta.billingId",
    "strmMeta.consentLevels",
)

#: (data subject, key link) pairs a job remembers having recorded, so each is written once per job.
SUBJECT_CACHE_SIZE = 50_000
#: pairs held back before they are written to the key store in one transaction (all are, before any commit)
SUBJECT_BATCH = 20_000
#: a data subject's digest: hex HMAC-SHA256
DIGEST_CHARS = 64
#: distinct key-field values a chunk holds at most: a chunk's keys, digests, plaintexts and ciphertexts are
#: all held at once (~1.5 KB per entity), so a file whose rows are in no order (nearly an entity per record)
#: is read in smaller chunks and its memory stays that of an ordered file (see next_chunk_rows)
CHUNK_ENTITIES = 10_000
#: the fewest records a chunk is cut down to
MIN_CHUNK_ROWS = 1_000

#: Replaces STRM's consent extraction: takes a record (column → value), returns its consent levels.
ConsentFunction = Callable[[Mapping[str, str]], "ConsentLevels | list[int]"]


class EncryptJob(BatchJob):
    """Encrypts the PII fields of one file with per-(entity, UTC day) keys.

    :param config: the STRM batch job configuration.
    :param contract: the data contract naming the key field and PII fields.
    :param key_store: where keys live; keys are created there before output is committed.
    :param storages: resolves a connection id to a :class:`Storage`.
    :param source_path: the file to encrypt (default: the config's ``source_data`` path).
    :param consent_function: replaces STRM's consent extraction (record → levels).
    :param context: Airflow identifiers recorded with the job (dag_id, run_id, map_index...).
    :param workers: processes that validate and encrypt chunks in parallel (1 = all in this process).
        Reading and writing stay in this process, in file order: the outputs are byte-identical for any
        value. Not with ``checkpoint_rows``, a Parquet output or an unpicklable consent function (the job
        then runs in one process and logs why).
    """

    kind = "encrypt"

    def __init__(
        self,
        config: BatchJobConfig,
        contract: DataContract,
        key_store: KeyStore,
        storages: StorageResolver,
        *,
        source_path: str | None = None,
        consent_function: ConsentFunction | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        checkpoint_rows: int | None = None,
        context: dict[str, object] | None = None,
        job_id: str | None = None,
        key_cache_size: int = KEY_CACHE_SIZE,
        workers: int = 1,
    ) -> None:
        path = source_path or config.source_data.path
        super().__init__(
            config, contract, key_store, storages,
            input_location=config.source_data, input_path=path, group_id=group_of(config, path),
            chunk_rows=chunk_rows, checkpoint_rows=checkpoint_rows, context=context, job_id=job_id, workers=workers,
        )  # fmt: skip
        self.key_store: KeyStore = key_store
        self.source_path = path
        self.parser = TimestampParser(config.timestamp.format, config.timestamp.default_time_zone)
        self.consent = ConsentExtractor(config.consent)
        self.consent_function = consent_function
        self.contract_ref = str(config.contract_ref)
        # the keys file lists each key once, in order of first use; bounded memory whatever the file
        self._keys_seen = SeenSet()
        self._key_cache: LruCache[tuple[str, int], StoredKey] = LruCache(key_cache_size)
        # (data subject digest, key link) pairs
        self._subjects_linked: set[tuple[str, str]] = set()
        self._subjects_held: set[tuple[str, str]] = set()
        # chunks in worker processes, by first row, in file order: those planned here (prepare_chunk), and
        # those not (their workers resolve their keys)
        self._planned: dict[int, _Planned] = {}
        self._unplanned: set[int] = set()
        self._stamps: tuple[int, np.ndarray | list[int]] | None = None

    def encrypted_path(self) -> str:
        return self.config.encrypted_data.output_path(self.source_path, "encrypted")

    def keys_path(self) -> str | None:
        keys = self.config.encryption_keys_data
        return keys.output_path(self.source_path, "keys") if keys is not None else None

    # ------------------------------------------------------------------ BatchJob hooks

    def check_header(self, header: list[str]) -> None:
        require_columns(
            header,
            self.input_name,
            {
                "data contract key_field": self.contract.key_field,
                "encryption.timestamp_config.field": self.config.timestamp.field,
                "consent.consent_level_extractor.field": self.config.consent.field,
            },
        )
        clash = [c for c in META_COLUMNS if c in header]
        if clash:
            raise CsvFormatError(f"{self.input_name} already has strmMeta columns {clash}: is it encrypted already?")
        self._key_idx = header.index(self.contract.key_field)
        self._ts_idx = header.index(self.config.timestamp.field)
        self._consent_idx = header.index(self.config.consent.field) if self.config.consent.field else None
        self._pii_idx = [i for i, h in enumerate(header) if h in self.contract.pii_fields]
        self._regexes = [(header.index(v.field), v) for v in self.contract.validations if v.field in header]
        self.checks = FileChecks(self.config.validations, header, self.parser)
        subject = self.contract.data_subject_field
        self._subject_idx = header.index(subject) if subject and subject in header else None
        self._header = header

    def open_outputs(self, header: list[str], pending: list[PendingObject]) -> None:
        self._writer = self.open_output(
            self.config.encrypted_data, self.encrypted_path(), [*header, *META_COLUMNS], pending
        )
        self._keys_writer: CsvRecordWriter | None = None
        keys_loc, keys_path = self.config.encryption_keys_data, self.keys_path()
        if keys_loc is not None and keys_path is not None:
            self._keys_writer = self.open_output(keys_loc, keys_path, list(KEYS_HEADER), pending)

    def process_chunk(self, chunk: RecordChunk, result: JobResult) -> None:
        out, links, keys = self.encrypt_chunk(chunk, result)
        self._writer.write_columns(out)
        if self._keys_writer is not None:
            self._write_keys(links, keys)

    def encrypt_chunk(
        self, chunk: RecordChunk, result: JobResult
    ) -> tuple[list, list[str], dict[tuple[str, int], StoredKey]]:
        """The output columns of a chunk of good records, its key links in order of first use, and the keys used."""
        if isinstance(chunk, ArrowRecordChunk) and self.consent_function is None:
            return self._encrypt_arrow(chunk, result)
        columns = chunk.columns
        stamps = self._timestamps(columns[self._ts_idx], chunk)
        entities = list(zip(columns[self._key_idx], (s - s % DAY_MS for s in stamps), strict=True))
        keys = self._keys(set(entities), result)
        links = [keys[e].key_link for e in entities]
        if self._subject_idx is not None:
            pairs = set(zip(columns[self._subject_idx], links, strict=True))
            self._link_subjects(self.key_store.digested_subjects(self.group_id, pairs))
        out: list = list(columns)
        keysets = {stored.key_link: stored.keyset for stored in keys.values()}
        pii = [columns[i] for i in self._pii_idx]
        for i, column in zip(self._pii_idx, encrypt_columns(links, pii, keysets), strict=True):
            out[i] = column
        n = len(chunk)
        out += [
            [self.contract_ref] * n,
            ["0"] * n,
            [str(s) for s in stamps],
            links,
            [None] * n,
            [format_levels(levels) for levels in self._consent(columns, n)],
        ]
        self.checks.observe(columns)
        result.rows_out += n
        return out, links, keys

    def _encrypt_arrow(
        self, chunk: ArrowRecordChunk, result: JobResult
    ) -> tuple[list, list[str], dict[tuple[str, int], StoredKey]]:
        """:meth:`encrypt_chunk` on Arrow columns: Python runs once per distinct entity, value and consent text.

        Byte-identical to the record-by-record path (tested); unchanged columns are never converted.
        """
        plan, keys = self._resolve_keys(chunk, result)
        out = self._encrypt_planned(chunk, plan)
        result.rows_out += len(chunk)
        return out, plan.links, keys

    def _resolve_keys(
        self, chunk: ArrowRecordChunk, result: JobResult, *, link_subjects: bool = True
    ) -> tuple[_ChunkKeys, dict[tuple[str, int], StoredKey]]:
        """Each record's entity (key-field value, UTC day) and every entity's key; data subjects linked
        (unless ``link_subjects`` is false: a worker process then digests them, see :meth:`work_on_chunk`)."""
        table = chunk.table
        kept = self._kept_stamps(chunk)
        if kept is None:
            stamps = self.parser.parse_array(as_array(table.column(self._ts_idx)))
        else:
            stamps = np.asarray(kept, dtype=np.int64)
        windows = stamps - stamps % DAY_MS
        # entities numbered in order of first appearance
        key_values, key_codes = distinct(as_array(table.column(self._key_idx)))
        window_values, window_codes = np.unique(windows, return_inverse=True)
        first, entity_of = groups_in_order(key_codes * len(window_values) + window_codes.reshape(-1))
        entities = [(key_values[k], w) for k, w in zip(key_codes[first].tolist(), windows[first].tolist(), strict=True)]
        keys = self._keys(set(entities), result)
        used = [keys[e] for e in entities]
        links = [stored.key_link for stored in used]
        plan = _ChunkKeys(stamps, entity_of, links, [stored.keyset for stored in used])
        if link_subjects:
            self._link_subjects(self._chunk_subjects(chunk, plan).pairs(plan.links))
        if self.checks.rules:
            self.checks.observe(chunk.columns)
        return plan, keys

    def _chunk_subjects(self, chunk: ArrowRecordChunk, plan: _ChunkKeys) -> _Subjects:
        """Each distinct (data subject, entity) of the chunk, the subject digested (no empty subject)."""
        if self._subject_idx is None:
            return _Subjects("", np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        subjects, subject_codes = distinct(as_array(chunk.table.column(self._subject_idx)))
        pairs, _ = groups_in_order(subject_codes * len(plan.links) + plan.entity_of)
        subject_at, entity_at = subject_codes[pairs], plan.entity_of[pairs]
        if "" in subjects:  # no one's: not linked
            named = subject_at != subjects.index("")
            subject_at, entity_at = subject_at[named], entity_at[named]
        digest = self.key_store.subject_digester(self.group_id)
        return _Subjects("".join([digest(subject) for subject in subjects]), subject_at, entity_at)

    def _encrypt_planned(self, chunk: ArrowRecordChunk, plan: _ChunkKeys) -> list:
        """The output columns of a chunk whose keys are resolved: PII encrypted, strmMeta appended."""
        columns = [as_array(c) for c in chunk.table.columns]
        n = len(chunk)
        out: list = list(columns)
        if self._pii_idx:
            encrypted = _encrypt_arrow_columns([columns[i] for i in self._pii_idx], plan.entity_of, plan.keysets)
            for i, column in zip(self._pii_idx, encrypted, strict=True):
                out[i] = column
        if self._consent_idx is None:
            consent = repeat(format_levels(self.consent.defaults), n)
        else:
            texts, codes = distinct(columns[self._consent_idx])
            consent = gather([format_levels(self.consent.levels(t)) for t in texts], codes)
        out += [
            repeat(self.contract_ref, n),
            repeat("0", n),
            int64_column(plan.stamps).cast(pa.string()),
            gather(plan.links, plan.entity_of),
            repeat(None, n),
            consent,
        ]
        return out

    def restore(self, state: dict[str, object]) -> None:
        # the keys file lists each key once: the keys already written by the committed parts stay "seen"
        if self._keys_writer is None or not isinstance(self._keys_writer.sink, PartedOutput):
            return
        data = b"".join(self._keys_writer.sink.read_committed())
        rows = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
        self._keys_seen.update(row[0] for row in rows if row and row[0] != "keyLink")

    def close(self) -> None:
        super().close()
        self._keys_seen.close()

    # ------------------------------------------------------------------ worker processes

    def parallel_reason(self) -> str | None:
        reason = super().parallel_reason()
        if reason is None and self.config.encrypted_data.data_format == "parquet":
            reason = "a Parquet file is written by one writer (worker processes write CSV and JSON Lines)"
        if reason is None and self.consent_function is not None:
            try:
                pickle.dumps(self.consent_function)
            except Exception:
                reason = "the consent function cannot be sent to another process (define it at module level)"
        return reason

    def worker_spec(self) -> _EncryptWorkerSpec:
        assert self.key_store is not None
        return _EncryptWorkerSpec(
            self.config, self.contract, self.key_store.worker_spec(), self.source_path, self._header,
            self.consent_function, self.job_id, self._key_cache.size,
        )  # fmt: skip

    def prepare_chunk(self, chunk: RecordChunk, result: JobResult) -> object:
        """Parent side: a valid Arrow chunk gets its keys here (one key cache and one key-store writer, in one
        batched transaction, for the whole file); the worker process then encrypts and encodes it, digests its
        data subjects, which :meth:`absorb` records in the key store, and makes the keys-file lines of the
        chunk's keys new to the file, which this process picks here (chunks are prepared in file order) unless
        an earlier chunk's new keys are not known yet: it then picks them in :meth:`absorb`. Any other chunk
        goes as it is (its worker writes keys and links itself)."""
        if not isinstance(chunk, ArrowRecordChunk) or self.consent_function is not None or self.validate_chunk(chunk):
            self._unplanned.add(chunk.first_row)
            return chunk
        plan, keys = self._resolve_keys(chunk, result, link_subjects=False)
        planned = self._planned[chunk.first_row] = _Planned(plan.links, keys)
        if self._keys_writer is None or self._unplanned:
            return _PlannedChunk(chunk, plan)
        for earlier in self._planned.values():  # went while an unplanned chunk was out: picked now, in file order
            if earlier.new_keys is None and earlier is not planned:
                earlier.new_keys = self._new_keys(earlier.links, earlier.keys)
        new = planned.new_keys = self._new_keys(plan.links, keys)
        planned.worker_writes_keys = True
        entity = {link: e for e, link in enumerate(plan.links)} if new else {}
        lines = _NewKeyLines(
            [entity[k.key_link] for k in new], [k.policy_id for k in new], [k.expires_at for k in new],
            self._keys_writer.charset,
        )  # fmt: skip
        return _PlannedChunk(chunk, plan, lines)

    def worker_writes(self, work: object) -> bool:
        return not isinstance(work, _PlannedChunk)

    def work_on_chunk(self, chunk: RecordChunk | _PlannedChunk) -> _EncryptedChunk:
        if isinstance(chunk, _PlannedChunk):
            plan = chunk.plan
            data = spool(self._writer.encode_columns(self._encrypt_planned(chunk.chunk, plan)))
            none = FileChecks((), self._header, self.parser)
            subjects = self._chunk_subjects(chunk.chunk, plan)
            lines = b"" if chunk.new_keys is None else chunk.new_keys.encode(plan)
            return _EncryptedChunk([], data, len(chunk.chunk), [], 0, 0, none, chunk.chunk.first_row, subjects, lines)
        first_row = chunk.first_row
        chunk, bad, counts = self.split_chunk(chunk)
        self.checks = FileChecks(self.config.validations, self._header, self.parser)
        data, keys_rows = b"", []
        if len(chunk):
            out, links, keys = self.encrypt_chunk(chunk, counts)
            self.flush()  # the parent commits outputs without asking its workers again
            data = spool(self._writer.encode_columns(out))
            by_link = {stored.key_link: stored for stored in keys.values()}
            keys_rows = key_rows([by_link[link] for link in self._keys_seen.first_seen(links)])
        return _EncryptedChunk(
            bad, data, counts.rows_out, keys_rows, counts.keys_created, counts.keys_reused, self.checks, first_row
        )

    def absorb(self, done: object, result: JobResult) -> None:
        """A worker's chunk, in file order: dead letters, encrypted records, new keys, counters."""
        assert isinstance(done, _EncryptedChunk)
        if done.bad:
            self.reject(done.bad, result)
        self.write_back(self._writer, done.data, done.rows_out)
        result.rows_out += done.rows_out
        result.keys_created += done.keys_created
        result.keys_reused += done.keys_reused
        self.checks.merge(done.checks)
        self._unplanned.discard(done.first_row)
        planned = self._planned.pop(done.first_row, None)
        if planned is not None:  # keys resolved here (prepare_chunk)
            if done.subjects is not None:
                self._link_subjects(done.subjects.pairs(planned.links))
            if self._keys_writer is None:
                return
            new = planned.new_keys
            if new is not None and planned.worker_writes_keys:  # as lines its worker made
                self._keys_writer.write_encoded(done.key_lines, len(new))
            else:  # picked after it went, or now: in file order, as one process does
                write_keys(self._keys_writer, self._new_keys(planned.links, planned.keys) if new is None else new)
            return
        if self._keys_writer is not None and done.keys:
            by_link = {row[0]: row for row in done.keys}
            new = [by_link[link] for link in self._keys_seen.first_seen(row[0] for row in done.keys)]
            if new:
                self._keys_writer.write_columns([list(col) for col in zip(*new, strict=True)])

    def finish(self, result: JobResult) -> None:
        self.flush()
        self.checks.evaluate(result, self.input_name)
        self.publish(result, "encrypted", self.config.encrypted_data, self.encrypted_path())
        result.bytes_out = self._writer.bytes_written
        if self._keys_writer is not None and self.config.encryption_keys_data is not None:
            self.publish(result, "keys", self.config.encryption_keys_data, self.keys_path() or "")
            result.bytes_out += self._keys_writer.bytes_written

    # ------------------------------------------------------------------ steps

    def next_chunk_rows(self, chunk: RecordChunk | None) -> int | None:
        """Fewer records per chunk while chunks hold more than :data:`CHUNK_ENTITIES` key-field values (as many
        records as hold about that many), back up to ``chunk_rows`` when they hold fewer. The first chunk holds
        at most that many records: it cannot hold more values, whatever the file's order."""
        if chunk is None:
            return min(self.chunk_rows, CHUNK_ENTITIES)
        n = len(chunk)
        if n == 0:
            return None
        if isinstance(chunk, ArrowRecordChunk):
            distinct = pc.count_distinct(chunk.table.column(self._key_idx)).as_py()
        else:
            distinct = len(set(chunk.columns[self._key_idx]))
        if distinct <= CHUNK_ENTITIES and n >= self.chunk_rows:
            return None  # the usual case: a chunk of an ordered file
        return min(self.chunk_rows, max(MIN_CHUNK_ROWS, n * CHUNK_ENTITIES // max(distinct, 1)))

    def validate_chunk(self, chunk: RecordChunk) -> list[BadRow]:
        """Records with a missing or malformed timestamp, or a value failing the contract's regex."""
        bad: list[BadRow] = []
        parse, ts_field = self.parser.parse, self.config.timestamp.field
        if isinstance(chunk, ArrowRecordChunk) and not self._regexes:
            try:  # all good (the usual case): no Python list of the chunk is ever made
                self._stamps = (chunk.first_row, self.parser.parse_array(as_array(chunk.table.column(self._ts_idx))))
                return bad
            except TimestampFormatError:
                pass  # the record-by-record loop below names every bad record
        stamps: list[int] = []
        for i, value in enumerate(chunk.columns[self._ts_idx]):
            try:
                stamps.append(parse(value))
            except TimestampFormatError as exc:
                bad.append(BadRow(chunk.rows[i], f"Invalid timestamp [{exc}]", chunk.record_text(i), ts_field))
        # kept for process_chunk when every record passed (the usual case): no second parse
        self._stamps = (chunk.first_row, stamps) if not bad else None
        failed = {b.row for b in bad}
        for col, rule in self._regexes:
            match = rule.pattern.fullmatch
            for i, value in enumerate(chunk.columns[col]):
                if value != "" and chunk.rows[i] not in failed and match(value) is None:
                    # the value itself is not repeated in the reason: it may be PII
                    reason = f"value does not match the contract's validation /{rule.pattern.pattern}/"
                    bad.append(BadRow(chunk.rows[i], reason, chunk.record_text(i), rule.field))
                    failed.add(chunk.rows[i])
        return bad

    def _timestamps(self, values: list[str], chunk: RecordChunk) -> list[int]:
        kept = self._kept_stamps(chunk)
        if kept is None:
            return self.parser.parse_many(values)
        return kept.tolist() if isinstance(kept, np.ndarray) else kept

    def _kept_stamps(self, chunk: RecordChunk) -> np.ndarray | list[int] | None:
        """The timestamps :meth:`validate_chunk` parsed for this very chunk (every record passed), if any."""
        kept = self._stamps
        if kept is not None and kept[0] == chunk.first_row and len(kept[1]) == len(chunk):
            return kept[1]
        return None

    def _keys(self, entities: set[tuple[str, int]], result: JobResult) -> dict[tuple[str, int], StoredKey]:
        """The key of each entity: from the job's cache, else from the key store in one bulk call."""
        cache = self._key_cache
        out: dict[tuple[str, int], StoredKey] = {}
        missing: set[tuple[str, int]] = set()
        for entity in entities:
            hit = cache.get(entity)
            if hit is None:
                missing.add(entity)
            else:
                out[entity] = hit
        result.keys_reused += len(out)
        for entity, stored in self._fetch_keys(missing).items():
            out[entity] = stored
            if stored.created:
                result.keys_created += 1
                # created by this call only: a later chunk that finds it here reuses it
                link, keyset, window = stored.key_link, stored.keyset, stored.window_start
                stored = StoredKey(link, keyset, window, stored.policy_id, stored.expires_at)
            else:
                result.keys_reused += 1
            cache.put(entity, stored)
        return out

    def _fetch_keys(self, entities: set[tuple[str, int]]) -> dict[tuple[str, int], StoredKey]:
        if not entities:
            return {}
        policy, days = self.config.policy_id, self.config.retention_days
        if not days:
            return self.key_store.get_or_create(self.group_id, entities, policy_id=policy)
        # a key expires retention_days after the end of its window
        out: dict[tuple[str, int], StoredKey] = {}
        for window in {w for _, w in entities}:
            part = {e for e in entities if e[1] == window}
            expires = window + DAY_MS * (1 + days)
            out.update(self.key_store.get_or_create(self.group_id, part, policy_id=policy, expires_at=expires))
        return out

    def _link_subjects(self, pairs: set[tuple[str, str]]) -> None:
        """(data subject digest, key link) pairs to remember in the key store."""
        # written in batches (one key-store transaction each), all before any output is committed
        # (see flush), so a subject can always be forgotten
        done = self._subjects_linked
        self._subjects_held.update(pair for pair in pairs if pair not in done)
        if len(self._subjects_held) >= SUBJECT_BATCH:
            self.flush()

    def flush(self) -> None:
        """Write the held-back (data subject, key link) pairs to the key store."""
        pairs, done = self._subjects_held, self._subjects_linked
        if not pairs:
            return
        self.key_store.link_subject_digests(self.group_id, pairs)
        if len(done) + len(pairs) > SUBJECT_CACHE_SIZE:
            done.clear()  # bounded: a pair recorded again is a no-op in the key store
        done.update(pairs)
        self._subjects_held = set()

    def _consent(self, columns: list[list[str]], n: int) -> list[ConsentLevels]:
        if self.consent_function is not None:
            header = self._header
            return [
                tuple(sorted(set(self.consent_function(dict(zip(header, row, strict=True))))))
                for row in zip(*columns, strict=True)
            ]
        if self._consent_idx is None:
            return [self.consent.defaults] * n
        levels = self.consent.levels
        return [levels(v) for v in columns[self._consent_idx]]

    def _write_keys(self, links: list[str], keys: dict[tuple[str, int], StoredKey]) -> None:
        assert self._keys_writer is not None
        write_keys(self._keys_writer, self._new_keys(links, keys))

    def _new_keys(self, links: list[str], keys: dict[tuple[str, int], StoredKey]) -> list[StoredKey]:
        """A chunk's keys not in the keys file yet, in order of first use (``links``: the chunk's entities' keys
        in that order), marked as in it: the keys file is the same whatever the chunk size."""
        by_link = {stored.key_link: stored for stored in keys.values()}
        created = {link for link, stored in by_link.items() if stored.created}  # made for this chunk: in no earlier one
        return [by_link[link] for link in self._keys_seen.first_seen(links, created)]


@dataclass(frozen=True)
class _EncryptWorkerSpec(WorkerSpec):
    """What a worker process needs to encrypt chunks like its parent job (the key store as already opened)."""

    config: BatchJobConfig
    contract: DataContract
    store: dict[str, object]
    source_path: str
    header: list[str]
    consent_function: ConsentFunction | None
    job_id: str
    key_cache_size: int

    def build(self) -> EncryptJob:
        store = open_worker_store(self.store)  # a worker process only digests data subjects with it
        job = EncryptJob(
            self.config, self.contract, store, no_storage, source_path=self.source_path,  # type: ignore[arg-type]
            consent_function=self.consent_function, job_id=self.job_id, key_cache_size=self.key_cache_size,
        )  # fmt: skip
        job.check_header(self.header)
        loc = self.config.encrypted_data
        header = [*self.header, *META_COLUMNS]
        job._writer = record_writer(  # type: ignore[assignment]
            io.BytesIO(), header, data_format=loc.data_format, charset=loc.charset, write_header=False
        )
        return job


def _encrypt_arrow_columns(columns: list[pa.Array], entity_of: np.ndarray, keysets: list[Keyset]) -> list[pa.Array]:
    """The columns encrypted, record ``r`` under ``keysets[entity_of[r]]``.

    Each distinct (entity, value) pair of all the columns is encrypted once, with one cipher per
    entity: pairs are numbered entity * width + (the value's number among all columns' distinct
    values) and sorted. Intermediate lists are dropped as soon as they are used (memory per chunk).
    """
    n = len(entity_of)
    distincts = [distinct_binary(column) for column in columns]
    plain = pa.concat_arrays([values for values, _ in distincts])
    width = len(plain)
    offsets = np.cumsum([0] + [len(values) for values, _ in distincts[:-1]])
    codes = np.concatenate(
        [entity_of * width + (offset + c) for offset, (_, c) in zip(offsets, distincts, strict=True)]
    )
    del distincts
    pairs, index = np.unique(codes, return_inverse=True)
    del codes
    owners, numbers = np.divmod(pairs, width)
    starts = np.flatnonzero(np.diff(owners, prepend=-1))  # where each entity's pairs begin
    bounds = [*starts.tolist(), len(pairs)]
    taken = plain.take(int64_column(numbers))
    del plain
    lengths = token_lengths(integers(pc.binary_length(taken), null=0))
    ordered: list[bytes] = taken.to_pylist()  # Python objects made once, in C
    del taken
    data = encrypt_grouped(owners[starts].tolist(), bounds, ordered, keysets)
    del ordered
    if len(data) != int(lengths.sum()):  # the column below would be garbled: never write it
        raise AssertionError("ciphertexts are not of the lengths their values give")
    tokens = packed_utf8_column(data, lengths, check=False)  # base64: ASCII
    index = index.reshape(-1)
    return [tokens.take(int64_column(index[k * n : (k + 1) * n])) for k in range(len(columns))]


@dataclass(frozen=True)
class _ChunkKeys:
    """A chunk's keys as the job resolved them. ``keysets`` is secret: it only crosses a local pipe."""

    stamps: np.ndarray  # each record's timestamp, epoch ms
    entity_of: np.ndarray  # each record's entity number (entities in order of first appearance)
    links: list[str]  # each entity's key link
    keysets: list[Keyset]  # each entity's keyset

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # to a worker process, the keysets packed in one string: pickling ~10k Keyset objects one by one
        # cost this process ~0.6 s per 1M records (it is the one the workers wait on)
        return _unpacked_keys, (self.stamps, self.entity_of, self.links, pack_keysets(self.keysets))


def _unpacked_keys(stamps: np.ndarray, entity_of: np.ndarray, links: list[str], keysets: bytes) -> _ChunkKeys:
    return _ChunkKeys(stamps, entity_of, links, unpack_keysets(keysets))


@dataclass
class _Planned:
    """A chunk whose keys the job's process resolved, while a worker process has it."""

    links: list[str]  # its entities' key links, in order of first use
    keys: dict[tuple[str, int], StoredKey]
    new_keys: list[StoredKey] | None = None  # its keys new to the keys file, once picked (in file order) ...
    worker_writes_keys: bool = False  # ... and whether its worker makes their lines (picked before it went)


@dataclass(frozen=True)
class _NewKeyLines:
    """The keys of a planned chunk that are new to the file, for its worker process to write as keys-file
    lines: their entities (numbered as in the chunk's plan, in order of first use) and stored attributes."""

    entities: list[int]
    policies: list[str | None]
    expires: list[int | None]
    charset: str

    def encode(self, plan: _ChunkKeys) -> bytes:
        """The keys-file lines (what :func:`write_keys` writes for these keys)."""
        links = [plan.links[e] for e in self.entities]
        keysets = [plan.keysets[e] for e in self.entities]
        return key_lines(links, keysets, self.policies, self.expires, self.charset)


@dataclass(frozen=True)
class _PlannedChunk:
    """A valid Arrow chunk with its keys, for a worker process to encrypt and encode."""

    chunk: ArrowRecordChunk
    plan: _ChunkKeys
    new_keys: _NewKeyLines | None = None  # None: no keys file, or the job's process writes the chunk's new keys


@dataclass(frozen=True)
class _EncryptedChunk:
    """A chunk processed by a worker: everything the parent writes or counts, in file order."""

    bad: list[BadRow]
    data: bytes
    rows_out: int
    keys: list[list[str | None]]  # keys-file rows of keys new to this worker, in first-use order
    keys_created: int
    keys_reused: int
    checks: FileChecks
    first_row: int
    subjects: _Subjects | None = None  # a planned chunk's data subjects, digested by the worker
    key_lines: bytes = b""  # a planned chunk's keys new to the file, as keys-file lines, if asked


@dataclass(frozen=True)
class _Subjects:
    """A chunk's distinct (data subject, entity) pairs, compact: what a worker process sends back is a few
    hundred KB, not ~10k tuples of strings (whose memory the job's process's allocator then keeps: +20 MB)."""

    digests: str  # each distinct subject's digest (DIGEST_CHARS long), concatenated
    subject_at: np.ndarray  # each pair's subject: its number among the digests
    entity_at: np.ndarray  # each pair's entity: its number in the chunk's plan

    def pairs(self, links: list[str]) -> set[tuple[str, str]]:
        """The (subject digest, key link) pairs, made with these key links (the plan's, in this process)."""
        size = DIGEST_CHARS
        digests = [self.digests[i : i + size] for i in range(0, len(self.digests), size)]
        return {(digests[s], links[e]) for s, e in zip(self.subject_at.tolist(), self.entity_at.tolist(), strict=True)}
