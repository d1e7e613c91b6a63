#!/usr/bin/env bash
# The whole probe-rows job: group | split -> batch | merge, per split (check-order and
# group --sort only when the input turns out not to be sorted).
#
#   scripts/pipeline.sh                    # generate sample data (ROWS, default 1M) and run on it
#   scripts/pipeline.sh data/ out/         # run on data/, results in out/
#   scripts/pipeline.sh a.parquet b.parquet out/
#   BUCKET=3 scripts/pipeline.sh shuffle/bucket-3 out/   # one bucket of probe-partition's output
#   scripts/pipeline.sh s3://lake/in/ s3://lake/out/       # object storage (README "Object storage")
#
# With one argument it is the input and the output goes to ./out. Results: OUTDIR/<split>/
# (Parquet parts + _manifest.json); stage logs and the report in WORK_DIR/logs/ (report.tsv: one
# row per stage). Settings (environment, the same names as scripts/pipeline.mk):
#   columns  KEY (src_addr; comma-separated for a composite key), TIME (event_time),
#            PAYLOAD_COLUMNS (payload columns to keep; default all)
#   group    MEMORY_LIMIT (for --sort), SORT (auto: plain probe-group, which checks the order
#            of every row, and only if it fails probe-check-order, then --sort when that says
#            the input needs it; 1: --sort at once, for input known to be unsorted; 0: never)
#   split    RATIOS (train=0.9,test=0.1), SEED (0)
#   batch    MIN_LEN (1), MAX_LEN (512), STRIDE, MAX_GAP, DELTA_TIME (1: add dt), TIME_UNIT,
#            WORKERS (batch's threads; default THREADS)
#   merge    MAX_FILE_SIZE (1GiB), ROW_GROUP_SIZE (64MiB), COMPRESSION (zstd)
#   sample   ROWS (1M), SAMPLE_KEYS, SAMPLE_SEED (0): the generated data when no INPUT is given
#   run      THREADS (--threads of every stage; 0 = all cores, the default),
#            JOBS (splits whose batch | merge run at once; default one per 2 cores),
#            SPLIT_FORMAT (pipe, the default: no split files, each split streams through a
#            named pipe in WORK_DIR/work/ into its batch | merge, all splits at once (JOBS does
#            not apply); parquet or arrows (zstd Arrow IPC): split files in WORK_DIR/work/,
#            then batch | merge per split, JOBS at a time),
#            KEEP_WORK=1 (keep the split files in WORK_DIR/work/ after success),
#            WORK_DIR (local folder of work/ and logs/; default OUTDIR, or for a URL OUTDIR a
#            new folder under $TMPDIR, printed at the end)
#   URLs     INPUT and OUTDIR may be s3://, gs://, az:// URLs (INPUT https:// too); temp files and
#            logs stay local in WORK_DIR, each split goes to OUTDIR/<split>/ with _manifest.json
#            uploaded last. A store has no rm -rf: OUTDIR/<split>/ must be empty (probe-merge
#            refuses a non-empty prefix), and a failed run leaves the splits it completed before
#            the failure (named in its message) and, if interrupted mid-upload, parts without
#            _manifest.json: go by the manifest.
#   bucket   BUCKET=I: the input is bucket I of a probe-partition run (its folder, whose
#            part-*.arrows files probe-group merges); results go to OUTDIR/<split>/bucket-I/,
#            temp files to WORK_DIR/work/bucket-I/, logs to WORK_DIR/logs/bucket-I/, and a failure
#            removes this bucket's results only, so buckets run at once into one OUTDIR
#            (scripts/shard.sh runs it per index; README "More than one machine").
# PROBE_BIN: directory of the binaries (default: beside this script, as `pip install probe-rows`
# puts it in the venv's bin/ as probe-pipeline; else target/release; else PATH; empty = PATH).
#
# What is kept where (the README's "The whole job" says why): by default nothing between input
# and results touches the disk: group | split, then each split through a named pipe
# WORK_DIR/work/<split>.fifo into its batch | merge, all at once. With SPLIT_FORMAT=parquet (or
# arrows) the split files WORK_DIR/work/<split>.parquet are the one set of intermediate files;
# Parquet, not zstd Arrow IPC, because it is 0.75x the bytes (1.3x the input's Parquet rather
# than 1.8x, measured on generated data) for the same CPU. Each is removed once its split is merged,
# and WORK_DIR/work/ goes at the end, also after a failure. A failed stage anywhere (pipefail) stops
# the job with a non-zero status and removes every split result of this run, so nothing is left
# that looks whole. The same job with a file between every stage, restartable one stage at a
# time: scripts/pipeline.mk.
set -euo pipefail

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    # The comment block at the top of this file is the help.
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0
fi
for a in "$@"; do
    [[ $a == -?* ]] && { echo "pipeline: error: unknown option '$a'; the arguments are [INPUT... OUTDIR], settings are environment variables (--help)" >&2; exit 2; }
