#!/usr/bin/env python3
"""The probe-rows job across machines on Ray: M partition tasks, then N bucket tasks.

    python scripts/ray/pipeline.py --input data/ --shuffle /shared/shuffle --out /shared/out \\
        --maps 2 --buckets 4                      # a local Ray cluster on this machine
    python scripts/ray/pipeline.py --address auto ...   # the cluster `ray start` joined

Every task is one run of scripts/shard.sh on the node Ray picks (`shard.sh partition I`, then
`shard.sh bucket I`), so Ray, a Kubernetes Indexed Job and a Slurm array run exactly the same
thing. Ray schedules the tasks, retries a task whose worker or node dies, or whose script fails,
up to --max-retries times (the tasks are idempotent: a retry replaces the task's own files and
nothing else), shows progress as tasks finish, and the driver prints a combined report at the
end (also written to OUT/logs/ray-report.json). The buckets start only when every partition task
has succeeded.

Paths: --input, --shuffle and --out must be reachable at the same path from every node (a shared
file system); the stage binaries must be on every node (PROBE_BIN, or scripts/../target/release).
Settings of the job (KEY, TIME, RATIOS, SEED, MAX_LEN, ...: see scripts/pipeline.sh) are passed
with --set NAME=VALUE and reach every task.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARD = os.path.join(os.path.dirname(HERE), "shard.sh")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="input folder, or a file listing inputs (one a line)")
    p.add_argument("--shuffle", required=True, help="folder for the buckets, reached by every node")
    p.add_argument("--out", required=True, help="results: OUT/<split>/bucket-<i>/")
    p.add_argument("--maps", "-m", type=int, required=True, help="map (partition) tasks, M")
    p.add_argument("--buckets", "-n", type=int, required=True, help="buckets, N")
    p.add_argument("--address", default="local",
                   help="Ray cluster: 'local' starts one on this machine (default), 'auto' joins the one "
                        "`ray start` made, or HOST:PORT")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local cluster (default: all)")
    p.add_argument("--threads", type=int, default=1,
                   help="threads of each task's stages, and the CPUs Ray reserves for it (default 1)")
    p.add_argument("--max-retries", type=int, default=3, help="retries of a failed or killed task (default 3)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a scripts/pipeline.sh setting for every task (repeatable): --set MAX_LEN=64")
    a = p.parse_args(argv)
    if a.maps < 1 or a.buckets < 1:
        p.error("--maps and --buckets must be at least 1")
    for s in a.set:
        if not re.match(r"^[A-Z_][A-Z0-9_]*=", s):
            p.error(f"--set {s!r}: write NAME=VALUE")
    return a


def task_env(a):
    """The environment every task runs shard.sh with (the index is its argument)."""
    env = {"INPUT": os.path.abspath(a.input), "SHUFFLE": os.path.abspath(a.shuffle),
           "OUT": os.path.abspath(a.out), "M": str(a.maps), "N": str(a.buckets),
           "THREADS": str(a.threads), "JOBS": "1"}
    for s in a.set:
        k, v = s.split("=", 1)
        env[k] = v
    return env


def run_shard(step, index, env):
    """One task: shard.sh STEP INDEX. Returns its figures; raises (so Ray retries) on failure."""
    import socket

    full = dict(os.environ)
    full.update(env)
    full.pop("JOB_COMPLETION_INDEX", None)
    full.pop("SLURM_ARRAY_TASK_ID", None)
    t0 = time.time()
    p = subprocess.run([SHARD, step, str(index)], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    secs = time.time() - t0
    if p.returncode != 0:
        tail = "\n".join(p.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"shard.sh {step} {index} failed (exit {p.returncode}) on {socket.gethostname()}:\n{tail}")
    result = {"step": step, "index": index, "node": socket.gethostname(), "wall_s": round(secs, 2)}
    if step == "partition":
        m = re.search(r"probe-partition: rows (\d+)", p.stderr)
        result["rows"] = int(m.group(1)) if m else None
    else:
        m = re.search(r"pipeline: steps \d+, keys (\d+), measurements (\d+)", p.stderr)
        result["keys"], result["rows"] = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        result["windows"] = bucket_windows(env["OUT"], index)
    return result


def bucket_windows(out, index):
    """Training rows per split of one bucket, from the manifests probe-merge wrote."""
    windows = {}
    for split in sorted(os.listdir(out)):
        manifest = os.path.join(out, split, f"bucket-{index}", "_manifest.json")
        if os.path.isfile(manifest):
            with open(manifest) as f:
                windows[split] = json.load(f).get("rows")
    return windows


def wait_all(ray, refs, what, total):
    """Wait for every task, printing each as it finishes; the first failure ends the run."""
    results, pending = [], list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        r = ray.get(done[0])  # raises the task's error once its retries are spent
        results.append(r)
        print(f"ray-pipeline: {what} {r['index']} done on {r['node']} in {r['wall_s']} s "
              f"({len(results)}/{total})", file=sys.stderr, flush=True)
    return sorted(results, key=lambda r: r["index"])


def main(argv):
    a = parse_args(argv)
    try:
        import ray
    except ImportError:
        print("ray-pipeline: error: the ray package is missing: pip install ray", file=sys.stderr)
        return 1
    env = task_env(a)
    os.makedirs(env["OUT"], exist_ok=True)
    t0 = time.time()
    init = {"address": a.address, "log_to_driver": False, "include_dashboard": False}
    if a.address == "local" and a.num_cpus:
        init["num_cpus"] = a.num_cpus
    ray.init(**init)
    try:
        task = ray.remote(run_shard).options(num_cpus=a.threads, max_retries=a.max_retries, retry_exceptions=True)
        print(f"ray-pipeline: {a.maps} partition tasks into {a.buckets} buckets", file=sys.stderr, flush=True)
        maps = wait_all(ray, [task.remote("partition", i, env) for i in range(a.maps)], "partition", a.maps)
        t_maps = time.time() - t0
        print(f"ray-pipeline: {a.buckets} bucket tasks", file=sys.stderr, flush=True)
        buckets = wait_all(ray, [task.remote("bucket", i, env) for i in range(a.buckets)], "bucket", a.buckets)
    except Exception as e:  # a task failed after its retries: one line, exit 1
        first = str(e).strip().splitlines()
        msg = next((line for line in first if "shard.sh" in line or "shard:" in line), first[-1] if first else e)
        print(f"ray-pipeline: error: {msg}", file=sys.stderr)
        return 1
    finally:
        ray.shutdown()
    secs = time.time() - t0
    report(a, env, maps, buckets, t_maps, secs)
    return 0


def report(a, env, maps, buckets, t_maps, secs):
    rows_in = sum(r["rows"] or 0 for r in maps)
    rows_grouped = sum(r["rows"] or 0 for r in buckets)
    keys = sum(r["keys"] or 0 for r in buckets)
    windows = {}
    for r in buckets:
        for s, n in r["windows"].items():
            windows[s] = windows.get(s, 0) + (n or 0)
    summary = {"maps": a.maps, "buckets": a.buckets, "rows": rows_in, "rows_in_buckets": rows_grouped,
               "keys": keys, "windows": windows, "wall_s": round(secs, 2), "partition_wall_s": round(t_maps, 2),
               "tasks": maps + buckets}
    logs = os.path.join(env["OUT"], "logs")
    os.makedirs(logs, exist_ok=True)
    with open(os.path.join(logs, "ray-report.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print("ray-pipeline: ---- report ----", file=sys.stderr)
    print(f"ray-pipeline: rows {rows_in}, keys {keys}, {a.maps} maps, {a.buckets} buckets, {secs:.1f} s "
          f"(partition {t_maps:.1f} s)", file=sys.stderr)
    for s, n in sorted(windows.items()):
        print(f"ray-pipeline: split {s}: training rows {n}, {env['OUT']}/{s}/bucket-*/", file=sys.stderr)
    if rows_grouped != rows_in:
        # Every measurement partitioned must reach a bucket's job: anything else lost rows.
        print(f"ray-pipeline: error: {rows_in} rows partitioned but {rows_grouped} grouped", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
