#!/usr/bin/env bash
# The whole probe-rows job: check-order -> group (| split) -> batch -> merge, per split.
#
#   scripts/pipeline.sh                    # generate sample data (ROWS, default 1M) and run on it
#   scripts/pipeline.sh data/ out/         # run on data/, results in out/
#   scripts/pipeline.sh a.parquet b.parquet out/
#
# With one argument it is the input and the output goes to ./out. Results: OUTDIR/<split>/
# (Parquet parts + _manifest.json); intermediate files in OUTDIR/work/, stage logs in
# OUTDIR/logs/. Settings (environment, the same names as scripts/pipeline.mk):
#   columns  KEY (src_addr; comma-separated for a composite key), TIME (event_time),
#            COLUMNS (payload columns to keep; default all)
#   group    MEMORY_LIMIT (for --sort)
#   split    RATIOS (train=0.9,test=0.1), SEED (0)
#   batch    MIN_LEN (1), MAX_LEN (512), STRIDE, MAX_GAP, DELTA_TIME (1: add dt), TIME_UNIT,
#            WORKERS (0 = all cores)
#   merge    MAX_FILE_SIZE (1GiB), ROW_GROUP_SIZE (128MiB), COMPRESSION (zstd)
#   sample   ROWS (1M), SAMPLE_KEYS, SAMPLE_SEED (0): the generated data when no INPUT is given
# PROBE_BIN: directory of the binaries (default target/release, else PATH; empty = PATH).
# The same job with restartable steps: scripts/pipeline.mk.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
# PROBE_BIN unset: the release build if there is one, else PATH; PROBE_BIN= (empty): PATH.
bin="${PROBE_BIN:-}"
if [[ -z "${PROBE_BIN+set}" ]]; then
    if [[ -x "$root/target/release/probe-group" ]]; then bin="$root/target/release"
    elif [[ -n "${CARGO_TARGET_DIR:-}" && -x "$CARGO_TARGET_DIR/release/probe-group" ]]; then bin="$CARGO_TARGET_DIR/release"
    fi
fi
if [[ -n "$bin" ]]; then export PATH="$bin:$PATH"; fi
for b in probe-check-order probe-group probe-split probe-batch probe-merge; do
    command -v "$b" >/dev/null || { echo "pipeline: error: $b not found; run 'cargo build --release' first or set PROBE_BIN" >&2; exit 1; }
done

ratios="${RATIOS:-train=0.9,test=0.1}"
max_len="${MAX_LEN:-512}"
min_len="${MIN_LEN:-1}"
workers="${WORKERS:-0}"
columns=(--key "${KEY:-src_addr}" --time "${TIME:-event_time}")
group_opts=("${columns[@]}" ${COLUMNS:+--columns "$COLUMNS"})
split_opts=(--key "${KEY:-src_addr}" --ratios "$ratios" --seed "${SEED:-0}")
batch_opts=("${columns[@]}" --min-len "$min_len" --max-len "$max_len" ${STRIDE:+--stride "$STRIDE"}
    ${MAX_GAP:+--max-gap "$MAX_GAP"} ${DELTA_TIME:+--delta-time} ${TIME_UNIT:+--time-unit "$TIME_UNIT"}
    --workers "$workers")
merge_opts=(--max-file-size "${MAX_FILE_SIZE:-1GiB}" --row-group-size "${ROW_GROUP_SIZE:-128MiB}"
    --compression "${COMPRESSION:-zstd}")

