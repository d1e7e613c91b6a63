//! Inputs as users give them, through the real binaries: concatenated IPC streams
//! (`cat a.arrows b.arrows | stage`), inputs whose columns differ, the same file given twice,
//! outputs that are directories or inputs, and hive-style partitioned folders.
//!
//! Each case either reads every row (compared with the oracle or with the same rows given as
//! separate files) or fails with one error line naming the input, column or path, exit 1, and
//! leaves no output behind.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int32Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;

use probe_tests::harness::{decode_ipc, encode_ipc, list_dir, read_file, run, sh, write_parquet};
use probe_tests::oracle::{self, assert_groups_eq, decode_groups, Val};

fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Measurements: src_addr, event_time, rtt_ms, and with `ttl` one more payload column.
fn schema(ttl: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new("src_addr", DataType::Utf8, true),
        Field::new("event_time", time_type(), true),
        Field::new("rtt_ms", DataType::Float64, true),
    ];
    if ttl {
        fields.push(Field::new("ttl", DataType::Int32, true));
    }
    Arc::new(Schema::new(fields))
}

/// `n` rows sorted by (key, time): keys `{prefix}0..{prefix}k`, several rows each.
fn rows(prefix: &str, n: usize, ttl: bool) -> RecordBatch {
    let keys: Vec<String> = (0..n).map(|i| format!("{prefix}{:03}", i / 4)).collect();
    let times: Vec<i64> = (0..n).map(|i| 1_700_000_000_000_000 + (i % 4) as i64 * 1_000_000).collect();
    let rtt: Vec<f64> = (0..n).map(|i| i as f64 / 10.0).collect();
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(keys)),
        Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
        Arc::new(Float64Array::from(rtt)),
    ];
    if ttl {
        cols.push(Arc::new(Int32Array::from((0..n as i32).collect::<Vec<_>>())));
    }
    RecordBatch::try_new(schema(ttl), cols).unwrap()
}

fn parquet(path: &Path, b: &RecordBatch) {
    write_parquet(path, b.schema(), std::slice::from_ref(b), 7);
}

fn ipc(b: &RecordBatch) -> Vec<u8> {
    // Several batches per stream, so stream boundaries do not coincide with batch boundaries.
    let chunks: Vec<RecordBatch> = (0..b.num_rows()).step_by(5).map(|s| b.slice(s, 5.min(b.num_rows() - s))).collect();
    encode_ipc(b.schema(), &chunks)
}

