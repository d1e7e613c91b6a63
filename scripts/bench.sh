#!/usr/bin/env bash
# Benchmark probe-group against its floor (decoding the input) and the seed's stack (DuckDB,
# Polars) on the same synthetic data. See scripts/BENCH.md.
#
# Usage: scripts/bench.sh [--rows N] [--reps N] [--only ID,...] [--skip-python] [--threads N] [--scaling]
#        scripts/bench.sh --pipeline ROWS [--files N] [--reps N] [--skip-python] [--threads N]
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/bench.sh [OPTIONS]
       scripts/bench.sh --pipeline ROWS [OPTIONS]

Generates (or reuses) sorted and shuffled data sets with probe-gen under
$BENCH_DIR/rows-N/{sorted,shuffled} (BENCH_DIR defaults to bench-data), runs every tool on them
under /usr/bin/time -v, alternating repetitions, and prints the medians as one table (also written
to $BENCH_DIR/results-rows-N.tsv).

--pipeline ROWS runs the whole job instead (scripts/pipeline.sh: group | split,
batch | merge per split) on the sorted data set of ROWS rows, --reps times (default 1), and prints
one row per stage (wall, CPU, rows in/out, peak memory, bytes written) plus the total, the peak
temp disk as a multiple of the input's Parquet bytes, and DuckDB's "optimized" group step alone
on the same data for comparison (not with --skip-python).

Options:
  --pipeline ROWS   the whole job on ROWS sorted rows (see above)
  --rows N          measurements in the data set: 2M, 10M, 200M, 1000000 (default 10M)
  --reps N          repetitions of every run, interleaved (default 3)
  --only ID,...     run a subset; an ID matches a run id or its prefix before a '-'
                    (e.g. --only decode,group-ipc,duckdb)
  --skip-python     skip the DuckDB and Polars runs (no virtualenv needed)
  --files N         files per data set (default 4)
  --seed N          probe-gen seed (default 1)
  --memory-limit S  --memory-limit of the probe-group --sort run (default 1GiB)
  --timeout SECS    kill a run after SECS seconds and record it as failed (default: none)
  --no-build        do not run cargo build first (use the binaries already built)
  --threads N       threads for every tool: probe-* --threads N, DuckDB SET threads=N,
                    POLARS_MAX_THREADS=N (default: all cores, nproc)
  --scaling         instead of the table above: run every stage (check-order, group to IPC
                    and Parquet, group --sort, split, batch, merge) at --threads 1 and at
                    --threads N, interleaved, and print each one's speedup
  -h, --help        this text

Run ids:
  decode-sorted, decode-shuffled   floor: bench-decode decodes every column with probe-group's
                                   reader and discards it
  group-ipc                        probe-group, sorted input, Arrow IPC stream to /dev/null (baseline)
  group-parquet                    probe-group, sorted input, -o out.parquet
  group-sort                       probe-group --sort --memory-limit 1GiB, shuffled input, IPC to /dev/null
  duckdb-original-sorted, duckdb-original-shuffled
                                   the seed's query (ORDER BY in LIST and GROUP BY), Parquet out
  duckdb-optimized                 no ORDER BY, preserve_insertion_order=true, sorted input, Parquet out
                                   (DuckDB's default codec, snappy)
  duckdb-optimized-zstd            the same writing zstd level 1, probe-group's default codec
  polars-sorted, polars-shuffled   Polars group_by + sort_by inside the group, Parquet out

Environment: BENCH_DIR (default bench-data), CARGO_TARGET_DIR (default target), BENCH_PYTHON
(a Python with duckdb and pyarrow to use instead of the pinned scripts/.venv; Polars runs need
polars there too).
EOF
}

die() {
    echo "bench.sh: error: $*" >&2
    exit 1
}

# --- Pinned versions of the Python anchors (scripts/.venv). ---------------------------------
DUCKDB_VERSION=2.0.1
POLARS_VERSION=2.1.0
PYARROW_VERSION=26.0.1

# --- Options. ----------------------------------------------------------------------------------
ROWS_ARG=10M
REPS=""
PIPELINE=0
ONLY=""
SKIP_PYTHON=0
FILES=4
SEED=1
SORT_MEMORY=1GiB
TIMEOUT=""
BUILD=1
THREADS=$(nproc)
SCALING=0

