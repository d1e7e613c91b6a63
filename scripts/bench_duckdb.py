#!/usr/bin/env python3
"""DuckDB anchors for scripts/bench.sh: the seed's query and its "optimized" variant.

Usage: bench_duckdb.py {original|optimized} INPUT_DIR OUTPUT.parquet [--temp-dir DIR] [--threads N]

original   the seed's query: LIST(STRUCT_PACK(...) ORDER BY event_time) ... GROUP BY src_addr
           ORDER BY src_addr, written as Parquet. Correct for any input order.
optimized  no ORDER BY anywhere, SET preserve_insertion_order=true: what was used to make the seed
           fit in memory. Only right when the input is already sorted by (src_addr, event_time),
           which it does not check.

Both run with SET threads=2 (or --threads) and DuckDB's default memory limit. Prints the number
of probe rows written and the query's own seconds on stderr.
"""
import argparse
import sys
import time

import duckdb

COLUMNS = "event_time, dst_addr, rtt_ms, ttl, proto, probe_id"


def query(kind: str, input_dir: str, output: str) -> str:
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
    return f"COPY ({select}) TO '{output}' (FORMAT parquet)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=["original", "optimized"])
    p.add_argument("input_dir")
    p.add_argument("output")
    p.add_argument("--temp-dir", help="DuckDB's spill directory (temp_directory)")
    p.add_argument("--threads", type=int, default=2)
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
    res = con.execute(query(a.kind, a.input_dir, a.output)).fetchall()
    written = res[0][0] if res else "?"
    con.close()
    print(
        f"bench_duckdb: {a.kind}: duckdb {duckdb.__version__}, {written} probe rows written, "
        f"{time.monotonic() - start:.2f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