fn p(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

/// The grouped output of `probe-group` on the given input batches, by the oracle.
fn expected_groups(inputs: &[&RecordBatch]) -> Vec<oracle::Group> {
    let files: Vec<Vec<Vec<Val>>> = inputs.iter().map(|b| oracle::rows(std::slice::from_ref(*b))).collect();
    let payload: Vec<usize> = (2..inputs[0].num_columns()).collect();
    oracle::group(&files, &[0], 1, &payload)
}

/// Grouped streams of two disjoint sets of keys, as `probe-group` writes them.
fn grouped_pair(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let a = dir.join("a.parquet");
    let b = dir.join("b.parquet");
    parquet(&a, &rows("10.0.0.", 40, false));
    parquet(&b, &rows("10.9.9.", 24, false));
    let ga = run("probe-group", &[p(&a), "-q".into()], None);
    let gb = run("probe-group", &[p(&b), "-q".into()], None);
    (ga.assert_ok().stdout.clone(), gb.assert_ok().stdout.clone())
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn decoded_rows(bytes: &[u8]) -> Vec<Vec<Val>> {
    oracle::rows(&decode_ipc(bytes).1)
}

// ---- 1. concatenated IPC streams ----

#[test]
fn every_stage_reads_every_concatenated_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = grouped_pair(dir.path());
    let both = concat(&[&a, &b]);
    let cat_file = dir.path().join("both.arrows");
    std::fs::write(&cat_file, &both).unwrap();
    let (fa, fb) = (dir.path().join("ga.arrows"), dir.path().join("gb.arrows"));
    std::fs::write(&fa, &a).unwrap();
    std::fs::write(&fb, &b).unwrap();

    // probe-batch: stdin and a file holding the concatenation = the two streams as two files.
    let separate = run("probe-batch", &[p(&fa), p(&fb), "-q".into()], None);
    let want = decoded_rows(&separate.assert_ok().stdout);
    assert_eq!(want.len(), 16, "10 + 6 keys");
    let from_stdin = run("probe-batch", &["-", "-q"], Some(both.clone()));
    assert_eq!(decoded_rows(&from_stdin.assert_ok().stdout), want);
    let from_file = run("probe-batch", &[p(&cat_file), "-q".into()], None);
    assert_eq!(decoded_rows(&from_file.assert_ok().stdout), want);

    // probe-split --tag keeps every key.
    let split = run("probe-split", &["--tag", "-q"], Some(both.clone()));
    assert_eq!(decode_ipc(&split.assert_ok().stdout).1.iter().map(|b| b.num_rows()).sum::<usize>(), 16);

    // probe-merge writes every row.
    let merged = dir.path().join("merged.parquet");
    run("probe-merge", &[p(&cat_file), "-o".into(), p(&merged), "-q".into()], None).assert_ok();
    let got: Vec<Vec<Val>> = oracle::rows(&read_file(&merged).1);
    let want_rows = concat_rows(&[&a, &b]);
    assert_eq!(got, want_rows);
}

fn concat_rows(streams: &[&[u8]]) -> Vec<Vec<Val>> {
    streams.iter().flat_map(|s| decoded_rows(s)).collect()
}

#[test]
fn group_and_check_order_read_concatenated_measurement_streams() {
    let a = rows("10.0.0.", 20, false);
    let b = rows("10.0.1.", 12, false);
    let both = concat(&[&ipc(&a), &ipc(&b)]);
    let out = run("probe-group", &["-q"], Some(both.clone()));
    assert_groups_eq(&decode_groups(&decode_ipc(&out.assert_ok().stdout).1, 1), &expected_groups(&[&a, &b]));
    let sorted = run("probe-group", &["--sort", "-q"], Some(both.clone()));
    assert_groups_eq(&decode_groups(&decode_ipc(&sorted.assert_ok().stdout).1, 1), &expected_groups(&[&a, &b]));

    let check = run("probe-check-order", &["--json", "-q"], Some(both));
    check.assert_code(0);
    let report: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(report["rows"], 32, "{report}");
}

/// `b` with `rtt_ms` declared non-nullable (it has no nulls), or with every third value null.
fn with_rtt(b: &RecordBatch, non_null: bool) -> RecordBatch {
    let mut fields: Vec<Field> = b.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[2] = fields[2].clone().with_nullable(!non_null);
    let mut cols = b.columns().to_vec();
    if !non_null {
        let v = cols[2].as_any().downcast_ref::<Float64Array>().unwrap();
        cols[2] = Arc::new(Float64Array::from_iter((0..v.len()).map(|i| (i % 3 != 0).then(|| v.value(i)))));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
}

#[test]
fn inputs_whose_nullability_differs_are_grouped_alike_with_or_without_sort() {
    let dir = tempfile::tempdir().unwrap();
    // Overlapping keys: 10.0.0.000..009 in both; day1 declares rtt_ms non-null, day2 has nulls.
    let a = with_rtt(&rows("10.0.0.", 40, false), true);
    let b = with_rtt(&rows("10.0.0.", 40, false).slice(8, 32), false);
    assert!(!a.schema().field(2).is_nullable() && b.column(2).null_count() > 0);
    let (pa, pb) = (dir.path().join("day1.parquet"), dir.path().join("day2.parquet"));
    parquet(&pa, &a);
    parquet(&pb, &b);
    for (first, second, x, y) in [(&pa, &pb, &a, &b), (&pb, &pa, &b, &a)] {
        let want = expected_groups(&[x, y]);
        for sort in [false, true] {
            for threads in ["1", "3"] {
                let mut args = vec![p(first), p(second), "-q".into(), "--threads".into(), threads.into()];
                if sort {
                    args.push("--sort".into());
                }
                let out = run("probe-group", &args, None);
                assert_groups_eq(&decode_groups(&decode_ipc(&out.assert_ok().stdout).1, 1), &want);
            }
        }
    }
}

#[test]
fn concatenated_streams_whose_nullability_differs_get_an_error_saying_so() {
    let a = with_rtt(&rows("10.0.0.", 20, false), true);
    let b = with_rtt(&rows("10.0.1.", 12, false), false);
    let both = concat(&[&ipc(&a), &ipc(&b)]);
    let needles = ["stdin (stream 2", "column `rtt_ms` has nulls", "declares it non-nullable", "separate files"];
    run("probe-group", &["-q"], Some(both.clone())).assert_error("probe-group", &needles);
    // probe-check-order: exit 2, could not check.
    let check = run("probe-check-order", &["-q"], Some(both.clone()));
    check.assert_code(2);
    assert!(needles.iter().all(|n| check.stderr.contains(n)), "{}", check.stderr);
    // As two files they are read.
    let dir = tempfile::tempdir().unwrap();
    let (fa, fb) = (dir.path().join("a.arrows"), dir.path().join("b.arrows"));
    std::fs::write(&fa, ipc(&a)).unwrap();
    std::fs::write(&fb, ipc(&b)).unwrap();
    let out = run("probe-group", &[p(&fa), p(&fb), "-q".into()], None);
    assert_groups_eq(&decode_groups(&decode_ipc(&out.assert_ok().stdout).1, 1), &expected_groups(&[&a, &b]));
}

#[test]
fn an_empty_stream_followed_by_another_is_read() {
    let a = rows("10.0.0.", 20, false);
    let empty = encode_ipc(schema(false), &[]);
    let both = concat(&[&empty, &ipc(&a), &empty]);
    let out = run("probe-group", &["-q"], Some(both));
    assert_groups_eq(&decode_groups(&decode_ipc(&out.assert_ok().stdout).1, 1), &expected_groups(&[&a]));
}

#[test]
fn columns_of_a_later_stream_are_matched_by_name() {
    let a = rows("10.0.0.", 8, false);
    let b = rows("10.0.1.", 8, false);
    let reordered = b.project(&[2, 0, 1]).unwrap();
    let out = run("probe-group", &["-q"], Some(concat(&[&ipc(&a), &ipc(&reordered)])));
    assert_groups_eq(&decode_groups(&decode_ipc(&out.assert_ok().stdout).1, 1), &expected_groups(&[&a, &b]));
}

#[test]
fn bytes_after_a_stream_that_start_no_stream_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let a = ipc(&rows("10.0.0.", 8, false));
    let bad = concat(&[&a, b"garbage\n"]);
    let offset = a.len().to_string();
    for stage in ["probe-group", "probe-batch", "probe-split", "probe-merge"] {
        let input = if stage == "probe-batch" || stage == "probe-split" {
            // Stages that read probe rows get grouped rows followed by garbage.
            let g = run("probe-group", &["-q"], Some(a.clone()));
            concat(&[&g.assert_ok().stdout, b"garbage\n"])
        } else {
            bad.clone()
        };
        let out_path = dir.path().join(format!("{stage}.parquet"));
        let mut args = vec!["-".to_string(), "-q".into(), "-o".into(), p(&out_path)];
        if stage == "probe-split" {
            args.push("--tag".into());
        }
        let out = run(stage, &args, Some(input));
        out.assert_error(stage, &["stdin", "after the end of stream 1", "67 61 72 62"]);
        assert!(!out_path.exists(), "{stage} left an output");
    }
    let out = run("probe-group", &["-q"], Some(bad));
    out.assert_error("probe-group", &[&format!("at byte {offset}")]);
    let check = run("probe-check-order", &["-q"], Some(concat(&[&a, b"garbage\n"])));
    check.assert_code(2);
    assert!(check.stderr.contains("after the end of stream 1"), "{}", check.stderr);
}

#[test]
fn a_later_stream_with_other_columns_is_an_error_naming_it() {
    let a = ipc(&rows("10.0.0.", 8, false));
    let b = ipc(&rows("10.0.1.", 8, true));
    let out = run("probe-group", &["-q"], Some(concat(&[&a, &b])));
    out.assert_error("probe-group", &["stdin (stream 2 at byte", "column `ttl` is not in stream 1 of stdin"]);
    // Another type.
    let c = rows("10.0.1.", 8, false);
    let rtt32 = arrow::compute::cast(c.column(2), &DataType::Float32).unwrap();
    let fields = vec![
        Field::new("src_addr", DataType::Utf8, true),
        Field::new("event_time", time_type(), true),
        Field::new("rtt_ms", DataType::Float32, true),
    ];
    let c = RecordBatch::try_new(Arc::new(Schema::new(fields)), vec![c.column(0).clone(), c.column(1).clone(), rtt32])
        .unwrap();
    let out = run("probe-group", &["-q"], Some(concat(&[&a, &ipc(&c)])));
    out.assert_error("probe-group", &["stream 2", "column `rtt_ms` has type Float32"]);
}

fn with_metadata(b: &RecordBatch, pairs: &[(&str, &str)]) -> RecordBatch {
    let md: std::collections::HashMap<String, String> =
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    b.clone().with_schema(Arc::new(b.schema().as_ref().clone().with_metadata(md))).unwrap()
}

#[test]
fn streams_may_differ_in_foreign_metadata_but_not_in_this_projects() {
    let a = rows("10.0.0.", 8, false);
    let b = rows("10.0.1.", 8, false);
    // pandas metadata differs per table written; it says nothing about the columns' meaning.
    let pa = ipc(&with_metadata(&a, &[("pandas", "{\"stop\": 8}")]));
    let pb = ipc(&with_metadata(&b, &[("pandas", "{\"stop\": 16}")]));
    let out = run("probe-group", &["-q"], Some(concat(&[&pa, &pb])));
    assert_groups_eq(&decode_groups(&decode_ipc(&out.assert_ok().stdout).1, 1), &expected_groups(&[&a, &b]));
    // Rows grouped by another key must not be mixed in unnoticed.
    let ka = ipc(&with_metadata(&a, &[("probe_rows.key", "[\"src_addr\"]")]));
    let kb = ipc(&with_metadata(&b, &[("probe_rows.key", "[\"dst_addr\"]")]));
    let out = run("probe-check-order", &["-q"], Some(concat(&[&ka, &kb])));
    out.assert_code(2);
    assert!(out.stderr.contains("stream 2") && out.stderr.contains("`probe_rows.key`"), "{}", out.stderr);
}

#[test]
fn a_truncated_later_stream_is_reported_as_truncated() {
    let a = ipc(&rows("10.0.0.", 8, false));
    let b = ipc(&rows("10.0.1.", 8, false));
    // Cut the second stream before its end-of-stream marker.
    let cut = concat(&[&a, &b[..b.len() - 8]]);
    let out = run("probe-group", &["-q"], Some(cut));
    out.assert_error("probe-group", &["stream 2", "truncated", "did the stage before this one fail?"]);
}

fn ipc_file(b: &RecordBatch) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = arrow::ipc::writer::FileWriter::try_new(&mut buf, &b.schema()).unwrap();
    for s in (0..b.num_rows()).step_by(5) {
        w.write(&b.slice(s, 5.min(b.num_rows() - s))).unwrap();
    }
    w.finish().unwrap();
    drop(w);
    buf
}

