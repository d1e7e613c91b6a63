//! End-to-end tests of the options every stage shares: key/time names recorded in the schema
//! metadata and taken as defaults downstream, time units and types, times shown as ISO 8601,
//! column lists checked once, contradictory settings as usage errors (exit 2), the
//! `--memory-limit` minimum, and the wording of reports.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int16Array, Int32Array, Int64Array, Int8Array, StringArray,
    TimestampMicrosecondArray, UInt16Array, UInt32Array, UInt64Array, UInt8Array,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;

use probe_tests::harness::{decode_ipc, read_file, run, sh, write_parquet, Output};

/// Assert a usage error: exit 2 and one `stage: error: ...` line holding each needle.
fn assert_usage(out: &Output, stage: &str, needles: &[&str]) {
    out.assert_code(2);
    let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one stderr line from {}, got:\n{}", out.cmd, out.stderr);
    assert!(lines[0].starts_with(&format!("{stage}: error: ")), "bad error line: {}", lines[0]);
    for n in needles {
        assert!(lines[0].contains(n), "error line of {} lacks `{n}`:\n{}", out.cmd, lines[0]);
    }
    assert!(out.stdout.is_empty(), "{} wrote a result", out.cmd);
}

/// Measurements with a two-part key: src_addr, dst_port, event_time (µs, UTC), rtt_ms; sorted
/// by (src_addr, dst_port, event_time). `a` talks to ports 53 and 80, `b` to 53.
fn composite_input(dir: &Path) -> String {
    let schema = Arc::new(Schema::new(vec![
        Field::new("src_addr", DataType::Utf8, true),
        Field::new("dst_port", DataType::Int32, true),
        Field::new("event_time", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        Field::new("rtt_ms", DataType::Float64, true),
    ]));
    let rows: [(&str, i32, i64); 6] =
        [("a", 53, 1), ("a", 53, 2), ("a", 80, 1), ("a", 80, 5), ("a", 80, 9), ("b", 53, 3)];
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
        Arc::new(Int32Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
        Arc::new(
            TimestampMicrosecondArray::from(rows.iter().map(|r| r.2 * 1_000_000).collect::<Vec<_>>())
                .with_timezone("UTC"),
        ),
        Arc::new(Float64Array::from(vec![1.0; rows.len()])),
    ];
    let path = dir.join("m.parquet");
    write_parquet(&path, schema.clone(), &[RecordBatch::try_new(schema, cols).unwrap()], 2);
    path.display().to_string()
}

/// Measurements with one key `src_addr` and a time column of any type, given as i64 values
/// cast to it: rows (key, time) in that order.
fn typed_input(dir: &Path, name: &str, time: ArrayRef, keys: &[&str]) -> String {
    let schema = Arc::new(Schema::new(vec![
        Field::new("src_addr", DataType::Utf8, true),
        Field::new("event_time", time.data_type().clone(), true),
        Field::new("seq", DataType::Int64, false),
    ]));
    let seq = Int64Array::from((0..keys.len() as i64).collect::<Vec<_>>());
    let cols: Vec<ArrayRef> = vec![Arc::new(StringArray::from(keys.to_vec())), time, Arc::new(seq)];
    let path = dir.join(name);
    write_parquet(&path, schema.clone(), &[RecordBatch::try_new(schema, cols).unwrap()], 1024);
    path.display().to_string()
}

fn column<'a>(batches: &'a [RecordBatch], name: &str) -> Vec<&'a ArrayRef> {
    batches.iter().map(|b| b.column(b.schema().index_of(name).unwrap())).collect()
}

// ---------- item 3: key and time names recorded in the schema metadata ----------

