"""The installed wheel, end to end: run from a fresh venv by .ci/run, commands found on PATH only.

    python wheel/tests/test_wheel.py        # with the venv's python; needs pyarrow beside probe-rows

1. Every shipped command is the venv's own (no target/ on PATH) and reports the wheel's version.
2. The README's pip quick start, `probe-pipeline` on generated sample data, again from a venv
   that is not activated, then the same job as make targets (share/probe-rows/pipeline.mk):
   every key in exactly one split, the one
   `probe_rows.split_of` names; each key's measurements, concatenated over its windows, are
   exactly the input's rows of that key in time order (ties in input order), read by pyarrow.
3. `probe_rows.split_of` against `probe-split --tag` on keys of every type the README documents
   (strings, binary, signed and unsigned integers past 2**63, booleans, dates, timestamps,
   composite keys with nulls), several seeds and ratios.

Plain asserts, no test runner: the first failure ends the run with a traceback and exit 1.
"""

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from importlib.metadata import version
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

import probe_rows

COMMANDS = [
    "probe-check-order",
    "probe-group",
    "probe-split",
    "probe-batch",
    "probe-merge",
    "probe-partition",
    "probe-gen",
]


def sh(cmd, cwd, env=None):
    """Run a shell command; fail with its output unless it exits 0."""
    # Always an explicit environment, without COLUMNS/LINES (doctest's pdb imports readline, which
    # exports the terminal size; the scripts' setting is PAYLOAD_COLUMNS now, so this is hygiene).
    env = {k: v for k, v in (env if env is not None else os.environ).items() if k not in ("COLUMNS", "LINES")}
    p = subprocess.run(cmd, shell=True, cwd=cwd, env=env, capture_output=True, text=True)
    assert p.returncode == 0, f"`{cmd}` exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


def check_installed():
    bins = Path(sys.prefix) / "bin"
    assert probe_rows.bin_dir() == bins, (probe_rows.bin_dir(), bins)
    for name in COMMANDS + ["probe-pipeline"]:
        found = shutil.which(name)
        assert found and Path(found).parent == bins, f"{name} on PATH is {found}, not the venv's ({bins})"
    assert "target" not in os.environ["PATH"], f"PATH names a target dir: {os.environ['PATH']}"
    for name in COMMANDS:
        out = sh(f"{name} --version", cwd=".").stdout.split()
        assert out == [name, version("probe-rows")], out


def input_rows(data):
    """key -> probe_ids in time order, ties in input order (files by name, rows in file order)."""
    per_key = defaultdict(list)
    files = sorted(p for p in data.rglob("*.parquet") if not p.name.startswith(("_", ".")))
    assert files, f"no Parquet in {data}"
    for f in files:
        t = pq.read_table(f, columns=["src_addr", "event_time", "probe_id"])
        times = t["event_time"].cast(pa.int64()).to_pylist()
        for k, tm, pid in zip(t["src_addr"].to_pylist(), times, t["probe_id"].to_pylist()):
            per_key[k].append((tm, pid))
    return {k: [pid for _, pid in sorted(v, key=lambda x: x[0])] for k, v in per_key.items()}


def output_rows(split_dir):
    """key -> probe_ids concatenated over its windows in window order, from one split's parts."""
    manifest = json.loads((split_dir / "_manifest.json").read_text())
    parts = sorted(split_dir.glob("part-*.parquet"))
    assert parts, f"no parts in {split_dir}"
    windows = defaultdict(list)
    rows = 0
    for p in parts:
        t = pq.read_table(p)
        rows += t.num_rows
        cols = {c: t[c].to_pylist() for c in ["src_addr", "window", "length", "probe_id"]}
        starts = t["start_time"].cast(pa.int64()).to_pylist()
        times = t["event_time"].cast(pa.list_(pa.int64())).to_pylist()
        for i, k in enumerate(cols["src_addr"]):
            ids = cols["probe_id"][i]
            assert cols["length"][i] == len(ids) == len(times[i]), (k, cols["length"][i], len(ids))
            assert starts[i] == times[i][0], (k, "start_time is not the window's first time")
            windows[k].append((cols["window"][i], ids))
    manifest_rows = sum(f["rows"] for f in manifest["files"])
    assert manifest_rows == rows, (split_dir, manifest_rows, rows)
    out = {}
    for k, ws in windows.items():
        ws.sort()
        assert [w for w, _ in ws] == list(range(len(ws))), (k, "window indexes are not 0..n")
        out[k] = [pid for _, ids in ws for pid in ids]
    return out


def check_job(out, expected, ratios, seed):
    names = [item.split("=")[0] for item in ratios.split(",")]
    seen = {}
    for name in names:
        got = output_rows(out / name)
        for k, ids in got.items():
            assert k not in seen, f"key {k} in {seen[k]} and {name}"
            seen[k] = name
            assert ids == expected[k], f"{name}: key {k}: {len(ids)} measurements out, {len(expected[k])} in"
            assert probe_rows.split_of(k, seed, ratios) == name, (k, name)
    missing = set(expected) - set(seen)
    assert not missing, f"{len(missing)} keys lost, e.g. {sorted(missing)[:3]}"


