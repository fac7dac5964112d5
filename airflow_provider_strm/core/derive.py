"""DeriveJob: an encrypted file → one output per ``derived_data`` entry, by consent.

For each output, a record is kept only if its consent suffices (CUMULATIVE:
its highest level ≥ the requested level; GRANULAR: its levels include every
requested level); records without enough consent are excluded and counted.
In a kept record, exactly the PII fields the consent covers are decrypted
(CUMULATIVE: purpose ≤ level; GRANULAR: purpose in the set); other PII
fields stay ciphertext. Masked fields are replaced by their hash.

A ciphertext that does not decrypt is an error naming the row and the field,
never an empty or garbage value. Only the keys of records that some output decrypts are read
(and unwrapped); a removed key excludes its records from every output all the same.
"""

from __future__ import annotations

import io
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import accumulate
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_strm.core.columnar import as_array, bool_column, int64_column, utf8_column
from airflow_provider_strm.core.config import BatchJobConfig, DerivedDataConfig
from airflow_provider_strm.core.consent import parse_consent_value
from airflow_provider_strm.core.contract import DataContract
from airflow_provider_strm.core.crypto import Keyset, decrypt_columns, decrypt_grouped
from airflow_provider_strm.core.csvio import (
    ArrowRecordChunk,
    BadRow,
    CsvRecordWriter,
    RecordChunk,
)
from airflow_provider_strm.core.errors import ConfigError, DecryptionError
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
from airflow_provider_strm.core.keyreader import KeyReader, open_worker_store
from airflow_provider_strm.core.masking import Masker, hmac_sha256_masker, murmur3_masker
from airflow_provider_strm.core.seen import KEY_CACHE_SIZE, LruCache
from airflow_provider_strm.core.shared import SharedBytes
from airflow_provider_strm.core.storage import PendingObject

#: Finds the keysets of key links (absent links are simply missing from the result).
KeyLookup = Callable[[Iterable[str]], Mapping[str, Keyset]]
#: Resolves a connection id to the secret bytes of an HMAC masking key.
SecretResolver = Callable[[str], bytes]

#: records per chunk of a derive job: it holds a chunk's plaintexts for every output, so smaller
#: chunks than an encrypt job's keep it under 300 MB (and its per-chunk costs are small)
DERIVE_CHUNK_ROWS = 20_000

_LINK = "strmMeta.keyLink"
_CONSENT = "strmMeta.consentLevels"
_CONSENT_KINDS = 4096  # distinct consent values remembered per job (a file has a handful)


def key_store_lookup(store: KeyReader) -> KeyLookup:
    def lookup(links: Iterable[str]) -> Mapping[str, Keyset]:
        return store.keysets_by_link(links)

    return lookup


@dataclass
class _Target:
    config: DerivedDataConfig
    path: str
    decrypt: frozenset[int]  # column indexes decrypted for this output
    masks: dict[int, Masker]  # column index → masker
    writer: CsvRecordWriter | None = None
    rows_out: int = 0
    excluded: int = 0

    def admits(self, levels: tuple[int, ...]) -> bool:
        wanted = self.config.consent_levels
        if self.config.consent_level_type == "CUMULATIVE":
            return bool(levels) and max(levels) >= wanted[0]
        return set(wanted) <= set(levels)


def derived_name(target: DerivedDataConfig) -> str:
    return "derived-" + "-".join(str(level) for level in target.consent_levels)


