//! In-process tests of `probe-merge`: mixed formats, row order, rolling part files and the
//! manifest, schema mismatches, empty inputs, cleanup after a failure, and the flags.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Array, Int64Array, ListArray, StringArray};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Float32Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use clap::Parser;
use parquet::file::reader::{FileReader, SerializedFileReader};
use probe_core::output::parse_compression;
use probe_core::{Error, Result};
use probe_merge::manifest::Manifest;
use probe_merge::{Args, Config, Target};

fn schema(nullable_key: bool) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("src_addr", DataType::Utf8, nullable_key),
        Field::new("window", DataType::Int64, false),
        Field::new("rtt_ms", DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true))), false),
    ]))
}

/// `n` training rows starting at `start`, with pseudo-random payload (so zstd cannot make
/// them vanish).
fn rows(start: u64, n: usize) -> RecordBatch {
    let mut x = start.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 33) as f32 / 1e6
    };
    let keys: StringArray =
        (0..n).map(|i| Some(format!("10.0.{}.{}", (start as usize + i) / 256, (start as usize + i) % 256))).collect();
    let windows = Int64Array::from_iter_values((0..n).map(|i| start as i64 + i as i64));
    let lists = ListArray::from_iter_primitive::<Float32Type, _, _>(
        (0..n).map(|i| Some((0..(8 + i % 17)).map(|_| Some(next())).collect::<Vec<_>>())),
    );
    RecordBatch::try_new(schema(false), vec![Arc::new(keys), Arc::new(windows), Arc::new(lists) as ArrayRef])
        .expect("test batch")
}

use probe_core::testing::read_all;

fn write(path: &Path, schema: SchemaRef, batches: &[RecordBatch]) -> Result<PathBuf> {
    probe_core::testing::write_file(path, schema, batches)?;
    Ok(path.to_path_buf())
}

fn config(inputs: &[&Path], target: Target) -> Config {
    Config {
        inputs: inputs.iter().map(|p| p.display().to_string()).collect(),
        target,
        row_group_bytes: 128 << 20,
        compression: parse_compression("zstd").expect("zstd"),
        batch_bytes: 8 << 20,
        quiet: true,
        threads: 0,
    }
}

fn dir_target(dir: &Path, max: u64) -> Target {
    Target::Dir { dir: dir.to_path_buf(), max_file_bytes: max }
}

fn tmp() -> Result<tempfile::TempDir> {
    tempfile::tempdir().map_err(|e| Error::io("tempdir", e))
}

fn err_of<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Three shards in three formats: Parquet, IPC stream, IPC file.
fn shards(dir: &Path) -> Result<(Vec<PathBuf>, RecordBatch)> {
    let a = write(&dir.join("a.parquet"), schema(false), &[rows(0, 300), rows(300, 200)])?;
    let b = write(&dir.join("b.arrows"), schema(false), &[rows(500, 250)])?;
    let c = write(&dir.join("c.arrow"), schema(false), &[rows(750, 100), rows(850, 150)])?;
    let want =
        concat_batches(&schema(false), &[rows(0, 300), rows(300, 200), rows(500, 250), rows(750, 100), rows(850, 150)])
            .map_err(|e| Error::arrow("concat", e))?;
    Ok((vec![a, b, c], want))
}