need_value() {
    [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)"
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --rows) need_value "$@"; ROWS_ARG=$2; shift 2 ;;
        --rows=*) ROWS_ARG=${1#*=}; shift ;;
        --pipeline) need_value "$@"; PIPELINE=1; ROWS_ARG=$2; shift 2 ;;
        --pipeline=*) PIPELINE=1; ROWS_ARG=${1#*=}; shift ;;
        --reps) need_value "$@"; REPS=$2; shift 2 ;;
        --reps=*) REPS=${1#*=}; shift ;;
        --only) need_value "$@"; ONLY=$2; shift 2 ;;
        --only=*) ONLY=${1#*=}; shift ;;
        --skip-python) SKIP_PYTHON=1; shift ;;
        --files) need_value "$@"; FILES=$2; shift 2 ;;
        --files=*) FILES=${1#*=}; shift ;;
        --seed) need_value "$@"; SEED=$2; shift 2 ;;
        --seed=*) SEED=${1#*=}; shift ;;
        --memory-limit) need_value "$@"; SORT_MEMORY=$2; shift 2 ;;
        --memory-limit=*) SORT_MEMORY=${1#*=}; shift ;;
        --timeout) need_value "$@"; TIMEOUT=$2; shift 2 ;;
        --timeout=*) TIMEOUT=${1#*=}; shift ;;
        --no-build) BUILD=0; shift ;;
        --threads) need_value "$@"; THREADS=$2; shift 2 ;;
        --threads=*) THREADS=${1#*=}; shift ;;
        --scaling) SCALING=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench.sh: error: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

