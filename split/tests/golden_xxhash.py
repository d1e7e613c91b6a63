"""Independent reference for the golden values in golden.rs, using only the `xxhash` PyPI package.

    pip install xxhash && python3 split/tests/golden_xxhash.py

Implements the key hash of probe-core's `keyhash` module from its documentation alone.
"""
import struct
from itertools import accumulate

from xxhash import xxh3_64_intdigest


class U(int):
    """An unsigned integer key (UInt8..UInt64): 8 bytes LE as u64."""


def part(value):
    """Step 1 for one key part: str -> UTF-8, bytes as they are, bool -> one byte 0/1,
    U -> 8 bytes LE as u64, int (signed, dates, timestamps) -> 8 bytes LE as i64,
    None -> no bytes."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return bytes([int(value)])
    if isinstance(value, U):
        return struct.pack("<Q", value)
    if isinstance(value, int):
        return struct.pack("<q", value)
    raise TypeError(value)


def key_bytes(*parts):
    if len(parts) == 1:
        b = part(parts[0])
        return b"" if b is None else b
    out = b""
    for p in map(part, parts):
        out += struct.pack("<I", 0xFFFFFFFF) if p is None else struct.pack("<I", len(p)) + p
    return out


def split_of(h, names, ratios):
    u = (h >> 11) / 2**53
    return next((n for n, c in zip(names, accumulate(ratios)) if u < c), names[-1])


CASES = [
    (("192.0.2.1",), 0),
    (("192.0.2.1",), 42),
    (("2001:db8::1",), 0),
    (("10.0.0.1",), 0xDEADBEEF),
    (("",), 0),
    (("héllo",), 7),
    ((1234567890123,), 0),
    ((-1,), 0),
    ((64512,), 42),
    (("192.0.2.1", "2001:db8::1"), 0),
    (("192.0.2.1", 64512), 0),
    (("192.0.2.1", None), 0),
    ((None, "x"), 3),
    # Binary of every kind (Binary, LargeBinary, BinaryView, FixedSizeBinary).
    ((b"\x00\xffab",), 0),
    ((b"",), 5),
    # Booleans.
    ((True,), 0),
    ((False,), 9),
    # Unsigned integers, any width.
    ((U(200),), 0),
    ((U(2**64 - 1),), 0),
    # Dates and timestamps are signed integers: Date32 days, Date64 ms, Timestamp in its unit.
    ((19723,), 0),
    ((1704067200000,), 0),
    ((-5,), 1),
    # Composite keys of the other types.
    (("192.0.2.1", True, U(7)), 0),
    ((b"\x01\x02", 19723), 0),
]

if __name__ == "__main__":
    for parts, seed in CASES:
        h = xxh3_64_intdigest(key_bytes(*parts), seed)
        print(f"{parts!r} seed={seed}: 0x{h:016x}  u={(h >> 11) / 2**53!r}  "
              f"90/10={split_of(h, ['train', 'test'], [0.9, 0.1])}  "
              f"a/b/c={split_of(h, ['a', 'b', 'c'], [0.5, 0.3, 0.2])}")
    # Assignment of 10.0.<i>.<j> under seed 0, train=0.9,test=0.1 and seed 1, a=0.5,b=0.3,c=0.2.
    keys = [f"10.0.{i}.{j}" for i in range(2) for j in range(10)]
    for seed, names, ratios in [(0, ["train", "test"], [0.9, 0.1]), (1, ["a", "b", "c"], [0.5, 0.3, 0.2])]:
        print(seed, [split_of(xxh3_64_intdigest(k.encode(), seed), names, ratios) for k in keys])