#[test]
fn mixed_formats_merge_in_order() -> Result<()> {
    let dir = tmp()?;
    let (inputs, want) = shards(dir.path())?;
    let out = dir.path().join("out").join("all.parquet");
    std::fs::create_dir_all(dir.path().join("out")).map_err(|e| Error::io("out", e))?;
    // Given in reverse: the order given is the output order.
    let report = config(&[&inputs[2], &inputs[1], &inputs[0]], Target::File(out.clone())).run()?;
    assert_eq!(report.rows, 1000);
    assert_eq!(report.inputs.iter().map(|(_, r)| *r).collect::<Vec<_>>(), [250, 250, 500]);
    assert_eq!(report.files.len(), 1);
    let got = read_all(&[&out])?;
    let want_rev = concat_batches(&schema(false), &[want.slice(750, 250), want.slice(500, 250), want.slice(0, 500)])
        .map_err(|e| Error::arrow("concat", e))?;
    assert_eq!(got.columns(), want_rev.columns());
    assert_eq!(listing(&dir.path().join("out")), ["all.parquet"]);

    // A directory: files in name order, `_`/`.` names skipped. Subfolders are inputs too
    // (hive-style tables), so the first output moves out of the way.
    std::fs::write(dir.path().join("_SUCCESS"), b"").map_err(|e| Error::io("_SUCCESS", e))?;
    std::fs::remove_dir_all(dir.path().join("out")).map_err(|e| Error::io("out", e))?;
    let elsewhere = tmp()?;
    let out2 = elsewhere.path().join("dir.parquet");
    config(&[dir.path()], Target::File(out2.clone())).run()?;
    assert_eq!(read_all(&[&out2])?.columns(), want.columns());
    Ok(())
}

#[test]
fn small_max_file_size_rolls_parts_with_a_true_manifest() -> Result<()> {
    let dir = tmp()?;
    let (inputs, want) = shards(dir.path())?;
    let out = dir.path().join("parts");
    let max = 24 << 10;
    let mut cfg = config(&[&inputs[0], &inputs[1], &inputs[2]], dir_target(&out, max));
    cfg.row_group_bytes = 8 << 10;
    let report = cfg.run()?;
    assert!(report.files.len() >= 3, "only {} files", report.files.len());

    let m: Manifest =
        serde_json::from_reader(File::open(out.join("_manifest.json")).map_err(|e| Error::io("manifest", e))?)
            .map_err(|e| Error::data(e.to_string()))?;
    let names: Vec<String> = (0..m.files.len()).map(|i| format!("part-{i:05}.parquet")).collect();
    assert_eq!(m.files.iter().map(|f| f.path.clone()).collect::<Vec<_>>(), names);
    let mut expected_listing = names.clone();
    expected_listing.insert(0, "_manifest.json".into());
    assert_eq!(listing(&out), expected_listing);
    assert_eq!(m.rows, 1000);
    assert_eq!(m.files.iter().map(|f| f.rows).sum::<u64>(), 1000);
    assert_eq!(m.bytes, m.files.iter().map(|f| f.bytes).sum::<u64>());
    assert_eq!(m.inputs.iter().map(|i| i.rows).collect::<Vec<_>>(), [500, 250, 250]);
    assert_eq!(m.inputs[1].path, inputs[1].display().to_string());
    assert_eq!(m.schema.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["src_addr", "window", "rtt_ms"]);
    assert_eq!(m.schema[1].data_type, "Int64");
    assert!(!m.schema[1].nullable);
    for f in &m.files {
        let len = std::fs::metadata(out.join(&f.path)).map_err(|e| Error::io(&f.path, e))?.len();
        assert_eq!(len, f.bytes, "{}", f.path);
        // Sized by estimate (encoded size so far + the footer a closed part added): near the
        // target, never far past it.
        assert!(len <= max + max / 2, "{} has {len} bytes, max {max}", f.path);
        let r = SerializedFileReader::new(File::open(out.join(&f.path)).map_err(|e| Error::io(&f.path, e))?)
            .map_err(|e| Error::parquet("test", e))?;
        assert_eq!(r.metadata().file_metadata().num_rows() as u64, f.rows);
    }
    assert!(m.files[0].bytes >= max / 3, "first part only {} bytes", m.files[0].bytes);
    // The parts read back (the manifest is skipped) are the inputs, in order.
    assert_eq!(read_all(&[&out])?.columns(), want.columns());
    assert_eq!(report.bytes, m.bytes);
    Ok(())
}

