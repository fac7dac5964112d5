"""Tink-compatible deterministic encryption (AES-SIV) and Tink JSON keysets.

This is the only module that touches key bytes. A key is a one-key Tink keyset
of type ``AesSivKey`` (64 bytes); a ciphertext is Tink's Deterministic AEAD
``AES256_SIV`` output with the ``TINK`` prefix:
``0x01 ‖ key id (4 bytes, big-endian) ‖ AES-SIV(key, plaintext, ad=[b""])``,
base64-encoded in files. Files encrypted here decrypt with Tink and with STRM,
and the other way round.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat, starmap

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from airflow_provider_strm.core.errors import DecryptionError

AES_SIV_TYPE_URL = "type.googleapis.com/google.crypto.tink.AesSivKey"
_TINK_PREFIX = 0x01
_KEY_SIZE = 64
# Serialized google.crypto.tink.AesSivKey proto: field 2 (key_value), length 64; version 0 is omitted.
_PROTO_HEADER = b"\x12\x40"
_VALUE_CHARS = (len(_PROTO_HEADER) + _KEY_SIZE) // 3 * 4  # base64 of the proto: 66 bytes, 88 characters
_NO_AD = [b""]
_CLEAR_TOP_BIT = bytes(b & 0x7F for b in range(256))
#: A cleartext Tink JSON keyset of one AES-SIV key, as STRM's keys files hold it: ``% (key id, key value, key id)``
TINK_JSON = (
    '{"primaryKeyId":%d,"key":[{"keyData":{"typeUrl":"' + AES_SIV_TYPE_URL + '","value":"%s",'
    '"keyMaterialType":"SYMMETRIC"},"status":"ENABLED","keyId":%d,"outputPrefixType":"TINK"}]}'
)  # Tink's encryptDeterministically(pt, ad=b"") passes one empty associated-data item.


@dataclass(frozen=True, slots=True)
class Keyset:
    """A one-key Tink keyset: the key's id (the ciphertext prefix) and its 64 secret bytes."""

    key_id: int
    key_bytes: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key_bytes) != _KEY_SIZE:
            raise ValueError(f"an AES-SIV key has {_KEY_SIZE} bytes, got {len(self.key_bytes)}")
        if not 0 < self.key_id < 2**32:
            raise ValueError("a Tink key id is a non-zero unsigned 32-bit integer")

    @classmethod
    def generate(cls) -> Keyset:
        key_id = 0
        while key_id == 0:
            key_id = secrets.randbits(31)  # Tink draws ids below 2^31, so they stay positive in Java
        return cls(key_id, os.urandom(_KEY_SIZE))

    @classmethod
    def generate_many(cls, n: int) -> list[Keyset]:
        """``n`` fresh keysets (what :meth:`generate` makes) from two draws of randomness."""
        ids = bytearray(os.urandom(4 * n))
        ids[::4] = ids[::4].translate(_CLEAR_TOP_BIT)  # Tink draws key ids below 2^31 ...
        key_ids = list(struct.unpack(f">{n}I", ids))
        while 0 in key_ids:  # ... and never 0
            key_ids[key_ids.index(0)] = secrets.randbits(31)
        keys = os.urandom(_KEY_SIZE * n)
        return list(map(cls, key_ids, [keys[i : i + _KEY_SIZE] for i in range(0, _KEY_SIZE * n, _KEY_SIZE)]))

    def to_tink_json(self) -> str:
        """The cleartext Tink JSON keyset, as STRM's keys files hold it (compact JSON, fixed key order)."""
        value = base64.b64encode(_PROTO_HEADER + self.key_bytes).decode()
        # what json.dumps(self._tink_doc(value), separators=(",", ":")) gives (tested), without its cost
        return TINK_JSON % (self.key_id, value, self.key_id)

    def _tink_doc(self, value: str) -> dict[str, object]:
        return {
            "primaryKeyId": self.key_id,
            "key": [
                {
                    "keyData": {
                        "typeUrl": AES_SIV_TYPE_URL,
                        "value": value,
                        "keyMaterialType": "SYMMETRIC",
                    },
                    "status": "ENABLED",
                    "keyId": self.key_id,
                    "outputPrefixType": "TINK",
                }
            ],
        }

    @classmethod
    def from_tink_json(cls, text: str) -> Keyset:
        """Read a cleartext Tink JSON keyset holding one enabled AES-SIV key with TINK prefix."""
        try:
            doc = json.loads(text)
            primary = int(doc["primaryKeyId"])
            entry = next(k for k in doc["key"] if int(k["keyId"]) == primary)
            data = entry["keyData"]
            if data["typeUrl"] != AES_SIV_TYPE_URL:
                raise ValueError(f"key type {data['typeUrl']} is not AesSivKey")
            if entry.get("outputPrefixType", "TINK") != "TINK":
                raise ValueError(f"output prefix {entry['outputPrefixType']} is not TINK")
            raw = base64.b64decode(data["value"], validate=True)
        except (ValueError, KeyError, TypeError, StopIteration, binascii.Error) as exc:
            raise ValueError(f"not a Tink AES-SIV JSON keyset: {type(exc).__name__}: {exc}") from None
        if not raw.startswith(_PROTO_HEADER) or len(raw) != len(_PROTO_HEADER) + _KEY_SIZE:
            raise ValueError("not a Tink AES-SIV JSON keyset: key value is not a 64-byte AesSivKey")
        return cls(primary, raw[len(_PROTO_HEADER) :])

    def to_secret_bytes(self) -> bytes:
        """Compact form for wrapping at rest: key id (4 bytes, big-endian) ‖ 64 key bytes."""
        return struct.pack(">I", self.key_id) + self.key_bytes

    @classmethod
    def from_secret_bytes(cls, data: bytes) -> Keyset:
        if len(data) != 4 + _KEY_SIZE:
            raise ValueError("not a wrapped AES-SIV keyset")
        return cls(struct.unpack(">I", data[:4])[0], data[4:])

    def cipher(self) -> DeterministicCipher:
        return DeterministicCipher(self)


