#!/usr/bin/env python3
"""Sample where a stage's CPU time goes, per thread group, while it runs (Linux /proc).

Usage: scripts/thread_cpu.py OUT.txt [INTERVAL_S]   (runs until killed; start it, run the stage, kill it)

Every INTERVAL_S seconds (default 0.25) it writes one line for the whole machine,
    <unix time> SYS <busy jiffies> <total jiffies>
and one per running probe-* (or python*) process,
    <unix time> <pid> <comm> rss=<MiB> MAIN=<cpu s> probe-worker=<cpu s> probe-read=<cpu s> ...
with the CPU seconds used so far by the main thread and by each group of threads of one name
(the rayon pool `probe-worker-N` summed as `probe-worker`; unnamed threads carry the process's
name). Differences between lines give how many cores each group kept busy: how the 16-core
figures in the README found the stage waiting on its Parquet writer.
"""
import os
import sys
import time


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = open(sys.argv[1], "w", buffering=1)
    interval = float(sys.argv[2]) if len(sys.argv) > 2 else 0.25
    hz = os.sysconf("SC_CLK_TCK")
    while True:
        t = time.time()
        with open("/proc/stat") as f:
            v = list(map(int, f.readline().split()[1:]))
        out.write(f"{t:.2f} SYS {sum(v) - v[3] - v[4]} {sum(v)}\n")
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/comm") as f:
                    comm = f.read().strip()
                if not comm.startswith(("probe-", "python")):
                    continue
                groups: dict[str, float] = {}
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/stat") as f:
                        s = f.read()
                    name = s[s.index("(") + 1 : s.rindex(")")]
                    rest = s[s.rindex(")") + 2 :].split()
                    cpu = (int(rest[11]) + int(rest[12])) / hz
                    group = "MAIN" if tid == pid else (name.rstrip("0123456789-") if name.startswith("probe-worker") else name)
                    groups[group] = groups.get(group, 0.0) + cpu
                rss = 0
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS"):
                            rss = int(line.split()[1]) // 1024
                fields = " ".join(f"{k}={v:.2f}" for k, v in sorted(groups.items()))
                out.write(f"{t:.2f} {pid} {comm} rss={rss} {fields}\n")
            except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
                pass  # the process or thread ended while being read
        time.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())