/// Parts of list rows (what probe-batch writes) come out near --max-file-size from the first:
/// a slice of a list column was sized with every row's values, so the first part closed at a
/// twentieth of the size.
#[test]
fn parts_of_list_rows_are_near_the_size_from_the_first() -> Result<()> {
    let dir = tmp()?;
    let n = 20_000;
    let mut x: u64 = 1;
    let mut next = move || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 40) as f32 / 1000.0
    };
    let lists = ListArray::from_iter_primitive::<Float32Type, _, _>(
        (0..n).map(|i| Some((0..(10 + i % 40)).map(|_| Some(next())).collect::<Vec<_>>())),
    );
    let schema = Arc::new(Schema::new(vec![
        Field::new("src_addr", DataType::Utf8, false),
        Field::new("rtt_ms", arrow::array::Array::data_type(&lists).clone(), true),
    ]));
    let keys = StringArray::from((0..n).map(|i| format!("10.0.{}.{}", i / 256, i % 256)).collect::<Vec<_>>());
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(keys) as ArrayRef, Arc::new(lists)])
        .map_err(|e| Error::arrow("test", e))?;
    // One input batch of all rows, so parts are cut from slices of it.
    let input = write(&dir.path().join("rows.parquet"), schema, &[batch])?;
    let out = dir.path().join("parts");
    let max = 100 << 10;
    let mut cfg = config(&[&input], dir_target(&out, max));
    cfg.batch_bytes = 64 << 20;
    let report = cfg.run()?;
    assert!(report.files.len() >= 5, "only {} files", report.files.len());
    let (last, full) = report.files.split_last().expect("parts");
    for f in full {
        assert!(
            f.bytes >= max * 9 / 10 && f.bytes <= max * 21 / 20,
            "{}: {} bytes for {max}",
            f.path.display(),
            f.bytes
        );
    }
    assert!(last.bytes <= max * 21 / 20);
    assert_eq!(report.files.iter().map(|f| f.rows).sum::<u64>(), n as u64);
    Ok(())
}

#[test]
fn row_groups_close_by_size() -> Result<()> {
    let dir = tmp()?;
    let (inputs, _) = shards(dir.path())?;
    let out = dir.path().join("rg.parquet");
    let mut cfg = config(&[&inputs[0]], Target::File(out.clone()));
    cfg.row_group_bytes = 4 << 10;
    cfg.batch_bytes = 4 << 10;
    cfg.run()?;
    let r = SerializedFileReader::new(File::open(&out).map_err(|e| Error::io(&out, e))?)
        .map_err(|e| Error::parquet("t", e))?;
    assert!(r.metadata().num_row_groups() > 3, "{} row groups", r.metadata().num_row_groups());
    // Default: one row group for this small input, compressed with zstd.
    let out = dir.path().join("one.parquet");
    config(&[&inputs[0]], Target::File(out.clone())).run()?;
    let r = SerializedFileReader::new(File::open(&out).map_err(|e| Error::io(&out, e))?)
        .map_err(|e| Error::parquet("t", e))?;
    assert_eq!(r.metadata().num_row_groups(), 1);
    assert_eq!(
        r.metadata().row_group(0).column(0).compression(),
        parquet::basic::Compression::ZSTD(Default::default())
    );
    Ok(())
}

