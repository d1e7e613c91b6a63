//! In-process tests: small Parquet / Arrow IPC files in a temp dir, each verdict, the counts
//! against an independent oracle, violation rows, errors and the exit-code mapping.

#![allow(clippy::unwrap_used)]

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, DictionaryArray, Float64Array, Int32Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, TimeUnit};
use arrow::ipc::writer::{FileWriter, StreamWriter};
use arrow::record_batch::RecordBatch;
use clap::Parser;
use parquet::arrow::ArrowWriter;

use super::*;

type K = Option<i64>;
type T = Option<i64>;

fn schema_i64() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("src_addr", DataType::Int64, true),
        Field::new("event_time", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        Field::new("rtt_ms", DataType::Float64, true),
    ]))
}

/// A batch of (key, time) rows with a payload column, as a measurement table has.
fn batch(rows: &[(K, T)]) -> RecordBatch {
    let keys: Int64Array = rows.iter().map(|r| r.0).collect();
    let times: TimestampMillisecondArray = rows.iter().map(|r| r.1).collect();
    let payload: Float64Array = rows.iter().map(|_| Some(1.5)).collect();
    RecordBatch::try_new(schema_i64(), vec![Arc::new(keys), Arc::new(times), Arc::new(payload)]).unwrap()
}

fn write_parquet(path: &Path, batches: &[RecordBatch]) {
    let file = File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(file, batches[0].schema(), None).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

fn write_ipc_file(path: &Path, batches: &[RecordBatch]) {
    let file = File::create(path).unwrap();
    let mut w = FileWriter::try_new(file, &batches[0].schema()).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
}

fn write_ipc_stream(path: &Path, batches: &[RecordBatch], finish: bool) {
    let mut buf = Vec::new();
    {
        let mut w = StreamWriter::try_new(&mut buf, &batches[0].schema()).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        if finish {
            w.finish().unwrap();
        }
    }
    std::fs::write(path, buf).unwrap();
}

/// One Parquet file of rows.
fn parquet_file(dir: &Path, name: &str, rows: &[(K, T)]) -> PathBuf {
    let p = dir.join(name);
    write_parquet(&p, &[batch(rows)]);
    p
}

/// One IPC file whose batches are cut at the given row counts (to put rows on batch edges).
fn ipc_file_in_batches(dir: &Path, name: &str, rows: &[(K, T)], sizes: &[usize]) -> PathBuf {
    let mut batches = Vec::new();
    let mut at = 0;
    for &s in sizes {
        let end = (at + s).min(rows.len());
        batches.push(batch(&rows[at..end]));
        at = end;
    }
    if at < rows.len() || batches.is_empty() {
        batches.push(batch(&rows[at..]));
    }
    let p = dir.join(name);
    write_ipc_file(&p, &batches);
    p
}

fn cfg_for(paths: &[&Path]) -> Config {
    let inputs = paths.iter().map(|p| p.display().to_string()).collect();
    Config::new(inputs, vec!["src_addr".into()], Some("event_time".into())).unwrap()
}

fn check(paths: &[&Path]) -> Report {
    run(&cfg_for(paths)).unwrap()
}

fn rows(pairs: &[(i64, i64)]) -> Vec<(K, T)> {
    pairs.iter().map(|&(k, t)| (Some(k), Some(t))).collect()
}

/// Run the whole binary in process: exit code and stdout.
fn main_run(argv: &[&str]) -> (u8, String) {
    let mut all = vec!["probe-check-order", "-q"];
    all.extend_from_slice(argv);
    let args = cli::Args::try_parse_from(all).unwrap();
    let mut out = Vec::new();
    let code = main_with(&args, &mut out).unwrap_or(crate::EXIT_ERROR);
    (code, String::from_utf8(out).unwrap())
}

// ---------- the oracle: a direct, whole-input restatement of the rules ----------

fn rank(v: Option<i64>) -> (bool, i64) {
    // Nulls last: (is_null, value).
    (v.is_none(), v.unwrap_or(0))
}

fn cmp_row(a: &(K, T), b: &(K, T)) -> Ordering {
    (rank(a.0), rank(a.1)).cmp(&(rank(b.0), rank(b.1)))
}

fn is_sorted(rows: &[(K, T)]) -> bool {
    let mut s = rows.to_vec();
    s.sort_by(cmp_row);
    s == rows
}

#[derive(Debug, PartialEq, Eq)]
struct Expected {
    rows: u64,
    key_runs: u64,
    distinct: u64,
    key_viol: u64,
    time_viol: u64,
    ties: u64,
    null_keys: u64,
    null_times: u64,
    verdict: Verdict,
    first: Vec<(usize, u64, ViolationKind)>,
}

fn oracle(files: &[Vec<(K, T)>], max_violations: usize) -> Expected {
    let mut e = Expected {
        rows: 0,
        key_runs: 0,
        distinct: 0,
        key_viol: 0,
        time_viol: 0,
        ties: 0,
        null_keys: 0,
        null_times: 0,
        verdict: Verdict::Sorted,
        first: Vec::new(),
    };
    for (fi, f) in files.iter().enumerate() {
        e.rows += f.len() as u64;
        e.null_keys += f.iter().filter(|r| r.0.is_none()).count() as u64;
        e.null_times += f.iter().filter(|r| r.1.is_none()).count() as u64;
        for i in 0..f.len() {
            if i == 0 || f[i].0 != f[i - 1].0 {
                e.key_runs += 1;
            }
            if i == 0 {
                continue;
            }
            let kind = match rank(f[i].0).cmp(&rank(f[i - 1].0)) {
                Ordering::Less => Some(ViolationKind::KeyOrder),
                Ordering::Equal => match rank(f[i].1).cmp(&rank(f[i - 1].1)) {
                    Ordering::Less => Some(ViolationKind::TimeOrder),
                    Ordering::Equal => {
                        e.ties += 1;
                        None
                    }
                    Ordering::Greater => None,
                },
                Ordering::Greater => None,
            };
            match kind {
                Some(ViolationKind::KeyOrder) => e.key_viol += 1,
                Some(ViolationKind::TimeOrder) => e.time_viol += 1,
                None => {}
            }
            if let Some(k) = kind {
                if e.first.len() < max_violations {
                    e.first.push((fi, i as u64, k));
                }
            }
        }
    }
    let all: Vec<(K, T)> = files.concat();
    let distinct: BTreeSet<K> = all.iter().map(|r| r.0).collect();
    e.distinct = distinct.len() as u64;
    // Clustered: the number of runs of equal keys over the whole input equals the number of keys.
    let global_runs = (0..all.len()).filter(|&i| i == 0 || all[i].0 != all[i - 1].0).count();
    let clustered = global_runs == distinct.len();
    e.verdict = if is_sorted(&all) {
        Verdict::Sorted
    } else if files.iter().all(|f| is_sorted(f)) {
        Verdict::SortedPerFile
    } else if clustered {
        Verdict::Clustered
    } else {
        Verdict::Unordered
    };
    e
}

fn observed(r: &Report, names: &[String]) -> Expected {
    Expected {
        rows: r.rows,
        key_runs: r.key_runs,
        distinct: r.distinct_keys,
        key_viol: r.key_order_violations,
        time_viol: r.time_order_violations,
        ties: r.ties,
        null_keys: r.null_keys,
        null_times: r.null_times,
        verdict: r.verdict,
        first: r
            .first_violations
            .iter()
            .map(|v| (names.iter().position(|n| *n == v.file).unwrap(), v.row, v.kind))
            .collect(),
    }
}

// ---------- verdicts ----------

#[test]
fn sorted_single_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = rows(&[(1, 10), (1, 20), (2, 5), (3, 1), (3, 1), (3, 2)]);
    let p = parquet_file(dir.path(), "a.parquet", &data);
    let r = check(&[&p]);
    assert_eq!(r.verdict, Verdict::Sorted);
    assert_eq!(r.exit_code(), 0);
    assert_eq!((r.rows, r.file_count, r.key_runs, r.distinct_keys, r.ties), (6, 1, 3, 3, 1));
    assert_eq!((r.key_order_violations, r.time_order_violations, r.key_reappearances), (0, 0, 0));
    assert!(r.first_violations.is_empty());
    assert_eq!(r.files[0].first_key.as_deref(), Some("1"));
    assert_eq!(r.files[0].last_key.as_deref(), Some("3"));
    assert_eq!(r.group_command, format!("probe-group --key src_addr --time event_time {}", p.display()));
    assert_eq!(r, oracle_checked(&[data], &[p]));
}