class DeriveJob(BatchJob):
    """Writes every ``derived_data`` target of a config from one encrypted file.

    :param keys: where keys come from: a :class:`KeyStore`, or a lookup such as :func:`keys_file_lookup`.
    :param encrypted_path: the encrypted file (default: what EncryptJob writes for ``source_path``).
    :param secrets: resolves ``masked_fields.secret_connection_id`` for ``HMAC_SHA256`` masking.
    :param workers: processes that decrypt chunks in parallel (1 = all in this process); reading and
        writing stay here, in file order, so outputs are byte-identical. Needs a key store (not a keys
        file), CSV or JSON Lines targets and no ``checkpoint_rows``; otherwise the job runs in one process and logs why.
    """

    kind = "derive"
    shared_outputs = True  # decrypted records never go to a spool file

    def __init__(
        self,
        config: BatchJobConfig,
        contract: DataContract,
        keys: KeyReader | KeyLookup,
        storages: StorageResolver,
        *,
        source_path: str | None = None,
        encrypted_path: str | None = None,
        secrets: SecretResolver | None = None,
        chunk_rows: int = DERIVE_CHUNK_ROWS,
        checkpoint_rows: int | None = None,
        context: dict[str, object] | None = None,
        job_id: str | None = None,
        workers: int = 1,
    ) -> None:
        if not config.derived_data:
            raise ConfigError("derived_data", "a derive job needs at least one derived_data target")
        source = source_path or config.source_data.path
        enc_path = encrypted_path or (config.encrypted_data.output_path(source, "encrypted") if source else "")
        store = keys if isinstance(keys, KeyReader) else None
        super().__init__(
            config, contract, store, storages,
            input_location=config.encrypted_data, input_path=enc_path,
            group_id=group_of(config, source or enc_path), chunk_rows=chunk_rows, checkpoint_rows=checkpoint_rows,
            context=context, job_id=job_id, workers=workers,
        )  # fmt: skip
        self.lookup: KeyLookup = key_store_lookup(keys) if isinstance(keys, KeyReader) else keys
        self.source_path = source
        self.naming_path = source or _strip_suffix(enc_path, "-encrypted")
        self.secrets = secrets
        self.targets: list[_Target] = []
        # keys read once per job, not once per chunk; bounded so memory stays flat
        self._key_cache: LruCache[str, Keyset] = LruCache(KEY_CACHE_SIZE)
        self._consent_kinds: dict[str, _ConsentKind | None] = {}

    # ------------------------------------------------------------------ BatchJob hooks

    def check_header(self, header: list[str]) -> None:
        require_columns(header, self.input_name, {"strmMeta.keyLink": _LINK, "strmMeta.consentLevels": _CONSENT})
        self._header = header
        self._link_idx = header.index(_LINK)
        self._consent_idx = header.index(_CONSENT)
        pii = self.contract.pii_fields
        self._pii = {i: pii[h] for i, h in enumerate(header) if h in pii}
        ref = str(self.config.contract_ref)
        for target in self.config.derived_data:
            levels = set(target.consent_levels)
            if target.consent_level_type == "CUMULATIVE":
                decrypt = {i for i, purpose in self._pii.items() if purpose <= target.consent_levels[0]}
            else:
                decrypt = {i for i, purpose in self._pii.items() if purpose in levels}
            masks: dict[int, Masker] = {}
            if target.masked_fields is not None:
                masker = self._masker(target)
                for name in target.masked_fields.field_patterns.get(ref, ()):
                    if name in header:
                        masks[header.index(name)] = masker
            path = target.target.output_path(self.naming_path, derived_name(target))
            self.targets.append(_Target(target, path, frozenset(decrypt), masks))
        #: the columns some output decrypts
        self._decrypted = sorted(set().union(*(t.decrypt for t in self.targets)))

    def _masker(self, target: DerivedDataConfig) -> Masker:
        masked = target.masked_fields
        assert masked is not None
        if masked.hash_type == "HMAC_SHA256":
            if self.secrets is None or not masked.secret_connection_id:
                raise ConfigError("derived_data.masked_fields.secret_connection_id", "HMAC_SHA256 needs a secret")
            return hmac_sha256_masker(self.secrets(masked.secret_connection_id))
        return murmur3_masker(masked.seed)

    def open_outputs(self, header: list[str], pending: list[PendingObject]) -> None:
        for target in self.targets:
            target.writer = self.open_output(target.config.target, target.path, header, pending)

    def validate_chunk(self, chunk: RecordChunk) -> list[BadRow]:
        """Decrypt what any output needs; records whose consent or ciphertexts cannot be read are bad.

        Plaintexts are kept for :meth:`process_chunk`, so each value is decrypted once however many
        outputs show it; consent is read once per distinct value. A chunk Arrow parsed is worked on
        whole columns at a time (:class:`_ArrowRecords`), any other record by record
        (:class:`_ListRecords`); both give the same outputs (tested).
        """
        table = _table_of(chunk)
        self._derived: _ArrowRecords | _ListRecords
        self._derived = _ListRecords(self, chunk) if table is None else _ArrowRecords(self, chunk, table)
        return self._derived.bad

    def _consent_kind(self, value: str) -> _ConsentKind | None:
        """What a ``strmMeta.consentLevels`` value means for the outputs (None: unreadable), once per value."""
        try:
            return self._consent_kinds[value]
        except KeyError:
            pass
        levels = parse_consent_value(value)
        kind = None
        if levels is not None:
            admits = tuple(t.admits(levels) for t in self.targets)
            needed = set().union(*(t.decrypt for t, ok in zip(self.targets, admits, strict=True) if ok))
            kind = _ConsentKind(admits, tuple(self._decrypted.index(col) for col in sorted(needed)))
        if len(self._consent_kinds) < _CONSENT_KINDS:
            self._consent_kinds[value] = kind
        return kind

    def _keysets(self, links: set[str]) -> dict[str, Keyset]:
        """The keys of these links: from the job's cache, else in one lookup (absent: unknown or removed)."""
        cache = self._key_cache
        out: dict[str, Keyset] = {}
        missing: list[str] = []
        for link in links:
            keyset = cache.get(link)
            if keyset is None:
                missing.append(link)
            else:
                out[link] = keyset
        if missing:
            for link, keyset in self.lookup(missing).items():
                cache.put(link, keyset)
                out[link] = keyset
        return out

    def process_chunk(self, chunk: RecordChunk, result: JobResult) -> None:
        """Write each output's records of the validated chunk (``chunk`` is it, or it minus its bad records)."""
        derived = self._derived
        for reason, count in derived.excluded_by_reason(chunk).items():
            result.excluded_by_reason[reason] = result.excluded_by_reason.get(reason, 0) + count
        for t, target in enumerate(self.targets):
            columns, kept = derived.output(t, chunk)
            target.excluded += len(chunk) - kept
            assert target.writer is not None
            target.writer.write_columns(columns)
            target.rows_out += kept

    # ------------------------------------------------------------------ worker processes

    def parallel_reason(self) -> str | None:
        reason = super().parallel_reason()
        if reason is None and self.key_store is None:
            reason = "worker processes read keys from a key store, not from a keys file"
        if reason is None and self.key_store is not None and self.key_store.in_memory:
            reason = "worker processes cannot read an in-memory SQLite key store (use a database file)"
        if reason is None and any(t.config.target.data_format == "parquet" for t in self.targets):
            reason = "a Parquet file is written by one writer (worker processes write CSV and JSON Lines)"
        return reason

    def worker_spec(self) -> _DeriveWorkerSpec:
        assert self.key_store is not None
        secrets = {}
        for target in self.config.derived_data:
            masked = target.masked_fields
            if masked and masked.hash_type == "HMAC_SHA256" and masked.secret_connection_id and self.secrets:
                secrets[masked.secret_connection_id] = self.secrets(masked.secret_connection_id)
        return _DeriveWorkerSpec(
            self.config, self.contract, self.key_store.worker_spec(), self.source_path, self.input_path,
            self._header, secrets, self.job_id, self._key_cache.size,
        )  # fmt: skip

    def work_on_chunk(self, chunk: RecordChunk) -> _DerivedChunk:
        chunk, bad, counts = self.split_chunk(chunk)
        before = [(t.rows_out, t.excluded) for t in self.targets]
        if len(chunk):
            self.process_chunk(chunk, counts)
        outputs = []
        for target, (rows_out, excluded) in zip(self.targets, before, strict=True):
            assert target.writer is not None
            sink = target.writer.sink
            assert isinstance(sink, io.BytesIO)
            data = spool(sink.getvalue(), disk=False)  # decrypted: shared memory or the pipe, never a disk
            outputs.append((data, target.rows_out - rows_out, target.excluded - excluded))
            sink.seek(0)
            sink.truncate()
        return _DerivedChunk(bad, outputs, counts.excluded_by_reason)

    def absorb(self, done: object, result: JobResult) -> None:
        """A worker's chunk, in file order: dead letters, then each output's records and counts."""
        assert isinstance(done, _DerivedChunk)
        if done.bad:
            self.reject(done.bad, result)
        for target, (data, rows_out, excluded) in zip(self.targets, done.outputs, strict=True):
            assert target.writer is not None
            if data:
                self.write_back(target.writer, data, rows_out)
            target.rows_out += rows_out
            target.excluded += excluded
        for reason, count in done.excluded_by_reason.items():
            result.excluded_by_reason[reason] = result.excluded_by_reason.get(reason, 0) + count

    def checkpoint_state(self) -> dict[str, object]:
        return {"targets": [[t.rows_out, t.excluded] for t in self.targets]}

    def restore(self, state: dict[str, object]) -> None:
        for target, (rows_out, excluded) in zip(self.targets, state["targets"], strict=True):  # type: ignore[call-overload]
            target.rows_out, target.excluded = rows_out, excluded

    def finish(self, result: JobResult) -> None:
        for target in self.targets:
            assert target.writer is not None
            name = derived_name(target.config)
            self.publish(result, name, target.config.target, target.path)
            result.bytes_out += target.writer.bytes_written
            result.targets.append(
                {"name": name, "path": result.outputs[name], "rows_out": target.rows_out, "excluded": target.excluded}
            )
        # the job-level counts are those of the first output; each target balances on its own
        first = self.targets[0]
        result.rows_out, result.excluded = first.rows_out, first.excluded

    # ------------------------------------------------------------------ steps

    def _removed(self, links: set[str]) -> dict[str, str]:
        """Keys deliberately removed (forgotten subject, expired): their records are excluded, not errors."""
        if not links or self.key_store is None:
            return {}
        return self.key_store.removed(links)


