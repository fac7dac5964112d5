"""DeriveJob: an encrypted file → one output per ``derived_data`` entry, by consent.

For each output, a record is kept only if its consent suffices (CUMULATIVE:
its highest level ≥ the requested level; GRANULAR: its levels include every
requested level); records without enough consent are excluded and counted.
In a kept record, exactly the PII fields the consent covers are decrypted
(CUMULATIVE: purpose ≤ level; GRANULAR: purpose in the set); other PII
fields stay ciphertext. Masked fields are replaced by their hash.

A ciphertext that does not decrypt is an error naming the row and the field,
never an empty or garbage value.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

from airflow_provider_strm.core.config import BatchJobConfig, DerivedDataConfig
from airflow_provider_strm.core.consent import parse_consent_value
from airflow_provider_strm.core.contract import DataContract
from airflow_provider_strm.core.crypto import Keyset
from airflow_provider_strm.core.csvio import DEFAULT_CHUNK_ROWS, BadRow, CsvRecordWriter, RecordChunk
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
)
from airflow_provider_strm.core.keystore import KeyStore
from airflow_provider_strm.core.masking import Masker, hmac_sha256_masker, murmur3_masker
from airflow_provider_strm.core.seen import KEY_CACHE_SIZE, LruCache
from airflow_provider_strm.core.storage import PendingObject

#: Finds the keysets of key links (absent links are simply missing from the result).
KeyLookup = Callable[[Iterable[str]], Mapping[str, Keyset]]
#: Resolves a connection id to the secret bytes of an HMAC masking key.
SecretResolver = Callable[[str], bytes]

_LINK = "strmMeta.keyLink"
_CONSENT = "strmMeta.consentLevels"


def key_store_lookup(store: KeyStore) -> KeyLookup:
    def lookup(links: Iterable[str]) -> Mapping[str, Keyset]:
        return {link: k.keyset for link, k in store.keys_by_link(links).items()}

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

    def __init__(
        self,
        config: BatchJobConfig,
        contract: DataContract,
        keys: KeyStore | KeyLookup,
        storages: StorageResolver,
        *,
        source_path: str | None = None,
        encrypted_path: str | None = None,
        secrets: SecretResolver | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        checkpoint_rows: int | None = None,
        context: dict[str, object] | None = None,
        job_id: str | None = None,
        workers: int = 1,
    ) -> None:
        if not config.derived_data:
            raise ConfigError("derived_data", "a derive job needs at least one derived_data target")
        source = source_path or config.source_data.path
        enc_path = encrypted_path or (config.encrypted_data.output_path(source, "encrypted") if source else "")
        store = keys if isinstance(keys, KeyStore) else None
        super().__init__(
            config, contract, store, storages,
            input_location=config.encrypted_data, input_path=enc_path,
            group_id=group_of(config, source or enc_path), chunk_rows=chunk_rows, checkpoint_rows=checkpoint_rows,
            context=context, job_id=job_id, workers=workers,
        )  # fmt: skip
        self.lookup: KeyLookup = key_store_lookup(keys) if isinstance(keys, KeyStore) else keys
        self.source_path = source
        self.naming_path = source or _strip_suffix(enc_path, "-encrypted")
        self.secrets = secrets
        self.targets: list[_Target] = []
        # keys read once per job, not once per chunk; bounded so memory stays flat
        self._key_cache: LruCache[str, Keyset] = LruCache(KEY_CACHE_SIZE)

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

        Plaintexts are kept (by row number) for :meth:`process_chunk`, so each value is decrypted once
        however many outputs show it.
        """
        columns = chunk.columns
        links = columns[self._link_idx]
        bad: list[BadRow] = []
        self._levels: dict[int, tuple[int, ...]] = {}
        for i, (value, row) in enumerate(zip(columns[self._consent_idx], chunk.rows, strict=True)):
            levels = parse_consent_value(value)
            if levels is None:
                bad.append(BadRow(row, "unreadable strmMeta.consentLevels", chunk.record_text(i), _CONSENT))
            else:
                self._levels[row] = levels
        keysets = self._keysets(set(links))
        # one cipher per key of this chunk only (an AES-SIV object holds ~4 KB of OpenSSL state)
        ciphers = {link: ks.cipher() for link, ks in keysets.items()}
        self._gone = self._removed({link for link in links if link not in ciphers})
        self._plain: dict[tuple[int, int], str] = {}
        for i, row in enumerate(chunk.rows):
            levels = self._levels.get(row)
            if levels is None or links[i] in self._gone:
                continue
            needed = set().union(*(t.decrypt for t in self.targets if t.admits(levels)))
            for col in sorted(needed):
                value = columns[col][i]
                if value == "":
                    continue
                cipher = ciphers.get(links[i])
                try:
                    if cipher is None:
                        raise DecryptionError(f"no key for keyLink {links[i]}")
                    self._plain[(col, row)] = cipher.decrypt(value)
                except DecryptionError as exc:
                    bad.append(BadRow(row, f"cannot decrypt: {exc}", chunk.record_text(i), self._header[col]))
                    break
        return bad

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
        columns, rows = chunk.columns, chunk.rows
        links = columns[self._link_idx]
        for link in links:
            reason = self._gone.get(link)
            if reason is not None:
                result.excluded_by_reason[reason] = result.excluded_by_reason.get(reason, 0) + 1
        for target in self.targets:
            keep = [i for i, row in enumerate(rows) if links[i] not in self._gone and target.admits(self._levels[row])]
            target.excluded += len(chunk) - len(keep)
            out: list[list[str]] = []
            for col, values in enumerate(columns):
                if col in target.decrypt:
                    kept = [self._plain.get((col, rows[i]), values[i]) for i in keep]
                else:
                    kept = [values[i] for i in keep]
                if col in target.masks:
                    kept = self._mask(kept, target.masks[col], plain=col not in self._pii or col in target.decrypt)
                out.append(kept)
            assert target.writer is not None
            target.writer.write_columns(out)
            target.rows_out += len(keep)

    # ------------------------------------------------------------------ worker processes

    def parallel_reason(self) -> str | None:
        reason = super().parallel_reason()
        if reason is None and self.key_store is None:
            reason = "worker processes read keys from a key store, not from a keys file"
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
            outputs.append((sink.getvalue(), target.rows_out - rows_out, target.excluded - excluded))
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
                target.writer.write_encoded(data, rows_out)
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

    @staticmethod
    def _mask(values: list[str], masker: Masker, *, plain: bool) -> list[str]:
        if not plain:
            return values  # a PII field outside the consent stays ciphertext, masked or not
        return [masker(v) if v != "" else v for v in values]


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
            self.config, self.contract, KeyStore.from_worker_spec(self.store), no_storage,
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
    outputs: list[tuple[bytes, int, int]]
    excluded_by_reason: dict[str, int]


def _strip_suffix(path: str, suffix: str) -> str:
    p = PurePosixPath(path)
    stem = p.name.split(".")[0]
    if stem.endswith(suffix):
        stem = stem[: -len(suffix)]
    return str(p.with_name(stem + "".join(p.suffixes)))
