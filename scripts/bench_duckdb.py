#!/usr/bin/env python3
"""DuckDB anchors for scripts/bench.sh: the seed's query and its "optimized" variant.

Usage: bench_duckdb.py {original|optimized} INPUT_DIR OUTPUT.parquet [--temp-dir DIR] [--threads N]
                      [--compression CODEC[:LEVEL]]

original   the seed's query: LIST(STRUCT_PACK(...) ORDER BY event_time) ... GROUP BY src_addr
           ORDER BY src_addr, written as Parquet. Correct for any input order.
optimized  no ORDER BY anywhere, SET preserve_insertion_order=true: what was used to make the seed
           fit in memory. Only right when the input is already sorted by (src_addr, event_time),
           which it does not check.

Both run with SET threads=2 (or --threads) and DuckDB's default memory limit, and write DuckDB's
default codec (snappy) unless --compression names one (zstd:1 is probe-group's default, so the
two write the same codec). Prints the number of probe rows written and the query's own seconds
on stderr.
"""
from __future__ import annotations

import argparse
import sys
import time

import duckdb

COLUMNS = "event_time, dst_addr, rtt_ms, ttl, proto, probe_id"


def copy_options(compression: str | None) -> str:
    """COPY options: Parquet, and the codec (and level) when one is asked for."""
    if not compression:
        return "FORMAT parquet"
    codec, _, level = compression.partition(":")
    if not codec.isalnum() or (level and not level.lstrip("-").isdigit()):
        raise SystemExit(f"bench_duckdb: --compression {compression!r}: use CODEC or CODEC:LEVEL, e.g. zstd:1")
    return f"FORMAT parquet, COMPRESSION {codec}" + (f", COMPRESSION_LEVEL {level}" if level else "")


def query(kind: str, input_dir: str, output: str, compression: str | None = None) -> str:
    src = f"read_parquet('{input_dir.rstrip('/')}/*.parquet')"
    if kind == "original":
        select = (
            f"SELECT src_addr, LIST(STRUCT_PACK({COLUMNS}) ORDER BY event_time) AS measurements "
            f"FROM {src} GROUP BY src_addr ORDER BY src_addr"
        )
    else:
        select = (
            f"SELECT src_addr, LIST(STRUCT_PACK({COLUMNS})) AS measurements "
            f"FROM {src} GROUP BY src_addr"
        )
    return f"COPY ({select}) TO '{output}' ({copy_options(compression)})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["original", "optimized"])
    p.add_argument("input_dir")
    p.add_argument("output")
    p.add_argument("--temp-dir", help="DuckDB's spill directory (temp_directory)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compression", help="Parquet codec, CODEC or CODEC:LEVEL (default: DuckDB's, snappy)")
    a = p.parse_args()
    for s in (a.input_dir, a.output, a.temp_dir or ""):
        if "'" in s:
            p.error(f"paths with a single quote are not supported: {s}")

    start = time.monotonic()
    con = duckdb.connect()
    con.execute(f"SET threads={a.threads}")
    if a.temp_dir:
        con.execute(f"SET temp_directory='{a.temp_dir}'")
    if a.kind == "optimized":
        con.execute("SET preserve_insertion_order=true")
    res = con.execute(query(a.kind, a.input_dir, a.output, a.compression)).fetchall()
    written = res[0][0] if res else "?"
    con.close()
    print(
        f"bench_duckdb: {a.kind}: duckdb {duckdb.__version__}, {a.compression or 'snappy'}, "
        f"{written} probe rows written, "
        f"{time.monotonic() - start:.2f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
