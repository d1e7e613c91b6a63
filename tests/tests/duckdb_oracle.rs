//! Differential tests: `probe-group` against DuckDB running the SQL it replaces,
//! `LIST(STRUCT_PACK(...) ORDER BY time NULLS LAST, file, row) ... GROUP BY key`, over the same
//! files. Every key, every element, every field must agree.
//!
//! Needs the bundled DuckDB: `cargo test --workspace --features duckdb` (slow to build once).
#![cfg(feature = "duckdb")]
#![allow(clippy::unwrap_used, clippy::type_complexity)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;

use probe_tests::gen::{self, GenConfig, Order};
use probe_tests::harness::{decode_ipc, run, write_parquet};
use probe_tests::oracle::{assert_groups_eq, decode_groups, rows, Group, Val};

/// Files of a directory in name order (what the stages read for a directory argument).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| !n.to_string_lossy().starts_with(['.', '_'])))
        .collect();
    v.sort();
    v
}

/// DuckDB's answer for `files`, keyed by `keys`, ordered by `time`, with `payload` fields.
fn duckdb_groups(files: &[PathBuf], keys: &[&str], time: &str, payload: &[&str]) -> Vec<Group> {
    let conn = duckdb::Connection::open_in_memory().expect("duckdb");
    conn.execute_batch("SET threads TO 2;").expect("threads");
    let list = files.iter().map(|p| format!("'{}'", p.display())).collect::<Vec<_>>().join(", ");
    let fields = std::iter::once(time)
        .chain(payload.iter().copied())
        .map(|f| format!("\"{f}\" := \"{f}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let key_list = keys.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ");
    let key_order = keys.iter().map(|k| format!("\"{k}\" NULLS LAST")).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT {key_list}, \
                LIST(STRUCT_PACK({fields}) ORDER BY \"{time}\" NULLS LAST, file_idx, file_row_number) AS measurements \
         FROM (SELECT *, list_position([{list}], filename) AS file_idx \
               FROM read_parquet([{list}], filename = true, file_row_number = true)) \
         GROUP BY {key_list} ORDER BY {key_order}"
    );
    let mut stmt = conn.prepare(&sql).unwrap_or_else(|e| panic!("duckdb prepare: {e}\n{sql}"));
    let batches: Vec<RecordBatch> = stmt.query_arrow([]).unwrap_or_else(|e| panic!("duckdb query: {e}")).collect();
    decode_groups(&batches, keys.len())
}

fn probe_group(args: &[String]) -> Vec<Group> {
    let out = run("probe-group", args, None);
    out.assert_ok();
    let (schema, batches) = decode_ipc(&out.stdout);
    let n_keys = schema.fields().len() - 1;
    decode_groups(&batches, n_keys)
}

fn payload() -> Vec<&'static str> {
    vec!["dst_addr", "rtt_ms", "ttl", "proto", "probe_id"]
}

fn generated(order: Order, rows: u64, keys: u64, files: usize, seed: u64) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = GenConfig::new(rows, dir.path().join("data"));
    cfg.keys = keys;
    cfg.order = order;
    cfg.files = files;
    cfg.seed = seed;
    cfg.row_group_rows = Some(10_000);
    gen::generate(&cfg).expect("generate");
    let files = files_in(&dir.path().join("data"));
    (dir, files)
}

fn args_for(files: &[PathBuf], extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    a.push("-q".into());
    a.extend(files.iter().map(|p| p.display().to_string()));
    a
}

#[test]
fn sorted_generated_data_matches_duckdb() {
    let (_d, files) = generated(Order::Sorted, 200_000, 5_000, 3, 1);
    let want = duckdb_groups(&files, &["src_addr"], "event_time", &payload());
    assert_groups_eq(&probe_group(&args_for(&files, &[])), &want);
}

#[test]
fn overlapping_sorted_files_match_duckdb() {
    let (_d, files) = generated(Order::SortedPerFile, 200_000, 4_000, 7, 2);
    let want = duckdb_groups(&files, &["src_addr"], "event_time", &payload());
    assert_groups_eq(&probe_group(&args_for(&files, &[])), &want);
}

#[test]
fn shuffled_through_sort_matches_duckdb() {
    let (d, files) = generated(Order::Shuffled, 200_000, 4_000, 2, 3);
    let want = duckdb_groups(&files, &["src_addr"], "event_time", &payload());
    let spill = d.path().join("spill");
    std::fs::create_dir(&spill).expect("spill dir");
    let spill_s = spill.display().to_string();
    // A small budget forces many runs and more than one merge pass.
    let got = probe_group(&args_for(
        &files,
        &["--sort", "--allow-small-memory-limit", "--memory-limit", "2MiB", "--fan-in", "4", "--temp-dir", &spill_s],
    ));
    assert_groups_eq(&got, &want);
    // And with everything in memory.
    let got = probe_group(&args_for(&files, &["--sort", "--memory-limit", "1GiB"]));
    assert_groups_eq(&got, &want);
}

