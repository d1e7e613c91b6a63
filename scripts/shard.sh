#!/usr/bin/env bash
# One task of a probe-rows run across machines: the same command for every scheduler.
#
#   scripts/shard.sh partition [I]   # map task I of M: probe-partition of input slice I
#   scripts/shard.sh bucket [I]      # bucket task I of N: the whole job on SHUFFLE/bucket-I
#
# The index I is the argument, else JOB_COMPLETION_INDEX (a Kubernetes Indexed Job), else
# SLURM_ARRAY_TASK_ID (a Slurm array). Settings (environment; the same for every task of a run):
#   INPUT    the input: a folder (its files as probe-group lists them: name order, `_`/`.`
#            names skipped, subfolders too) or a text file listing one input path or URL a line
#   M        map tasks: slice I is the I-th of M contiguous runs of the input files (M <= files)
#   N        buckets
#   SHUFFLE  the folder every task reaches (shared file system) where the buckets go:
#            SHUFFLE/bucket-<b>/part-<I>.arrows
#   OUT      results: OUT/<split>/bucket-<b>/part-*.parquet + _manifest.json (scripts/pipeline.sh)
#   KEY, TIME and every other scripts/pipeline.sh setting (RATIOS, SEED, MAX_LEN, ...)
#   PROBE_BIN as for scripts/pipeline.sh
#
# Idempotent: a map task writes SHUFFLE/bucket-*/part-<I>.arrows and nothing else, staged, so a
# retry replaces them and a killed attempt leaves only its hidden staging folder, which the retry
# removes (the index is this task's alone). A bucket task replaces OUT/<split>/bucket-<b>/ only,
# and refuses to start unless every one of the M map files of its bucket is there: a bucket run
# before all maps finished would silently miss rows.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
die() { echo "shard: error: $1" >&2; exit "${2:-1}"; }
usage() { die "usage: shard.sh partition|bucket [INDEX] (or JOB_COMPLETION_INDEX / SLURM_ARRAY_TASK_ID)" 2; }

(( $# >= 1 && $# <= 2 )) || usage
step="$1"
index="${2:-${JOB_COMPLETION_INDEX:-${SLURM_ARRAY_TASK_ID:-}}}"
[[ -n $index ]] || die "no task index: give it as an argument, or set JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID" 2
[[ $index =~ ^(0|[1-9][0-9]*)$ ]] || die "task index '$index' is not a number" 2
need() { [[ -n ${!1:-} ]] || die "$1 is not set ($2)" 2; }
count() { [[ ${!1} =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive number, not '${!1}'" 2; }
need SHUFFLE "the folder of the buckets, reached by every task"
need M "the number of map tasks"; count M
need N "the number of buckets"; count N

bin="${PROBE_BIN:-}"
if [[ -z "${PROBE_BIN+set}" ]]; then
    if [[ -x "$root/target/release/probe-partition" ]]; then bin="$root/target/release"
    elif [[ -n "${CARGO_TARGET_DIR:-}" && -x "$CARGO_TARGET_DIR/release/probe-partition" ]]; then bin="$CARGO_TARGET_DIR/release"
    fi
fi
if [[ -n "$bin" ]]; then export PATH="$bin:$PATH"; fi
name=$(printf 'part-%05d' "$index")

case $step in
partition)
    (( index < M )) || die "map index $index is not below M=$M" 2
    need INPUT "a folder or a file listing the inputs"
    command -v probe-partition >/dev/null || die "probe-partition not found; run 'cargo build --release' or set PROBE_BIN"
    # The input files: their paths in byte order, skipping `_` and `.` names (files and
    # folders) as every stage does. Each file is in exactly one slice.
    if [[ -d $INPUT ]]; then
        mapfile -t files < <(cd "$INPUT" && find . -mindepth 1 \( -name '.*' -o -name '_*' \) -prune -o -type f -print |
            sed 's|^\./||' | LC_ALL=C sort | sed "s|^|${INPUT%/}/|")
    elif [[ -f $INPUT ]]; then
        mapfile -t files < <(grep -v '^[[:space:]]*$' "$INPUT")
    else
        die "INPUT '$INPUT' is neither a folder nor a file listing inputs"
    fi
    f=${#files[@]}
    (( f > 0 )) || die "INPUT '$INPUT' holds no input files"
    (( M <= f )) || die "M=$M map tasks but only $f input files; use M <= $f" 2
    # Slice I: files [I*f/M, (I+1)*f/M): contiguous, so sorted inputs give sorted bucket files.
    lo=$(( index * f / M )); hi=$(( (index + 1) * f / M ))
    # A staging folder of this index is a killed earlier attempt of this very task.
    if [[ ! $SHUFFLE =~ ^[a-z0-9]+:// ]]; then rm -rf "$SHUFFLE/.probe-staging-$name-"*; fi
    echo "shard: partition $index of $M: ${files[*]:lo:hi-lo} -> $SHUFFLE/bucket-*/$name.arrows" >&2
    exec probe-partition --buckets "$N" --out-dir "$SHUFFLE" --name "$name" \
        ${KEY:+--key "$KEY"} ${TIME:+--time "$TIME"} ${THREADS:+--threads "$THREADS"} "${files[@]:lo:hi-lo}"
    ;;
bucket)
    (( index < N )) || die "bucket index $index is not below N=$N" 2
    need OUT "the results folder"
    dir="$SHUFFLE/bucket-$index"
    [[ -d $dir ]] || die "$dir does not exist: run the $M partition tasks first"
    missing=()
    for (( i = 0; i < M; i++ )); do
        p=$(printf '%s/part-%05d.arrows' "$dir" "$i")
        [[ -f $p ]] || missing+=("$p")
    done
    (( ${#missing[@]} == 0 )) || die "${#missing[@]} of $M map files missing (first: ${missing[0]}): wait for every partition task to succeed"
    extra=$(find "$dir" -maxdepth 1 -name 'part-*.arrows' | wc -l)
    (( extra == M )) || die "$dir holds $extra part files, not M=$M: files of another run with more map tasks? Clear SHUFFLE and rerun"
    echo "shard: bucket $index of $N: $dir -> $OUT/<split>/bucket-$index/" >&2
    BUCKET="$index" exec "$here/pipeline.sh" "$dir" "$OUT"
    ;;
*) usage ;;
esac