# The whole job takes minutes at the sizes it is meant for: one repetition unless asked.
if [[ -z $REPS ]]; then REPS=$((PIPELINE ? 1 : 3)); fi
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "--reps must be a positive integer, not '$REPS'"
[[ $FILES =~ ^[1-9][0-9]*$ ]] || die "--files must be a positive integer, not '$FILES'"
[[ $SEED =~ ^[0-9]+$ ]] || die "--seed must be a non-negative integer, not '$SEED'"
[[ -z $TIMEOUT || $TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive number of seconds"
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "--threads must be a positive integer, not '$THREADS'"

# Parse a count the way probe-gen does (10M, 2.5M, 200M, 1_000_000, 10k) into an integer.
parse_count() {
    local s=${1//[_,]/}
    awk -v s="$s" 'BEGIN {
        m = 1; c = substr(s, length(s), 1)
        if (c ~ /[kK]/) m = 1e3; else if (c ~ /[mM]/) m = 1e6; else if (c ~ /[gGbB]/) m = 1e9
        if (m != 1) s = substr(s, 1, length(s) - 1)
        if (s !~ /^[0-9]+(\.[0-9]+)?$/) exit 1
        v = s * m
        if (v < 1 || v != int(v)) exit 1
        printf "%.0f\n", v
    }'
}
ROWS=$(parse_count "$ROWS_ARG") || die "--rows: '$ROWS_ARG' is not a count like 2M, 10M or 200M"
# Canonical label: 10000000 and 10M both give rows-10M.
if ((ROWS % 1000000 == 0)); then
    LABEL="$((ROWS / 1000000))M"
elif ((ROWS % 1000 == 0)); then
    LABEL="$((ROWS / 1000))k"
else
    LABEL=$ROWS
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BENCH_DIR=${BENCH_DIR:-bench-data}
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
DATA_DIR=$BENCH_DIR/rows-$LABEL
RESULTS=$BENCH_DIR/results-rows-$LABEL.tsv
if [[ $SCALING == 1 ]]; then RESULTS=$BENCH_DIR/scaling-rows-$LABEL-threads-$THREADS.tsv; fi
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
VENV=$ROOT/scripts/.venv

[[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) is missing: apt-get install time"

# --- The runs: id, input, tool description. ----------------------------------------------------
ALL_IDS=(decode-sorted decode-shuffled group-ipc group-parquet group-sort
    duckdb-original-sorted duckdb-original-shuffled duckdb-optimized duckdb-optimized-zstd
    polars-sorted polars-shuffled)
declare -A INPUT_OF=(
    [decode-sorted]=sorted [decode-shuffled]=shuffled [group-ipc]=sorted [group-parquet]=sorted
    [group-sort]=shuffled [duckdb-original-sorted]=sorted [duckdb-original-shuffled]=shuffled
    [duckdb-optimized]=sorted [duckdb-optimized-zstd]=sorted [polars-sorted]=sorted [polars-shuffled]=shuffled
)
declare -A TOOL_OF=(
    [decode-sorted]="decode floor (bench-decode)"
    [decode-shuffled]="decode floor (bench-decode)"
    [group-ipc]="probe-group -> IPC"
    [group-parquet]="probe-group -> Parquet"
    [group-sort]="probe-group --sort --memory-limit $SORT_MEMORY -> IPC"
    [duckdb-original-sorted]="DuckDB original -> Parquet"
    [duckdb-original-shuffled]="DuckDB original -> Parquet"
    [duckdb-optimized]="DuckDB optimized -> Parquet"
    [duckdb-optimized-zstd]="DuckDB optimized -> Parquet zstd:1"
    [polars-sorted]="Polars group_by -> Parquet"
    [polars-shuffled]="Polars group_by -> Parquet"
)
BASELINE=group-ipc
# --scaling: every stage, each at 1 thread and at --threads N.
SCALING_IDS=(check-order group-ipc group-parquet group-sort split-parquet batch merge)
if [[ $SCALING == 1 ]]; then
    ALL_IDS=()
    for id in "${SCALING_IDS[@]}"; do ALL_IDS+=("$id@1" "$id@$THREADS"); done
    for id in "${SCALING_IDS[@]}"; do
        for t in 1 "$THREADS"; do
            case $id in
                group-sort) INPUT_OF[$id@$t]=shuffled ;;
                split-* | batch | merge) INPUT_OF[$id@$t]=grouped ;;
                *) INPUT_OF[$id@$t]=sorted ;;
            esac
            TOOL_OF[$id@$t]="probe-$id --threads $t"
        done
    done
    TOOL_OF[group-ipc@1]="probe-group -> IPC --threads 1"
    TOOL_OF[group-ipc@$THREADS]="probe-group -> IPC --threads $THREADS"
    TOOL_OF[group-parquet@1]="probe-group -> Parquet --threads 1"
    TOOL_OF[group-parquet@$THREADS]="probe-group -> Parquet --threads $THREADS"
    TOOL_OF[group-sort@1]="probe-group --sort -> IPC --threads 1"
    TOOL_OF[group-sort@$THREADS]="probe-group --sort -> IPC --threads $THREADS"
    TOOL_OF[split-parquet@1]="probe-split -> Parquet --threads 1"
    TOOL_OF[split-parquet@$THREADS]="probe-split -> Parquet --threads $THREADS"
    TOOL_OF[merge@1]="probe-merge -> Parquet --threads 1"
    TOOL_OF[merge@$THREADS]="probe-merge -> Parquet --threads $THREADS"
    BASELINE=group-ipc@1
fi

is_python() { [[ $1 == duckdb-* || $1 == polars-* ]]; }

selected() {
    local id=$1 want
    if [[ $SKIP_PYTHON == 1 ]] && is_python "$id"; then
        return 1
    fi
    [[ -z $ONLY ]] && return 0
    local IFS=,
    for want in $ONLY; do
        [[ -z $want ]] && continue
        if [[ $id == "$want" || $id == "$want"-* || $id == "$want"@* ]]; then
            return 0
        fi
    done
    return 1
}

IDS=()
for id in "${ALL_IDS[@]}"; do
    if selected "$id"; then
        IDS+=("$id")
    fi
done
# --pipeline: the job itself runs apart from the table; DuckDB's "optimized" step is its anchor.
if [[ $PIPELINE == 1 ]]; then
    [[ -z $ONLY ]] || die "--only does not apply to --pipeline"
    IDS=()
    if [[ $SKIP_PYTHON == 0 ]]; then IDS=(duckdb-optimized); fi
