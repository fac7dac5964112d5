"""A plain-Python MurmurHash3 x64_128 (Austin Appleby's reference algorithm), to check the fast one against."""

from __future__ import annotations

M = 0xFFFFFFFFFFFFFFFF
C1, C2 = 0x87C37B91114253D5, 0x4CF5AD432745937F


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & M


def _fmix(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & M
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & M
    return k ^ (k >> 33)


def murmur3_x64_128(data: bytes, seed: int = 0) -> tuple[int, int]:
    h1 = h2 = seed
    n = len(data)
    blocks = n // 16
    for i in range(blocks):
        k1 = int.from_bytes(data[16 * i : 16 * i + 8], "little")
        k2 = int.from_bytes(data[16 * i + 8 : 16 * i + 16], "little")
        k1 = (_rotl((k1 * C1) & M, 31) * C2) & M
        h1 ^= k1
        h1 = (_rotl(h1, 27) + h2) & M
        h1 = (h1 * 5 + 0x52DCE729) & M
        k2 = (_rotl((k2 * C2) & M, 33) * C1) & M
        h2 ^= k2
        h2 = (_rotl(h2, 31) + h1) & M
        h2 = (h2 * 5 + 0x38495AB5) & M
    tail = data[16 * blocks :]
    k1 = int.from_bytes(tail[:8], "little") if tail else 0
    k2 = int.from_bytes(tail[8:16], "little") if len(tail) > 8 else 0
    if len(tail) > 8:
        h2 ^= (_rotl((k2 * C2) & M, 33) * C1) & M
    if tail:
        h1 ^= (_rotl((k1 * C1) & M, 31) * C2) & M
    h1 ^= n
    h2 ^= n
    h1 = (h1 + h2) & M
    h2 = (h2 + h1) & M
    h1, h2 = _fmix(h1), _fmix(h2)
    h1 = (h1 + h2) & M
    h2 = (h2 + h1) & M
    return h1, h2


def strm_mask(seed: str, value: str) -> str:
    h1, h2 = murmur3_x64_128((seed + value).encode("utf-8"))
    return f"{h1:x}{h2:x}"