#[test]
fn concatenated_ipc_files_are_an_error_not_half_read() {
    // Read as one file, `cat a.arrow a.arrow` follows the second footer into the first copy
    // and yields its rows once: half the data, exit 0.
    let dir = tempfile::tempdir().unwrap();
    let a = rows("10.0.0.", 20, false);
    let one = ipc_file(&a);
    let empty = ipc_file(&RecordBatch::new_empty(schema(false)));
    let ok = dir.path().join("ok.arrow");
    std::fs::write(&ok, &one).unwrap();
    let out = run("probe-group", &[p(&ok), "-q".into()], None);
    assert_groups_eq(&decode_groups(&decode_ipc(&out.assert_ok().stdout).1, 1), &expected_groups(&[&a]));
    run("probe-group", &["-q"], Some(empty.clone())).assert_ok();
    for bytes in [concat(&[&one, &one]), concat(&[&empty, &one]), concat(&[&one, &empty])] {
        let out = run("probe-group", &["-q"], Some(bytes));
        out.assert_error("probe-group", &["stdin", "several IPC files concatenated", "separate inputs"]);
    }
}

// ---- 2. inputs must agree on the columns read ----

#[test]
fn an_extra_payload_column_in_a_later_input_is_an_error_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.parquet"), dir.path().join("b.parquet"));
    parquet(&a, &rows("10.0.0.", 12, false));
    parquet(&b, &rows("10.0.1.", 12, true));
    let out_path = dir.path().join("out.arrows");
    for sort in [false, true] {
        let mut args = vec![p(&a), p(&b), "-q".into(), "-o".into(), p(&out_path)];
        if sort {
            args.push("--sort".into());
        }
        let out = run("probe-group", &args, None);
        out.assert_error("probe-group", &["b.parquet", "column `ttl` is not in", "a.parquet"]);
        // The other order names the input that lacks the column.
        args.swap(0, 1);
        let out = run("probe-group", &args, None);
        out.assert_error("probe-group", &["a.parquet", "no column `ttl`", "b.parquet"]);
        assert!(!out_path.exists());
    }
    // With --columns only the columns read must agree.
    let out = run("probe-group", &[p(&a), p(&b), "-q".into(), "--columns".into(), "rtt_ms".into()], None);
    let want = expected_groups(&[&rows("10.0.0.", 12, false), &rows("10.0.1.", 12, false)]);
    assert_groups_eq(&decode_groups(&decode_ipc(&out.assert_ok().stdout).1, 1), &want);
    let out = run("probe-group", &[p(&a), p(&b), "-q".into(), "--columns".into(), "ttl".into()], None);
    out.assert_error("probe-group", &["a.parquet", "no column `ttl`"]);
}

