//! End-to-end tests of `probe-group` (default mode and `--sort`): the real binary on files and
//! pipes, its decoded output compared with the in-test oracle.
#![allow(clippy::unwrap_used, clippy::type_complexity)] // tests: a panic is the failure report

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use proptest::prelude::*;

use probe_tests::harness::{decode_ipc, encode_ipc, list_dir, read_file, run, sh, write_parquet};
use probe_tests::measurements::{batch, schema, sorted_files, vals, Row, Spec};
use probe_tests::oracle::{self, assert_groups_eq, decode_groups, Val};

/// Sort rows by (key, time), nulls last, stably: what a sorted export looks like.
/// Write one input file: Parquet with small row groups, or an IPC stream.
fn write_input(path: &Path, rows: &[Row], parquet: bool, chunk: usize) {
    let chunks: Vec<RecordBatch> = rows.chunks(chunk.max(1)).map(batch).collect();
    if parquet {
        write_parquet(path, schema(), &chunks, chunk);
    } else {
        std::fs::write(path, encode_ipc(schema(), &chunks)).expect("write ipc");
    }
}

fn expected(files: &[Vec<Row>]) -> Vec<oracle::Group> {
    let v: Vec<Vec<Vec<Val>>> = files.iter().map(|f| vals(f)).collect();
    oracle::group(&v, &[0], 1, &[2, 3, 4])
}

/// The grouped output must keep the key and measurement types (the `UTC` zone included).
fn assert_schema(out: &Schema) {
    oracle::assert_group_schema(out, &schema(), &[0], 1, &[2, 3, 4]);
}

fn row_strategy(keys: usize) -> impl Strategy<Value = (Option<usize>, Option<i64>, Option<u8>, Option<f64>)> {
    (
        prop::option::weighted(0.9, 0..keys),
        prop::option::weighted(0.9, 0i64..6),
        prop::option::weighted(0.8, 0u8..4),
        prop::option::weighted(0.8, -1.0f64..100.0),
    )
}

fn key_name(k: usize) -> String {
    // Mixed IPv4/IPv6 strings whose byte order differs from numeric order.
    match k % 3 {
        0 => format!("10.0.{}.{}", k, 255 - k),
        1 => format!("2001:db8::{k:x}"),
        _ => format!("9.{k}.0.1"),
    }
}

fn make_files(spec: Vec<Vec<Spec<usize>>>) -> Vec<Vec<Row>> {
    sorted_files(spec, key_name)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Several overlapping sorted inputs (Parquet and IPC mixed), ties, null keys and times,
    /// batches cut at awkward places: output equals the oracle.
    #[test]
    fn sorted_inputs_match_oracle(
        spec in prop::collection::vec(prop::collection::vec(row_strategy(7), 0..40), 1..4),
        chunk in 1usize..17,
        batch_bytes in prop::sample::select(vec![64u64, 300, 1000, 8 << 20]),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let files = make_files(spec);
        let mut args = vec!["--batch-size".to_string(), batch_bytes.to_string(), "-q".into()];
        for (i, f) in files.iter().enumerate() {
            let p = dir.path().join(format!("in{i}"));
            write_input(&p, f, i % 2 == 0, chunk);
            args.push(p.display().to_string());
        }
        let out = run("probe-group", &args, None);
        out.assert_ok();
        prop_assert!(out.stderr.is_empty(), "-q must silence stderr: {}", out.stderr);
        let (s, batches) = decode_ipc(&out.stdout);
        assert_schema(&s);
        assert_groups_eq(&decode_groups(&batches, 1), &expected(&files));
    }

    /// Shuffled input through --sort with a tiny memory budget gives the same as the oracle.
    #[test]
    fn sort_mode_matches_oracle(
        spec in prop::collection::vec(prop::collection::vec(row_strategy(9), 0..120), 1..3),
        chunk in 1usize..40,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut files = make_files(spec);
        // Unsort: reverse and interleave, keeping seq as the input order witness.
        for f in &mut files {
            f.reverse();
            let n = f.len();
            if n > 2 { f.swap(0, n / 2); }
        }
        let mut args = vec!["--sort".to_string(), "--allow-small-memory-limit".into(), "--memory-limit".into(), "3KiB".into(), "--fan-in".into(), "2".into(), "--batch-size".into(), "500".into(), "-q".into(), "--temp-dir".into(), dir.path().join("spill").display().to_string()];
        std::fs::create_dir(dir.path().join("spill")).unwrap();
        for (i, f) in files.iter().enumerate() {
            let p = dir.path().join(format!("in{i}.parquet"));
            write_input(&p, f, true, chunk);
            args.push(p.display().to_string());
        }
        let out = run("probe-group", &args, None);
        out.assert_ok();
        let (s, batches) = decode_ipc(&out.stdout);
        assert_schema(&s);
        assert_groups_eq(&decode_groups(&batches, 1), &expected(&files));
        prop_assert!(list_dir(&dir.path().join("spill")).is_empty(), "spill files left behind");
    }
}