@dataclass(frozen=True, slots=True)
class _ConsentKind:
    """What one ``strmMeta.consentLevels`` value means: which outputs admit the record, what they decrypt."""

    admits: tuple[bool, ...]  # per output
    decrypt: tuple[int, ...]  # positions in DeriveJob._decrypted, ascending


def _table_of(chunk: RecordChunk) -> pa.Table | None:
    """The Arrow table of a chunk Arrow parsed (whose Python lists are only made when asked for)."""
    return chunk.table if isinstance(chunk, ArrowRecordChunk) else None


def _mask(values: list[str], masker: Masker) -> list[str]:
    """Each non-empty value hashed; a repeated value is hashed once."""
    hashed = {v: masker(v) for v in set(values) if v != ""}
    return [hashed.get(v, v) for v in values]


def _mask_array(values: pa.Array, masker: Masker) -> pa.Array:
    """:func:`_mask` of an Arrow column: each distinct value hashed once."""
    encoded = values.dictionary_encode()
    hashed = _mask(encoded.dictionary.to_pylist(), masker)
    return utf8_column([v.encode("utf-8") for v in hashed]).take(encoded.indices)


class _ListRecords:
    """A validated chunk held as Python lists (any reader), decrypted record by record, grouped by key."""

    def __init__(self, job: DeriveJob, chunk: RecordChunk) -> None:
        self.job = job
        self.chunk = chunk
        columns = chunk.columns
        self.links = links = columns[job._link_idx]
        self.kinds = kinds = [job._consent_kind(value) for value in columns[job._consent_idx]]
        self.bad = [
            BadRow(chunk.rows[i], "unreadable strmMeta.consentLevels", chunk.record_text(i), _CONSENT)
            for i, kind in enumerate(kinds)
            if kind is None
        ]
        # only the keys of records some output decrypts a field of are read
        keysets = job._keysets({link for link, k in zip(links, kinds, strict=True) if k is not None and k.decrypt})
        self.gone = gone = job._removed({link for link in links if link not in keysets})
        wanted = [() if k is None or link in gone else k.decrypt for k, link in zip(kinds, links, strict=True)]
        plain, failed = decrypt_columns(links, [columns[col] for col in job._decrypted], keysets, wanted)
        for i, (pos, exc) in sorted(failed.items()):
            field = job._header[job._decrypted[pos]]
            self.bad.append(BadRow(chunk.rows[i], f"cannot decrypt: {exc}", chunk.record_text(i), field))
        self.plain = dict(zip(job._decrypted, plain, strict=True))

    def _positions(self, chunk: RecordChunk) -> list[int]:
        """Where each record of ``chunk`` (the validated chunk, or it minus bad records) is in the validated one."""
        if chunk is self.chunk:
            return list(range(len(chunk)))
        position = {row: i for i, row in enumerate(self.chunk.rows)}
        return [position[row] for row in chunk.rows]

    def excluded_by_reason(self, chunk: RecordChunk) -> Counter[str]:
        gone = self.gone
        if not gone:
            return Counter()
        links = self.links
        return Counter(gone[links[i]] for i in self._positions(chunk) if links[i] in gone)

    def output(self, t: int, chunk: RecordChunk) -> tuple[list[list[str]], int]:
        """Output ``t``'s columns of the records of ``chunk`` it keeps, and how many it keeps."""
        job, target, gone, links, kinds = self.job, self.job.targets[t], self.gone, self.links, self.kinds
        keep = [i for i in self._positions(chunk) if kinds[i].admits[t] and links[i] not in gone]  # type: ignore[union-attr]
        out: list[list[str]] = []
        for col, values in enumerate(self.chunk.columns):
            masker = target.masks.get(col)
            if col in target.decrypt:
                values = self.plain[col]
            elif col in job._pii:
                masker = None  # a PII field outside the consent stays ciphertext, masked or not
            kept = [values[i] for i in keep]
            out.append(kept if masker is None else _mask(kept, masker))
        return out, len(keep)