#[test]
fn every_stage_names_the_input_whose_columns_differ() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.parquet");
    let b = dir.path().join("b.parquet");
    parquet(&a, &rows("10.0.0.", 12, false));
    // The time column of another type: check-order reads only key and time.
    let other = rows("10.0.1.", 12, false);
    let t = arrow::compute::cast(other.column(1), &DataType::Int64).unwrap();
    let fields = vec![
        Field::new("src_addr", DataType::Utf8, true),
        Field::new("event_time", DataType::Int64, true),
        Field::new("rtt_ms", DataType::Float64, true),
    ];
    let other =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), vec![other.column(0).clone(), t, other.column(2).clone()])
            .unwrap();
    parquet(&b, &other);
    let out = run("probe-check-order", &[p(&a), p(&b), "-q".into()], None);
    out.assert_code(2);
    assert!(out.stderr.contains("b.parquet: column `event_time` has type Int64"), "{}", out.stderr);

    // Grouped inputs with another payload: split, batch and merge refuse them.
    let c = dir.path().join("c.parquet");
    parquet(&c, &rows("10.0.1.", 12, true));
    let ga = dir.path().join("ga.arrows");
    let gc = dir.path().join("gc.arrows");
    run("probe-group", &[p(&a), "-q".into(), "-o".into(), p(&ga)], None).assert_ok();
    run("probe-group", &[p(&c), "-q".into(), "-o".into(), p(&gc)], None).assert_ok();
    let out_dir = dir.path().join("out");
    let split = run("probe-split", &[p(&ga), p(&gc), "-q".into(), "--out-dir".into(), p(&out_dir)], None);
    split.assert_error("probe-split", &["gc.arrows", "column `measurements` has type"]);
    let batch = run("probe-batch", &[p(&ga), p(&gc), "-q".into()], None);
    batch.assert_error("probe-batch", &["gc.arrows", "measurements"]);
    let merged = dir.path().join("m.parquet");
    let merge = run("probe-merge", &[p(&ga), p(&gc), "-q".into(), "-o".into(), p(&merged)], None);
    merge.assert_error("probe-merge", &["gc.arrows", "column `measurements` has type"]);
    assert!(!out_dir.exists() && !merged.exists());
}