/// Run the checker and compare it with the oracle; returns the report.
fn oracle_checked(files: &[Vec<(K, T)>], paths: &[PathBuf]) -> Report {
    let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    let r = check(&refs);
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(observed(&r, &names), oracle(files, 5));
    r
}

#[test]
fn sorted_per_file_when_files_overlap_and_sorted_when_they_follow_on() {
    let dir = tempfile::tempdir().unwrap();
    let a = rows(&[(1, 1), (3, 1), (5, 1)]);
    let b = rows(&[(2, 1), (4, 1), (6, 1)]);
    let pa = parquet_file(dir.path(), "a.parquet", &a);
    let pb = parquet_file(dir.path(), "b.parquet", &b);
    let r = oracle_checked(&[a.clone(), b.clone()], &[pa.clone(), pb.clone()]);
    assert_eq!(r.verdict, Verdict::SortedPerFile);
    assert_eq!(r.exit_code(), 0);
    assert_eq!(r.file_overlaps, 1);
    assert!(!r.files[0].overlaps_previous && r.files[1].overlaps_previous);
    assert!(r.files.iter().all(|f| f.verdict == FileVerdict::Sorted));
    assert!(!r.group_command.contains("--sort"));

    // The same files as a directory (name order, `_SUCCESS` skipped).
    std::fs::write(dir.path().join("_SUCCESS"), b"").unwrap();
    let r = check(&[dir.path()]);
    assert_eq!(r.verdict, Verdict::SortedPerFile);
    assert_eq!(r.file_count, 2);

    // A key continuing across the boundary, later in time: still sorted, one contiguous key.
    let c = rows(&[(1, 1), (2, 1), (2, 5)]);
    let d = rows(&[(2, 7), (3, 1)]);
    let pc = parquet_file(dir.path(), "c.parquet", &c);
    let pd = parquet_file(dir.path(), "d.parquet", &d);
    let r = oracle_checked(&[c.clone(), d.clone()], &[pc.clone(), pd.clone()]);
    assert_eq!(r.verdict, Verdict::Sorted);
    assert_eq!((r.key_runs, r.distinct_keys, r.key_reappearances), (4, 3, 0));

    // Same boundary key but an earlier time in the second file: the files overlap.
    let e = rows(&[(2, 3), (3, 1)]);
    let pe = parquet_file(dir.path(), "e.parquet", &e);
    let r = oracle_checked(&[c, e], &[pc, pe]);
    assert_eq!(r.verdict, Verdict::SortedPerFile);
    assert_eq!(r.file_overlaps, 1);
}