def pack_keysets(keysets: Sequence[Keyset]) -> bytes:
    """Keysets as one string (each key's id, 4 bytes big-endian, then its 64 bytes), to hand to a worker
    process: ~15x cheaper to pickle than the Keyset objects. Secret, like the keysets."""
    return b"".join([k.key_id.to_bytes(4, "big") + k.key_bytes for k in keysets])


def unpack_keysets(data: bytes) -> list[Keyset]:
    """The keysets :func:`pack_keysets` packed, in order."""
    if len(data) % (4 + _KEY_SIZE):
        raise ValueError("not packed keysets")
    return list(starmap(Keyset, struct.iter_unpack(f">I{_KEY_SIZE}s", data)))


class DeterministicCipher:
    """Encrypts and decrypts field values under one keyset, Tink-compatibly.

    Deterministic by design: the same value under the same key gives the same
    ciphertext, which is what lets joins and group-bys work on pseudonyms.
    """

    __slots__ = ("_prefix", "_siv", "key_id")

    def __init__(self, keyset: Keyset) -> None:
        self.key_id = keyset.key_id
        self._prefix = struct.pack(">BI", _TINK_PREFIX, keyset.key_id)
        self._siv = AESSIV(keyset.key_bytes)

    def encrypt(self, plaintext: str) -> str:
        raw = self._siv.encrypt(plaintext.encode("utf-8"), _NO_AD)
        return base64.b64encode(self._prefix + raw).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        try:
            raw = base64.b64decode(ciphertext, validate=True)
        except (binascii.Error, ValueError):
            raise DecryptionError("ciphertext is not valid base64") from None
        if len(raw) < 5 + 16 or raw[:5] != self._prefix:
            raise DecryptionError(f"ciphertext was not made with key id {self.key_id}")
        try:
            return self._siv.decrypt(raw[5:], _NO_AD).decode("utf-8")
        except InvalidTag:
            raise DecryptionError("ciphertext does not authenticate under its key (tampered or wrong key)") from None
        except UnicodeDecodeError:
            raise DecryptionError("decrypted bytes are not UTF-8") from None