// ---- 6. the same input twice ----

#[test]
fn a_file_reached_twice_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let part = data.join("part-00000.parquet");
    parquet(&part, &rows("10.0.0.", 12, false));
    parquet(&data.join("part-00001.parquet"), &rows("10.0.1.", 12, false));
    std::os::unix::fs::symlink(&part, dir.path().join("link.parquet")).unwrap();

    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![p(&data), p(&part)], "part-00000.parquet: the same file as"),
        (vec![p(&part), p(&data)], "part-00000.parquet: the same file as"),
        (vec!["data/part-00000.parquet".into(), "./data/part-00000.parquet".into()], "./data/part-00000.parquet"),
        (vec![p(&part), p(&dir.path().join("link.parquet"))], "link.parquet: the same file as"),
        (vec![p(&data), p(&data)], "the same directory as"),
    ];
    for (args, needle) in cases {
        let mut full = args.clone();
        full.push("-q".into());
        let out = probe_tests::harness::sh(&format!("probe-group {} > out.arrows", full.join(" ")), dir.path());
        out.assert_error("probe-group", &[needle, "pass each input once"]);
        let check = run("probe-check-order", &full, None);
        if args[0].starts_with('.') || args[0].starts_with("data/") {
            continue; // relative paths: run from the temp dir through sh above only
        }
        check.assert_code(2);
        assert!(check.stderr.contains(needle), "{}", check.stderr);
    }
}