#[test]
fn composite_key_matches_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("site", DataType::Utf8, true),
        Field::new("probe", DataType::Int64, true),
        Field::new("t", DataType::Int64, true),
        Field::new("v", DataType::Float64, true),
    ]));
    let mut rows: Vec<(Option<&str>, Option<i64>, Option<i64>, f64)> = Vec::new();
    let mut x = 7u64;
    for i in 0..500 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let site = [Some("ams"), Some("fra"), None, Some("lhr")][(x >> 33) as usize % 4];
        let probe = if (x >> 20).is_multiple_of(11) { None } else { Some(((x >> 40) % 5) as i64 - 2) };
        let t = if (x >> 10).is_multiple_of(13) { None } else { Some(((x >> 50) % 8) as i64) };
        rows.push((site, probe, t, i as f64));
    }
    let key = |r: &(Option<&str>, Option<i64>, Option<i64>, f64)| {
        (r.0.map_or(Val::Null, |s| Val::S(s.into())), r.1.map_or(Val::Null, Val::I), r.2.map_or(Val::Null, Val::I))
    };
    rows.sort_by(|a, b| {
        let (a0, a1, a2) = key(a);
        let (b0, b1, b2) = key(b);
        a0.cmp_nulls_last(&b0).then(a1.cmp_nulls_last(&b1)).then(a2.cmp_nulls_last(&b2))
    });
    let make = |rs: &[(Option<&str>, Option<i64>, Option<i64>, f64)]| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(rs.iter().map(|r| r.0).collect::<Vec<_>>())) as ArrayRef,
                Arc::new(Int64Array::from(rs.iter().map(|r| r.1).collect::<Vec<_>>())),
                Arc::new(Int64Array::from(rs.iter().map(|r| r.2).collect::<Vec<_>>())),
                Arc::new(Float64Array::from(rs.iter().map(|r| r.3).collect::<Vec<_>>())),
            ],
        )
        .unwrap()
    };
    let p = dir.path().join("c.parquet");
    let chunks: Vec<RecordBatch> = rows.chunks(37).map(make).collect();
    write_parquet(&p, schema.clone(), &chunks, 37);
    let vals: Vec<Vec<Val>> = rows
        .iter()
        .map(|r| {
            let (a, b, c) = key(r);
            vec![a, b, c, Val::F(r.3)]
        })
        .collect();
    let want = oracle::group(std::slice::from_ref(&vals), &[0, 1], 2, &[3]);
    for extra in [
        vec![],
        vec![
            "--sort".to_string(),
            "--allow-small-memory-limit".into(),
            "--memory-limit".into(),
            "8KiB".into(),
            "--fan-in".into(),
            "3".into(),
        ],
    ] {
        let mut args: Vec<String> =
            vec!["--key".into(), "site,probe".into(), "--time".into(), "t".into(), "--batch-size".into(), "200".into()];
        args.extend(extra.clone());
        args.push(p.display().to_string());
        let out = run("probe-group", &args, None);
        out.assert_ok();
        let (schema_out, batches) = decode_ipc(&out.stdout);
        oracle::assert_group_schema(&schema_out, &schema, &[0, 1], 2, &[3]);
        assert_groups_eq(&decode_groups(&batches, 2), &want);
    }
}

#[test]
fn unsorted_input_fails_naming_file_and_row_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows: Vec<Row> = (0..100).map(|i| (Some(format!("k{:03}", i / 10)), Some(i), None, None, i)).collect();
    rows.swap(57, 83); // key k008 at row 57
    let p = dir.path().join("bad.parquet");
    write_input(&p, &rows, true, 30);
    let target = dir.path().join("out.parquet");
    let out = run("probe-group", &[p.to_str().unwrap(), "-o", target.to_str().unwrap()], None);
    let line = out.assert_error("probe-group", &["bad.parquet", "row 58", "--sort"]);
    assert!(line.contains("\"k005\"") && line.contains("\"k008\""), "{line}");
    assert_eq!(list_dir(dir.path()), vec!["bad.parquet"], "no output or temp file may remain");

    // Time order within a key is checked too.
    let mut rows: Vec<Row> = (0..10).map(|i| (Some("a".into()), Some(i), None, None, i)).collect();
    rows.swap(3, 4);
    write_input(&p, &rows, true, 4);
    let out = run("probe-group", &[p.to_str().unwrap()], None);
    out.assert_error("probe-group", &["bad.parquet", "row 4", "event_time", "--sort"]);
}