#[test]
fn clustered_keys_not_ascending() {
    let dir = tempfile::tempdir().unwrap();
    let data = rows(&[(3, 1), (3, 2), (1, 1), (1, 2), (2, 0)]);
    let p = parquet_file(dir.path(), "a.parquet", &data);
    let r = oracle_checked(&[data], std::slice::from_ref(&p));
    assert_eq!(r.verdict, Verdict::Clustered);
    assert_eq!(r.exit_code(), 1);
    assert_eq!(r.key_order_violations, 1);
    let v = &r.first_violations[0];
    assert_eq!((v.row, v.kind, v.previous.as_str(), v.current.as_str()), (2, ViolationKind::KeyOrder, "3", "1"));
    assert_eq!(v.file, p.display().to_string());
    assert_eq!(r.files[0].verdict, FileVerdict::Unsorted);
    assert_eq!(r.group_command, format!("probe-group --sort --key src_addr --time event_time {}", p.display()));
}

#[test]
fn time_violation_within_a_key_is_clustered() {
    let dir = tempfile::tempdir().unwrap();
    let data = rows(&[(1, 1_000), (2, 5_000), (2, 3_000), (3, 0)]);
    let p = parquet_file(dir.path(), "a.parquet", &data);
    let r = oracle_checked(&[data], &[p]);
    assert_eq!(r.verdict, Verdict::Clustered);
    assert_eq!((r.key_order_violations, r.time_order_violations), (0, 1));
    let v = &r.first_violations[0];
    assert_eq!((v.row, v.kind, v.key.as_deref()), (2, ViolationKind::TimeOrder, Some("2")));
    // Times print in the column's own type.
    assert_eq!(v.previous, "1970-01-01T00:00:05");
    assert_eq!(v.current, "1970-01-01T00:00:03");
}