class _ArrowRecords:
    """A validated chunk Arrow parsed, worked on whole columns at a time.

    Python runs once per distinct consent value, key and (key, ciphertext) pair, not once per
    record; columns no output changes are only taken from the chunk's table, never converted.
    Arrays are built from buffers, not with ``pa.array``, which imports pandas (seconds) to check
    whether a list is a pandas object.
    """

    def __init__(self, job: DeriveJob, chunk: RecordChunk, table: pa.Table) -> None:
        self.job = job
        self.chunk = chunk
        self.table = table
        self.n = table.num_rows
        links = as_array(table.column(job._link_idx)).dictionary_encode()
        self.link_names: list[str] = links.dictionary.to_pylist()
        self.link_codes: pa.Array = links.indices
        consents = as_array(table.column(job._consent_idx)).dictionary_encode()
        self.kinds = kinds = [job._consent_kind(value) for value in consents.dictionary.to_pylist()]
        self.consent_codes: pa.Array = consents.indices
        self.bad: list[BadRow] = []
        if None in kinds:
            unreadable = self._by_consent([kind is None for kind in kinds])
            for i in pc.indices_nonzero(unreadable).to_pylist():
                self.bad.append(
                    BadRow(chunk.rows[i], "unreadable strmMeta.consentLevels", chunk.record_text(i), _CONSENT)
                )
        keysets = job._keysets(self._decrypting_links())
        self.gone = gone = job._removed({link for link in self.link_names if link not in keysets})
        self.kept_keys: pa.Array | None = None  # records whose key was not removed (None: all)
        if gone:
            self.kept_keys = bool_column([link not in gone for link in self.link_names]).take(self.link_codes)
        needing = []  # per decrypted column, the records that need it decrypted
        for pos in range(len(job._decrypted)):
            needs = self._by_consent([kind is not None and pos in kind.decrypt for kind in kinds])
            needing.append(needs if self.kept_keys is None else pc.and_(needs, self.kept_keys))
        plain, failed = self._decrypt(needing, [keysets.get(link) for link in self.link_names])
        self.plain = dict(zip(job._decrypted, plain, strict=True))
        for i, (pos, exc) in sorted(failed.items()):
            field = job._header[job._decrypted[pos]]
            self.bad.append(BadRow(chunk.rows[i], f"cannot decrypt: {exc}", chunk.record_text(i), field))

    def _decrypting_links(self) -> set[str]:
        """The key links of the records some output decrypts a field of: only their keys are read."""
        decrypting = [kind is not None and bool(kind.decrypt) for kind in self.kinds]
        if all(decrypting):
            return set(self.link_names)
        codes = pc.unique(self.link_codes.filter(self._by_consent(decrypting)))
        return {self.link_names[code] for code in codes.to_pylist()}

    def _by_consent(self, per_consent: list[bool]) -> pa.Array:
        """A record mask from a flag per distinct consent value."""
        return bool_column(per_consent).take(self.consent_codes)

    def _decrypt(
        self, needing: list[pa.Array], keysets: list[Keyset | None]
    ) -> tuple[list[pa.Array], dict[int, tuple[int, DecryptionError]]]:
        """Each decrypted column whole (values not needed as they are), and the failed records.

        The needed values of every column are pooled, so each distinct (key, ciphertext) pair is
        decrypted once, in key order (one cipher per key), whichever column it came from.
        """
        columns = [as_array(self.table.column(col)) for col in self.job._decrypted]
        rows = [pc.indices_nonzero(needs) for needs in needing]
        if sum(len(at) for at in rows) == 0:
            return columns, {}
        values = pa.concat_arrays([column.take(at) for column, at in zip(columns, rows, strict=True)])
        owners = pa.concat_arrays([self.link_codes.take(at) for at in rows]).cast(pa.int64())
        ciphertexts = values.dictionary_encode()
        distinct = int64_column([len(ciphertexts.dictionary)])[0]
        pairs = pc.add(pc.multiply(owners, distinct), ciphertexts.indices.cast(pa.int64())).dictionary_encode()
        in_order = pc.sort_indices(pairs.dictionary)  # by owner: one key's pairs are adjacent
        ordered = pairs.dictionary.take(in_order)
        pair_owners = pc.divide(ordered, distinct)
        pair_values = ciphertexts.dictionary.take(pc.subtract(ordered, pc.multiply(pair_owners, distinct)))
        plains, errors = decrypt_grouped(pair_owners.to_pylist(), pair_values.cast(pa.binary()).to_pylist(), keysets)
        where = pc.sort_indices(in_order).take(pairs.indices)  # each pooled value's place in plains
        pooled = utf8_column(plains).take(where)
        out: list[pa.Array] = []
        failed: dict[int, tuple[int, DecryptionError]] = {}
        if errors:  # rare: find the records of the pairs that failed, each at its first failing column
            starts = list(accumulate((len(at) for at in rows), initial=0))
            failing = pc.is_in(where.cast(pa.int64()), value_set=int64_column(sorted(errors)))
            for k in pc.indices_nonzero(failing).to_pylist():
                pos = bisect_right(starts, k) - 1
                i, j = rows[pos][k - starts[pos]].as_py(), where[k].as_py()
                if i not in failed:
                    link = self.link_names[pair_owners[j].as_py()]
                    failed[i] = (pos, errors[j] or DecryptionError(f"no key for keyLink {link}"))
        start = 0
        for column, needs, at in zip(columns, needing, rows, strict=True):
            if len(at):  # a failed record's value is "" here; it is not written
                column = pc.replace_with_mask(column, needs, pooled.slice(start, len(at)))
            out.append(column)
            start += len(at)
        return out, failed

    def _present(self, chunk: RecordChunk) -> pa.Array | None:
        """Which validated records ``chunk`` holds (None: all of them)."""
        if chunk is self.chunk:
            return None
        first, held = self.chunk.first_row, [False] * self.n
        for row in chunk.rows:
            held[row - first] = True
        return bool_column(held)

    def excluded_by_reason(self, chunk: RecordChunk) -> Counter[str]:
        if self.kept_keys is None:
            return Counter()
        rows = pc.invert(self.kept_keys)
        present = self._present(chunk)
        if present is not None:
            rows = pc.and_(rows, present)
        counts: Counter[str] = Counter()
        for item in pc.value_counts(self.link_codes.filter(rows)).to_pylist():
            counts[self.gone[self.link_names[item["values"]]]] += item["counts"]
        return counts

    def output(self, t: int, chunk: RecordChunk) -> tuple[list[pa.Array], int]:
        """Output ``t``'s columns of the records of ``chunk`` it keeps, and how many it keeps."""
        job, target = self.job, self.job.targets[t]
        keep = self._by_consent([kind is not None and kind.admits[t] for kind in self.kinds])
        for also in (self.kept_keys, self._present(chunk)):
            if also is not None:
                keep = pc.and_(keep, also)
        indices = pc.indices_nonzero(keep)
        kept = len(indices)
        every = kept == self.n
        unchanged = {
            col: n
            for n, col in enumerate(
                c
                for c in range(len(job._header))
                if c not in target.decrypt and (c in job._pii or c not in target.masks)
            )
        }
        taken = self.table.select(list(unchanged))
        if not every:
            taken = taken.take(indices)
        out: list[pa.Array] = []
        for col in range(len(job._header)):
            if col in unchanged:
                out.append(as_array(taken.column(unchanged[col])))
                continue
            values = self.plain[col] if col in target.decrypt else as_array(self.table.column(col))
            if not every:
                values = values.take(indices)
            masker = target.masks.get(col)
            out.append(values if masker is None else _mask_array(values, masker))
        return out, kept