#[test]
fn empty_parquet_gives_empty_output_with_schema() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.parquet");
    write_parquet(&p, schema(), &[], 10);
    let out = run("probe-group", &[p.to_str().unwrap(), "-q"], None);
    out.assert_ok();
    let (s, batches) = decode_ipc(&out.stdout);
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    assert_schema(&s);
}

#[test]
fn one_key_with_many_rows_and_file_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Row> =
        (0..150_000).map(|i| (Some("big".into()), Some(i / 3), Some("d".into()), Some(i as f64), i)).collect();
    let p = dir.path().join("big.parquet");
    write_input(&p, &rows, true, 10_000);
    let want = expected(&[rows]);
    for ext in ["parquet", "arrow", "arrows"] {
        let o = dir.path().join(format!("out.{ext}"));
        let out = run("probe-group", &[p.to_str().unwrap(), "-o", o.to_str().unwrap()], None);
        out.assert_ok();
        assert!(out.stderr.contains("rows 150000") && out.stderr.contains("keys 1"), "summary: {}", out.stderr);
        let (s, batches) = read_file(&o);
        assert_schema(&s);
        assert_groups_eq(&decode_groups(&batches, 1), &want);
    }
}

#[test]
fn missing_column_corrupt_and_truncated_inputs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Row> = (0..1000).map(|i| (Some(format!("k{:04}", i / 7)), Some(i), None, None, i)).collect();
    let good = dir.path().join("good.parquet");
    write_input(&good, &rows, true, 100);
    let g = good.to_str().unwrap();
    run("probe-group", &[g, "--key", "nope"], None).assert_error("probe-group", &["good.parquet", "`nope`"]);
    run("probe-group", &[g, "--time", "dst_addr"], None)
        .assert_error("probe-group", &["good.parquet", "dst_addr", "type"]);

    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.parquet");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    run("probe-group", &[cut.to_str().unwrap()], None).assert_error("probe-group", &["cut.parquet"]);

    let chunks: Vec<RecordBatch> = rows.chunks(100).map(batch).collect();
    let stream = encode_ipc(schema(), &chunks);
    // Cut at a message boundary (drop the end-of-stream marker) and in the middle of a batch.
    for (name, len) in [("eos.arrows", stream.len() - 8), ("mid.arrows", stream.len() / 2)] {
        let p = dir.path().join(name);
        std::fs::write(&p, &stream[..len]).unwrap();
        let o = dir.path().join("o.parquet");
        run("probe-group", &[p.to_str().unwrap(), "-o", o.to_str().unwrap()], None)
            .assert_error("probe-group", &[name, "truncated"]);
        assert!(!o.exists());
        // The same through stdin.
        run("probe-group", &["-"], Some(stream[..len].to_vec())).assert_error("probe-group", &["stdin", "truncated"]);
    }
    // The complete stream through stdin works.
    let out = run("probe-group", &["-q"], Some(stream));
    out.assert_ok();
    let (s, batches) = decode_ipc(&out.stdout);
    assert_schema(&s);
    assert_groups_eq(&decode_groups(&batches, 1), &expected(&[rows]));
}

#[test]
fn closed_downstream_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Row> =
        (0..200_000).map(|i| (Some(format!("key{:07}", i / 5)), Some(i), Some("x".repeat(20)), Some(1.0), i)).collect();
    write_input(&dir.path().join("d.parquet"), &rows, true, 20_000);
    let out = sh("probe-group -q d.parquet | head -c 1000 > /dev/null; echo \"status ${PIPESTATUS[0]}\"", dir.path());
    out.assert_ok();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "status 0");
    assert!(out.stderr.is_empty(), "stderr noise on a closed pipe: {}", out.stderr);
}

#[test]
fn refuses_binary_output_to_a_terminal_and_bad_flags() {
    let out = run("probe-group", &["--sort", "--memory-limit", "lots"], None);
    assert_eq!(out.code(), 2, "usage errors exit 2: {}", out.stderr);
}