#[test]
fn unordered_when_a_key_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = rows(&[(1, 1), (2, 1), (1, 2), (3, 1)]);
    let p = parquet_file(dir.path(), "a.parquet", &data);
    let r = oracle_checked(&[data], std::slice::from_ref(&p));
    assert_eq!(r.verdict, Verdict::Unordered);
    assert_eq!(r.exit_code(), 1);
    assert_eq!(r.key_reappearances, 1);
    let a = r.first_reappearance.as_ref().unwrap();
    assert_eq!((a.row, a.key.as_str()), (2, "1"));
    assert_eq!(r.key_runs, 4);
    assert_eq!(r.distinct_keys, 3);
}

#[test]
fn ties_are_counted_and_still_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let data = rows(&[(1, 5), (1, 5), (1, 5), (2, 1), (2, 1), (3, 9)]);
    let p = parquet_file(dir.path(), "a.parquet", &data);
    let r = oracle_checked(&[data], &[p]);
    assert_eq!(r.verdict, Verdict::Sorted);
    assert_eq!(r.ties, 3);
}

#[test]
fn nulls_sort_last() {
    let dir = tempfile::tempdir().unwrap();
    // Null keys after every key, null times after every time of their key.
    let good = vec![
        (Some(1), Some(1)),
        (Some(1), None),
        (Some(2), Some(3)),
        (None, Some(1)),
        (None, Some(2)),
        (None, None),
        (None, None),
    ];
    let p = parquet_file(dir.path(), "good.parquet", &good);
    let r = oracle_checked(std::slice::from_ref(&good), &[p]);
    assert_eq!(r.verdict, Verdict::Sorted);
    assert_eq!((r.null_keys, r.null_times, r.distinct_keys, r.ties), (4, 3, 3, 1));
    assert_eq!(r.files[0].last_key.as_deref(), Some("null"));

    // A null key first, a null time first: both violations.
    let bad = vec![(None, Some(1)), (Some(1), None), (Some(1), Some(2))];
    let p = parquet_file(dir.path(), "bad.parquet", &bad);
    let r = oracle_checked(&[bad], &[p]);
    assert_eq!((r.key_order_violations, r.time_order_violations), (1, 1));
    let v: Vec<(u64, ViolationKind, &str, &str)> =
        r.first_violations.iter().map(|v| (v.row, v.kind, v.previous.as_str(), v.current.as_str())).collect();
    assert_eq!(
        v,
        vec![
            (1, ViolationKind::KeyOrder, "null", "1"),
            (2, ViolationKind::TimeOrder, "null", "1970-01-01T00:00:00.002")
        ]
    );
}