/// The two row numbers a "have the same key" error names: `{a}: row R and {b}: row S` or, in one
/// input, `{a}: row R and row S`.
fn same_key_rows(line: &str) -> (u64, u64) {
    let nums: Vec<u64> = line
        .split("row ")
        .skip(1)
        .map(|t| t.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(nums.len(), 2, "{line}");
    (nums[0], nums[1])
}

#[test]
fn a_key_in_two_rows_is_an_error_in_probe_batch() {
    let dir = tempfile::tempdir().unwrap();
    // Two days grouped apart: keys 000..009, then 005..014 (five keys in both).
    let (d1, d2) = (dir.path().join("day1.parquet"), dir.path().join("day2.parquet"));
    parquet(&d1, &rows("10.0.0.", 40, false));
    parquet(&d2, &rows("10.0.0.", 60, false).slice(20, 40));
    let (g1, g2) = (dir.path().join("day1.arrows"), dir.path().join("day2.arrows"));
    run("probe-group", &[p(&d1), "-o".into(), p(&g1), "-q".into()], None).assert_ok();
    run("probe-group", &[p(&d2), "-o".into(), p(&g2), "-q".into()], None).assert_ok();
    let key_at = |path: &Path, row: u64| oracle::rows(&read_file(path).1)[row as usize][0].clone();

    for threads in ["1", "3"] {
        // Two files: an error naming a row of each, holding one key; no output file.
        let out = dir.path().join("rows.arrows");
        let ran = run("probe-batch", &[p(&g1), p(&g2), "-o".into(), p(&out), "--threads".into(), threads.into()], None);
        let line = ran.assert_error("probe-batch", &["day1.arrows: row ", "day2.arrows: row ", "have the same key"]);
        let (r1, r2) = same_key_rows(&line);
        assert_eq!(key_at(&g1, r1), key_at(&g2, r2), "{line}");
        assert!(!out.exists(), "a failed run left {}", out.display());

        // The two streams concatenated on stdin are one input: rows of the concatenation.
        let both = concat(&[&std::fs::read(&g1).unwrap(), &std::fs::read(&g2).unwrap()]);
        let ran = run("probe-batch", &["-", "--threads", threads], Some(both));
        let line = ran.assert_error("probe-batch", &["stdin: row ", "and row ", "have the same key"]);
        let (r1, r2) = same_key_rows(&line);
        let mut all = oracle::rows(&read_file(&g1).1);
        all.extend(oracle::rows(&read_file(&g2).1));
        assert_eq!(all[r1 as usize][0], all[r2 as usize][0], "{line}");
        // Its stream on stdout is cut short (no end-of-stream marker): the next stage fails.
        let merged = dir.path().join("merged.parquet");
        run("probe-merge", &["-".into(), "-o".into(), p(&merged)], Some(ran.stdout.clone()))
            .assert_error("probe-merge", &["truncated"]);
        assert!(!merged.exists());
    }

    // Grouped together, each key is one row and every key gets its windows once.
    let g = run("probe-group", &[p(&d1), p(&d2), "-q".into()], None);
    let grouped = dir.path().join("both.arrows");
    std::fs::write(&grouped, &g.assert_ok().stdout).unwrap();
    let batched = run("probe-batch", &[p(&grouped), "-q".into()], None);
    let got = decoded_rows(&batched.assert_ok().stdout);
    assert_eq!(got.len(), 15, "keys 000..014, one window each");
}

// ---- 13. output paths ----

#[test]
fn an_output_that_is_a_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.parquet");
    parquet(&a, &rows("10.0.0.", 12, false));
    let existing = dir.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    let slash = format!("{}/", p(&dir.path().join("missing")));
    for (out, needle) in [(p(&existing), "existing: is a directory"), (slash.clone(), "missing/: ends with `/`")] {
        // (probe-merge first insists on a `.parquet` name.)
        for stage in ["probe-group", "probe-batch"] {
            let r = run(stage, &[p(&a), "-q".into(), "-o".into(), out.clone()], None);
            r.assert_error(stage, &[needle]);
        }
    }
    assert_eq!(list_dir(&existing), Vec::<String>::new());
    assert!(!dir.path().join("missing").exists());
}

