"""Our AES-SIV keysets and ciphertexts are Tink's and STRM's, byte for byte."""

from __future__ import annotations

import base64
import json
from itertools import accumulate

import numpy as np
import pytest
import tink
from hypothesis import given, settings
from hypothesis import strategies as st
from tink import daead, secret_key_access

from airflow_provider_strm.core.columnar import packed_utf8_column
from airflow_provider_strm.core.crypto import (
    DeterministicCipher,
    Keyset,
    ciphertext_key_id,
    encrypt_columns,
    encrypt_grouped,
    pack_keysets,
    tink_key_values,
    token_lengths,
    unpack_keysets,
)
from airflow_provider_strm.core.errors import DecryptionError

daead.register()


def tink_primitive(keyset: Keyset) -> daead.DeterministicAead:
    handle = tink.json_proto_keyset_format.parse(keyset.to_tink_json(), secret_key_access.TOKEN)
    return handle.primitive(daead.DeterministicAead)


def test_the_real_strm_key_encrypts_the_real_plaintext_to_the_real_ciphertext(strm_vectors: dict) -> None:
    cipher = Keyset.from_tink_json(strm_vectors["encryptionKey"]).cipher()
    assert cipher.encrypt(strm_vectors["plaintext"]) == strm_vectors["ciphertext"]
    assert cipher.decrypt(strm_vectors["ciphertext"]) == "17850"


def test_the_real_strm_keyset_round_trips_through_our_json(strm_vectors: dict) -> None:
    keyset = Keyset.from_tink_json(strm_vectors["encryptionKey"])
    assert json.loads(keyset.to_tink_json()) == json.loads(strm_vectors["encryptionKey"])


KEYSET = Keyset.generate()
TINK = tink_primitive(KEYSET)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_tink_decrypts_what_we_encrypt_and_we_decrypt_what_tink_encrypts(value: str) -> None:
    keyset = KEYSET
    ours = keyset.cipher()
    theirs = TINK
    ct = ours.encrypt(value)
    assert theirs.decrypt_deterministically(base64.b64decode(ct), b"") == value.encode()
    tink_ct = base64.b64encode(theirs.encrypt_deterministically(value.encode(), b"")).decode()
    assert tink_ct == ct
    assert ours.decrypt(tink_ct) == value


def test_generated_keysets_are_valid_tink_keysets_with_the_tink_prefix() -> None:
    keyset = Keyset.generate()
    tink_primitive(keyset)  # parses as a Tink keyset
    ct = keyset.cipher().encrypt("x")
    assert ciphertext_key_id(ct) == keyset.key_id


def test_a_tampered_ciphertext_raises_not_returns_garbage() -> None:
    cipher = Keyset.generate().cipher()
    ct = cipher.encrypt("secret value")
    raw = bytearray(base64.b64decode(ct))
    raw[-1] ^= 1
    with pytest.raises(DecryptionError, match="does not authenticate"):
        cipher.decrypt(base64.b64encode(bytes(raw)).decode())


def test_a_ciphertext_of_another_key_is_refused_by_key_id() -> None:
    ct = Keyset.generate().cipher().encrypt("v")
    with pytest.raises(DecryptionError, match="key id"):
        Keyset.generate().cipher().decrypt(ct)


def test_not_base64_is_a_named_error() -> None:
    with pytest.raises(DecryptionError, match="base64"):
        DeterministicCipher(Keyset.generate()).decrypt("not base64!!")


@pytest.mark.parametrize(
    "text",
    ["{}", "not json", '{"primaryKeyId": 1, "key": []}', json.dumps({"primaryKeyId": 1, "key": [{"keyId": 1}]})],
)
def test_a_malformed_keyset_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="not a Tink AES-SIV JSON keyset"):
        Keyset.from_tink_json(text)


def test_a_keyset_never_shows_its_bytes_in_repr() -> None:
    keyset = Keyset.generate()
    assert keyset.key_bytes.hex() not in repr(keyset)
    assert str(list(keyset.key_bytes)) not in repr(keyset)


_KEYSETS = {f"link-{i}": Keyset.generate() for i in range(3)}


@settings(max_examples=150)
@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(_KEYSETS)), st.text(max_size=12), st.sampled_from(["", "x", "same"])),
        max_size=30,
    )
)
def test_encrypt_columns_equals_encrypting_each_value_on_its_own(rows) -> None:
    """The grouped, memoised column path is exactly the one-value-at-a-time path."""
    links = [r[0] for r in rows]
    columns = [[r[1] for r in rows], [r[2] for r in rows]]
    out = encrypt_columns(links, columns, _KEYSETS)
    for c, column in enumerate(columns):
        expected = [_KEYSETS[link].cipher().encrypt(v) if v else "" for link, v in zip(links, column, strict=True)]
        assert out[c] == expected


@given(st.integers(1, 2**31 - 1), st.binary(min_size=64, max_size=64))
def test_tink_json_is_exactly_compact_json_dumps_of_the_keyset(key_id, key) -> None:
    keyset = Keyset(key_id, key)
    value = base64.b64encode(b"\x12\x40" + key).decode()
    assert keyset.to_tink_json() == json.dumps(keyset._tink_doc(value), separators=(",", ":"))
    assert Keyset.from_tink_json(keyset.to_tink_json()) == keyset


@given(st.lists(st.binary(min_size=64, max_size=64), max_size=30))
def test_key_values_in_one_base64_call_are_each_keysets_own(keys: list[bytes]) -> None:
    keysets = [Keyset(i + 1, key) for i, key in enumerate(keys)]
    values = [json.loads(k.to_tink_json())["key"][0]["keyData"]["value"] for k in keysets]
    assert tink_key_values(keysets) == values


@given(st.lists(st.tuples(st.integers(1, 2**32 - 1), st.binary(min_size=64, max_size=64)), max_size=30))
def test_packed_keysets_unpack_to_the_same_keysets(pairs: list[tuple[int, bytes]]) -> None:
    keysets = [Keyset(key_id, key) for key_id, key in pairs]
    assert unpack_keysets(pack_keysets(keysets)) == keysets
    with pytest.raises(ValueError):
        unpack_keysets(pack_keysets(keysets) + b"\x00")


@settings(max_examples=150)
@given(st.lists(st.lists(st.text(max_size=12), max_size=6), max_size=8), st.randoms(use_true_random=False))
def test_encrypt_grouped_gives_each_values_ciphertext_in_one_buffer(groups: list[list[str]], rnd) -> None:
    """Group g's values under keyset owners[g]; the packed buffer, as a column, is each value's own ciphertext."""
    keysets = list(_KEYSETS.values())
    owners = [rnd.randrange(len(keysets)) for _ in groups]
    values = [v.encode() for group in groups for v in group]
    bounds = [0, *accumulate(len(group) for group in groups)]
    data = encrypt_grouped(owners, bounds, values, keysets)
    lengths = token_lengths(np.array([len(v) for v in values], dtype=np.int64))
    assert lengths.tolist() == [len(keysets[0].cipher().encrypt(v.decode())) if v else 0 for v in values]
    column = packed_utf8_column(data, lengths, check=False)
    pairs = [(keysets[owner], v) for owner, group in zip(owners, groups, strict=True) for v in group]
    expected = [keyset.cipher().encrypt(v) if v else "" for keyset, v in pairs]
    assert column.to_pylist() == expected
    assert len(data) == sum(map(len, expected))