#[test]
fn a_composite_key_survives_group_then_batch() {
    let dir = tempfile::tempdir().unwrap();
    let input = composite_input(dir.path());
    let out = sh(&format!("probe-group -q --key src_addr,dst_port {input} | probe-batch -q --max-len 2"), dir.path());
    out.assert_ok();
    let (schema, batches) = decode_ipc(&out.stdout);
    assert_eq!(schema.metadata().get("probe_rows.key").map(String::as_str), Some(r#"["src_addr","dst_port"]"#));
    assert_eq!(schema.metadata().get("probe_rows.time").map(String::as_str), Some("event_time"));
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(&names[..3], ["src_addr", "dst_port", "window"], "both key parts lead the output");
    // (a, 53): 1 window; (a, 80): 3 measurements -> 2 windows; (b, 53): 1.
    let ports: Vec<i32> = column(&batches, "dst_port")
        .iter()
        .flat_map(|c| c.as_primitive::<arrow::datatypes::Int32Type>().values().to_vec())
        .collect();
    assert_eq!(ports, [53, 80, 80, 53]);
}

#[test]
fn metadata_is_kept_through_split_and_parquet_and_read_back_as_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let input = composite_input(dir.path());
    let out = sh(
        &format!(
            "probe-group -q --key src_addr,dst_port {input} -o g.parquet && \
             probe-split -q --ratios all=1 --out-dir w g.parquet && \
             probe-batch -q w/all.arrows -o rows.arrows && probe-merge -q rows.arrows -o rows.parquet"
        ),
        dir.path(),
    );
    out.assert_ok();
    for file in ["g.parquet", "w/all.arrows", "rows.arrows", "rows.parquet"] {
        let (schema, _) = read_file(&dir.path().join(file));
        assert_eq!(
            schema.metadata().get("probe_rows.key").map(String::as_str),
            Some(r#"["src_addr","dst_port"]"#),
            "{file} lost the key metadata"
        );
    }
    let (schema, batches) = read_file(&dir.path().join("rows.parquet"));
    assert!(schema.field_with_name("dst_port").is_ok());
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 3, "one window per (src_addr, dst_port)");
}

#[test]
fn a_key_or_time_that_contradicts_the_metadata_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = composite_input(dir.path());
    let g = dir.path().join("g.arrows");
    sh(&format!("probe-group -q --key src_addr,dst_port {input} -o {}", g.display()), dir.path()).assert_ok();
    let g = g.display().to_string();
    assert_usage(
        &run("probe-batch", &["-q", "--key", "src_addr", &g], None),
        "probe-batch",
        &["probe_rows.key", "--key src_addr"],
    );
    assert_usage(&run("probe-batch", &["-q", "--time", "rtt_ms", &g], None), "probe-batch", &["probe_rows.time"]);
    assert_usage(
        &run("probe-split", &["-q", "--tag", "--key", "dst_port", &g], None),
        "probe-split",
        &["probe_rows.key"],
    );
    // Naming the recorded key explicitly is fine.
    let out = run("probe-batch", &["-q", "--key", "src_addr,dst_port", "--time", "event_time", &g], None);
    out.assert_ok();
}

#[test]
fn without_metadata_the_defaults_are_src_addr_and_event_time() {
    let dir = tempfile::tempdir().unwrap();
    let input = composite_input(dir.path());
    let out = sh(&format!("probe-group -q --sort {input} | probe-batch -q"), dir.path());
    out.assert_ok();
    let (schema, batches) = decode_ipc(&out.stdout);
    assert_eq!(schema.field(0).name(), "src_addr");
    assert_eq!(schema.field(1).name(), "window");
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 2);
}

// ---------- item 5: integer times are read in --time-unit, and checked ----------

#[test]
fn integer_milliseconds_read_as_seconds_are_refused_with_the_unit_to_use() {
    let dir = tempfile::tempdir().unwrap();
    // Epoch milliseconds, 30 s apart, then a 2-minute gap.
    let ms = [1_700_000_000_000i64, 1_700_000_030_000, 1_700_000_060_000, 1_700_000_180_000];
    let input = typed_input(dir.path(), "ms.parquet", Arc::new(Int64Array::from(ms.to_vec())), &["a"; 4]);
    let out = sh(&format!("probe-group -q {input} -o g.arrows"), dir.path());
    out.assert_ok();
    let g = dir.path().join("g.arrows").display().to_string();

    let out = run("probe-batch", &["-q", "--max-gap", "60s", &g], None);
    out.assert_error("probe-batch", &["event_time", "--time-unit ms", "year 5000"]);

    let out = run("probe-batch", &["-q", "--max-gap", "60s", "--time-unit", "ms", &g], None);
    out.assert_ok();
    let (_, batches) = decode_ipc(&out.stdout);
    let lengths: Vec<u32> = column(&batches, "length")
        .iter()
        .flat_map(|c| c.as_primitive::<arrow::datatypes::UInt32Type>().values().to_vec())
        .collect();
    assert_eq!(lengths, [3, 1], "the 2-minute gap cuts the session, the 30 s ones do not");

    // Nanoseconds read as milliseconds: the suggestion is ns.
    let ns: Vec<i64> = ms.iter().map(|v| v * 1_000_000).collect();
    let input = typed_input(dir.path(), "ns.parquet", Arc::new(Int64Array::from(ns)), &["a"; 4]);
    let out = sh(&format!("probe-group -q {input} | probe-batch -q --time-unit ms"), dir.path());
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("--time-unit ns"), "{}", out.stderr);
}

