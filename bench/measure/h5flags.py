"""Clear the "open for writing" mark a killed SWMR writer leaves in an HDF5 file, as ``h5clear -s`` does, so that a
resumed run can append to the file its killed predecessor wrote (HDF5 refuses to open such a file for writing).

The mark is the file-consistency flags byte of a version 2 or 3 superblock (HDF5 File Format Specification,
section II.A: signature, version, size of offsets, size of lengths, flags, four addresses, then a checksum of the
bytes before it). The checksum is Bob Jenkins' lookup3 ``hashlittle`` (HDF5's ``H5_checksum_lookup3``, initial
value 0). Before writing, the stored checksum is recomputed from the bytes as they are: if it does not match, the
file is left alone (the caller reports it) rather than risk a wrong superblock.
"""

from __future__ import annotations

import os

SIGNATURE = b"\x89HDF\r\n\x1a\n"
FLAGS_AT = 11
M = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & M


# fmt: off
def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - c) & M; a ^= _rot(c, 4); c = (c + b) & M  # noqa: E702
    b = (b - a) & M; b ^= _rot(a, 6); a = (a + c) & M  # noqa: E702
    c = (c - b) & M; c ^= _rot(b, 8); b = (b + a) & M  # noqa: E702
    a = (a - c) & M; a ^= _rot(c, 16); c = (c + b) & M  # noqa: E702
    b = (b - a) & M; b ^= _rot(a, 19); a = (a + c) & M  # noqa: E702
    c = (c - b) & M; c ^= _rot(b, 4); b = (b + a) & M  # noqa: E702
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    c ^= b; c = (c - _rot(b, 14)) & M  # noqa: E702
    a ^= c; a = (a - _rot(c, 11)) & M  # noqa: E702
    b ^= a; b = (b - _rot(a, 25)) & M  # noqa: E702
    c ^= b; c = (c - _rot(b, 16)) & M  # noqa: E702
    a ^= c; a = (a - _rot(c, 4)) & M  # noqa: E702
    b ^= a; b = (b - _rot(a, 14)) & M  # noqa: E702
    c ^= b; c = (c - _rot(b, 24)) & M  # noqa: E702
    return c
# fmt: on


def lookup3(data: bytes, initval: int = 0) -> int:
    """Jenkins' hashlittle over bytes (little-endian words), as HDF5 computes its metadata checksums."""
    n = len(data)
    a = b = c = (0xDEADBEEF + n + initval) & M
    at = 0
    while n - at > 12:
        words = [int.from_bytes(data[at + i : at + i + 4], "little") for i in (0, 4, 8)]
        a, b, c = (a + words[0]) & M, (b + words[1]) & M, (c + words[2]) & M
        a, b, c = _mix(a, b, c)
        at += 12
    tail = data[at:]
    if not tail:
        return c
    tail = tail + bytes(12 - len(tail))
    a = (a + int.from_bytes(tail[0:4], "little")) & M
    b = (b + int.from_bytes(tail[4:8], "little")) & M
    c = (c + int.from_bytes(tail[8:12], "little")) & M
    return _final(a, b, c)


def clear_write_flags(path: str) -> bool:
    """Clear the superblock's consistency flags in place; True if the file was marked and is now clear, False if
    it was not marked. ValueError if the superblock is not one this understands or its checksum does not match."""
    with open(path, "r+b") as fh:
        head = fh.read(12)
        if head[:8] != SIGNATURE or head[8] not in (2, 3):
            raise ValueError(f"{path}: not an HDF5 file with a version 2 or 3 superblock at its start")
        size = 12 + 4 * head[9]
        block = head + fh.read(size - 12)
        stored = int.from_bytes(fh.read(4), "little")
        if lookup3(block) != stored:
            raise ValueError(f"{path}: superblock checksum does not match; clear it with h5clear -s")
        if block[FLAGS_AT] == 0:
            return False
        cleared = block[:FLAGS_AT] + b"\x00" + block[FLAGS_AT + 1 :]
        fh.seek(0)
        fh.write(cleared + lookup3(cleared).to_bytes(4, "little"))
        fh.flush()
        os.fsync(fh.fileno())
    return True