done
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
# PROBE_BIN unset: the binaries beside this script (the installed wheel), else the release build
# if there is one, else PATH; PROBE_BIN= (empty): PATH.
bin="${PROBE_BIN:-}"
if [[ -z "${PROBE_BIN+set}" ]]; then
    if [[ -x "$here/probe-group" ]]; then bin="$here"
    elif [[ -x "$root/target/release/probe-group" ]]; then bin="$root/target/release"
    elif [[ -n "${CARGO_TARGET_DIR:-}" && -x "$CARGO_TARGET_DIR/release/probe-group" ]]; then bin="$CARGO_TARGET_DIR/release"
    fi
fi
if [[ -n "$bin" ]]; then export PATH="$bin:$PATH"; fi
for b in probe-check-order probe-group probe-split probe-batch probe-merge; do
    command -v "$b" >/dev/null || { echo "pipeline: error: $b not found; run 'cargo build --release' (or 'pip install probe-rows') first, or set PROBE_BIN" >&2; exit 1; }
done

ratios="${RATIOS:-train=0.9,test=0.1}"
max_len="${MAX_LEN:-512}"
min_len="${MIN_LEN:-1}"
threads="${THREADS:-0}"
workers="${WORKERS:-$threads}"
split_format="${SPLIT_FORMAT:-pipe}"
case $split_format in
    pipe|parquet|arrows) ;;
    *) echo "pipeline: error: SPLIT_FORMAT must be pipe, parquet or arrows, not '$split_format'" >&2; exit 2 ;;
esac
sort_mode="${SORT:-auto}"
case $sort_mode in
    auto|1|0) ;;
    *) echo "pipeline: error: SORT must be auto, 1 or 0, not '$sort_mode'" >&2; exit 2 ;;
esac
cores=$(nproc 2>/dev/null || echo 1)
jobs="${JOBS:-$(( cores / 2 > 0 ? cores / 2 : 1 ))}"
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { echo "pipeline: error: JOBS must be a positive number, not '$jobs'" >&2; exit 2; }
columns=(--key "${KEY:-src_addr}" --time "${TIME:-event_time}")
group_opts=("${columns[@]}" ${PAYLOAD_COLUMNS:+--columns "$PAYLOAD_COLUMNS"} --threads "$threads")
# The split files' row groups are kept small: each open one is buffered whole in probe-split
# (16 MiB: its peak on 10M rows was 199 MiB, against 324 MiB at 32 MiB, at the same speed).
split_opts=(--threads "$threads" --key "${KEY:-src_addr}" --ratios "$ratios" --seed "${SEED:-0}")
[[ $split_format == pipe ]] || split_opts+=(--format "$split_format" --row-group-size 16MiB)
batch_opts=("${columns[@]}" --min-len "$min_len" --max-len "$max_len" ${STRIDE:+--stride "$STRIDE"}
    ${MAX_GAP:+--max-gap "$MAX_GAP"} ${DELTA_TIME:+--delta-time} ${TIME_UNIT:+--time-unit "$TIME_UNIT"}
    --threads "$workers")