#[test]
fn an_output_that_is_an_input_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let same = dir.path().join("same.parquet");
    let data = rows("10.0.0.", 12, false);
    parquet(&same, &data);
    let before = std::fs::read(&same).unwrap();
    let r = run("probe-group", &["--sort".to_string(), p(&same), "-o".into(), p(&same)], None);
    r.assert_error("probe-group", &["same.parquet: is also an input"]);
    // Through a directory input and a symlinked output.
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let inner = sub.join("x.arrows");
    std::fs::write(&inner, ipc(&data)).unwrap();
    std::os::unix::fs::symlink(&inner, dir.path().join("alias.arrows")).unwrap();
    let r = run("probe-group", &[p(&sub), "-o".into(), p(&dir.path().join("alias.arrows"))], None);
    r.assert_error("probe-group", &["alias.arrows: is also an input", "x.arrows"]);
    // Every stage with -o or --out-dir.
    let g = dir.path().join("g.arrows");
    run("probe-group", &[p(&same), "-q".into(), "-o".into(), p(&g)], None).assert_ok();
    let grouped = std::fs::read(&g).unwrap();
    run("probe-batch", &[p(&g), "-o".into(), p(&g)], None).assert_error("probe-batch", &["is also an input"]);
    run("probe-split", &[p(&g), "--tag".into(), "-o".into(), p(&g)], None)
        .assert_error("probe-split", &["is also an input"]);
    let train = dir.path().join("train.arrows");
    std::fs::copy(&g, &train).unwrap();
    run("probe-split", &[p(&train), "--out-dir".into(), p(dir.path())], None)
        .assert_error("probe-split", &["train.arrows: is also an input"]);
    let gp = dir.path().join("g.parquet");
    run("probe-group", &[p(&same), "-q".into(), "-o".into(), p(&gp)], None).assert_ok();
    run("probe-merge", &[p(&gp), "-o".into(), p(&gp)], None).assert_error("probe-merge", &["is also an input"]);
    assert_eq!(std::fs::read(&same).unwrap(), before);
    assert_eq!(std::fs::read(&g).unwrap(), grouped);
    assert_eq!(std::fs::read(&train).unwrap(), grouped);
}

#[test]
fn dot_pq_is_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.parquet");
    parquet(&a, &rows("10.0.0.", 12, false));
    let out = dir.path().join("out.pq");
    run("probe-group", &[p(&a), "-q".into(), "-o".into(), p(&out)], None).assert_ok();
    assert!(std::fs::read(&out).unwrap().starts_with(b"PAR1"));
    let merged = dir.path().join("m.pq");
    run("probe-merge", &[p(&out), "-q".into(), "-o".into(), p(&merged)], None).assert_ok();
    assert!(std::fs::read(&merged).unwrap().starts_with(b"PAR1"));
}

// ---- 14. hive-style folders ----

#[test]
fn hive_folders_are_walked_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let hive = dir.path().join("hive");
    let days = ["date=2024-01-01", "date=2024-01-02", "date=2024-01-03"];
    let mut batches = Vec::new();
    for (i, day) in days.iter().enumerate() {
        let d = hive.join(day);
        std::fs::create_dir_all(&d).unwrap();
        // Overlapping sorted files: the same keys each day, so the merge order matters.
        let b = rows("10.0.0.", 8 + i * 4, false);
        parquet(&d.join("part-0.parquet"), &b);
        std::fs::write(d.join("_SUCCESS"), b"").unwrap();
        batches.push(b);
    }
    // Skipped: `_` and `.` folders and files, at any depth.
    std::fs::create_dir_all(hive.join("_temporary/0")).unwrap();
    parquet(&hive.join("_temporary/0/part-9.parquet"), &rows("10.0.0.", 8, true));
    std::fs::create_dir_all(hive.join(".hidden")).unwrap();
    parquet(&hive.join(".hidden/part-9.parquet"), &rows("10.0.0.", 8, true));
    // A file beside the folders sorts among them by name.
    let top = rows("10.0.0.", 4, false);
    parquet(&hive.join("date=2024-01-01.5.parquet"), &top);

    let out = run("probe-group", &[p(&hive), "-q".into()], None);
    let want = expected_groups(&[&batches[0], &top, &batches[1], &batches[2]]);
    assert_groups_eq(&decode_groups(&decode_ipc(&out.assert_ok().stdout).1, 1), &want);
    let check = run("probe-check-order", &[p(&hive), "--json".into(), "-q".into()], None);
    let report: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(report["rows"], 8 + 12 + 16 + 4, "{report}");

    // A folder holding only skipped names is still an error.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(empty.join("_temporary")).unwrap();
    parquet(&empty.join("_temporary/part-0.parquet"), &top);
    run("probe-group", &[p(&empty), "-q".into()], None).assert_error("probe-group", &["holds no data files"]);
}