#[test]
fn null_string_key_is_not_the_empty_string() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("src_addr", DataType::Utf8, true),
        Field::new("event_time", DataType::Int64, false),
    ]));
    let keys = StringArray::from(vec![Some(""), Some("a"), None]);
    let b = RecordBatch::try_new(schema, vec![Arc::new(keys), Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap();
    let p = dir.path().join("s.parquet");
    write_parquet(&p, &[b]);
    let r = check(&[&p]);
    assert_eq!(r.verdict, Verdict::Sorted);
    assert_eq!(r.distinct_keys, 3);
}

#[test]
fn composite_key_compares_column_by_column() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Utf8, true),
        Field::new("b", DataType::Int32, true),
        Field::new("t", DataType::Int64, true),
    ]));
    let mk = |a: Vec<&str>, b: Vec<i32>, t: Vec<i64>| {
        let cols: Vec<ArrayRef> =
            vec![Arc::new(StringArray::from(a)), Arc::new(Int32Array::from(b)), Arc::new(Int64Array::from(t))];
        RecordBatch::try_new(schema.clone(), cols).unwrap()
    };
    let cfg =
        |p: &Path| Config::new(vec![p.display().to_string()], vec!["a".into(), "b".into()], Some("t".into())).unwrap();

    // ("x",10) < ("y",2): string first, then the integer (not "10" < "2" as text).
    let sorted = dir.path().join("sorted.arrow");
    write_ipc_file(&sorted, &[mk(vec!["x", "x", "x", "y"], vec![2, 10, 10, 2], vec![1, 1, 2, 0])]);
    let r = run(&cfg(&sorted)).unwrap();
    assert_eq!(r.verdict, Verdict::Sorted);
    assert_eq!((r.key_runs, r.distinct_keys), (3, 3));
    assert_eq!(r.group_command, format!("probe-group --key a,b --time t {}", sorted.display()));

    let bad = dir.path().join("bad.arrow");
    write_ipc_file(&bad, &[mk(vec!["x", "x", "y", "x"], vec![10, 2, 1, 10], vec![0, 0, 0, 1])]);
    let r = run(&cfg(&bad)).unwrap();
    assert_eq!(r.key_order_violations, 2);
    let v = &r.first_violations;
    assert_eq!((v[0].row, v[0].previous.as_str(), v[0].current.as_str()), (1, "(x, 10)", "(x, 2)"));
    assert_eq!((v[1].row, v[1].previous.as_str(), v[1].current.as_str()), (3, "(y, 1)", "(x, 10)"));
    assert_eq!(r.verdict, Verdict::Unordered);
}

#[test]
fn dictionary_keys() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("src_addr", DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)), true),
        Field::new("event_time", DataType::Int64, true),
    ]));
    // Dictionary order differs from value order: values must be compared, not codes.
    let keys: DictionaryArray<Int32Type> = vec!["b", "a", "c"].into_iter().collect();
    let keys = arrow::compute::take(&keys, &Int32Array::from(vec![1, 0, 0, 2]), None).unwrap();
    let b = RecordBatch::try_new(schema, vec![keys, Arc::new(Int64Array::from(vec![1, 1, 2, 1]))]).unwrap();
    let p = dir.path().join("d.arrows");
    write_ipc_stream(&p, &[b], true);
    let r = check(&[&p]);
    assert_eq!(r.verdict, Verdict::Sorted);
    assert_eq!((r.distinct_keys, r.key_runs), (3, 3));
    assert_eq!(r.files[0].first_key.as_deref(), Some("a"));
}

// ---------- batch edges, limits, empty input ----------

#[test]
fn violation_rows_across_batch_edges() {
    let dir = tempfile::tempdir().unwrap();
    // Batches of 3 rows: the key drop at row 3 and the time drop at row 6 each sit on an edge.
    let data = rows(&[(1, 1), (2, 1), (5, 1), (4, 1), (4, 5), (4, 6), (4, 2), (6, 0), (6, 0)]);
    let p = ipc_file_in_batches(dir.path(), "a.arrow", &data, &[3, 3, 3]);
    let r = oracle_checked(std::slice::from_ref(&data), std::slice::from_ref(&p));
    let v: Vec<(u64, ViolationKind)> = r.first_violations.iter().map(|v| (v.row, v.kind)).collect();
    assert_eq!(v, vec![(3, ViolationKind::KeyOrder), (6, ViolationKind::TimeOrder)]);
    assert_eq!(r.ties, 1);

    // Row numbers restart in each file.
    let q = ipc_file_in_batches(dir.path(), "b.arrow", &data, &[1, 1, 5]);
    let r = oracle_checked(&[data.clone(), data], &[p, q]);
    assert_eq!(r.first_violations.iter().map(|v| v.row).collect::<Vec<_>>(), vec![3, 6, 3, 6]);
    assert_eq!(r.first_violations[2].file, r.files[1].file);
}

