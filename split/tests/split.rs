//! In-process tests of `probe-split`: stability of the assignment, --tag against --out-dir,
//! empty splits, counts, and the errors.

mod common;

use std::path::Path;

use arrow::array::{Array, AsArray, BooleanArray, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::Int32Type;
use arrow::record_batch::RecordBatch;
use clap::Parser;
use probe_core::{Error, Result};
use probe_split::{Args, Mode, SplitFormat};

use common::{assignment, config, out_dir, probe_rows, read_all, schema, write};

const TT: &[(&str, f64)] = &[("train", 0.9), ("test", 0.1)];
const ABC: &[(&str, f64)] = &[("a", 0.5), ("b", 0.3), ("c", 0.2)];

fn tmp() -> Result<tempfile::TempDir> {
    tempfile::tempdir().map_err(|e| Error::io("tempdir", e))
}

fn err_of(r: Result<impl std::fmt::Debug>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

/// 3000 keys in batches of 100, in one IPC stream file.
fn input(dir: &Path, name: &str, keys: &[String]) -> Result<std::path::PathBuf> {
    let path = dir.join(name);
    let batches: Vec<RecordBatch> = keys.chunks(100).enumerate().map(|(i, k)| probe_rows(k, i * 100)).collect();
    write(&path, schema(), &batches)?;
    Ok(path)
}

#[test]
fn assignment_ignores_batch_size_and_order() -> Result<()> {
    let dir = tmp()?;
    let keys = common::keys(3000);
    let forward = input(dir.path(), "forward.arrows", &keys)?;
    let mut reversed_keys = keys.clone();
    reversed_keys.reverse();
    let (first, second) = reversed_keys.split_at(1234);
    let rev_a = input(dir.path(), "rev-a.arrows", first)?;
    let rev_b = dir.path().join("rev-b.parquet");
    write(&rev_b, schema(), &[probe_rows(second, 0)])?;

    let big = dir.path().join("big");
    config(&[&forward], out_dir(&big), ABC, 5).run()?;
    let mut small_batches = config(&[&forward], out_dir(&dir.path().join("small")), ABC, 5);
    small_batches.batch_bytes = 512;
    small_batches.run()?;
    let reordered = dir.path().join("reordered");
    let report = config(&[&rev_b, &rev_a], out_dir(&reordered), ABC, 5).run()?;

    let want = assignment(&big, &["a", "b", "c"], "arrows")?;
    assert_eq!(want.len(), 3000);
    assert_eq!(assignment(&dir.path().join("small"), &["a", "b", "c"], "arrows")?, want);
    assert_eq!(assignment(&reordered, &["a", "b", "c"], "arrows")?, want);
    // Shares near the ratios (3000 keys: within a few points).
    for (s, (_, r)) in report.splits.iter().zip(ABC) {
        let share = s.keys as f64 / 3000.0;
        assert!((share - r).abs() < 0.04, "{} has share {share}", s.name);
    }
    // Another seed, another assignment.
    let other = dir.path().join("other-seed");
    config(&[&forward], out_dir(&other), ABC, 6).run()?;
    assert_ne!(assignment(&other, &["a", "b", "c"], "arrows")?, want);
    Ok(())
}

#[test]
fn tag_output_is_the_union_of_the_split_files() -> Result<()> {
    let dir = tmp()?;
    let rows = input(dir.path(), "rows.arrows", &common::keys(1000))?;
    let files = dir.path().join("files");
    let files_report = config(&[&rows], out_dir(&files), TT, 0).run()?;
    let tagged = dir.path().join("tagged.arrows");
    let tag_report = config(&[&rows], Mode::Tag { output: Some(tagged.clone()) }, TT, 0).run()?;
    assert_eq!(files_report.keys, tag_report.keys);
    assert_eq!(
        files_report.splits.iter().map(|s| s.keys).collect::<Vec<_>>(),
        tag_report.splits.iter().map(|s| s.keys).collect::<Vec<_>>()
    );

    let all = read_all(&[tagged])?;
    assert_eq!(all.schema().fields().last().map(|f| f.name().as_str()), Some("split"));
    let tag = all.column(all.num_columns() - 1).as_dictionary::<Int32Type>();
    let names = tag.values().as_string::<i32>();
    let untagged = all.project(&(0..all.num_columns() - 1).collect::<Vec<_>>()).map_err(|e| Error::arrow("test", e))?;
    let mut total = 0;
    for name in ["train", "test"] {
        let mask: BooleanArray = tag.keys().values().iter().map(|&k| Some(names.value(k as usize) == name)).collect();
        let want = filter_record_batch(&untagged, &mask).map_err(|e| Error::arrow("test", e))?;
        let got = read_all(&[files.join(format!("{name}.arrows"))])?;
        assert_eq!(got.columns(), want.columns(), "split {name}");
        total += got.num_rows();
    }
    assert_eq!(total, 1000);
    Ok(())
}

#[test]
fn parquet_files_hold_the_same_rows() -> Result<()> {
    let dir = tmp()?;
    let rows = input(dir.path(), "rows.arrows", &common::keys(500))?;
    config(&[&rows], out_dir(&dir.path().join("ipc")), TT, 9).run()?;
    let pq = dir.path().join("pq");
    let mut c = config(&[&rows], Mode::OutDir { dir: pq.clone(), format: SplitFormat::Parquet }, TT, 9);
    c.row_group_bytes = 4096; // many row groups
    c.batch_bytes = 4096;
    c.run()?;
    for name in ["train", "test"] {
        let a = read_all(&[dir.path().join("ipc").join(format!("{name}.arrows"))])?;
        let b = read_all(&[pq.join(format!("{name}.parquet"))])?;
        assert_eq!(a.columns(), b.columns(), "{name}");
    }
    let meta = parquet::file::reader::SerializedFileReader::new(
        std::fs::File::open(pq.join("train.parquet")).map_err(|e| Error::io("train.parquet", e))?,
    )
    .map_err(|e| Error::parquet("test", e))?;
    use parquet::file::reader::FileReader;
    assert!(meta.metadata().num_row_groups() > 1, "row groups were not closed by size");
    Ok(())
}

#[test]
fn every_split_file_is_written_even_when_empty() -> Result<()> {
    let dir = tmp()?;
    let one = input(dir.path(), "one.arrows", &["192.0.2.1".to_string()])?;
    let out = dir.path().join("work");
    let report = config(&[&one], out_dir(&out), ABC, 0).run()?;
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .map_err(|e| Error::io(&out, e))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["a.arrows", "b.arrows", "c.arrows"]);
    // "192.0.2.1" with seed 0: u = 0.8357 -> c (golden_xxhash.py).
    assert_eq!(report.splits.iter().map(|s| s.keys).collect::<Vec<_>>(), [0, 0, 1]);
    for name in ["a", "b"] {
        let b = read_all(&[out.join(format!("{name}.arrows"))])?;
        assert_eq!(b.num_rows(), 0);
        assert_eq!(b.schema(), schema());
    }
    // Zero input rows: still every file, with the schema.
    let empty = dir.path().join("empty.arrows");
    write(&empty, schema(), &[])?;
    let out = dir.path().join("work-empty");
    let report = config(&[&empty], Mode::OutDir { dir: out.clone(), format: SplitFormat::Parquet }, TT, 0).run()?;
    assert_eq!(report.keys, 0);
    assert_eq!(report.lines(), ["train: keys 0 (-), measurements 0 (-)", "test: keys 0 (-), measurements 0 (-)"]);
    for name in ["train", "test"] {
        assert_eq!(read_all(&[out.join(format!("{name}.parquet"))])?.num_rows(), 0);
    }
    Ok(())
}

#[test]
fn counts_keys_and_measurements() -> Result<()> {
    let dir = tmp()?;
    let keys = common::keys(200);
    let rows = input(dir.path(), "rows.arrows", &keys)?;
    let report = config(&[&rows], out_dir(&dir.path().join("o")), TT, 0).run()?;
    assert_eq!(report.keys, 200);
    // key i has 1 + i % 5 measurements.
    assert_eq!(report.measurements, (0..200u64).map(|i| 1 + i % 5).sum::<u64>());
    assert_eq!(report.splits.iter().map(|s| s.keys).sum::<u64>(), 200);
    assert_eq!(report.splits.iter().map(|s| s.measurements).sum::<u64>(), report.measurements);
    for s in &report.splits {
        let b = read_all(&[dir.path().join("o").join(format!("{}.arrows", s.name))])?;
        assert_eq!(b.num_rows() as u64, s.keys);
        assert_eq!(b.column(1).as_list::<i32>().values().len() as u64, s.measurements);
    }
    let line = &report.lines()[0];
    assert!(line.starts_with("train: keys ") && line.contains("%), measurements "), "{line}");
    Ok(())
}

#[test]
fn composite_key_hashes_both_columns() -> Result<()> {
    let dir = tmp()?;
    let a = input(dir.path(), "rows.arrows", &common::keys(300))?;
    // The composite (src_addr, note) differs from src_addr alone.
    let single = dir.path().join("single");
    config(&[&a], out_dir(&single), ABC, 0).run()?;
    let composite = dir.path().join("composite");
    let mut c = config(&[&a], out_dir(&composite), ABC, 0);
    c.keys = vec!["src_addr".into(), "note".into()];
    c.run()?;
    assert_ne!(assignment(&single, &["a", "b", "c"], "arrows")?, assignment(&composite, &["a", "b", "c"], "arrows")?);
    Ok(())
}

#[test]
fn data_errors_name_the_file_and_column() -> Result<()> {
    let dir = tmp()?;
    let rows = input(dir.path(), "rows.arrows", &common::keys(10))?;
    let o = out_dir(&dir.path().join("o"));

    let mut c = config(&[&rows], o.clone(), TT, 0);
    c.keys = vec!["dst_addr".into()];
    let e = err_of(c.run());
    assert!(e.contains("rows.arrows") && e.contains("no column `dst_addr`"), "{e}");

    let mut c = config(&[&rows], o.clone(), TT, 0);
    c.measurements = "note".into();
    let e = err_of(c.run());
    assert!(e.contains("`note` has type Int32, not a list"), "{e}");

    let mut c = config(&[&rows], o.clone(), TT, 0);
    c.measurements = "hops".into();
    let e = err_of(c.run());
    assert!(e.contains("no column `hops`") && e.contains("--measurements"), "{e}");

    let mut c = config(&[&rows], o.clone(), TT, 0);
    c.keys = vec!["measurements".into()];
    let e = err_of(c.run());
    assert!(e.contains("key column `measurements`"), "{e}");

    // A tagged output cannot be tagged again.
    let tagged = dir.path().join("tagged.arrows");
    config(&[&rows], Mode::Tag { output: Some(tagged.clone()) }, TT, 0).run()?;
    let e = err_of(config(&[&tagged], Mode::Tag { output: Some(dir.path().join("again.arrows")) }, TT, 0).run());
    assert!(e.contains("already has a `split` column"), "{e}");

    // Inputs with different schemas: the second is named, nothing is written.
    let other = dir.path().join("other.arrows");
    let batch = RecordBatch::try_from_iter([("src_addr", std::sync::Arc::new(StringArray::from(vec!["x"])) as _)])
        .map_err(|e| Error::arrow("test", e))?;
    write(&other, batch.schema(), &[batch])?;
    let out = dir.path().join("mismatch");
    let e = err_of(config(&[&rows, &other], out_dir(&out), TT, 0).run());
    assert!(e.contains("other.arrows: no column `measurements`"), "{e}");
    assert!(!out.exists());
    let e = err_of(config(&[&other, &rows], out_dir(&out), TT, 0).run());
    assert!(e.contains("rows.arrows: column `measurements` is not in"), "{e}");
    Ok(())
}

fn parse(args: &[&str]) -> std::result::Result<Result<probe_split::Config>, clap::Error> {
    Args::try_parse_from(std::iter::once("probe-split").chain(args.iter().copied())).map(Args::into_config)
}

#[test]
fn cli_checks() {
    let cfg = |args: &[&str]| match parse(args) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!("{args:?}: {e}"),
        Err(e) => panic!("{args:?}: {e}"),
    };
    let c = cfg(&["--out-dir", "w"]);
    assert_eq!(
        c.splits.iter().map(|s| (s.name.as_str(), s.ratio)).collect::<Vec<_>>(),
        [("train", 0.9), ("test", 0.1)]
    );
    assert_eq!(c.seed, 0);
    assert!(c.keys.is_empty(), "no --key: the input's recorded key, else src_addr");
    assert_eq!(c.mode, Mode::OutDir { dir: "w".into(), format: SplitFormat::Arrows });
    let c = cfg(&["--out-dir", "w", "--format", "parquet", "-k", "a,b", "--seed", "18446744073709551615"]);
    assert_eq!(c.mode, Mode::OutDir { dir: "w".into(), format: SplitFormat::Parquet });
    assert_eq!(c.keys, ["a", "b"]);
    assert_eq!(c.seed, u64::MAX);
    let c = cfg(&["--tag", "-o", "t.parquet", "--ratios", "x=0.25,y=0.25,z=0.5"]);
    assert_eq!(c.mode, Mode::Tag { output: Some("t.parquet".into()) });
    assert_eq!(c.splits.len(), 3);

    // Usage errors (clap, exit 2): neither or both modes.
    assert!(parse(&[]).is_err());
    assert!(parse(&["--out-dir", "w", "--tag"]).is_err());
    assert!(parse(&["--out-dir", "w", "--seed", "-1"]).is_err());
    assert!(parse(&["--out-dir", "w", "--compression", "brotli"]).is_err());
    // Usage errors found after parsing (exit 2 too).
    let config_err = |args: &[&str]| match parse(args) {
        Ok(Err(e)) => e.to_string(),
        other => panic!("{args:?}: expected a config error, got {other:?}"),
    };
    assert!(config_err(&["--out-dir", "w", "--ratios", "train=0.9,test=0.2"]).contains("sum to"));
    assert!(config_err(&["--out-dir", "w", "--ratios", "a=0.5,a=0.5"]).contains("named twice"));
    assert!(config_err(&["--out-dir", "w", "--ratios", "a=1,b=0"]).contains("above 0"));
    assert!(config_err(&["--out-dir", "w", "-o", "x.arrows"]).contains("-o is for --tag"));
    assert!(config_err(&["--tag", "-o", "x.arrows", "--format", "parquet"]).contains("--format is for --out-dir"));
    assert!(config_err(&["--out-dir", "w", "-k", "a,a"]).contains("given more than once"));
}