if (( $# == 0 )); then
    out="out"
    inputs=("sample")
    stamp="sample/.done-${ROWS:-1M}-${SAMPLE_KEYS:-}-${SAMPLE_SEED:-0}"
    if [[ ! -f "$stamp" ]]; then
        command -v probe-gen >/dev/null || { echo "pipeline: error: probe-gen not found; run 'cargo build --release' first" >&2; exit 1; }
        rm -rf sample
        echo "pipeline: generating sample data: ${ROWS:-1M} rows in sample/" >&2
        probe-gen --rows "${ROWS:-1M}" ${SAMPLE_KEYS:+--keys "$SAMPLE_KEYS"} --seed "${SAMPLE_SEED:-0}" --order sorted-per-file --files 4 --out-dir sample -q
        touch "$stamp"
    fi
elif (( $# == 1 )); then
    out="out"; inputs=("$1")
else
    out="${!#}"; inputs=("${@:1:$#-1}")
fi

work="$out/work"; logs="$out/logs"
mkdir -p "$work" "$logs"
t0=$(date +%s.%N)
steps=0

# Run one stage, its stderr (summary line) into logs/NAME.log and echoed.
stage() {
    local name="$1"; shift
    local s=$(date +%s.%N)
    local rc=0
    "$@" 2> >(tee "$logs/$name.log" >&2) || rc=$?
    wait
    steps=$((steps + 1))
    printf 'pipeline: step %-22s %6.1f s\n' "$name" "$(awk -v a="$(date +%s.%N)" -v b="$s" 'BEGIN{print a-b}')" >&2
    return $rc
}

# 1. Which probe-group mode does the input need? (exit 0: sorted, 1: needs --sort, 2: error)
sort_flag=()
rc=0
stage check-order probe-check-order -q "${columns[@]}" "${inputs[@]}" > "$logs/check-order.txt" || rc=$?
cat "$logs/check-order.txt" >&2
case $rc in
    0) ;;
    1) sort_flag=(--sort ${MEMORY_LIMIT:+--memory-limit "$MEMORY_LIMIT"} --temp-dir "$work") ;;
    *) echo "pipeline: error: probe-check-order failed (exit $rc)" >&2; exit 1 ;;
esac

# 2. Group and split in one pipe: one file per split in work/.
# The split files appear together when all are complete; a staging folder that a killed run
# left in work/ is ours to remove.
rm -rf "$work"/*.arrows "$work"/.probe-staging-*
stage split bash -o pipefail -c '
    n=$1; shift
    probe-group "${@:1:n}" 2> "'"$logs"'/group.log" | probe-split "${@:n+1}" --out-dir "'"$work"'"
    ' _ $(( ${#sort_flag[@]} + ${#group_opts[@]} + ${#inputs[@]} )) \
    "${sort_flag[@]}" "${group_opts[@]}" "${inputs[@]}" "${split_opts[@]}"
cat "$logs/group.log" >&2

# 3. and 4. Batch and merge every split.
splits=$(echo "$ratios" | tr ',' '\n' | cut -d= -f1)
for s in $splits; do
    stage "batch-$s" probe-batch "$work/$s.arrows" "${batch_opts[@]}" -o "$work/$s-rows.arrows"
    # probe-merge builds the folder hidden and renames it into place when complete.
    rm -rf "$out/$s" "$out/.$s.probe-staging-"*
    stage "merge-$s" probe-merge "$work/$s-rows.arrows" "${merge_opts[@]}" --out-dir "$out/$s"
done

# Report: the whole run, then one line per split (its keys and measurements from probe-split,
# its training rows and files from the manifest), then each step's summary, named.
secs=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN{print a-b}')
measurements=$(grep -o 'rows [0-9]*' "$logs/group.log" | head -1 | cut -d' ' -f2)
keys=$(grep -o 'keys [0-9]*' "$logs/group.log" | head -1 | cut -d' ' -f2)
echo "pipeline: ---- report ----" >&2
printf 'pipeline: steps %d, keys %s, measurements %s, %.1f s, %.0f measurements/s\n' \
    "$steps" "$keys" "$measurements" "$secs" "$(awk -v m="$measurements" -v s="$secs" 'BEGIN{print m/s}')" >&2
for s in $splits; do
    shares=$(grep -o "probe-split: $s: .*" "$logs/split.log" | head -1 | sed "s/^probe-split: $s: //")
    rows=$(grep -o '"rows": *[0-9]*' "$out/$s/_manifest.json" | tail -1 | grep -o '[0-9]*$')
    files=$(grep -c '"path": *"part-' "$out/$s/_manifest.json" || true)
    echo "pipeline: split $s: $shares; training rows $rows in $files files, $out/$s/" >&2
done
for f in "$logs"/*.log; do
    line=$(grep -h 'peak memory' "$f" | tail -1 || true)
    [[ -n "$line" ]] && echo "pipeline:   $(basename "$f" .log): $line" >&2
done
exit 0