#[test]
fn schema_mismatch_names_file_and_column_and_writes_nothing() -> Result<()> {
    let dir = tmp()?;
    let (inputs, _) = shards(dir.path())?;
    let other_schema = Arc::new(Schema::new(vec![
        Field::new("src_addr", DataType::Utf8, false),
        Field::new("window", DataType::Int64, false),
        Field::new("rtt_ms", DataType::Float32, false),
    ]));
    let bad = RecordBatch::try_new(
        other_schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["x"])) as ArrayRef,
            Arc::new(Int64Array::from(vec![1])),
            Arc::new(Float32Array::from(vec![1.0])),
        ],
    )
    .map_err(|e| Error::arrow("t", e))?;
    let odd = write(&dir.path().join("odd.arrows"), other_schema, &[bad])?;
    let out = dir.path().join("never");
    let e = err_of(config(&[&inputs[0], &inputs[1], &odd, &inputs[2]], dir_target(&out, 1 << 30)).run());
    assert!(
        e.starts_with(&format!(
            "{}: column `rtt_ms` has type Float32, but {} has List(",
            odd.display(),
            inputs[0].display()
        )),
        "{e}"
    );
    assert!(e.ends_with("all inputs must share one schema"), "{e}");
    assert!(!out.exists(), "out-dir was created");
    let file = dir.path().join("never.parquet");
    err_of(config(&[&inputs[0], &odd], Target::File(file.clone())).run());
    assert!(!file.exists());

    // An extra column is a difference too, whichever side it is on.
    let extra_schema = Arc::new(Schema::new(
        schema(false)
            .fields()
            .iter()
            .cloned()
            .chain([Arc::new(Field::new("ttl", DataType::Int64, true))])
            .collect::<Vec<_>>(),
    ));
    let base = rows(0, 3);
    let mut cols = base.columns().to_vec();
    cols.push(Arc::new(Int64Array::from(vec![1, 2, 3])));
    let extra = RecordBatch::try_new(extra_schema.clone(), cols).map_err(|e| Error::arrow("t", e))?;
    let extra = write(&dir.path().join("extra.arrows"), extra_schema, &[extra])?;
    let e = err_of(config(&[&inputs[1], &extra], dir_target(&out, 1 << 30)).run());
    assert!(e.contains("extra.arrows: column `ttl` is not in"), "{e}");
    let e = err_of(config(&[&extra, &inputs[1]], dir_target(&out, 1 << 30)).run());
    assert!(e.contains("b.arrows: no column `ttl`, which"), "{e}");
    assert!(!out.exists());
    Ok(())
}

#[test]
fn nullability_may_differ() -> Result<()> {
    let dir = tmp()?;
    let strict = write(&dir.path().join("a.arrows"), schema(false), &[rows(0, 10)])?;
    let loose_batch =
        RecordBatch::try_new(schema(true), rows(10, 10).columns().to_vec()).map_err(|e| Error::arrow("t", e))?;
    let loose = write(&dir.path().join("b.parquet"), schema(true), &[loose_batch])?;
    let out = dir.path().join("o.parquet");
    assert_eq!(config(&[&strict, &loose], Target::File(out.clone())).run()?.rows, 20);
    let got = read_all(&[&out])?;
    assert!(got.schema().field(0).is_nullable());
    assert!(!got.schema().field(1).is_nullable());
    Ok(())
}

#[test]
fn empty_inputs() -> Result<()> {
    let dir = tmp()?;
    let e1 = write(&dir.path().join("e1.arrows"), schema(false), &[])?;
    let e2 = write(&dir.path().join("e2.parquet"), schema(false), &[])?;
    let full = write(&dir.path().join("full.arrows"), schema(false), &[rows(0, 40)])?;
    let out = dir.path().join("o");
    let report = config(&[&e1, &full, &e2], dir_target(&out, 1 << 30)).run()?;
    assert_eq!(report.rows, 40);
    assert_eq!(report.inputs.iter().map(|(_, r)| *r).collect::<Vec<_>>(), [0, 40, 0]);
    assert_eq!(read_all(&[&out])?.columns(), rows(0, 40).columns());

    // No rows at all: one empty part that still carries the schema.
    let out = dir.path().join("none");
    let report = config(&[&e1, &e2], dir_target(&out, 1 << 30)).run()?;
    assert_eq!(report.rows, 0);
    assert_eq!(listing(&out), ["_manifest.json", "part-00000.parquet"]);
    let got = read_all(&[&out.join("part-00000.parquet")])?;
    assert_eq!(got.num_rows(), 0);
    assert_eq!(got.schema(), schema(false));

    // A 0-byte file is a failed upstream stage, named.
    let zero = dir.path().join("zero.arrows");
    std::fs::write(&zero, b"").map_err(|e| Error::io(&zero, e))?;
    let e = err_of(config(&[&full, &zero], dir_target(&dir.path().join("z"), 1 << 30)).run());
    assert!(e.contains("zero.arrows: empty file"), "{e}");
    Ok(())
}