fi
if [[ -n $ONLY ]]; then
    IFS=, read -r -a wants <<<"$ONLY"
    for want in "${wants[@]}"; do
        [[ -z $want ]] && continue
        match=0
        for id in "${ALL_IDS[@]}"; do
            if [[ $id == "$want" || $id == "$want"-* || $id == "$want"@* ]]; then match=1; fi
        done
        ((match)) || die "--only: no run id matches '$want' (ids: ${ALL_IDS[*]})"
    done
fi
((${#IDS[@]} > 0 || PIPELINE)) || die "nothing to run (--only '$ONLY', --skip-python $SKIP_PYTHON)"

NEED_PYTHON=0
NEED_SORTED=0
NEED_SHUFFLED=0
if [[ $PIPELINE == 1 ]]; then NEED_SORTED=1; fi
for id in "${IDS[@]}"; do
    if is_python "$id"; then NEED_PYTHON=1; fi
    case ${INPUT_OF[$id]} in
        sorted | grouped) NEED_SORTED=1 ;;
        *) NEED_SHUFFLED=1 ;;
    esac
done

# --- The machine. -------------------------------------------------------------------------------
CPU_MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
MEM_GIB=$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo 2>/dev/null || true)
MACHINE="$(nproc) cores (nproc), ${CPU_MODEL:-unknown CPU}, ${MEM_GIB:-?} GiB RAM, $(uname -sr)"
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
loadavg() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?'; }
LOAD_START=$(loadavg)
echo "machine: $MACHINE"
echo "date:    $DATE (load average $LOAD_START: other work on the machine skews the figures)"
echo "data:    $ROWS rows ($LABEL), $FILES files per order, seed $SEED, under $DATA_DIR"
if [[ $PIPELINE == 1 ]]; then
    echo "runs:    scripts/pipeline.sh on the sorted data${IDS[*]:+, then ${IDS[*]}}; $REPS repetition(s); THREADS $THREADS"
else
    echo "runs:    ${IDS[*]}; $REPS repetition(s), interleaved; --threads $THREADS"
fi
echo

# --- Build. -------------------------------------------------------------------------------------
if [[ $BUILD == 1 ]]; then
    echo "building: cargo build --release --workspace --bins" >&2
    cargo build --release -q --workspace --bins
