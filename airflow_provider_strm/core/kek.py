"""Key-encryption keys (KEKs): what wraps the key store's data-encryption key.

The store keeps one random data-encryption key (DEK) that wraps every keyset
(AES-256-GCM, bound to the key's keyLink); the DEK itself is wrapped by a KEK
provider. So a cloud KMS is called once when the store opens, not once per
key, and rotating the KEK re-wraps everything without touching a data key.

Providers: :class:`LocalKek` (a 32-byte master key from the key-store
connection, the default), :class:`AwsKmsKek` and :class:`GcpKmsKek`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from airflow_provider_strm.core.errors import KeyStoreError

_VERSION = b"\x01"


class KekProvider(Protocol):
    """Wraps and unwraps small secrets (the store's DEK). ``context`` binds a blob to its purpose."""

    name: str

    def wrap(self, plaintext: bytes, context: bytes) -> bytes: ...

    def unwrap(self, blob: bytes, context: bytes) -> bytes: ...


class AeadKey:
    """An AES-256-GCM wrapping key whose cipher is made once (wrapping thousands of keys per second)."""

    __slots__ = ("_aead", "key")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self._aead = AESGCM(key)

    def wrap(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, context)

    def wrap_many(self, plaintexts: Sequence[bytes], contexts: Sequence[bytes]) -> list[bytes]:
        """:meth:`wrap` of each plaintext under its context, the nonces drawn in one call (thousands of new keys)."""
        nonces = os.urandom(12 * len(plaintexts))
        encrypt, version = self._aead.encrypt, _VERSION
        out = []
        for i, (plaintext, context) in enumerate(zip(plaintexts, contexts, strict=True)):
            nonce = nonces[12 * i : 12 * i + 12]
            out.append(version + nonce + encrypt(nonce, plaintext, context))
        return out

    def unwrap(self, blob: bytes, context: bytes) -> bytes:
        if not blob or blob[:1] != _VERSION:
            raise KeyStoreError("a wrapped key has an unknown format")
        try:
            return self._aead.decrypt(blob[1:13], blob[13:], context)
        except InvalidTag:
            raise KeyStoreError("a wrapped key does not open with this key (wrong key-encryption key?)") from None


def aead_wrap(key: bytes, plaintext: bytes, context: bytes) -> bytes:
    return AeadKey(key).wrap(plaintext, context)


def aead_unwrap(key: bytes, blob: bytes, context: bytes) -> bytes:
    return AeadKey(key).unwrap(blob, context)


def parse_kek(value: str | bytes) -> bytes:
    """A local KEK given as base64 (or raw bytes): exactly 32 bytes."""
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
    """A fresh random local KEK, base64, for a connection's ``kek_secret``."""
    return base64.b64encode(os.urandom(32)).decode()


class LocalKek:
    """A local master key (32 bytes). ``name`` is a fingerprint, never the key."""

    def __init__(self, key: str | bytes) -> None:
        self._key = parse_kek(key)
        self.name = "local:" + hashlib.sha256(b"strm-kek-id" + self._key).hexdigest()[:12]

    def wrap(self, plaintext: bytes, context: bytes) -> bytes:
        return aead_wrap(self._key, plaintext, context)

    def unwrap(self, blob: bytes, context: bytes) -> bytes:
        return aead_unwrap(self._key, blob, context)

    def __repr__(self) -> str:
        return f"LocalKek({self.name})"


class AwsKmsKek:
    """An AWS KMS key (id, ARN or alias) through a boto3 ``kms`` client."""

    def __init__(self, client: Any, key_id: str) -> None:
        self.client, self.key_id = client, key_id
        self.name = f"aws-kms:{key_id}"

    def wrap(self, plaintext: bytes, context: bytes) -> bytes:
        try:
            return bytes(
                self.client.encrypt(
                    KeyId=self.key_id, Plaintext=plaintext, EncryptionContext={"strm": context.decode()}
                )["CiphertextBlob"]
            )
        except Exception as exc:
            raise KeyStoreError(f"AWS KMS key {self.key_id} cannot wrap: {type(exc).__name__}: {exc}") from None

    def unwrap(self, blob: bytes, context: bytes) -> bytes:
        try:
            return bytes(
                self.client.decrypt(
                    CiphertextBlob=blob, KeyId=self.key_id, EncryptionContext={"strm": context.decode()}
                )["Plaintext"]
            )
        except Exception as exc:
            raise KeyStoreError(f"AWS KMS key {self.key_id} cannot unwrap: {type(exc).__name__}") from None


class GcpKmsKek:
    """A Google Cloud KMS CryptoKey (``projects/.../cryptoKeys/...``) through a ``KeyManagementServiceClient``."""

    def __init__(self, client: Any, key_name: str) -> None:
        self.client, self.key_name = client, key_name
        self.name = f"gcp-kms:{key_name}"

    def wrap(self, plaintext: bytes, context: bytes) -> bytes:
        try:
            response = self.client.encrypt(
                request={"name": self.key_name, "plaintext": plaintext, "additional_authenticated_data": context}
            )
        except Exception as exc:
            raise KeyStoreError(f"Cloud KMS key {self.key_name} cannot wrap: {type(exc).__name__}: {exc}") from None
        return bytes(response.ciphertext)

    def unwrap(self, blob: bytes, context: bytes) -> bytes:
        try:
            response = self.client.decrypt(
                request={"name": self.key_name, "ciphertext": blob, "additional_authenticated_data": context}
            )
        except Exception as exc:
            raise KeyStoreError(f"Cloud KMS key {self.key_name} cannot unwrap: {type(exc).__name__}") from None
        return bytes(response.plaintext)
