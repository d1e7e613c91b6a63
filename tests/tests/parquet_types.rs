//! Parquet outputs store every time type with a Parquet annotation, so other readers see times,
//! not integers: arrow-rs writes second timestamps, `Date64` and `Time32(Second)` as bare
//! integers, which pyarrow and DuckDB read as numbers. Through the real binaries.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Date64Array, Float64Array, StringArray, TimestampSecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMillisecondType};
use arrow::record_batch::RecordBatch;
use parquet::basic::{LogicalType, TimeUnit as PqUnit};
use parquet::file::reader::{FileReader, SerializedFileReader};

use probe_tests::harness::{encode_ipc, read_file, run, sh, write_parquet};

fn p(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

/// Measurements with a second-resolution time and a Date64 payload: keys k0..k2, times
/// T0 + 10 * i seconds.
const T0: i64 = 1_700_000_000;

fn measurements(day_ms: impl Fn(usize) -> i64) -> RecordBatch {
    let n = 9;
    let schema = Arc::new(Schema::new(vec![
        Field::new("src_addr", DataType::Utf8, false),
        Field::new("event_time", DataType::Timestamp(TimeUnit::Second, Some("UTC".into())), false),
        Field::new("day", DataType::Date64, true),
        Field::new("rtt_ms", DataType::Float64, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from((0..n).map(|i| format!("k{}", i / 3)).collect::<Vec<_>>())),
        Arc::new(
            TimestampSecondArray::from((0..n).map(|i| T0 + 10 * i as i64).collect::<Vec<_>>()).with_timezone("UTC"),
        ),
        Arc::new(Date64Array::from((0..n).map(&day_ms).collect::<Vec<_>>())),
        Arc::new(Float64Array::from((0..n).map(|i| i as f64).collect::<Vec<_>>())),
    ];
    RecordBatch::try_new(schema, cols).unwrap()
}

/// The logical type of each leaf column of a Parquet file, by dotted path.
fn logical_types(path: &Path) -> Vec<(String, Option<LogicalType>)> {
    let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let descr = r.metadata().file_metadata().schema_descr_ptr();
    descr.columns().iter().map(|c| (c.path().string(), c.logical_type_ref().cloned())).collect()
}

fn is_millis(t: &Option<LogicalType>) -> bool {
    matches!(t, Some(LogicalType::Timestamp(ts)) if ts.unit == PqUnit::MILLIS)
}

#[test]
fn second_timestamps_and_date64_are_stored_as_annotated_times() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("m.arrows");
    let batch = measurements(|i| (19_000 + i as i64) * 86_400_000);
    std::fs::write(&input, encode_ipc(batch.schema(), std::slice::from_ref(&batch))).unwrap();

    // group -> Parquet, and group | batch | merge -> Parquet.
    let grouped = d.join("g.parquet");
    run("probe-group", &[p(&input), "-o".into(), p(&grouped), "-q".into()], None).assert_ok();
    let merged = d.join("rows.parquet");
    let script =
        format!("probe-group -q {} | probe-batch -q - --max-len 2 | probe-merge -q - -o {}", p(&input), p(&merged));
    sh(&script, d).assert_ok();

    let g = logical_types(&grouped);
    let leaf = |t: &[(String, Option<LogicalType>)], name: &str| t.iter().find(|(p, _)| p == name).unwrap().1.clone();
    assert!(is_millis(&leaf(&g, "measurements.list.item.event_time")), "{g:?}");
    assert!(matches!(leaf(&g, "measurements.list.item.day"), Some(LogicalType::Date)), "{g:?}");
    let m = logical_types(&merged);
    for col in ["start_time", "end_time", "event_time.list.item"] {
        assert!(is_millis(&leaf(&m, col)), "{col}: {m:?}");
    }
    assert!(matches!(leaf(&m, "day.list.item"), Some(LogicalType::Date)), "{m:?}");

    // The values are the same instants: seconds * 1000, days unchanged.
    let (schema, batches) = read_file(&merged);
    assert_eq!(
        schema.field_with_name("start_time").unwrap().data_type(),
        &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
    );
    let starts: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name("start_time").unwrap().as_primitive::<TimestampMillisecondType>().clone();
            c.values().to_vec()
        })
        .collect();
    // Windows of 2 over 3 measurements per key: starts at measurements 0 and 2 of each key.
    let want: Vec<i64> = [0, 2, 3, 5, 6, 8].iter().map(|i| (T0 + 10 * i) * 1000).collect();
    assert_eq!(starts, want);
    let days: Vec<i32> = batches
        .iter()
        .flat_map(|b| {
            let l = b.column_by_name("day").unwrap().as_list::<i32>().clone();
            let v = l.values().as_primitive::<arrow::datatypes::Date32Type>().clone();
            v.values().to_vec()
        })
        .collect();
    assert_eq!(days, (19_000..19_009).collect::<Vec<i32>>());
}

