#!/usr/bin/env python3
"""Polars anchor for scripts/bench.sh: group measurements into probe rows.

Usage: bench_polars.py INPUT_DIR OUTPUT.parquet

scan_parquet(INPUT_DIR/*.parquet), group_by("src_addr", maintain_order=False), each key's
measurements as a list of structs sorted by event_time (stable: ties keep input order), written
with sink_parquet (Polars picks its streaming or in-memory engine). Threads: POLARS_MAX_THREADS
(bench.sh sets 2). Correct for any input order; output rows are in no particular key order.
Prints the number of probe rows written and the query's own seconds on stderr.
"""
import sys
import time

import polars as pl

PAYLOAD = ["event_time", "dst_addr", "rtt_ms", "ttl", "proto", "probe_id"]


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    input_dir, output = sys.argv[1], sys.argv[2]
    start = time.monotonic()
    lf = pl.scan_parquet(f"{input_dir.rstrip('/')}/*.parquet")
    grouped = lf.group_by("src_addr", maintain_order=False).agg(
        pl.struct(PAYLOAD).sort_by("event_time", maintain_order=True).alias("measurements")
    )
    grouped.sink_parquet(output)
    written = pl.scan_parquet(output).select(pl.len()).collect().item()
    print(
        f"bench_polars: polars {pl.__version__}, {written} probe rows written, "
        f"{time.monotonic() - start:.2f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