def ciphertext_key_id(ciphertext: str) -> int | None:
    """The Tink key id a ciphertext names, or None if it is not a Tink-prefixed ciphertext."""
    try:
        head = base64.b64decode(ciphertext[:8], validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(head) < 5 or head[0] != _TINK_PREFIX:
        return None
    return int.from_bytes(head[1:5], "big")


def encrypt_columns(
    links: Sequence[str], columns: Sequence[Sequence[str]], keysets: Mapping[str, Keyset]
) -> list[list[str]]:
    """Encrypt whole columns; row ``i`` of every column under the keyset of ``links[i]``.

    Rows are grouped by key, so each key's cipher exists once and only while its rows are
    encrypted (an AES-SIV object holds ~4 KB of OpenSSL state: holding one per key of a large
    chunk would cost more memory than the data). Deterministic encryption means a value
    repeated under one key is encrypted once. Empty values stay empty.
    """
    rows_of: dict[str, list[int]] = {}
    for i, link in enumerate(links):
        rows = rows_of.get(link)
        if rows is None:
            rows_of[link] = [i]
        else:
            rows.append(i)
    n = len(links)
    outs: list[list[str]] = [[""] * n for _ in columns]
    pairs = list(zip(columns, outs, strict=True))
    b64, pack, no_ad = binascii.b2a_base64, struct.pack, _NO_AD
    for link, rows in rows_of.items():
        keyset = keysets[link]
        siv_encrypt = AESSIV(keyset.key_bytes).encrypt
        prefix = pack(">BI", _TINK_PREFIX, keyset.key_id)
        if len(rows) == 1:  # a key seen once in this chunk: nothing to memoise
            i = rows[0]
            for column, out in pairs:
                value = column[i]
                if value:
                    out[i] = b64(prefix + siv_encrypt(value.encode("utf-8"), no_ad), newline=False).decode()
            continue
        memo: dict[str, str] = {}
        for column, out in pairs:
            for i in rows:
                value = column[i]
                if value:
                    token = memo.get(value)
                    if token is None:
                        token = b64(prefix + siv_encrypt(value.encode("utf-8"), no_ad), newline=False).decode()
                        memo[value] = token
                    out[i] = token
    return outs


def decrypt_columns(
    links: Sequence[str],
    columns: Sequence[Sequence[str]],
    keysets: Mapping[str, Keyset],
    wanted: Sequence[tuple[int, ...]],
) -> tuple[list[list[str]], dict[int, tuple[int, DecryptionError]]]:
    """Decrypt whole columns: in row ``i``, the columns ``wanted[i]`` (ascending indexes into ``columns``).

    Returns the columns with those values decrypted (every other value as given; empty values stay
    empty) and the rows that failed: row → (first failing column of ``wanted[i]``, the error
    :meth:`DeterministicCipher.decrypt` raises, or "no key" when ``links[i]`` has no keyset). A failed
    row's other values are not to be used. Rows are grouped by key, so each key's cipher exists once
    and only while its rows are decrypted; deterministic encryption means a ciphertext repeated under
    one key (a session's user id, say) is decrypted once.
    """
    rows_of: dict[str, list[int]] = {}
    for i, link in enumerate(links):
        if wanted[i]:
            rows = rows_of.get(link)
            if rows is None:
                rows_of[link] = [i]
            else:
                rows.append(i)
    outs = [list(column) for column in columns]
    errors: dict[int, tuple[int, DecryptionError]] = {}
    a2b, pack, no_ad = binascii.a2b_base64, struct.pack, _NO_AD
    for link, rows in rows_of.items():
        keyset = keysets.get(link)
        if keyset is None:
            for i in rows:
                col = next((c for c in wanted[i] if columns[c][i] != ""), None)
                if col is not None:
                    errors[i] = (col, DecryptionError(f"no key for keyLink {link}"))
            continue
        needs = wanted[rows[0]]
        by_needs = {needs: rows}
        if len(rows) > 1 and any(wanted[i] != needs for i in rows):
            by_needs = {}
            for i in rows:
                by_needs.setdefault(wanted[i], []).append(i)
        siv_decrypt = AESSIV(keyset.key_bytes).decrypt
        prefix = pack(">BI", _TINK_PREFIX, keyset.key_id)
        memo = {"": ""}
        for needs, rows_needing in by_needs.items():
            for col in needs:  # in order: a row's error is that of its first failing column
                column, out = columns[col], outs[col]
                for i in rows_needing:
                    value = column[i]
                    plain = memo.get(value)
                    if plain is None:
                        try:  # DeterministicCipher.decrypt's steps, without building its errors
                            raw = a2b(value, strict_mode=True)
                            if len(raw) >= 5 + 16 and raw[:5] == prefix:
                                plain = siv_decrypt(raw[5:], no_ad).decode("utf-8")
                        except (binascii.Error, ValueError, InvalidTag):  # UnicodeDecodeError is a ValueError
                            pass
                        if plain is None:
                            if i not in errors:
                                errors[i] = (col, _decrypt_error(keyset, value))
                            continue
                        memo[value] = plain
                    out[i] = plain
    return outs, errors


def _decrypt_error(keyset: Keyset, ciphertext: str) -> DecryptionError:
    """The error :meth:`DeterministicCipher.decrypt` raises for a ciphertext that failed a faster path."""
    try:
        keyset.cipher().decrypt(ciphertext)
    except DecryptionError as exc:
        return exc
    raise AssertionError("a ciphertext failed to decrypt only on the column path")  # pragma: no cover


def decrypt_grouped(
    owners: Sequence[int], values: Sequence[bytes], keysets: Sequence[Keyset | None]
) -> tuple[list[bytes], dict[int, DecryptionError | None]]:
    """Plaintexts (UTF-8 bytes) of (owner, ciphertext) pairs: ``values[i]`` under ``keysets[owners[i]]``.

    The pairs come grouped by owner (equal owners adjacent), so each key's cipher is made once and
    dropped before the next key's; give each distinct pair once. Empty values stay empty. A value
    that does not decrypt gives ``b""`` and, by position, the error :meth:`DeterministicCipher.decrypt`
    raises for it, or None if its owner has no keyset (the caller names the missing key).
    """
    out: list[bytes] = []
    append = out.append
    failed: dict[int, DecryptionError | None] = {}
    a2b, pack, no_ad = binascii.a2b_base64, struct.pack, _NO_AD
    current, keyset, siv_decrypt, prefix = -1, None, None, b""
    for i, (owner, value) in enumerate(zip(owners, values, strict=True)):
        if not value:
            append(b"")
            continue
        if owner != current:
            current, keyset = owner, keysets[owner]
            if keyset is not None:
                siv_decrypt = AESSIV(keyset.key_bytes).decrypt
                prefix = pack(">BI", _TINK_PREFIX, keyset.key_id)
        if keyset is None:
            append(b"")
            failed[i] = None
            continue
        try:  # DeterministicCipher.decrypt's steps, without building its errors
            raw = a2b(value, strict_mode=True)
            if len(raw) >= 5 + 16 and raw[:5] == prefix:
                plain = siv_decrypt(raw[5:], no_ad)  # type: ignore[misc]
                if not plain.isascii():
                    plain.decode("utf-8")
                append(plain)
                continue
        except (binascii.Error, ValueError, InvalidTag):  # UnicodeDecodeError is a ValueError
            pass
        append(b"")
        failed[i] = _decrypt_error(keyset, value.decode("utf-8", "surrogateescape"))
    return out, failed


def encrypt_grouped(
    owners: Sequence[int], bounds: Sequence[int], values: Sequence[bytes], keysets: Sequence[Keyset]
) -> bytearray:
    """Base64 ciphertexts of UTF-8 values, grouped by key, all of them in one buffer (each one's length:
    :func:`token_lengths` of the values' lengths).

    ``values[bounds[g]:bounds[g + 1]]`` are encrypted under ``keysets[owners[g]]``: each key's
    cipher is made once and dropped before the next key's. Empty values stay empty (length 0).
    One buffer rather than a bytes object per ciphertext: a chunk's ~150k ciphertexts would be
    ~20 MB of small objects at once, and as many again when gathered into a column.
    """
    data = bytearray()
    b64, pack, no_ad = binascii.b2a_base64, struct.pack, _NO_AD
    for g, owner in enumerate(owners):
        keyset = keysets[owner]
        encrypt = AESSIV(keyset.key_bytes).encrypt
        prefix = pack(">BI", _TINK_PREFIX, keyset.key_id)
        part = values[bounds[g] : bounds[g + 1]]
        if all(part):
            data += b"".join([b64(prefix + c, newline=False) for c in map(encrypt, part, repeat(no_ad, len(part)))])
        else:
            data += b"".join([b64(prefix + encrypt(v, no_ad), newline=False) if v else b"" for v in part])
    return data


def tink_key_values(keysets: Sequence[Keyset]) -> list[str]:
    """Each keyset's Tink key value (the base64 of its ``AesSivKey`` proto), as :meth:`Keyset.to_tink_json`
    writes it, from one base64 call: the proto is 66 bytes, a multiple of 3, so the base64 of consecutive
    ones is theirs one after another (no padding, no character shared)."""
    data = binascii.b2a_base64(b"".join([_PROTO_HEADER + k.key_bytes for k in keysets]), newline=False)
    text, size = data.decode("ascii"), _VALUE_CHARS
    return [text[i : i + size] for i in range(0, len(text), size)]


def token_lengths(sizes: np.ndarray) -> np.ndarray:
    """The length of the base64 ciphertext of a value of each of these sizes (bytes; 0 stays 0): the Tink
    prefix (5 bytes) and the SIV (16) before the value's own bytes, in base64 with its padding."""
    sizes = np.asarray(sizes, dtype=np.int64)
    return np.where(sizes == 0, 0, (sizes + 5 + 16 + 2) // 3 * 4)