// ---------- item 9: times in messages as ISO 8601 ----------

#[test]
fn time_order_violations_show_iso_times_with_their_zone() {
    let dir = tempfile::tempdir().unwrap();
    let t = TimestampMicrosecondArray::from(vec![1_704_067_203_000_000i64, 1_704_067_202_500_000]).with_timezone("UTC");
    let input = typed_input(dir.path(), "ts.parquet", Arc::new(t), &["a", "a"]);
    let out = run("probe-group", &["-q", &input], None);
    out.assert_error("probe-group", &["event_time 2024-01-01T00:00:02.500Z comes after 2024-01-01T00:00:03Z", "row 1"]);

    let out = run("probe-check-order", &["-q", &input], None);
    out.assert_code(1);
    let report = String::from_utf8(out.stdout).unwrap();
    assert!(report.contains("time 2024-01-01T00:00:02.500Z after 2024-01-01T00:00:03Z"), "{report}");

    let d = Arc::new(arrow::array::Date32Array::from(vec![19_725, 19_723]));
    let input = typed_input(dir.path(), "date.parquet", d, &["a", "a"]);
    let out = run("probe-group", &["-q", &input], None);
    out.assert_error("probe-group", &["event_time 2024-01-01 comes after 2024-01-03"]);
}

#[test]
fn probe_batch_shows_integer_times_in_their_unit() {
    // Probe rows whose times go backwards: built by hand, as another tool might.
    let item = Arc::new(Field::new(
        "item",
        DataType::Struct(vec![Field::new("event_time", DataType::Int64, true)].into()),
        true,
    ));
    let schema = Arc::new(Schema::new(vec![
        Field::new("src_addr", DataType::Utf8, true),
        Field::new("measurements", DataType::List(item.clone()), true),
    ]));
    let times = Int64Array::from(vec![1_700_000_060i64, 1_700_000_000]);
    let structs = arrow::array::StructArray::from(vec![(
        Arc::new(Field::new("event_time", DataType::Int64, true)),
        Arc::new(times) as ArrayRef,
    )]);
    let list =
        arrow::array::ListArray::new(item, arrow::buffer::OffsetBuffer::from_lengths([2]), Arc::new(structs), None);
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(vec!["a"])), Arc::new(list)]).unwrap();
    let bytes = probe_tests::harness::encode_ipc(schema, &[batch]);
    let out = run("probe-batch", &["-q"], Some(bytes));
    out.assert_error("probe-batch", &["1700000000 (2023-11-14T22:13:20Z) after 1700000060 (2023-11-14T22:14:20Z)"]);
}

// ---------- item 10: repeated columns are usage errors, in every stage ----------

#[test]
fn repeated_columns_are_usage_errors_naming_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let input = composite_input(dir.path());
    for stage in ["probe-group", "probe-check-order", "probe-batch"] {
        assert_usage(
            &run(stage, &["-q", "--key", "src_addr", "--key", "src_addr", &input], None),
            stage,
            &["`src_addr`", "more than once"],
        );
        assert_usage(
            &run(stage, &["-q", "--key", "src_addr,event_time", &input], None),
            stage,
            &["`event_time`", "both a key"],
        );
    }
    assert_usage(&run("probe-split", &["-q", "--tag", "--key", "a,a", &input], None), "probe-split", &["`a`"]);
    assert_usage(
        &run("probe-group", &["-q", "--columns", "rtt_ms,rtt_ms", &input], None),
        "probe-group",
        &["--columns", "`rtt_ms`"],
    );
    assert_usage(
        &run("probe-group", &["-q", "--columns", "src_addr", &input], None),
        "probe-group",
        &["`src_addr`", "always kept"],
    );
}

// ---------- item 11: every integer type as the time ----------