/// Generated shuffled data under a tiny budget: many runs, at least one intermediate merge
/// pass, the same result as the oracle; and a budget that fits spills nothing.
#[test]
fn sort_spills_runs_merges_in_passes_and_spills_nothing_when_it_fits() {
    use probe_tests::gen::{generate, GenConfig, Order};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = GenConfig::new(30_000, dir.path().join("data"));
    cfg.order = Order::Shuffled;
    cfg.keys = 700;
    cfg.files = 2;
    cfg.chunk_rows = 5_000;
    generate(&cfg).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(dir.path().join("data")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let inputs: Vec<Vec<Vec<Val>>> = files.iter().map(|p| oracle::rows(&read_file(p).1)).collect();
    let want = oracle::group(&inputs, &[0], 1, &[2, 3, 4, 5, 6]);
    let spill = dir.path().join("spill");
    std::fs::create_dir(&spill).unwrap();
    let data = dir.path().join("data");
    let out = run(
        "probe-group",
        &[
            "--sort",
            "--allow-small-memory-limit",
            "--memory-limit",
            "64KiB",
            "--fan-in",
            "4",
            "--temp-dir",
            spill.to_str().unwrap(),
            data.to_str().unwrap(),
        ],
        None,
    );
    out.assert_ok();
    let num = |field: &str| -> u64 {
        let s =
            out.stderr.split(&format!("{field} ")).nth(1).unwrap_or_else(|| panic!("no `{field}` in {}", out.stderr));
        s.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    assert!(num("spilled runs") > 16, "expected many runs: {}", out.stderr);
    assert!(num("merge passes") >= 2, "expected several merge passes: {}", out.stderr);
    assert_groups_eq(&decode_groups(&decode_ipc(&out.stdout).1, 1), &want);
    assert!(list_dir(&spill).is_empty(), "spill files left: {:?}", list_dir(&spill));

    let out = run(
        "probe-group",
        &["--sort", "--memory-limit", "1GiB", "--temp-dir", spill.to_str().unwrap(), data.to_str().unwrap()],
        None,
    );
    out.assert_ok();
    assert!(out.stderr.contains("spilled runs 0,"), "{}", out.stderr);
    assert_groups_eq(&decode_groups(&decode_ipc(&out.stdout).1, 1), &want);
}

/// A dictionary-encoded key through `--sort` with spills: each input batch has its own
/// dictionary, so a run's batches do too. Spill runs used to be IPC files, which refuse a
/// second dictionary ("Dictionary replacement detected"): the sort failed on such input.
#[test]
fn sort_spills_dictionary_keys() {
    use arrow::array::DictionaryArray;
    let dir = tempfile::tempdir().unwrap();
    let key_type = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let schema = Arc::new(Schema::new(vec![
        Field::new("src_addr", key_type, true),
        Field::new("event_time", DataType::Int64, true),
        Field::new("seq", DataType::Int64, false),
    ]));
    // Shuffled rows in Parquet row groups of 100: each has its own dictionary.
    let mut x = 11u64;
    let rows: Vec<(String, i64, i64)> = (0..3000)
        .map(|i| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (format!("10.0.{}.{}", (x >> 40) % 7, (x >> 50) % 30), ((x >> 20) % 50) as i64, i)
        })
        .collect();
    let batches: Vec<RecordBatch> = rows
        .chunks(100)
        .map(|c| {
            let keys: DictionaryArray<arrow::datatypes::Int32Type> = c.iter().map(|r| r.0.as_str()).collect();
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(keys) as ArrayRef,
                    Arc::new(Int64Array::from(c.iter().map(|r| r.1).collect::<Vec<_>>())),
                    Arc::new(Int64Array::from(c.iter().map(|r| r.2).collect::<Vec<_>>())),
                ],
            )
            .unwrap()
        })
        .collect();
    let input = dir.path().join("in.parquet");
    write_parquet(&input, schema.clone(), &batches, 100);
    let vals: Vec<Vec<Val>> = rows.iter().map(|r| vec![Val::S(r.0.clone()), Val::I(r.1), Val::I(r.2)]).collect();
    let want = oracle::group(&[vals], &[0], 1, &[2]);
    let out = run(
        "probe-group",
        &[
            "--sort",
            "--allow-small-memory-limit",
            "--memory-limit",
            "16KiB",
            "--temp-dir",
            dir.path().to_str().unwrap(),
            "-q",
            input.to_str().unwrap(),
        ],
        None,
    );
    out.assert_ok();
    let (s, got) = decode_ipc(&out.stdout);
    oracle::assert_group_schema(&s, &schema, &[0], 1, &[2]);
    assert_groups_eq(&decode_groups(&got, 1), &want);
}