@dataclass(frozen=True)
class _DeriveWorkerSpec(WorkerSpec):
    """What a worker process needs to derive chunks like its parent job (key store already open, secrets read)."""

    config: BatchJobConfig
    contract: DataContract
    store: dict[str, object]
    source_path: str | None
    encrypted_path: str
    header: list[str]
    secrets: dict[str, bytes]
    job_id: str
    key_cache_size: int

    def build(self) -> DeriveJob:
        job = DeriveJob(
            self.config, self.contract, open_worker_store(self.store), no_storage,
            source_path=self.source_path, encrypted_path=self.encrypted_path, secrets=self.secrets.__getitem__,
            job_id=self.job_id,
        )  # fmt: skip
        job._key_cache = LruCache(self.key_cache_size)
        job.check_header(self.header)
        for target in job.targets:
            loc = target.config.target
            target.writer = record_writer(  # type: ignore[assignment]
                io.BytesIO(), self.header, data_format=loc.data_format, charset=loc.charset, write_header=False
            )
        return job


@dataclass(frozen=True)
class _DerivedChunk:
    """A chunk derived by a worker: dead letters, and per output its CSV lines, rows and exclusions."""

    bad: list[BadRow]
    outputs: list[tuple[bytes | SharedBytes, int, int]]
    excluded_by_reason: dict[str, int]


def _strip_suffix(path: str, suffix: str) -> str:
    p = PurePosixPath(path)
    stem = p.name.split(".")[0]
    if stem.endswith(suffix):
        stem = stem[: -len(suffix)]
    return str(p.with_name(stem + "".join(p.suffixes)))
