#!/usr/bin/env bash
# Submit the two arrays: M partition tasks, then N bucket tasks once all of them succeeded.
#
#   INPUT=/shared/data SHUFFLE=/shared/shuffle OUT=/shared/out M=8 N=64 scripts/slurm/submit.sh
#
# Run it from the checkout (the tasks find scripts/shard.sh through SLURM_SUBMIT_DIR, or set
# PROBE_ROWS); INPUT, SHUFFLE and OUT must be on a file system every node mounts. Any setting of
# scripts/pipeline.sh (KEY, RATIOS, MAX_LEN, ...) in the environment reaches every task.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${INPUT:?set INPUT}" "${SHUFFLE:?set SHUFFLE}" "${OUT:?set OUT}" "${M:?set M}" "${N:?set N}"
export INPUT SHUFFLE OUT M N
maps=$(sbatch --parsable --array="0-$((M - 1))" --export=ALL "$here/partition.sbatch")
# afterok: the buckets start only if every partition task exits 0; otherwise Slurm never runs them.
buckets=$(sbatch --parsable --array="0-$((N - 1))" --dependency="afterok:${maps%%;*}" --kill-on-invalid-dep=yes \
    --export=ALL "$here/bucket.sbatch")
echo "slurm: partition array $maps, bucket array $buckets (after all of $maps succeed)" >&2