#[test]
fn every_integer_type_is_a_time_column() {
    let dir = tempfile::tempdir().unwrap();
    let arrays: Vec<(&str, ArrayRef)> = vec![
        ("Int8", Arc::new(Int8Array::from(vec![3i8, 1, 2]))),
        ("Int16", Arc::new(Int16Array::from(vec![3i16, 1, 2]))),
        ("Int32", Arc::new(Int32Array::from(vec![3i32, 1, 2]))),
        ("Int64", Arc::new(Int64Array::from(vec![3i64, 1, 2]))),
        ("UInt8", Arc::new(UInt8Array::from(vec![3u8, 1, 2]))),
        ("UInt16", Arc::new(UInt16Array::from(vec![3u16, 1, 2]))),
        ("UInt32", Arc::new(UInt32Array::from(vec![3u32, 1, 2]))),
        ("UInt64", Arc::new(UInt64Array::from(vec![3u64, 1, 2]))),
    ];
    for (name, times) in arrays {
        let dt = times.data_type().clone();
        let input = typed_input(dir.path(), &format!("{name}.parquet"), times, &["a", "a", "a"]);
        let out = sh(&format!("probe-group -q --sort {input} | probe-batch -q --max-gap 1s"), dir.path());
        out.assert_ok();
        let (schema, batches) = decode_ipc(&out.stdout);
        assert_eq!(schema.field_with_name("start_time").unwrap().data_type(), &dt, "{name}");
        let times = column(&batches, "event_time");
        let values = arrow::compute::cast(times[0].as_list::<i32>().values(), &DataType::Int64).unwrap();
        assert_eq!(values.as_primitive::<Int64Type>().values().to_vec(), [1, 2, 3], "{name}: sorted by time");
        let out = run("probe-check-order", &["-q", &input], None);
        out.assert_code(1);
        let out = run("probe-group", &["-q", &input], None);
        out.assert_error("probe-group", &["event_time 1 comes after 3"]);
    }
}

#[test]
fn a_uint64_time_above_i64_max_is_an_error_naming_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let times = UInt64Array::from(vec![1u64, 2, u64::MAX]);
    let input = typed_input(dir.path(), "u.parquet", Arc::new(times), &["a", "a", "b"]);
    for args in [vec!["-q"], vec!["-q", "--sort"]] {
        let mut args = args.clone();
        args.push(&input);
        run("probe-group", &args, None).assert_error("probe-group", &["u.parquet: row 2", "18446744073709551615"]);
    }
    let out = run("probe-check-order", &["-q", &input], None);
    out.assert_code(2);
    assert!(out.stderr.contains("row 2"), "{}", out.stderr);
}

// ---------- item 12 and issue 12: usage errors exit 2 ----------

#[test]
fn contradictory_settings_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = composite_input(dir.path());
    let g = dir.path().join("g.arrows").display().to_string();
    sh(&format!("probe-group -q --sort {input} -o {g}"), dir.path()).assert_ok();
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("probe-batch", vec!["--min-len", "3", "--max-len", "2"], "--min-len 3 is above --max-len 2"),
        ("probe-batch", vec!["--stride", "2"], "--stride needs --max-len"),
        ("probe-batch", vec!["--max-len", "0"], "--max-len must be at least 1"),
        ("probe-batch", vec!["--max-len", "2", "--stride", "3"], "--stride 3 is larger"),
        ("probe-split", vec!["--tag", "--ratios", "a=0.5,b=0.4"], "sum to"),
        ("probe-merge", vec!["-o", "x.arrows"], "FILE.parquet"),
        ("probe-merge", vec!["-o", "x.parquet", "--max-file-size", "1MiB"], "--max-file-size is for --out-dir"),
    ];
    for (stage, args, needle) in cases {
        let mut all = vec!["-q", g.as_str()];
        all.extend(args);
        assert_usage(&run(stage, &all, None), stage, &[needle]);
    }
    for (stage, mode) in [("probe-group", "--sort"), ("probe-split", "--tag"), ("probe-merge", "--row-group-size=1MiB")]
    {
        let out = run(stage, &["-q", mode, "--compression", "brotli", "-o", "x.parquet", &g], None);
        out.assert_code(2);
        assert!(out.stderr.contains("brotli"), "{}", out.stderr);
    }
    let help = String::from_utf8(run("probe-merge", &["--help"], None).stdout).unwrap();
    assert!(help.contains("zstd:LEVEL") && help.contains("snappy"), "--help lists the codecs:\n{help}");
}