fi
# Work dir for outputs and spills, and a private copy of the binaries: others building in the same
# target dir must not swap them between repetitions.
WORK=$(mktemp -d "$BENCH_DIR/.run.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/bin"
for b in probe-gen probe-group probe-check-order probe-split probe-batch probe-merge bench-decode; do
    if [[ $b == bench-decode && ! -x $BIN/$b && " ${IDS[*]} " != *" decode-"* ]]; then
        continue # only the decode runs need it
    fi
    [[ -x $BIN/$b ]] || die "$BIN/$b is missing: run cargo build --release --workspace --bins"
    cp "$BIN/$b" "$WORK/bin/$b"
done
BIN=$WORK/bin
GROUP_VERSION="$("$BIN/probe-group" --version), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if [[ -n $(git status --porcelain --untracked-files=no 2>/dev/null || true) ]]; then
    GROUP_VERSION+=" (work tree modified)"
fi

# --- Python virtualenv with pinned anchors. -----------------------------------------------------
PY=${BENCH_PYTHON:-$VENV/bin/python}
PY_VERSIONS=""
if [[ $NEED_PYTHON == 1 && -n ${BENCH_PYTHON:-} ]]; then
    # A Python of the caller's (a machine without network): used as it is, its versions recorded.
    PY_VERSIONS=$("$PY" -c 'import duckdb; print(f"duckdb {duckdb.__version__}")') ||
        die "BENCH_PYTHON=$PY cannot import duckdb"
elif [[ $NEED_PYTHON == 1 ]]; then
    want_versions="duckdb $DUCKDB_VERSION, polars $POLARS_VERSION, pyarrow $PYARROW_VERSION"
    have_versions=""
    if [[ -x $PY ]]; then
        have_versions=$("$PY" -c 'import duckdb, polars, pyarrow; print(f"duckdb {duckdb.__version__}, polars {polars.__version__}, pyarrow {pyarrow.__version__}")' 2>/dev/null || true)
    fi
    if [[ $have_versions != "$want_versions" ]]; then
        echo "setting up $VENV ($want_versions)" >&2
        [[ -x $PY ]] || python3 -m venv "$VENV" || die "python3 -m venv failed; install python3-venv or use --skip-python"
        "$PY" -m pip install -q --disable-pip-version-check \
            "duckdb==$DUCKDB_VERSION" "polars==$POLARS_VERSION" "pyarrow==$PYARROW_VERSION" ||
            die "pip install into $VENV failed; use --skip-python to run without DuckDB and Polars"
    fi
    PY_VERSIONS=$want_versions
fi

# --- Data sets. ---------------------------------------------------------------------------------
gen_params() {
    echo "rows=$ROWS order=$1 files=$FILES seed=$SEED generator=$("$BIN/probe-gen" --version)"
}

ensure_data() {
    local order=$1 dir=$DATA_DIR/$1 marker
    marker=$dir/.bench-params
    if [[ -f $marker && $(cat "$marker") == "$(gen_params "$order")" ]]; then
        echo "reusing $dir ($(cat "$marker"))" >&2
        return
    fi
    echo "generating $dir: probe-gen --rows $ROWS --order $order --files $FILES --seed $SEED" >&2
    rm -rf "$dir"
    mkdir -p "$dir"
    "$BIN/probe-gen" --rows "$ROWS" --order "$order" --files "$FILES" --seed "$SEED" --out-dir "$dir" >&2
    gen_params "$order" >"$marker"
}
if [[ $NEED_SORTED == 1 ]]; then ensure_data sorted; fi
if [[ $NEED_SHUFFLED == 1 ]]; then ensure_data shuffled; fi
# The bytes of one data set (both orders hold the same rows; sizes differ with compression).
data_bytes() { du -sb --exclude='.*' "$DATA_DIR/$1" | cut -f1; }

# The later stages' input: the sorted data grouped once (not measured).
NEED_GROUPED=0
for id in "${IDS[@]}"; do
    if [[ ${INPUT_OF[$id]} == grouped ]]; then NEED_GROUPED=1; fi
done
if [[ $NEED_GROUPED == 1 ]]; then
    echo "grouping $DATA_DIR/sorted into $WORK/grouped.arrows (input of split, batch, merge)" >&2
    "$BIN/probe-group" -q "$DATA_DIR/sorted" -o "$WORK/grouped.arrows"
fi

# --- One measured run. --------------------------------------------------------------------------
LOG_DIR=$DATA_DIR/logs
mkdir -p "$LOG_DIR"

# The command line of a run; the output and spill paths live in $WORK/run (emptied between runs).
command_of() {
    local id=${1%@*} in=$DATA_DIR/${INPUT_OF[$1]} run=$WORK/run t=$THREADS
    if [[ $1 == *@* ]]; then t=${1##*@}; fi
    if [[ ${INPUT_OF[$1]} == grouped ]]; then in=$WORK/grouped.arrows; fi
    case $id in
        decode-*) CMD=("$BIN/bench-decode" "$in") ;;
        check-order) CMD=("$BIN/probe-check-order" --threads "$t" "$in") ;;
        group-ipc) CMD=("$BIN/probe-group" --threads "$t" "$in") ;;
        group-parquet) CMD=("$BIN/probe-group" --threads "$t" "$in" -o "$run/out.parquet") ;;
        group-sort) CMD=("$BIN/probe-group" --threads "$t" --sort --memory-limit "$SORT_MEMORY" --temp-dir "$run/spill" "$in") ;;
        split-parquet) CMD=("$BIN/probe-split" --threads "$t" "$in" --out-dir "$run/split" --format parquet) ;;
        batch) CMD=("$BIN/probe-batch" --threads "$t" "$in" --max-len 512 -o "$run/rows.arrows") ;;
        merge) CMD=("$BIN/probe-merge" --threads "$t" "$in" -o "$run/out.parquet") ;;
        duckdb-original-*) CMD=("$PY" scripts/bench_duckdb.py original "$in" "$run/out.parquet" --temp-dir "$run/spill" --threads "$t") ;;
        duckdb-optimized) CMD=("$PY" scripts/bench_duckdb.py optimized "$in" "$run/out.parquet" --temp-dir "$run/spill" --threads "$t") ;;
        duckdb-optimized-zstd) CMD=("$PY" scripts/bench_duckdb.py optimized "$in" "$run/out.parquet" --temp-dir "$run/spill" --threads "$t" --compression zstd:1) ;;
        polars-*) CMD=("$PY" scripts/bench_polars.py "$in" "$run/out.parquet") ;;
        *) die "internal: unknown run id $id" ;;
    esac
}