#[test]
fn a_failed_run_removes_the_parts_it_wrote() -> Result<()> {
    let dir = tmp()?;
    let good = write(&dir.path().join("a.arrows"), schema(false), &[rows(0, 300), rows(300, 300)])?;
    let long = write(&dir.path().join("b.arrows"), schema(false), &[rows(600, 300), rows(900, 300)])?;
    // Cut the stream in its second batch: the schema reads, the data fails.
    let bytes = std::fs::read(&long).map_err(|e| Error::io(&long, e))?;
    let cut = dir.path().join("cut.arrows");
    std::fs::write(&cut, &bytes[..bytes.len() - 2000]).map_err(|e| Error::io(&cut, e))?;
    let out = dir.path().join("o");
    let mut cfg = config(&[&good, &cut], dir_target(&out, 16 << 10));
    cfg.batch_bytes = 8 << 10;
    let e = err_of(cfg.run());
    assert!(e.contains("cut.arrows"), "{e}");
    assert_eq!(listing(&out), Vec::<String>::new(), "parts left behind");
    Ok(())
}

#[test]
fn refuses_an_out_dir_with_parts() -> Result<()> {
    let dir = tmp()?;
    let (inputs, _) = shards(dir.path())?;
    let out = dir.path().join("o");
    config(&[&inputs[1]], dir_target(&out, 1 << 30)).run()?;
    let e = err_of(config(&[&inputs[1]], dir_target(&out, 1 << 30)).run());
    assert!(
        e.contains("out-dir not empty") && (e.contains("part-00000.parquet") || e.contains("_manifest.json")),
        "{e}"
    );
    // The manifest is skipped when the directory is an input again.
    let again = dir.path().join("again.parquet");
    assert_eq!(config(&[&out], Target::File(again)).run()?.rows, 250);
    Ok(())
}

fn parse(args: &[&str]) -> std::result::Result<Result<Config>, clap::Error> {
    Args::try_parse_from(std::iter::once("probe-merge").chain(args.iter().copied())).map(Args::into_config)
}

#[test]
fn cli_checks() {
    let cfg = |args: &[&str]| match parse(args) {
        Ok(Ok(c)) => c,
        other => panic!("{args:?}: {other:?}"),
    };
    assert_eq!(cfg(&["x", "--out-dir", "d"]).target, Target::Dir { dir: "d".into(), max_file_bytes: 1 << 30 });
    assert_eq!(
        cfg(&["x", "--out-dir", "d", "--max-file-size", "2MiB"]).target,
        Target::Dir { dir: "d".into(), max_file_bytes: 2 << 20 }
    );
    let c = cfg(&["x", "-o", "f.parquet", "--row-group-size", "1MiB", "--compression", "snappy"]);
    assert_eq!(c.target, Target::File("f.parquet".into()));
    assert_eq!(c.row_group_bytes, 1 << 20);
    assert_eq!(c.compression, parquet::basic::Compression::SNAPPY);
    assert_eq!(cfg(&["-o", "f.parquet"]).row_group_bytes, 64 << 20);

    assert!(parse(&["x"]).is_err());
    assert!(parse(&["x", "-o", "f.parquet", "--out-dir", "d"]).is_err());
    let config_err = |args: &[&str]| match parse(args) {
        Ok(Err(e)) => e.to_string(),
        other => panic!("{args:?}: expected a config error, got {other:?}"),
    };
    assert!(config_err(&["x", "-o", "f.arrows"]).contains("writes Parquet"));
    assert!(
        config_err(&["x", "-o", "f.parquet", "--max-file-size", "1GiB"]).contains("--max-file-size is for --out-dir")
    );
    assert!(parse(&["x", "--out-dir", "d", "--compression", "zip"]).is_err(), "clap rejects it: exit 2");
    assert!(config_err(&["x", "--out-dir", "d", "--max-file-size", "0"]).contains("above 0"));
}