/// `-o` naming a FIFO (or a device such as /dev/null) writes into it in place: a temp file renamed
/// over it would replace the FIFO itself (as root, /dev/null became a regular file that way).
#[test]
fn output_to_a_fifo_is_written_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rows =
        sorted_files(vec![vec![(Some(1usize), Some(1), Some(1), Some(1.0)), (Some(2), Some(2), None, None)]], key_name);
    write_parquet(&d.join("d.parquet"), schema(), &[batch(&rows[0])], 10);
    let out = sh(
        "mkfifo f && { timeout 20 cat f > got & } && probe-group -q d.parquet -o f && wait && test -p f && echo fifo",
        d,
    );
    out.assert_ok();
    assert!(out.stdout.ends_with(b"fifo\n"), "the FIFO was replaced: {}", String::from_utf8_lossy(&out.stdout));
    let (_, batches) = decode_ipc(&std::fs::read(d.join("got")).unwrap());
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2, "two keys through the FIFO");
}

/// Payload strings that the inputs store dictionary-encoded are read as dictionaries (to a
/// Parquet output, from sorted Parquet inputs): two overlapping files, row groups of 500 rows
/// (a dictionary each), nulls among the strings, ranges of 100 rows. The output is the
/// oracle's and the same bytes for any --threads; to IPC, the columns read plain, same data.
#[test]
fn dictionary_payload_strings_are_grouped_as_the_oracle_says() {
    let dir = tempfile::tempdir().unwrap();
    // 250 keys, 6000 rows; destinations from 8 values or null.
    let spec: Vec<Vec<Spec<usize>>> = (0..2)
        .map(|f| {
            (0..3000usize)
                .map(|i| {
                    let k = (i * 7 + f * 13) % 250;
                    (Some(k), Some((i % 5) as i64), (i % 11 != 3).then_some((i % 8) as u8), Some(i as f64))
                })
                .collect()
        })
        .collect();
    let files = make_files(spec);
    let inputs: Vec<String> = files
        .iter()
        .enumerate()
        .map(|(i, rows)| {
            let p = dir.path().join(format!("in{i}.parquet"));
            write_input(&p, rows, true, 500);
            p.display().to_string()
        })
        .collect();
    let config = |out: &str, threads: usize, compression| probe_group::Config {
        inputs: inputs.clone(),
        output: Some(dir.path().join(out)),
        keys: vec![],
        time: None,
        columns: None,
        sort: false,
        memory_limit: 1 << 30,
        temp_dir: dir.path().to_path_buf(),
        compression,
        ipc_compression: None,
        batch_bytes: 8 << 20,
        fan_in: 64,
        threads,
        range_rows: Some(100),
        sort_part_rows: None,
        sort_overlap_min_run: None,
        quiet: true,
    };
    let want = expected(&files);
    // zstd: the strings are written by probe_core's dictionary writer (core/src/dict_leaf.rs);
    // snappy: by arrow-rs's.
    use parquet::basic::{Compression, ZstdLevel};
    for codec in [Compression::SNAPPY, Compression::ZSTD(ZstdLevel::default())] {
        let mut first: Option<Vec<u8>> = None;
        for threads in [1, 2, 7] {
            let name = format!("t{threads}.parquet");
            let report = config(&name, threads, codec).run().unwrap();
            assert_eq!(report.dictionary_columns, 1, "dst_addr is read as a dictionary");
            let (out_schema, got) = read_file(&dir.path().join(&name));
            assert_schema(&out_schema);
            assert_groups_eq(&decode_groups(&got, 1), &want);
            let bytes = std::fs::read(dir.path().join(&name)).unwrap();
            match &first {
                None => first = Some(bytes),
                Some(f) => assert!(f == &bytes, "--threads {threads} wrote other bytes than --threads 1 ({codec})"),
            }
        }
    }
    let report = config("out.arrows", 2, Compression::SNAPPY).run().unwrap();
    assert_eq!(report.dictionary_columns, 0, "an IPC output reads the strings plain");
    let (_, got) = read_file(&dir.path().join("out.arrows"));
    assert_groups_eq(&decode_groups(&got, 1), &want);
}