merge_opts=(--threads "$threads" --max-file-size "${MAX_FILE_SIZE:-1GiB}" --row-group-size "${ROW_GROUP_SIZE:-64MiB}"
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
splits=$(echo "$ratios" | tr ',' '\n' | cut -d= -f1)

# The URL schemes the stages take (core/src/store.rs); https:// is read-only.
is_url() { [[ ${1,,} =~ ^(s3|s3a|gs|az|adl|azure|abfs|abfss|http|https):// ]]; }
out_url=""
if is_url "$out"; then
    out_url=1
    out="${out%/}"
    [[ ! ${out,,} =~ ^https?:// ]] || { echo "pipeline: error: OUTDIR $out: http(s):// is read-only; give an s3://, gs:// or az:// URL or a local folder" >&2; exit 2; }
fi
# Work files and logs are local: OUTDIR for a local OUTDIR, a fresh folder under $TMPDIR for a
# URL (a store has no rename, no rm -rf, and du cannot measure it).
if [[ -n ${WORK_DIR:-} ]]; then base="$WORK_DIR"
elif [[ -n $out_url ]]; then base=$(mktemp -d "${TMPDIR:-/tmp}/probe-pipeline.XXXXXX")
else base="$out"; fi

bucket="${BUCKET:-}"
[[ -z $bucket || $bucket =~ ^(0|[1-9][0-9]*)$ ]] || { echo "pipeline: error: BUCKET must be a bucket number, not '$bucket'" >&2; exit 2; }
# A result of an earlier run with other split names would sit beside this run's, and a reader of
# OUTDIR/*/ would get its keys twice: refused before any work.
if [[ -z $out_url && -d $out ]]; then
    for d in "$out"/*/; do
        [[ -d $d ]] || continue
        name=$(basename "$d")
        grep -qxF -- "$name" <<< "$splits" && continue
        if [[ -e $d/_manifest.json ]] || compgen -G "$d/bucket-*/_manifest.json" > /dev/null; then
            echo "pipeline: error: $out/$name/ holds the result of a run with other splits (RATIOS is now $ratios): remove it or choose another OUTDIR, or a reader of $out/*/ would get its keys twice" >&2
            exit 1
        fi
    done
fi
# Where split S's result goes: OUT/S, or OUT/S/bucket-I for one bucket of a partitioned run.
result() { if [[ -n $bucket ]]; then echo "$out/$1/bucket-$bucket"; else echo "$out/$1"; fi; }
if [[ -n $bucket ]]; then work="$base/work/bucket-$bucket"; logs="$base/logs/bucket-$bucket"
else work="$base/work"; logs="$base/logs"; fi
mkdir -p "$work" "$logs"
rm -f "$logs"/*.log "$logs"/*.time "$logs"/*.rc "$logs"/report.tsv "$logs"/.order
t0=$(date +%s.%N)

# /usr/bin/time gives each process's wall and CPU seconds and peak RSS (KiB) for the report;
# without it the stages still run and the report shows '-'.
timer=()
if /usr/bin/time -f x -o /dev/null true 2>/dev/null; then timer=(/usr/bin/time); fi
# Run one process: stderr into logs/NAME.log, its times into logs/NAME.time. The script lists
# the stages it starts in logs/.order, the order of the report.
timed() {
    local name="$1"; shift
    if (( ${#timer[@]} )); then
        "${timer[@]}" -f '%e %U %S %M' -o "$logs/$name.time" "$@" 2> "$logs/$name.log"
    else
        "$@" 2> "$logs/$name.log"
    fi
}

# Every step runs in the background in its own process group (set -m), so that a failure or a
# signal can stop a whole pipe at once (kill -- -PID) and the script's traps run at once rather
# than after the foreground command.
set -m
running=()        # process groups of the steps still running
sampler=""
ok=0
merged=()         # splits whose result is complete (for a URL OUTDIR: uploaded)
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local p
    for p in "${running[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
    for p in "${running[@]}"; do wait "$p" 2>/dev/null || true; done
    for p in "${running[@]}"; do gone "$p"; done
    if [[ -n $sampler ]]; then kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true; fi
    if (( ! ok )) && [[ -n $out_url ]]; then
        # No rm -rf on a store: probe-merge uploads a split only once it is complete, manifest
        # last, so what a failure leaves is whole splits (named here) or manifest-less parts.
        local done_list="${merged[*]:-}"
        echo "pipeline: failed; removed $work, logs in $logs/; uploaded complete before the failure:" \
            "${done_list:-no split}${done_list:+ (in $out/; remove them before a rerun)}" >&2
    elif (( ! ok )); then
        # A failed job leaves no result: not the splits this run merged, not older ones, nor the
        # staging folder of a merge stopped before it could remove its own.
        clear_results
        echo "pipeline: failed; removed $work and the split results, logs in $logs/" >&2
    fi
    if (( ! ok )) || [[ -z ${KEEP_WORK:-} ]]; then
        rm -rf "$work"
        [[ -z $bucket ]] || rmdir "$base/work" 2>/dev/null || true     # the last bucket's run removes it
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Wait (up to 30 s) until no process of step P's process group is left. Waiting for the step
# reaps its first process only: after a kill the stages in its pipe may still be removing their
# staging folders, and a rerun must not start (nor the results be cleared) before they are done.
gone() {
    local p="$1" i
    for (( i = 0; i < 300; i++ )); do kill -0 -- "-$p" 2>/dev/null || return 0; sleep 0.1; done
}
# Wait for one step; returns its status.
wait_step() {
    local pid="$1" rc=0
    wait "$pid" || rc=$?
    local keep=() p
    for p in "${running[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    running=("${keep[@]}")
    return "$rc"
}

# The temp disk at its peak: work/ (split files, --sort's spill, split's staging) sampled every
# 0.2 s; the split files, which stay until their split is merged, are the peak of a sorted run.
( set +m; peak=0
  while sleep 0.2; do
      b=$(du -sb "$work" 2>/dev/null | cut -f1) || true
      if (( ${b:-0} > peak )); then peak=$b; echo "$peak" > "$logs/.temp-peak"; fi
  done ) &
sampler=$!

# 1. Group and split in one pipe: one file per split in work/, appearing together when all are
# complete. A staging folder that a killed run left in work/ is ours to remove.
# probe-group checks every row's order itself, so the sorted case (the common one) needs no
# separate pass: plain probe-group first, and only if it fails is probe-check-order asked why.
# Its exit 1 (the input needs --sort) reruns group | split with --sort; anything else is the
# error it was. SORT=1 goes straight to --sort, SORT=0 never falls back.
# SPLIT_FORMAT=pipe: the whole job as one set of pipes. Each split's batch | merge starts first,
# reading a named pipe work/<split>.fifo; then group | split writes every split into its pipe
# (probe-split --split-to). Nothing is written to disk between group and merge: no Parquet
# encoding and decoding of split files, which was a third of the job's CPU. If group | split
# fails, the tails are stopped (one may still wait for its pipe to be opened).
declare -A split_of=()   # the split of each batch | merge pipe, by process group
failed=""
tails=()
# Remove what an earlier run left as split S's result (not on a store: no rm -rf there).
clear_results() {
    local s r
    [[ -z $out_url ]] || return 0
    for s in $splits; do
        r="$(result "$s")"
        rm -rf "${r:?}" "$(dirname "$r")/.$(basename "$r").probe-staging-"*
    done
}
# batch | merge of split S, reading INPUT (a split file, or - for stdin).
tail_of() {
    local s="$1" input="$2"
    timed "batch-$s" probe-batch "$input" "${batch_opts[@]}" |
        timed "merge-$s" probe-merge - "${merge_opts[@]}" --out-dir "$(result "$s")"
}
streamed() {
    local s
    rm -rf "$work"/*.fifo "$work"/.probe-staging-*
    clear_results
    echo "pipeline: group${sort_flag[*]:+ --sort} | split | batch | merge per split" >&2
    printf '%s\n' group split >> "$logs/.order"
    local to=()
    tails=()
    for s in $splits; do
        mkfifo "$work/$s.fifo"
        to+=(--split-to "$s=$work/$s.fifo")
        printf '%s\n' "batch-$s" "merge-$s" >> "$logs/.order"
        ( set -o pipefail; tail_of "$s" - < "$work/$s.fifo" ) &
        running+=($!); tails+=($!); split_of[$!]="$s"
    done
    ( set -o pipefail
      timed group probe-group "${sort_flag[@]}" "${group_opts[@]}" "${inputs[@]}" |
          timed split probe-split "${split_opts[@]}" --ipc-compression none "${to[@]}" ) &
    running+=($!)
    local rc=0 p
    wait_step $! || rc=$?
    if (( rc != 0 )); then
        for p in "${tails[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
    fi
    for p in "${tails[@]}"; do
        local trc=0
        wait_step "$p" || trc=$?
        s="${split_of[$p]}"
        if (( trc != 0 && rc == 0 )); then
            failed="batch | merge of split $s failed (exit $trc)"
        elif (( trc == 0 )); then
            merged+=("$(result "$s")")
        fi
    done
    if (( rc != 0 )); then for p in "${tails[@]}"; do gone "$p"; done; fi
    cat "$logs/group.log" "$logs/split.log" >&2
    for s in $splits; do cat "$logs/batch-$s.log" "$logs/merge-$s.log" >&2 2>/dev/null || true; done
    rm -f "$work"/*.fifo
    if [[ -n $failed ]]; then echo "pipeline: error: $failed" >&2; exit 1; fi
    return "$rc"
}
group_split() {
    if [[ $split_format == pipe ]]; then streamed; return; fi
    rm -rf "$work"/*.arrows "$work"/*.parquet "$work"/.probe-staging-*
    echo "pipeline: group${sort_flag[*]:+ --sort} | split" >&2
    printf '%s\n' group split >> "$logs/.order"
    ( set -o pipefail
      timed group probe-group "${sort_flag[@]}" "${group_opts[@]}" "${inputs[@]}" |
          timed split probe-split "${split_opts[@]}" --out-dir "$work" ) &
    running+=($!)
    local rc=0; wait_step $! || rc=$?
    cat "$logs/group.log" "$logs/split.log" >&2
    return "$rc"
}
sort_with=(--sort ${MEMORY_LIMIT:+--memory-limit "$MEMORY_LIMIT"} --temp-dir "$work")
sort_flag=()
[[ $sort_mode != 1 ]] || sort_flag=("${sort_with[@]}")
rc=0; group_split || rc=$?
if (( rc != 0 )) && [[ $sort_mode == auto ]]; then
    # Why did it fail? (probe-check-order: exit 0 sorted, 1 needs --sort, 2 error)
    echo "pipeline: group | split failed; probe-check-order: does the input need --sort?" >&2
    merged=()
    while read -r n; do
        mv "$logs/$n.log" "$logs/$n-unsorted.log" 2>/dev/null || true
        mv "$logs/$n.time" "$logs/$n-unsorted.time" 2>/dev/null || true
        echo "$n-unsorted"
    done < "$logs/.order" > "$logs/.order.tmp"
    mv "$logs/.order.tmp" "$logs/.order"
    echo check-order >> "$logs/.order"
    timed check-order probe-check-order -q --threads "$threads" "${columns[@]}" "${inputs[@]}" > "$logs/check-order.txt" &
    running+=($!)
    crc=0; wait_step $! || crc=$?
    cat "$logs/check-order.txt" "$logs/check-order.log" >&2
    case $crc in
        1) echo "pipeline: the input is not sorted by key and time: grouping again with --sort" >&2
           sort_flag=("${sort_with[@]}"); rc=0; group_split || rc=$? ;;
        0) ;;   # sorted: group | split failed for another reason, said above
        *) echo "pipeline: error: probe-check-order failed (exit $crc)" >&2 ;;
    esac
fi
if (( rc != 0 )); then echo "pipeline: error: group | split failed (exit $rc)" >&2; exit 1; fi
split_bytes=$(du -sb "$work" | cut -f1)
if [[ $split_format != pipe ]]; then

# 2. With split files: batch | merge for every split, JOBS at a time. probe-merge builds OUT/<split> as a hidden
# folder and renames it into place when complete; a previous result is removed first. On a
# store it uploads the parts once complete, then _manifest.json; the prefix must be empty.
clear_results
finish_one() {
    local pid rc=0
    wait -n -p pid "${running[@]}" || rc=$?
    local keep=() p
    for p in "${running[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    running=("${keep[@]}")
    local s="${split_of[$pid]}"
    cat "$logs/batch-$s.log" "$logs/merge-$s.log" >&2
    if (( rc != 0 )); then
        failed="batch | merge of split $s failed (exit $rc)"
    else
        merged+=("$(result "$s")")
        [[ -n ${KEEP_WORK:-} ]] || rm -f "$work/$s.$split_format"   # merged: no longer needed
    fi
}
for s in $splits; do
    while (( ${#running[@]} >= jobs )); do finish_one; done
    [[ -z $failed ]] || break
    echo "pipeline: batch | merge $s" >&2
    printf '%s\n' "batch-$s" "merge-$s" >> "$logs/.order"
    ( set -o pipefail; tail_of "$s" "$work/$s.$split_format" ) &
    running+=($!); split_of[$!]="$s"
done
while (( ${#running[@]} )) && [[ -z $failed ]]; do finish_one; done
if [[ -n $failed ]]; then echo "pipeline: error: $failed" >&2; exit 1; fi
fi

kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true; sampler=""
secs=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN{print a-b}')
ok=1

# ---- Report --------------------------------------------------------------------------------------
# One row per stage, in the order the stages started: wall and CPU seconds and peak memory from
# /usr/bin/time, rows in and out and bytes written from the stage's own summary line.
# A stage without the figure (check-order writes no summary line) gives an empty field: '-'.
# Figures come from the summary line (the last with "rows/s"), not split's per-split lines.
num() { { grep ' rows/s' "$2" 2>/dev/null || true; } | tail -1 | { grep -o "$1 [0-9][0-9]*" || true; } | head -1 | awk '{print $NF}'; }
written() { { grep -o 'written [0-9.]* [KMGT]*i*B' "$1" 2>/dev/null || true; } | tail -1 | awk '
    { v = $2; u = $3; m = 1
      if (u == "KiB") m = 1024; else if (u == "MiB") m = 1024^2; else if (u == "GiB") m = 1024^3; else if (u == "TiB") m = 1024^4
      printf "%.0f\n", v * m }'; }
measurements=$(num 'rows' "$logs/group.log")
keys=$(num 'keys' "$logs/group.log")
# The input's bytes as the stages found them (files, objects under prefixes, '_'/'.' names
# skipped): probe-group's summary gives them, for URLs as for local files.
input_bytes=$(num 'input' "$logs/group.log")
input_bytes=${input_bytes:--}
temp_peak=$(cat "$logs/.temp-peak" 2>/dev/null || echo 0)
(( split_bytes > temp_peak )) && temp_peak=$split_bytes
{
    echo "# input_bytes $input_bytes"
    echo "# temp_peak_bytes $temp_peak"
    printf 'stage\tsplit\twall_s\tcpu_s\trows_in\trows_out\tpeak_rss_bytes\twritten_bytes\n'
    while read -r name; do
        stage="${name%%-*}"; s="-"
        [[ $name == batch-* || $name == merge-* ]] && s="${name#*-}"
        [[ $name == check-order ]] && stage=check-order
        # The plain attempt that found the input unsorted: `unsorted`, after the split's name
        # for its batch and merge (`train/unsorted`).
        if [[ $name == *-unsorted ]]; then
            if [[ $s == - ]]; then s="unsorted"; else s="${s%-unsorted}/unsorted"; fi
        fi
        log="$logs/$name.log"
        # A stage stopped by the script (a pipe of a failed attempt) may have no times at all.
        wall=- user=- sys=- rss=-
        read -r wall user sys rss < <(tail -1 "$logs/$name.time" 2>/dev/null || true) || true
        [[ $rss =~ ^[0-9]+$ ]] || { wall=- user=- sys=- rss=-; }
        cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { if (u == "-") print "-"; else printf "%.2f", u + s }')
        [[ $rss == - ]] || rss=$((rss * 1024))
        case $stage in
            check-order) in=$(grep -o '^rows  *[0-9]*' "$logs/check-order.txt" | awk '{print $2}'); o="-" ;;
            group) in=$(num 'rows' "$log"); o=$(num 'keys' "$log") ;;
            split) in=$(num 'rows' "$log"); o=$(num 'keys' "$log") ;;
            batch) in=$(num 'keys in' "$log"); o=$(num 'rows' "$log") ;;
            merge) in=$(num 'rows' "$log"); o=$in ;;
        esac
        w=$(written "$log")
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$stage" "$s" "$wall" "$cpu" "${in:--}" "${o:--}" "$rss" "${w:--}"
    done < "$logs/.order"
} > "$logs/report.tsv.tmp"
# The total: the job's wall time, the stages' CPU summed, measurements in, the largest stage peak
# and every byte written. Byte counts print with %.0f: mawk's %d stops at 2^31.
awk -F'\t' -v OFS='\t' -v secs="$secs" -v m="${measurements:--}" '
    { print }
    /^#/ || $1 == "stage" { next }
    $4 != "-" { cpu += $4 }
    $7 != "-" && $7 + 0 > rss { rss = $7 + 0 }
    $8 != "-" { w += $8 }
    END { printf "total\t-\t%.2f\t%.2f\t%s\t-\t%.0f\t%.0f\n", secs, cpu, m, rss, w }' \
    "$logs/report.tsv.tmp" > "$logs/report.tsv"
rm -f "$logs/report.tsv.tmp"

mib() { awk -v b="$1" 'BEGIN { if (b == "-" || b == "") print "-"; else printf "%.1f", b / 1048576 }'; }
echo "pipeline: ---- report ----" >&2
printf 'pipeline: steps %d, keys %s, measurements %s, %.1f s, %.0f measurements/s\n' \
    "$(wc -l < "$logs/.order")" "$keys" "$measurements" "$secs" \
    "$(awk -v m="$measurements" -v s="$secs" 'BEGIN{print m/s}')" >&2
# The split column as wide as its longest label (`train/unsorted` after a failed first attempt).
sw=$(awk -F'\t' '!/^#/ && $1 != "stage" && length($2) > w { w = length($2) } END { print (w > 8) ? w : 8 }' "$logs/report.tsv")
printf "pipeline: %-12s %-${sw}s %8s %8s %12s %12s %9s %11s\n" stage split 'wall s' 'cpu s' 'rows in' 'rows out' 'peak MiB' 'written MiB' >&2
grep -v -e '^#' -e '^stage' "$logs/report.tsv" | while IFS=$'\t' read -r stage s wall cpu in o rss w; do
    printf "pipeline: %-12s %-${sw}s %8s %8s %12s %12s %9s %11s\n" "$stage" "$s" "$wall" "$cpu" "$in" "$o" "$(mib "$rss")" "$(mib "$w")" >&2
done
# JOBS applies to split files only; streamed, every split's tail ran at once.
tails_at_once="JOBS $jobs"
[[ $split_format != pipe ]] || tails_at_once="every split streamed at once"
printf 'pipeline: temp disk peak %s MiB (%.2fx the input'"'"'s %s MiB), %s cores, %s\n' \
    "$(mib "$temp_peak")" "$(awk -v t="$temp_peak" -v i="$input_bytes" 'BEGIN{print (i > 0) ? t / i : 0}')" \
    "$(mib "$input_bytes")" "$cores" "$tails_at_once" >&2
for s in $splits; do
    shares=$(grep -o "probe-split: $s: .*" "$logs/split.log" | head -1 | sed "s/^probe-split: $s: //")
    r="$(result "$s")"
    # From merge's summary line, which gives what its manifest says, for a URL too.
    rows=$(num 'rows' "$logs/merge-$s.log")
    files=$(num 'output files' "$logs/merge-$s.log")
    echo "pipeline: split $s: $shares; training rows $rows in $files files, $r/" >&2
done
[[ $logs == "$out"/* ]] || echo "pipeline: logs and report.tsv in $logs/" >&2
exit 0