#[test]
fn key_with_100k_rows_and_ipv6_keys_match_duckdb() {
    // Three keys over 400k rows: the heavy tail gives the largest one well over 100k rows.
    let (_d, files) = generated(Order::Sorted, 400_000, 3, 1, 4);
    let want = duckdb_groups(&files, &["src_addr"], "event_time", &payload());
    assert!(
        want.iter().any(|g| g.1.len() > 100_000),
        "no key with 100k+ rows: {:?}",
        want.iter().map(|g| g.1.len()).collect::<Vec<_>>()
    );
    assert_groups_eq(&probe_group(&args_for(&files, &[])), &want);
    // IPv6 keys are present in generated data at this scale.
    let (_d, files) = generated(Order::Sorted, 50_000, 2_000, 1, 5);
    let want = duckdb_groups(&files, &["src_addr"], "event_time", &payload());
    assert!(want.iter().any(|g| matches!(&g.0[0], Val::S(s) if s.contains(':'))), "no IPv6 key");
    assert_groups_eq(&probe_group(&args_for(&files, &[])), &want);
}

/// Nulls in key, time and payload; ties; a composite key; several files: hand-made, since the
/// generator writes no null keys or times.
#[test]
fn nulls_ties_and_composite_keys_match_duckdb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = Arc::new(Schema::new(vec![
        Field::new("site", DataType::Utf8, true),
        Field::new("src_addr", DataType::Utf8, true),
        Field::new("event_time", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        Field::new("rtt_ms", DataType::Float64, true),
        Field::new("seq", DataType::Int64, false),
    ]));
    let mut x = 99u64;
    let mut next = || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        x >> 33
    };
    let mut paths = Vec::new();
    for f in 0..3 {
        let mut rows: Vec<(Option<String>, Option<String>, Option<i64>, Option<f64>, i64)> = (0..3000)
            .map(|i| {
                let site = if next() % 17 == 0 {
                    None
                } else {
                    Some(["ams", "fra", "sea"][(next() % 3) as usize].to_string())
                };
                let src = if next() % 19 == 0 { None } else { Some(format!("10.0.{}.{}", next() % 4, next() % 40)) };
                let t = if next() % 23 == 0 {
                    None
                } else {
                    Some(1_700_000_000_000_000 + (next() % 50) as i64 * 1_000_000)
                };
                let rtt = if next() % 7 == 0 { None } else { Some((next() % 1000) as f64 / 10.0) };
                (site, src, t, rtt, (f * 10_000 + i) as i64)
            })
            .collect();
        let v = |o: &Option<String>| o.clone().map_or(Val::Null, Val::S);
        rows.sort_by(|a, b| {
            v(&a.0)
                .cmp_nulls_last(&v(&b.0))
                .then(v(&a.1).cmp_nulls_last(&v(&b.1)))
                .then(a.2.map_or(Val::Null, Val::I).cmp_nulls_last(&b.2.map_or(Val::Null, Val::I)))
        });
        let batches: Vec<RecordBatch> = rows
            .chunks(500)
            .map(|c| {
                let cols: Vec<ArrayRef> = vec![
                    Arc::new(StringArray::from(c.iter().map(|r| r.0.clone()).collect::<Vec<_>>())),
                    Arc::new(StringArray::from(c.iter().map(|r| r.1.clone()).collect::<Vec<_>>())),
                    Arc::new(
                        TimestampMicrosecondArray::from(c.iter().map(|r| r.2).collect::<Vec<_>>()).with_timezone("UTC"),
                    ),
                    Arc::new(Float64Array::from(c.iter().map(|r| r.3).collect::<Vec<_>>())),
                    Arc::new(Int64Array::from(c.iter().map(|r| r.4).collect::<Vec<_>>())),
                ];
                RecordBatch::try_new(schema.clone(), cols).expect("batch")
            })
            .collect();
        let p = dir.path().join(format!("part-{f}.parquet"));
        write_parquet(&p, schema.clone(), &batches, 700);
        paths.push(p);
    }
    let want = duckdb_groups(&paths, &["site", "src_addr"], "event_time", &["rtt_ms", "seq"]);
    assert!(want.iter().any(|g| g.0.contains(&Val::Null)), "test data lacks null keys");
    assert!(rows(&[]).is_empty());
    let got = probe_group(&args_for(&paths, &["--key", "site,src_addr", "--columns", "rtt_ms,seq"]));
    assert_groups_eq(&got, &want);
    let got = probe_group(&args_for(
        &paths,
        &[
            "--key",
            "site,src_addr",
            "--columns",
            "rtt_ms,seq",
            "--sort",
            "--allow-small-memory-limit",
            "--memory-limit",
            "64KiB",
        ],
    ));
    assert_groups_eq(&got, &want);
}