#[test]
fn max_violations_limits_the_list_not_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<(K, T)> = (0..50).map(|i| (Some(100 - i), Some(0))).collect();
    let p = parquet_file(dir.path(), "a.parquet", &data);
    let mut cfg = cfg_for(&[&p]);
    cfg.max_violations = 2;
    let r = run(&cfg).unwrap();
    assert_eq!(r.key_order_violations, 49);
    assert_eq!(r.first_violations.len(), 2);
    assert_eq!(r.verdict, Verdict::Clustered);
}

#[test]
fn empty_input_is_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.parquet");
    write_parquet(&p, &[batch(&[])]);
    let r = check(&[&p]);
    assert_eq!((r.rows, r.file_count, r.distinct_keys, r.verdict), (0, 1, 0, Verdict::Sorted));
    assert_eq!(r.files[0].first_key, None);
    let (code, _) = main_run(&[p.to_str().unwrap()]);
    assert_eq!(code, 0);

    // An empty file between two others does not hide their overlap.
    let a = parquet_file(dir.path(), "a.parquet", &rows(&[(5, 1)]));
    let b = parquet_file(dir.path(), "b.parquet", &rows(&[(4, 1)]));
    let r = check(&[&a, &p, &b]);
    assert_eq!((r.verdict, r.file_overlaps), (Verdict::SortedPerFile, 1));
    assert!(r.files[2].overlaps_previous);
}

// ---------- the oracle over many random inputs ----------

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[test]
fn random_inputs_match_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut verdicts = BTreeSet::new();
    for case in 0..300 {
        let n_files = 1 + rng.below(3) as usize;
        let mode = rng.below(4);
        let mut files = Vec::new();
        let mut paths = Vec::new();
        for f in 0..n_files {
            let len = rng.below(25) as usize;
            let mut data: Vec<(K, T)> = (0..len)
                .map(|_| {
                    let k = if rng.below(12) == 0 { None } else { Some(rng.below(6) as i64) };
                    let t = if rng.below(10) == 0 { None } else { Some(rng.below(4) as i64) };
                    (k, t)
                })
                .collect();
            match mode {
                // Sorted per file, maybe a few swaps.
                0 | 1 => {
                    data.sort_by(cmp_row);
                    if mode == 1 && len > 2 && rng.below(2) == 0 {
                        let i = rng.below(len as u64 - 1) as usize;
                        data.swap(i, i + 1);
                    }
                }
                // Clustered: keys grouped, groups in random order, times maybe unsorted.
                2 => {
                    let offset = (case * 7 + f) as i64;
                    data.sort_by_key(|r| r.0.map(|k| (k * 7 + offset) % 6));
                }
                _ => {}
            }
            let name = format!("c{case}-f{f}.arrow");
            let mut sizes = Vec::new();
            let mut left = len;
            while left > 0 {
                let s = 1 + rng.below(8) as usize;
                sizes.push(s);
                left = left.saturating_sub(s);
            }
            paths.push(ipc_file_in_batches(dir.path(), &name, &data, &sizes));
            files.push(data);
        }
        let r = oracle_checked(&files, &paths);
        verdicts.insert(r.verdict.as_str());
        assert_eq!(r.files.iter().map(|f| f.rows).sum::<u64>(), r.rows);
    }
    // Every verdict came up.
    assert_eq!(verdicts.len(), 4, "{verdicts:?}");
}