#[test]
fn a_date64_with_a_time_of_day_is_an_error_not_a_truncated_date() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("m.arrows");
    // One value 1 ms past midnight: a date column cannot hold it.
    let batch = measurements(|i| 19_000 * 86_400_000 + i64::from(i == 4));
    std::fs::write(&input, encode_ipc(batch.schema(), std::slice::from_ref(&batch))).unwrap();
    let out = d.join("g.parquet");
    run("probe-group", &[p(&input), "-o".into(), p(&out)], None)
        .assert_error("probe-group", &["`measurements`", "Date64", "not a whole day"]);
    assert!(!out.exists());
    // To IPC nothing is converted, so nothing is lost.
    let ipc = d.join("g.arrows");
    run("probe-group", &[p(&input), "-o".into(), p(&ipc), "-q".into()], None).assert_ok();
    let (_, b) = read_file(&ipc);
    let l = b[0].column_by_name("measurements").unwrap().as_list::<i32>().clone();
    let days =
        l.values().as_struct().column_by_name("day").unwrap().as_primitive::<arrow::datatypes::Date64Type>().clone();
    assert_eq!(days.value(4), 19_000 * 86_400_000 + 1);
    assert!(days.null_count() == 0);
}

/// Sorted Parquet inputs go through key ranges (and `--sort` through parts), each encoding its
/// own row groups ([`probe_core::output::PieceEncoder`]): the same conversions and the same
/// refusal there as in the streaming merge.
#[test]
fn key_ranges_convert_and_refuse_like_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let batch = measurements(|i| (19_000 + i as i64) * 86_400_000);
    let input = d.join("m.parquet");
    write_parquet(&input, batch.schema(), std::slice::from_ref(&batch), 3);
    let ipc = d.join("m.arrows");
    std::fs::write(&ipc, encode_ipc(batch.schema(), std::slice::from_ref(&batch))).unwrap();
    let (ranged, streamed) = (d.join("r.parquet"), d.join("s.parquet"));
    run("probe-group", &[p(&ipc), "-o".into(), p(&streamed), "-q".into()], None).assert_ok();
    let pieces = |sort: bool, threads: &str| -> Vec<String> {
        let mut args = vec![p(&input), "--threads".into(), threads.into()];
        let extra: &[&str] = match sort {
            false => &["--range-rows", "3"],
            true => &["--sort", "--sort-part-rows", "2"],
        };
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    for sort in [false, true] {
        for threads in ["1", "3"] {
            let mut args = pieces(sort, threads);
            args.extend(["-o".into(), p(&ranged)]);
            let out = run("probe-group", &args, None);
            out.assert_ok();
            assert!(sort || out.stderr.contains("key ranges 3"), "not 3 key ranges: {}", out.stderr);
            assert_eq!(logical_types(&ranged), logical_types(&streamed));
            assert_eq!(read_file(&ranged), read_file(&streamed), "--sort {sort}, --threads {threads}");
        }
    }
    let bad = measurements(|i| 19_000 * 86_400_000 + i64::from(i == 4));
    write_parquet(&input, bad.schema(), std::slice::from_ref(&bad), 3);
    let out = d.join("bad.parquet");
    for sort in [false, true] {
        let mut args = pieces(sort, "3");
        args.extend(["-o".into(), p(&out)]);
        run("probe-group", &args, None).assert_error("probe-group", &["`measurements`", "Date64", "not a whole day"]);
        assert!(!out.exists());
    }
}

