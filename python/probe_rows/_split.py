"""The split a key lands in, computed as probe-split computes it (core/src/keyhash.rs).

The README documents the function ("How probe-split assigns keys to splits"); this is that text
as code, tested against the probe-split binary on keys of every type it names (.ci/run,
wheel/tests/test_wheel.py), so a caller need not copy it.
"""

import math
import struct
from typing import Iterable, Mapping, Tuple, Union

from xxhash import xxh3_64_intdigest

# A key part: what one key column's value is in Python (pyarrow's to_pylist() gives these).
Part = Union[str, bytes, bytearray, memoryview, bool, int, None]
Ratios = Union[str, Mapping[str, float], Iterable[Tuple[str, float]]]

# probe-split's --ratios tolerance: decimal fractions like 0.7 + 0.2 + 0.1 do not sum exactly.
_SUM_TOLERANCE = 1e-9
_NULL_PART = struct.pack("<I", 0xFFFFFFFF)


def _part_bytes(value: Part) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, bool):  # before int: bool is an int in Python
        return b"\x01" if value else b"\x00"
    if isinstance(value, int):
        # Signed columns hash as i64, unsigned as u64: the same 8 bytes for 0..2**63-1, so the
        # sign alone picks the packing.
        if -(2**63) <= value < 0:
            return struct.pack("<q", value)
        if 0 <= value < 2**64:
            return struct.pack("<Q", value)
        raise ValueError(f"integer key {value} does not fit a 64-bit column")
    raise TypeError(
        f"key part of type {type(value).__name__} has no documented bytes; pass str, bytes, bool, int or None "
        "(a date or timestamp as the integer the column stores: days, or seconds/ms/us/ns since the epoch)"
    )


def key_bytes(key: Union[Part, Tuple[Part, ...]]) -> bytes:
    """The bytes the key hash reads (step 1): a tuple or list is a composite key, in --key order."""
    if isinstance(key, (tuple, list)):
        if len(key) == 1:
            return _part_bytes(key[0])
        out = bytearray()
        for part in key:
            if part is None:
                out += _NULL_PART
            else:
                b = _part_bytes(part)
                out += struct.pack("<I", len(b)) + b
        return bytes(out)
    return _part_bytes(key)


def unit_of(key: Union[Part, Tuple[Part, ...]], seed: int = 0) -> float:
    """The key's point in [0, 1) (steps 2 and 3): top 53 bits of XXH3-64(key bytes, seed)."""
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed {seed} is not in 0..2**64-1 (probe-split --seed)")
    return (xxh3_64_intdigest(key_bytes(key), seed) >> 11) / 2**53


def _parse_ratios(ratios: Ratios) -> Tuple[Tuple[str, float], ...]:
    if isinstance(ratios, str):
        pairs = []
        for item in ratios.split(","):
            name, sep, value = item.strip().partition("=")
            if not sep:
                raise ValueError(f"ratios: {item.strip()!r} is not NAME=RATIO; write it like train=0.9,test=0.1")
            pairs.append((name.strip(), float(value)))
    elif isinstance(ratios, Mapping):
        pairs = list(ratios.items())
    else:
        pairs = list(ratios)
    names = [n for n, _ in pairs]
    if not pairs or len(set(names)) != len(names):
        raise ValueError(f"ratios {ratios!r}: give at least one split, each name once")
    for name, r in pairs:
        if not (math.isfinite(r) and r > 0):
            raise ValueError(f"ratios: {name!r} has ratio {r}; every ratio must be above 0")
    total = sum(r for _, r in pairs)  # in order, as the binary sums them
    if abs(total - 1.0) > _SUM_TOLERANCE:
        raise ValueError(f"ratios {ratios!r} sum to {total}, not 1")
    return tuple((str(n), float(r)) for n, r in pairs)


def split_of(
    key: Union[Part, Tuple[Part, ...]], seed: int = 0, ratios: Ratios = "train=0.9,test=0.1"
) -> str:
    """The name of the split ``probe-split --ratios RATIOS --seed SEED`` puts this key in.

    ``ratios`` as on the command line (``"train=0.9,test=0.1"``), a dict, or (name, ratio)
    pairs, in that order: the first split whose running sum exceeds the key's unit point takes
    it, the last takes the rest. ``key`` is one key column's value, or a tuple of them for a
    composite ``--key a,b``; a null is ``None``.
    """
    pairs = _parse_ratios(ratios)
    u = unit_of(key, seed)
    acc = 0.0
    for name, r in pairs:
        acc += r  # left to right in float64, as the binary sums them
        if u < acc:
            return name
    return pairs[-1][0]