# "h:mm:ss" or "m:ss.ss" -> seconds.
to_seconds() {
    awk -v t="$1" 'BEGIN { n = split(t, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.2f\n", s }'
}

declare -A WALLS RSSS FAILED
run_once() {
    local id=$1 rep=$2 log=$LOG_DIR/$1.rep$2 rc=0 wall rss
    rm -rf "$WORK/run"
    mkdir -p "$WORK/run/spill"
    command_of "$id"
    local -a pre=()
    if [[ -n $TIMEOUT ]]; then pre=(timeout --signal=KILL "$TIMEOUT"); fi
    echo "  rep $rep  $id: ${CMD[*]}" >&2
    # stdout goes to /dev/null: the IPC runs' output, discarded (probe-group refuses only a terminal).
    POLARS_MAX_THREADS=$THREADS /usr/bin/time -v -o "$log.time" "${pre[@]}" "${CMD[@]}" >/dev/null 2>"$log.err" || rc=$?
    rm -rf "$WORK/run"
    if ((rc != 0)); then
        FAILED[$id]="failed (exit $rc)"
        echo "    -> failed (exit $rc); last lines of $log.err:" >&2
        tail -n 3 "$log.err" | sed 's/^/       /' >&2
        return
    fi
    wall=$(to_seconds "$(sed -n 's/^.*Elapsed (wall clock) time.*): *//p' "$log.time")")
    rss=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): *//p' "$log.time")
    [[ -n $wall && -n $rss ]] || die "cannot parse $log.time"
    WALLS[$id]+="$wall "
    RSSS[$id]+="$rss "
    echo "    -> ${wall}s, $((rss / 1024)) MiB; $(tail -n 1 "$log.err")" >&2
}

median() {
    tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) exit 1
        if (NR % 2) printf "%.6f\n", v[(NR + 1) / 2]; else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# --- --pipeline: the whole job, one row per stage. -----------------------------------------------