/// One batch longer than three chunks of keys converted on different threads
/// (`check::ROW_CHUNK`): a time violation, a key violation (whose key comes back), a tie and a
/// null key right at the chunk edges are all counted, at their rows, as the oracle says.
#[test]
fn chunk_edges_inside_a_batch_match_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let chunk = 1usize << 16;
    let n = 3 * chunk + 1000;
    let mut data: Vec<(K, T)> = (0..n).map(|i| (Some((i / 100) as i64), Some(i as i64))).collect();
    data[chunk].1 = Some(0); // time goes back within key 655
    data[2 * chunk].0 = Some(0); // key 0 again: a key violation and a reappearance
    data[3 * chunk].1 = data[3 * chunk - 1].1; // a tie
    data[chunk + 1].0 = None; // a null key among non-null ones
    data[2 * chunk - 1].0 = Some(i64::MAX); // the row before a chunk edge, then smaller keys
    let path = ipc_file_in_batches(dir.path(), "edges.arrow", &data, &[n]);
    let r = oracle_checked(&[data], &[path]);
    assert!(r.key_order_violations >= 2 && r.time_order_violations >= 1 && r.ties >= 1, "{r:?}");
    assert_eq!(r.null_keys, 1);
}

// ---------- binary behaviour: exit codes, output, errors ----------

#[test]
fn exit_codes_follow_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let sorted = parquet_file(dir.path(), "sorted.parquet", &rows(&[(1, 1), (2, 1)]));
    let overlap = parquet_file(dir.path(), "overlap.parquet", &rows(&[(0, 1), (3, 1)]));
    let clustered = parquet_file(dir.path(), "clustered.parquet", &rows(&[(2, 1), (1, 1)]));
    let unordered = parquet_file(dir.path(), "unordered.parquet", &rows(&[(1, 1), (2, 1), (1, 1)]));
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    assert_eq!(main_run(&[&s(&sorted)]).0, 0);
    assert_eq!(main_run(&[&s(&sorted), &s(&overlap)]).0, 0);
    assert_eq!(main_run(&[&s(&clustered)]).0, 1);
    assert_eq!(main_run(&[&s(&unordered)]).0, 1);
    assert_eq!(Verdict::SortedPerFile.exit_code(), 0);
    assert_eq!(Verdict::Clustered.exit_code(), 1);
}

#[test]
fn errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let good = parquet_file(dir.path(), "good.parquet", &rows(&[(1, 1)]));
    let good = good.to_str().unwrap();
    // Missing column, named in the message.
    let (code, out) = main_run(&["--key", "nope", good]);
    assert_eq!((code, out.as_str()), (2, ""));
    let err =
        run(&Config::new(vec![good.into()], vec!["nope".into()], Some("event_time".into())).unwrap()).unwrap_err();
    assert!(err.to_string().contains("no column `nope`"), "{err}");
    // Wrong key type (a float cannot be a key).
    assert_eq!(main_run(&["--key", "rtt_ms", good]).0, 2);
    // Wrong time type.
    assert_eq!(main_run(&["--time", "rtt_ms", good]).0, 2);
    // Key and time the same column.
    assert_eq!(main_run(&["--key", "event_time", good]).0, 2);
    // Missing file.
    assert_eq!(main_run(&[dir.path().join("missing.parquet").to_str().unwrap()]).0, 2);
    // Corrupt file.
    let corrupt = dir.path().join("corrupt.parquet");
    std::fs::write(&corrupt, b"PAR1 this is not parquet").unwrap();
    assert_eq!(main_run(&[corrupt.to_str().unwrap()]).0, 2);
    // Truncated stream (no end-of-stream marker).
    let cut = dir.path().join("cut.arrows");
    write_ipc_stream(&cut, &[batch(&rows(&[(1, 1), (2, 2)]))], false);
    let err = run(&cfg_for(&[&cut])).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    assert_eq!(main_run(&[cut.to_str().unwrap()]).0, 2);
    // A later file whose key type differs from the first one's.
    let other = dir.path().join("other.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("src_addr", DataType::Utf8, false),
        Field::new("event_time", DataType::Timestamp(TimeUnit::Millisecond, None), false),
    ]));
    let b = RecordBatch::try_new(
        schema,
        vec![Arc::new(StringArray::from(vec!["x"])), Arc::new(TimestampMillisecondArray::from(vec![1]))],
    )
    .unwrap();
    write_parquet(&other, &[b]);
    let err = run(&cfg_for(&[Path::new(good), &other])).unwrap_err();
    assert!(err.to_string().contains("src_addr"), "{err}");
    assert_eq!(main_run(&[good, other.to_str().unwrap()]).0, 2);
}