// ---- many inputs, few open files ----

/// Each input holds one descriptor, whatever the threads: 60 overlapping sorted files (every
/// one holds the same keys, so every key range reads all of them) are grouped at `--threads 1`
/// and `7` under `ulimit -n 90`. An input used to hold two descriptors until it was read, and
/// each key range opened the inputs again: 120 at the start, 7 x 60 in the ranges. Past the
/// limit, one line says what to raise.
#[test]
fn many_inputs_fit_a_low_open_files_limit_at_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("days");
    std::fs::create_dir_all(&inputs).unwrap();
    let batches: Vec<RecordBatch> = (0..60).map(|_| rows("10.0.0.", 24, false)).collect();
    for (i, b) in batches.iter().enumerate() {
        // Row groups of 4 rows, so the key-range plan has units to cut at.
        write_parquet(&inputs.join(format!("day-{i:03}.parquet")), b.schema(), std::slice::from_ref(b), 4);
    }
    let want = expected_groups(&batches.iter().collect::<Vec<_>>());
    let mut outs = Vec::new();
    for threads in ["1", "7"] {
        let out = sh(&format!("ulimit -n 90 && probe-group -q --threads {threads} days"), dir.path());
        let got = decode_groups(&decode_ipc(&out.assert_ok().stdout).1, 1);
        assert_groups_eq(&got, &want);
        outs.push(out.stdout);
    }
    assert!(outs[0] == outs[1], "--threads 1 and 7 differ");

    let out = sh("ulimit -n 40 && probe-group -q days -o out.arrows", dir.path());
    let msg = out.assert_error("probe-group", &["too many open files", "ulimit -n", ".parquet"]);
    assert_eq!(msg.lines().count(), 1, "{msg}");
    assert!(!dir.path().join("out.arrows").exists(), "a failed run left its output");
}

/// A named pipe given as an input path (`mkfifo`, `<(...)`, a `probe-split --split-to` fifo) is
/// read as stdin is: an IPC stream as it arrives, Parquet spooled. It failed with "Illegal seek".
#[test]
fn named_pipes_are_read_as_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let b = rows("10.0.0.", 40, true);
    parquet(&dir.path().join("m.parquet"), &b);
    let want = expected_groups(&[&b]);
    let out = sh("mkfifo p && (cat m.parquet > p &) && probe-group -q p", dir.path());
    assert_groups_eq(&decode_groups(&decode_ipc(&out.assert_ok().stdout).1, 1), &want);
    let out =
        sh("probe-group -q m.parquet -o g.arrows && mkfifo q && (cat g.arrows > q &) && probe-batch -q q", dir.path());
    let file = sh("probe-batch -q g.arrows", dir.path());
    assert!(out.assert_ok().stdout == file.assert_ok().stdout, "probe-batch of a pipe differs from the file");
    // probe-merge opens its inputs to check their schemas before it reads them: a pipe is kept.
    sh("mkfifo r && (cat g.arrows > r &) && probe-merge -q r -o from-pipe.parquet", dir.path()).assert_ok();
    sh("probe-merge -q g.arrows -o from-file.parquet", dir.path()).assert_ok();
    let (a, b) =
        (read_file(&dir.path().join("from-pipe.parquet")).1, read_file(&dir.path().join("from-file.parquet")).1);
    assert_eq!(oracle::rows(&a), oracle::rows(&b));
}