#[test]
fn check_order_exits_2_on_errors_through_the_common_entry_point() {
    let dir = tempfile::tempdir().unwrap();
    let input = composite_input(dir.path());
    let out = run("probe-check-order", &["-q", "--key", "nope", &input], None);
    out.assert_code(2);
    assert!(out.stderr.starts_with("probe-check-order: error: "), "{}", out.stderr);
    assert_usage(&run("probe-check-order", &["-q", "--key", "a,a", &input], None), "probe-check-order", &["`a`"]);
}

// ---------- item 15: a --memory-limit below what --sort can honour ----------

#[test]
fn a_memory_limit_below_the_minimum_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = composite_input(dir.path());
    let out = run("probe-group", &["-q", "--sort", "--memory-limit", "1MiB", &input], None);
    assert_usage(&out, "probe-group", &["--memory-limit", "16.0 MiB"]);
    run("probe-group", &["-q", "--sort", "--memory-limit", "16MiB", &input], None).assert_ok();
}

// ---------- item 16: help and report wording ----------

#[test]
fn fan_in_is_in_the_help() {
    let help = String::from_utf8(run("probe-group", &["--help"], None).stdout).unwrap();
    assert!(help.contains("--fan-in"), "{help}");
}

#[test]
fn check_order_lists_the_first_files_and_names_key_changes_by_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for i in 0..30 {
        let key = format!("k{i:03}");
        typed_input(&data, &format!("part-{i:03}.parquet"), Arc::new(Int64Array::from(vec![1i64])), &[key.as_str()]);
    }
    let out = run("probe-check-order", &[data.to_str().unwrap()], None);
    out.assert_ok();
    let report = String::from_utf8(out.stdout).unwrap();
    assert!(report.contains("files:\n  ") && report.contains("part-000.parquet"), "{report}");
    assert!(report.contains("... and 25 more files (all sorted and not overlapping"), "{report}");
    assert!(report.contains("(source address changes)"), "{report}");

    let input = composite_input(dir.path());
    let out = run("probe-check-order", &["--key", "src_addr,dst_port", &input], None);
    let report = String::from_utf8(out.stdout).unwrap();
    assert!(report.contains("3 (key changes)"), "{report}");
}

#[test]
fn timestamp_keys_show_as_iso_times_too() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("hour", DataType::Timestamp(TimeUnit::Second, Some("UTC".into())), true),
        Field::new("event_time", DataType::Int64, true),
    ]));
    let keys = arrow::array::TimestampSecondArray::from(vec![7_200i64, 3_600]).with_timezone("UTC");
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(keys), Arc::new(Int64Array::from(vec![1i64, 2]))]).unwrap();
    let path = dir.path().join("k.parquet");
    write_parquet(&path, schema, &[batch], 16);
    let out = run("probe-group", &["-q", "--key", "hour", path.to_str().unwrap()], None);
    out.assert_error("probe-group", &["key 1970-01-01T01:00:00Z comes after key 1970-01-01T02:00:00Z"]);
}

#[test]
fn dash_as_the_output_is_stdout_for_every_stage_that_streams() {
    let dir = tempfile::tempdir().unwrap();
    let input = composite_input(dir.path());
    let group = format!("probe-group -q --key src_addr,dst_port {input}");
    let grouped = sh(&group, dir.path());
    grouped.assert_ok();
    let batched = sh(&format!("{group} | probe-batch -q --max-len 2"), dir.path());
    batched.assert_ok();
    let tagged = sh(&format!("{group} | probe-split -q --tag --ratios train=1"), dir.path());
    tagged.assert_ok();
    let cases = [
        (format!("{group} -o -"), &grouped),
        (format!("{group} | probe-batch -q --max-len 2 -o -"), &batched),
        (format!("{group} | probe-split -q --tag --ratios train=1 -o -"), &tagged),
    ];
    for (cmd, want) in cases {
        let out = sh(&cmd, dir.path());
        out.assert_ok();
        assert!(!out.stdout.is_empty(), "{cmd}: nothing on stdout");
        assert_eq!(out.stdout, want.stdout, "{cmd}: stdout differs from the run without -o");
        assert!(!dir.path().join("-").exists(), "{cmd}: wrote a file named `-`");
    }
    // Parquet has no stdout form: probe-merge says so rather than writing a file named `-`.
    let merged = sh(&format!("{group} | probe-batch -q | probe-merge -q -o -"), dir.path());
    merged.assert_code(2);
    assert!(merged.stderr.contains("FILE.parquet"), "{}", merged.stderr);
    assert!(!dir.path().join("-").exists(), "probe-merge wrote a file named `-`");
}