#[test]
fn json_report_has_snake_case_fields() {
    let dir = tempfile::tempdir().unwrap();
    let p = parquet_file(dir.path(), "a.parquet", &rows(&[(2, 1), (1, 1), (1, 0)]));
    let (code, out) = main_run(&["--json", p.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(out.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for field in [
        "rows",
        "file_count",
        "bytes",
        "key_runs",
        "distinct_keys",
        "key_order_violations",
        "time_order_violations",
        "ties",
        "null_keys",
        "null_times",
        "files",
        "first_violations",
        "verdict",
        "group_command",
    ] {
        assert!(v.get(field).is_some(), "missing {field} in {out}");
    }
    assert_eq!(v["verdict"], "clustered");
    assert_eq!(v["rows"], 3);
    assert_eq!(v["files"][0]["verdict"], "unsorted");
    assert_eq!(v["files"][0]["file"], p.to_str().unwrap());
    let size = std::fs::metadata(&p).unwrap().len();
    assert_eq!((v["bytes"].as_u64(), v["files"][0]["bytes"].as_u64()), (Some(size), Some(size)));
    let first = &v["first_violations"];
    assert_eq!(first[0]["kind"], "key-order");
    assert_eq!(
        (first[0]["row"].as_u64(), first[0]["previous"].as_str(), first[0]["current"].as_str()),
        (Some(1), Some("2"), Some("1"))
    );
    assert_eq!(first[1]["kind"], "time-order");
    assert_eq!(first[1]["key"], "1");
    assert!(v["group_command"].as_str().unwrap().starts_with("probe-group --sort --key src_addr"));
}

#[test]
fn text_report_ends_with_verdict_and_command() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("my data");
    std::fs::create_dir(&sub).unwrap();
    parquet_file(&sub, "a.parquet", &rows(&[(1, 1), (2, 1)]));
    let arg = sub.to_str().unwrap();
    let (code, out) = main_run(&["-k", "src_addr", "-t", "event_time", arg]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("rows") && lines[0].contains("2 in 1 file"), "{out}");
    // The input's bytes as stored: what scripts report as the input size, for URLs too.
    let size = std::fs::metadata(sub.join("a.parquet")).unwrap().len();
    assert!(lines[1].starts_with(&format!("bytes                  {size} (")), "{out}");
    let n = lines.len();
    assert!(lines[n - 2].starts_with("verdict") && lines[n - 2].contains("sorted:"), "{out}");
    // The path with a space is quoted for the shell.
    assert_eq!(lines[n - 1], format!("run                    probe-group --key src_addr --time event_time '{arg}'"));
}

#[test]
fn group_command_quotes_for_the_shell() {
    assert_eq!(report::shell_quote("data/"), "data/");
    assert_eq!(report::shell_quote("it's"), "'it'\\''s'");
    assert_eq!(report::shell_quote(""), "''");
    let cfg = Config::new(vec![], vec!["a".into(), "b c".into()], Some("t".into())).unwrap();
    assert_eq!(report::group_command(&cfg, true), "probe-group --sort --key 'a,b c' --time t");
}

#[test]
fn config_rejects_bad_column_lists() {
    assert!(Config::new(vec![], vec!["a".into(), "a".into()], Some("t".into())).is_err());
    assert!(Config::new(vec![], vec!["a".into(), "".into()], Some("t".into())).is_err());
    assert!(Config::new(vec![], vec!["t".into()], Some("t".into())).is_err());
}