if [[ $PIPELINE == 1 ]]; then
    PIPE_RESULTS=$BENCH_DIR/results-pipeline-rows-$LABEL.tsv
    : >"$PIPE_RESULTS.tmp"
    for ((rep = 1; rep <= REPS; rep++)); do
        echo "repetition $rep of $REPS: scripts/pipeline.sh $DATA_DIR/sorted (log: $LOG_DIR/pipeline.rep$rep.err)" >&2
        rm -rf "$WORK/pipe"
        rc=0
        THREADS=$THREADS PROBE_BIN=$BIN "$ROOT/scripts/pipeline.sh" "$DATA_DIR/sorted" "$WORK/pipe" 2>"$LOG_DIR/pipeline.rep$rep.err" || rc=$?
        if ((rc != 0)); then
            tail -n 5 "$LOG_DIR/pipeline.rep$rep.err" >&2
            die "scripts/pipeline.sh failed (exit $rc); log: $LOG_DIR/pipeline.rep$rep.err"
        fi
        cp "$WORK/pipe/logs/report.tsv" "$LOG_DIR/pipeline.rep$rep.tsv"
        grep -v '^#' "$WORK/pipe/logs/report.tsv" | awk -v rep="$rep" -F'\t' -v OFS='\t' \
            'NR == 1 { if (rep == 1) print "rep", $0; next } { print rep, $0 }' >>"$PIPE_RESULTS.tmp"
        input_bytes=$(sed -n 's/^# input_bytes //p' "$WORK/pipe/logs/report.tsv")
        temp_peak=$(sed -n 's/^# temp_peak_bytes //p' "$WORK/pipe/logs/report.tsv")
        echo "    -> $(grep '^total' "$WORK/pipe/logs/report.tsv" | cut -f3) s; temp disk peak $temp_peak bytes" >&2
        echo "# rep $rep: input_bytes $input_bytes temp_peak_bytes $temp_peak" >>"$PIPE_RESULTS.tmp"
        rm -rf "$WORK/pipe"
    done
    for ((rep = 1; rep <= REPS; rep++)); do
        for id in "${IDS[@]}"; do
            [[ -n ${FAILED[$id]:-} ]] || run_once "$id" "$rep"
        done
    done
    {
        echo "# probe-rows whole-job benchmark (scripts/bench.sh --pipeline $LABEL), $DATE"
        echo "# machine: $MACHINE"
        echo "# data: $ROWS rows sorted, $FILES files, seed $SEED; $(data_bytes sorted) bytes of Parquet"
        echo "# versions: $GROUP_VERSION${PY_VERSIONS:+; $PY_VERSIONS}"
        echo "# load average (1, 5, 15 min): $LOAD_START at start, $(loadavg) at end"
        grep '^#' "$PIPE_RESULTS.tmp"
        grep -v '^#' "$PIPE_RESULTS.tmp"
    } >"$PIPE_RESULTS"
    rm -f "$PIPE_RESULTS.tmp"

    grep '^# [pmdvl]' "$PIPE_RESULTS"
    for ((rep = 1; rep <= REPS; rep++)); do
        echo
        echo "repetition $rep:"
        printf '%-12s %-8s %8s %8s %12s %12s %9s %12s\n' stage split 'wall s' 'cpu s' 'rows in' 'rows out' 'peak MiB' 'written MiB'
        grep -v '^#' "$PIPE_RESULTS" | awk -F'\t' -v rep="$rep" '
            $1 != rep { next }
            {
                mib = ($8 == "-") ? "-" : sprintf("%.0f", $8 / 1048576)
                wmib = ($9 == "-") ? "-" : sprintf("%.0f", $9 / 1048576)
                rate = ($2 == "total" && $4 > 0) ? sprintf("%.2f M meas/s", $6 / $4 / 1e6) : ""
                printf "%-12s %-8s %8s %8s %12s %12s %9s %12s  %s\n", $2, $3, $4, $5, $6, $7, mib, wmib, rate
            }'
        sed -n "s/^# rep $rep: input_bytes \([0-9]*\) temp_peak_bytes \([0-9]*\)$/\1 \2/p" "$PIPE_RESULTS" |
            awk '{ printf "temp disk peak %.0f MiB = %.2fx the input'"'"'s %.0f MiB of Parquet\n", $2 / 1048576, $2 / $1, $1 / 1048576 }'
    done
    for id in "${IDS[@]}"; do
        echo
        if [[ -n ${FAILED[$id]:-} ]]; then
            echo "${TOOL_OF[$id]}, the group step alone: ${FAILED[$id]}"
        else
            wall=$(median <<<"${WALLS[$id]}")
            rss=$(median <<<"${RSSS[$id]}")
            printf '%s, the group step alone, same data: %.2f s, peak %.0f MiB (median of %d)\n' \
                "${TOOL_OF[$id]}" "$wall" "$(awk -v r="$rss" 'BEGIN { print r / 1024 }')" "$REPS"
        fi
    done
    echo
    echo "TSV: $PIPE_RESULTS"
    exit 0
fi

echo "logs: $LOG_DIR/<run>.rep<N>.{err,time}" >&2
for ((rep = 1; rep <= REPS; rep++)); do
    echo "repetition $rep of $REPS" >&2
    for id in "${IDS[@]}"; do
        if [[ -n ${FAILED[$id]:-} ]]; then
            continue # failed once: recorded, not retried
        fi
        run_once "$id" "$rep"
    done
done

# --- Results. -----------------------------------------------------------------------------------