/// What pyarrow reads: timestamps, not integers. Needs python3 with pyarrow (CI installs it).
#[test]
fn pyarrow_reads_second_timestamps_as_timestamps() {
    if !probe_tests::harness::pyarrow_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let batch = measurements(|i| (19_000 + i as i64) * 86_400_000);
    std::fs::write(d.join("m.arrows"), encode_ipc(batch.schema(), std::slice::from_ref(&batch))).unwrap();
    sh("probe-group -q m.arrows | probe-batch -q - | probe-merge -q - -o rows.parquet", d).assert_ok();
    let py = r#"
import pyarrow.parquet as pq
t = pq.read_table("rows.parquet")
print(t.schema.field("start_time").type, t.schema.field("day").type.value_type, t.column("start_time")[0].as_py().isoformat())
"#;
    let out = sh(&format!("python3 -c '{py}'"), d);
    out.assert_ok();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "timestamp[ms, tz=UTC] date32[day] 2023-11-14T22:13:20+00:00"
    );
}

/// pyarrow stores second timestamps as milliseconds and records the type and zone in
/// `ARROW:schema`; arrow-rs read them as `timestamp[ms, UTC]`, so every stage wrote UTC where the
/// input said another zone (QA). The zones come back, in the stream, the key ranges and `--sort`.
#[test]
fn recorded_zones_of_second_timestamps_survive_a_parquet_input() {
    if !probe_tests::harness::pyarrow_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let py = r#"
import pyarrow as pa, pyarrow.parquet as pq
t = pa.table({"src_addr": ["a", "a", "a", "b", "b", "c"],
              "event_time": pa.array([1, 2, 3, 4, 5, 6], pa.timestamp("s", tz="America/New_York")),
              "seen": pa.array([[10], [20, 21], None, [40], [], [60]], pa.list_(pa.timestamp("s", tz="Asia/Tokyo")))})
pq.write_table(t, "m.parquet", row_group_size=2)
"#;
    sh(&format!("python3 -c '{py}'"), d).assert_ok();
    let runs: [&[&str]; 3] = [&[], &["--range-rows", "2", "--threads", "3"], &["--sort", "--threads", "2"]];
    for extra in runs {
        let mut args: Vec<String> = vec!["m.parquet".into(), "-q".into(), "-o".into(), "g.parquet".into()];
        args.extend(extra.iter().map(|a| a.to_string()));
        let out = std::process::Command::new(probe_tests::harness::bin("probe-group"))
            .args(&args)
            .current_dir(d)
            .output()
            .unwrap();
        assert!(out.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        let (schema, batches) = read_file(&d.join("g.parquet"));
        let DataType::List(item) = schema.field_with_name("measurements").unwrap().data_type() else { panic!() };
        let DataType::Struct(fields) = item.data_type() else { panic!() };
        assert_eq!(
            fields[0].data_type(),
            &DataType::Timestamp(TimeUnit::Millisecond, Some("America/New_York".into())),
            "{extra:?}"
        );
        let DataType::List(seen) = fields[1].data_type() else { panic!() };
        assert_eq!(
            seen.data_type(),
            &DataType::Timestamp(TimeUnit::Millisecond, Some("Asia/Tokyo".into())),
            "{extra:?}"
        );
        // The instants are untouched: seconds * 1000.
        let times: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                let l = b.column_by_name("measurements").unwrap().as_list::<i32>().clone();
                l.values().as_struct().column(0).as_primitive::<TimestampMillisecondType>().values().to_vec()
            })
            .collect();
        assert_eq!(times, vec![1000, 2000, 3000, 4000, 5000, 6000], "{extra:?}");
    }
}