def check_quick_start(tmp):
    ratios, seed = "train=0.8,test=0.2", 7
    env = dict(os.environ, ROWS="200k", SAMPLE_KEYS="4k", SAMPLE_SEED="3", RATIOS=ratios, SEED=str(seed))
    # The README's quick start, as typed after `pip install probe-rows`.
    sh("probe-pipeline", cwd=tmp, env=env)
    expected = input_rows(tmp / "sample")
    assert len(expected) == 4000 and sum(map(len, expected.values())) == 200_000
    check_job(tmp / "out", expected, ratios, seed)
    assert (tmp / "out/logs/report.tsv").is_file()
    # A venv that is not activated (its bin/ not on PATH): probe-pipeline runs the binaries beside it.
    bare = dict(env, PATH="/usr/bin:/bin")
    sh(f"{Path(sys.prefix) / 'bin' / 'probe-pipeline'} sample out-bare", cwd=tmp, env=bare)
    check_job(tmp / "out-bare", expected, ratios, seed)
    # The same job as make targets, from the Makefile the wheel puts in the venv's share/.
    if shutil.which("make"):
        makefile = Path(sys.prefix) / "share/probe-rows/pipeline.mk"
        sh(f"make -s -f {makefile} INPUT=sample OUT=out-make RATIOS={ratios} SEED={seed}", cwd=tmp)
        check_job(tmp / "out-make", expected, ratios, seed)
    else:
        print("test_wheel: make not installed; the --make route was not run", file=sys.stderr)


def key_table(n, rng):
    """Measurements whose key columns have every documented type, nulls and extremes included."""
    big = [2**64 - 1, 2**63, 2**63 - 1, 0, 1]
    small = [-(2**63), -1, 0, 2**63 - 1]
    cols = {
        "k_str": pa.array([rng.choice(["", "ü-ß", "192.0.2.1", "2001:db8::1"]) + str(rng.randrange(60)) for _ in range(n)]),
        "k_bin": pa.array([bytes(rng.randrange(256) for _ in range(rng.randrange(4))) for _ in range(n)], pa.binary()),
        "k_i64": pa.array([rng.choice(small + [rng.randrange(-1000, 1000)]) for _ in range(n)], pa.int64()),
        "k_u64": pa.array([rng.choice(big + [rng.randrange(1000)]) for _ in range(n)], pa.uint64()),
        "k_i8": pa.array([rng.randrange(-128, 128) for _ in range(n)], pa.int8()),
        "k_bool": pa.array([rng.random() < 0.5 for _ in range(n)]),
        "k_date": pa.array([rng.randrange(-1000, 30000) for _ in range(n)], pa.int32()).cast(pa.date32()),
        "k_ts": pa.array([rng.randrange(-(10**12), 10**12) for _ in range(n)], pa.int64()).cast(pa.timestamp("ms")),
        "k_part": pa.array([None if rng.random() < 0.2 else rng.randrange(5) for _ in range(n)], pa.int16()),
        "k_name": pa.array([None if rng.random() < 0.2 else rng.choice(["a", "b", ""]) for _ in range(n)]),
        "event_time": pa.array(range(n), pa.int64()).cast(pa.timestamp("us")),
        "x": pa.array(range(n), pa.int32()),
    }
    return pa.table(cols)


def as_python(col):
    """A key column's values as split_of takes them: dates and timestamps as their integers."""
    if pa.types.is_date32(col.type):
        col = col.cast(pa.int32())
    elif pa.types.is_timestamp(col.type):
        col = col.cast(pa.int64())
    return col.to_pylist()


def check_split_of_types(tmp):
    rng = random.Random(15)
    pq.write_table(key_table(3000, rng), tmp / "keys.parquet")
    keys = ["k_str", "k_bin", "k_i64", "k_u64", "k_i8", "k_bool", "k_date", "k_ts", "k_str,k_part", "k_name,k_i64,k_part"]
    settings = [("train=0.9,test=0.1", 0), ("a=0.5,b=0.3,c=0.2", 42), ("x=0.7,y=0.2,z=0.1", 2**64 - 1)]
    for key in keys:
        for ratios, seed in settings:
            sh(
                f"probe-group -q --sort --key {key} keys.parquet | probe-split -q --key {key} --tag "
                f"--ratios {ratios} --seed {seed} -o tagged.arrow",
                cwd=tmp,
            )
            with ipc.open_file(tmp / "tagged.arrow") as f:
                t = f.read_all()
            parts = [as_python(t[c]) for c in key.split(",")]
            splits = t["split"].cast(pa.string()).to_pylist()
            assert t.num_rows > 0
            for i, name in enumerate(splits):
                k = tuple(p[i] for p in parts)
                assert probe_rows.split_of(k, seed, ratios) == name, (key, k, seed, ratios, name)
            # The splits seen are the names given: nothing fell outside them.
            assert set(splits) <= {r.split("=")[0] for r in ratios.split(",")}


def check_split_of_refusals():
    """The module's examples hold, and what has no documented bytes or split is refused."""
    import doctest

    assert doctest.testmod(probe_rows).failed == 0
    refused = [
        (1.5, "train=0.9,test=0.1", TypeError),  # float keys are not hashable in probe-split either
        (2**64, "train=0.9,test=0.1", ValueError),
        ("k", "train=0.9,test=0.2", ValueError),  # sums to 1.1
        ("k", "train=1,train=0", ValueError),
        ("k", "train", ValueError),
    ]
    for key, ratios, err in refused:
        try:
            probe_rows.split_of(key, 0, ratios)
        except err:
            continue
        raise AssertionError(f"split_of({key!r}, ratios={ratios!r}) did not raise {err.__name__}")


def main():
    check_installed()
    check_split_of_refusals()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        check_quick_start(tmp)
        check_split_of_types(tmp)
    print("test_wheel: the installed wheel ran the job; split_of agrees with probe-split")


if __name__ == "__main__":
    main()