BASE_WALL=""
BASE_RSS=""
if [[ -z ${FAILED[$BASELINE]:-} && -n ${WALLS[$BASELINE]:-} ]]; then
    BASE_WALL=$(median <<<"${WALLS[$BASELINE]}")
    BASE_RSS=$(median <<<"${RSSS[$BASELINE]}")
fi

{
    echo "# probe-rows benchmark, $DATE"
    echo "# machine: $MACHINE"
    echo "# data: $ROWS rows, $FILES files per order, seed $SEED; sorted $(data_bytes sorted 2>/dev/null || echo '?') bytes, shuffled $(data_bytes shuffled 2>/dev/null || echo '?') bytes"
    echo "# versions: $GROUP_VERSION${PY_VERSIONS:+; $PY_VERSIONS}"
    echo "# load average (1, 5, 15 min): $LOAD_START at start, $(loadavg) at end"
    echo "# $REPS repetition(s), interleaved; medians; ratios relative to $BASELINE (probe-group, sorted input, IPC output)"
    printf 'run\ttool\tinput\twall_s\tpeak_rss_mib\tmeasurements_per_s\twall_ratio\trss_ratio\n'
    for id in "${IDS[@]}"; do
        if [[ -n ${FAILED[$id]:-} ]]; then
            printf '%s\t%s\t%s\t%s\t-\t-\t-\t-\n' "$id" "${TOOL_OF[$id]}" "${INPUT_OF[$id]}" "${FAILED[$id]}"
            continue
        fi
        wall=$(median <<<"${WALLS[$id]}")
        rss=$(median <<<"${RSSS[$id]}")
        awk -v id="$id" -v tool="${TOOL_OF[$id]}" -v input="${INPUT_OF[$id]}" -v w="$wall" -v r="$rss" \
            -v rows="$ROWS" -v bw="$BASE_WALL" -v br="$BASE_RSS" 'BEGIN {
                wr = (bw == "" || bw == 0) ? "-" : sprintf("%.2f", w / bw)
                rr = (br == "" || br == 0) ? "-" : sprintf("%.2f", r / br)
                mps = (w > 0) ? sprintf("%.0f", rows / w) : "-"
                printf "%s\t%s\t%s\t%.2f\t%.0f\t%s\t%s\t%s\n", id, tool, input, w, r / 1024, mps, wr, rr
            }'
    done
} >"$RESULTS"

# The table on stdout: comments as they are, then aligned columns (measurements/s in millions).
grep '^#' "$RESULTS"
echo
if [[ $SCALING == 1 ]]; then
    # One line per stage: wall at 1 thread, at N, and the speedup; peak memory at both.
    grep -v '^#' "$RESULTS" | awk -F'\t' -v n="$THREADS" '
        NR == 1 { printf "%-16s %12s %12s %9s %14s %14s\n", "stage", "wall s @1", "wall s @" n, "speedup", "peak MiB @1", "peak MiB @" n; next }
        {
            split($1, p, "@"); id = p[1]; t = p[2]
            if (!(id in seen)) { seen[id] = 1; order[++k] = id }
            w[id, t] = $4; r[id, t] = $5
        }
        END {
            for (i = 1; i <= k; i++) {
                id = order[i]; w1 = w[id, 1]; wn = w[id, n]
                sp = (w1 ~ /^[0-9.]+$/ && wn ~ /^[0-9.]+$/ && wn > 0) ? sprintf("%.2fx", w1 / wn) : "-"
                printf "%-16s %12s %12s %9s %14s %14s\n", id, w1, wn, sp, r[id, 1], r[id, n]
            }
        }'
    echo
    echo "TSV: $RESULTS"
    exit 0
fi
grep -v '^#' "$RESULTS" | awk -F'\t' '
    NR == 1 { printf "%-26s %-48s %-9s %9s %10s %10s %7s %7s\n", "run", "tool", "input", "wall s", "peak MiB", "M meas/s", "wall x", "RSS x"; next }
    {
        mps = ($6 == "-") ? "-" : sprintf("%.2f", $6 / 1e6)
        printf "%-26s %-48s %-9s %9s %10s %10s %7s %7s\n", $1, $2, $3, $4, $5, mps, $7, $8
    }'
echo
echo "TSV: $RESULTS"
