//! `--threads N` on every stage: the output is byte-identical for N = 1, 2 and 7, and (for
//! `probe-group`) equal to the oracle, on inputs that put key boundaries, ties, nulls and order
//! violations at the edges of batches, row groups and files. A violation is reported with the
//! same message (file, row, keys) whatever N.
#![allow(clippy::unwrap_used, clippy::type_complexity)] // tests: a panic is the failure report

use std::path::Path;

use arrow::record_batch::RecordBatch;
use proptest::prelude::*;

use probe_tests::harness::{decode_ipc, read_file, run, write_parquet, Output};
use probe_tests::measurements::{batch, schema, sorted_files, vals, Row, Spec};
use probe_tests::oracle::{self, assert_groups_eq, decode_groups, Val};

const THREADS: [&str; 3] = ["1", "2", "7"];

fn key_of(r: &Row) -> Val {
    r.0.clone().map_or(Val::Null, Val::S)
}

fn time_of(r: &Row) -> Val {
    r.1.map_or(Val::Null, Val::I)
}

/// Sorted files from (key, time, dst, rtt) specs: few keys and times, so runs of one key cross
/// batches and row groups and ties are common; some keys and times are null.
fn make_files(spec: Vec<Vec<Spec<u8>>>) -> Vec<Vec<Row>> {
    sorted_files(spec, |k| format!("10.0.0.{k}"))
}

fn row_strategy() -> impl Strategy<Value = (Option<u8>, Option<i64>, Option<u8>, Option<f64>)> {
    (
        prop::option::weighted(0.9, 0u8..6),
        prop::option::weighted(0.9, 0i64..5),
        prop::option::weighted(0.8, 0u8..4),
        prop::option::weighted(0.8, -1.0f64..100.0),
    )
}

/// Write each file as Parquet with `chunk`-row row groups; returns the paths.
fn write_inputs(dir: &Path, files: &[Vec<Row>], chunk: usize) -> Vec<String> {
    files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let p = dir.join(format!("in{i}.parquet"));
            let batches: Vec<RecordBatch> = f.chunks(chunk.max(1)).map(batch).collect();
            write_parquet(&p, schema(), &batches, chunk);
            p.display().to_string()
        })
        .collect()
}

/// How `write_inputs_with` writes statistics: the page index (one page per row group, or pages
/// of 2 rows), row-group statistics only, or none.
#[derive(Debug, Clone, Copy)]
enum Stats {
    Pages,
    SmallPages,
    RowGroups,
    None,
}

/// Like `write_inputs`, with `stats` deciding what key ranges can be planned from.
fn write_inputs_with(dir: &Path, files: &[Vec<Row>], chunk: usize, stats: Stats) -> Vec<String> {
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::{EnabledStatistics, WriterProperties};
    let mut props = WriterProperties::builder().set_max_row_group_row_count(Some(chunk.max(1)));
    props = match stats {
        Stats::Pages => props,
        Stats::SmallPages => props.set_data_page_row_count_limit(2).set_write_batch_size(1),
        Stats::RowGroups => props.set_statistics_enabled(EnabledStatistics::Chunk),
        Stats::None => props.set_statistics_enabled(EnabledStatistics::None),
    };
    let props = props.build();
    files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let p = dir.join(format!("in{i}.parquet"));
            let mut w =
                ArrowWriter::try_new(std::fs::File::create(&p).unwrap(), schema(), Some(props.clone())).unwrap();
            for b in f.chunks(chunk.max(1)).map(batch) {
                w.write(&b).unwrap();
            }
            w.close().unwrap();
            p.display().to_string()
        })
        .collect()
}

/// Run `stage` with `args` and `--threads N` for every N; assert the same status, stdout and
/// (`-q`) stderr each time, and return the 1-thread run.
fn same_for_any_threads(stage: &str, args: &[String]) -> Output {
    let runs: Vec<Output> = THREADS
        .iter()
        .map(|n| {
            let mut a = args.to_vec();
            a.extend(["--threads".to_string(), n.to_string()]);
            run(stage, &a, None)
        })
        .collect();
    for r in &runs[1..] {
        assert_eq!(r.code(), runs[0].code(), "exit status differs: {} vs {}\n{}", r.cmd, runs[0].cmd, r.stderr);
        assert_eq!(r.stderr, runs[0].stderr, "stderr differs: {} vs {}", r.cmd, runs[0].cmd);
        assert!(r.stdout == runs[0].stdout, "stdout differs: {} vs {}", r.cmd, runs[0].cmd);
    }
    runs.into_iter().next().unwrap()
}

/// Run `stage` writing `out_name` (a file or directory under `dir`) for every N, and assert
/// every file written is byte-identical to the 1-thread one.
fn same_files_for_any_threads(stage: &str, dir: &Path, args: &[String], out_flag: &str, out_name: &str) {
    let mut first: Option<Vec<(String, Vec<u8>)>> = None;
    for n in THREADS {
        let target = dir.join(format!("t{n}-{out_name}"));
        let mut a = args.to_vec();
        a.extend([out_flag.to_string(), target.display().to_string(), "--threads".into(), n.into()]);
        run(stage, &a, None).assert_ok();
        let files: Vec<(String, Vec<u8>)> = if target.is_dir() {
            let mut names: Vec<String> = std::fs::read_dir(&target)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names.into_iter().map(|f| (f.clone(), std::fs::read(target.join(&f)).unwrap())).collect()
        } else {
            vec![(String::new(), std::fs::read(&target).unwrap())]
        };
        match &first {
            None => first = Some(files),
            Some(f) => {
                assert_eq!(f.len(), files.len(), "{stage} --threads {n}: a different number of files");
                for ((na, a), (nb, b)) in f.iter().zip(&files) {
                    assert_eq!(na, nb);
                    assert!(a == b, "{stage} --threads {n}: {na} differs from --threads 1");
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// probe-group, sorted (several overlapping files) and --sort, IPC and Parquet out: the same
    /// bytes for any N, equal to the oracle; with a violation (two rows swapped, anywhere,
    /// often at a batch or row-group edge) the same error line for any N.
    #[test]
    fn group_is_the_same_for_any_thread_count(
        spec in prop::collection::vec(prop::collection::vec(row_strategy(), 0..40), 1..4),
        chunk in 1usize..9,
        batch_bytes in prop::sample::select(vec![64u64, 300, 8 << 20]),
        swap in prop::option::weighted(0.3, (0usize..3, 0usize..40)),
        range_rows in prop::sample::select(vec![None, Some(1u64), Some(2), Some(5), Some(17)]),
        part_rows in prop::sample::select(vec![None, Some(1usize), Some(2), Some(7)]),
        stats in prop::sample::select(vec![Stats::Pages, Stats::SmallPages, Stats::SmallPages, Stats::RowGroups, Stats::None]),
        sliced in prop::bool::weighted(0.4),
        overlap in prop::bool::weighted(0.5),
    ) {
        let dir = tempfile::tempdir().unwrap();
        // Overlapping sorted files (each holds any key), or one sorted sequence cut into files
        // (each a slice of the key space, as a sorted export writes them): a key range then
        // reads only the files its keys are in, and a violation at the start of a later file
        // is found by the range that file's first row is in.
        let mut files = if sliced {
            let lens: Vec<usize> = spec.iter().map(Vec::len).collect();
            let mut all = make_files(vec![spec.concat()]).remove(0).into_iter();
            lens.iter().map(|&n| all.by_ref().take(n).collect()).collect()
        } else {
            make_files(spec)
        };
        let mut violated = false;
        if let Some((f, at)) = swap {
            let n = files.len();
            let f = &mut files[f % n];
            if f.len() >= 2 {
                let at = at % (f.len() - 1);
                let before = (key_of(&f[at]), time_of(&f[at]));
                f.swap(at, at + 1);
                violated = before != (key_of(&f[at]), time_of(&f[at]));
            }
        }
        let inputs = write_inputs_with(dir.path(), &files, chunk, stats);
        let mut args = vec!["--batch-size".to_string(), batch_bytes.to_string(), "-q".into()];
        args.extend(inputs.iter().cloned());
        if let Some(r) = range_rows {
            // Key ranges of a few rows: range edges inside row groups, pages and batches.
            args.extend(["--range-rows".to_string(), r.to_string()]);
        }

        let out = same_for_any_threads("probe-group", &args);
        if violated {
            // The same message as the sequential merge (no key ranges) gives.
            let mut seq = vec!["--batch-size".to_string(), batch_bytes.to_string(), "-q".into()];
            seq.extend(inputs.iter().cloned());
            seq.extend(["--range-rows".to_string(), "1000000000".into(), "--threads".into(), "1".into()]);
            let reference = run("probe-group", &seq, None);
            assert_eq!(out.stderr, reference.stderr, "the violation reported differs from the sequential one");
            out.assert_error("probe-group", &["row", "not sorted", "--sort"]);
        } else {
            out.assert_ok();
            let (_, batches) = decode_ipc(&out.stdout);
            let v: Vec<Vec<Vec<Val>>> = files.iter().map(|f| vals(f)).collect();
            assert_groups_eq(&decode_groups(&batches, 1), &oracle::group(&v, &[0], 1, &[2, 3, 4]));
            same_files_for_any_threads("probe-group", dir.path(), &args, "-o", "g.parquet");
            let (_, pq) = read_file(&dir.path().join("t1-g.parquet"));
            assert_groups_eq(&decode_groups(&pq, 1), &oracle::group(&v, &[0], 1, &[2, 3, 4]));
        }

        // --sort under a tiny budget (many runs, several merge passes) and with everything in
        // memory, its final merge cut into parts of a few rows: the oracle too.
        for memory in ["4KiB", "64MiB"] {
            let mut sort_args = args.clone();
            sort_args.extend([
                "--sort".into(),
                "--allow-small-memory-limit".into(),
                "--memory-limit".into(),
                memory.into(),
                "--fan-in".into(),
                "2".into(),
            ]);
            if let Some(p) = part_rows {
                sort_args.extend(["--sort-part-rows".to_string(), p.to_string()]);
            }
            if overlap {
                // Runs of any size are spilled while the next fills.
                sort_args.extend(["--sort-overlap-min-run".to_string(), "0".into()]);
            }
            let sorted = same_for_any_threads("probe-group", &sort_args);
            sorted.assert_ok();
            let (_, batches) = decode_ipc(&sorted.stdout);
            let v: Vec<Vec<Vec<Val>>> = files.iter().map(|f| vals(f)).collect();
            assert_groups_eq(&decode_groups(&batches, 1), &oracle::group(&v, &[0], 1, &[2, 3, 4]));
        }
    }
}

/// Sorted measurements, grouped once, as the input of the later stages.
fn grouped_input(dir: &Path) -> String {
    let spec: Vec<Vec<(Option<u8>, Option<i64>, Option<u8>, Option<f64>)>> = (0..3)
        .map(|f| {
            (0..400)
                .map(|i: i64| {
                    let k = ((i * 7 + f) % 23) as u8;
                    (Some(k), (i % 11 != 0).then_some(i % 13), Some((i % 5) as u8), Some(i as f64 / 3.0))
                })
                .collect()
        })
        .collect();
    let files = make_files(spec);
    let inputs = write_inputs(dir, &files, 17);
    let grouped = dir.join("grouped.arrows");
    let mut args = vec!["-q".to_string(), "-o".into(), grouped.display().to_string()];
    args.extend(inputs);
    run("probe-group", &args, None).assert_ok();
    grouped.display().to_string()
}

#[test]
fn check_order_is_the_same_for_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = make_files(vec![
        (0..300).map(|i: i64| (Some((i % 9) as u8), Some(i % 4), None, None)).collect(),
        (0..300).map(|i: i64| (Some((i % 5) as u8), (i % 7 != 0).then_some(i % 3), None, None)).collect(),
    ]);
    // A key violation and a time violation, at a row-group edge (row groups of 16 rows).
    files[0].swap(15, 16);
    files[0].swap(0, 299);
    files[1].swap(150, 151);
    let inputs = write_inputs(dir.path(), &files, 16);
    for json in [false, true] {
        let mut args = inputs.clone();
        args.push("-q".into());
        if json {
            args.push("--json".into());
        }
        let out = same_for_any_threads("probe-check-order", &args);
        out.assert_code(1);
        assert!(!out.stdout.is_empty());
    }
}

#[test]
fn split_batch_and_merge_are_the_same_for_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let grouped = grouped_input(dir.path());

    let split = vec![grouped.clone(), "-q".into(), "--format".into(), "parquet".into()];
    same_files_for_any_threads("probe-split", dir.path(), &split, "--out-dir", "split-pq");
    let split = vec![grouped.clone(), "-q".into()];
    same_files_for_any_threads("probe-split", dir.path(), &split, "--out-dir", "split-ipc");
    let tag = vec![grouped.clone(), "-q".into(), "--tag".into()];
    same_files_for_any_threads("probe-split", dir.path(), &tag, "-o", "tagged.parquet");

    let batch = vec![grouped.clone(), "-q".into(), "--max-len".into(), "5".into(), "--delta-time".into()];
    same_files_for_any_threads("probe-batch", dir.path(), &batch, "-o", "rows.arrows");
    same_files_for_any_threads("probe-batch", dir.path(), &batch, "-o", "rows.parquet");
    // `--workers` stays an alias of `--threads` on probe-batch.
    let mut workers = batch.clone();
    let w = dir.path().join("rows-workers.arrows");
    workers.extend(["--workers".into(), "3".into(), "-o".into(), w.display().to_string()]);
    run("probe-batch", &workers, None).assert_ok();
    assert!(std::fs::read(&w).unwrap() == std::fs::read(dir.path().join("t1-rows.arrows")).unwrap());

    // Tiny input batches and row groups: many row groups encoded at once, appended in order.
    let rows = dir.path().join("t1-rows.parquet").display().to_string();
    let merge: Vec<String> =
        vec![rows.clone(), "-q".into(), "--row-group-size".into(), "2KiB".into(), "--batch-size".into(), "1KiB".into()];
    same_files_for_any_threads("probe-merge", dir.path(), &merge, "-o", "merged.parquet");
    let merged = dir.path().join("t7-merged.parquet");
    let pq = std::fs::File::open(&merged).unwrap();
    let meta = parquet::file::reader::FileReader::metadata(
        &parquet::file::serialized_reader::SerializedFileReader::new(pq).unwrap(),
    )
    .clone();
    assert!(meta.num_row_groups() > 3, "expected many row groups, got {}", meta.num_row_groups());
    let (sa, a) = read_file(&merged);
    let (sb, b) = read_file(Path::new(&rows));
    oracle::assert_same_columns(&sa, &sb, "probe-merge");
    assert_eq!(oracle::rows(&a), oracle::rows(&b), "merged Parquet decodes to its input");
    let mut dir_args = merge.clone();
    dir_args.extend(["--max-file-size".into(), "8KiB".into()]);
    same_files_for_any_threads("probe-merge", dir.path(), &dir_args, "--out-dir", "parts");
}

/// Sorted Parquet inputs with statistics are grouped by key range (the summary counts them);
/// without statistics the streaming merge serves; both give the oracle's groups.
#[test]
fn group_plans_key_ranges_from_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let spec: Vec<Vec<(Option<u8>, Option<i64>, Option<u8>, Option<f64>)>> = (0..3)
        .map(|f| {
            (0..60)
                .map(|i: i64| (((i + f) % 13 != 0).then_some(((i * 5 + f) % 9) as u8), Some(i % 4), None, Some(1.0)))
                .collect()
        })
        .collect();
    let files = make_files(spec);
    let v: Vec<Vec<Vec<Val>>> = files.iter().map(|f| vals(f)).collect();
    for (stats, ranged) in [(Stats::SmallPages, true), (Stats::RowGroups, true), (Stats::None, false)] {
        let sub = dir.path().join(format!("{stats:?}"));
        std::fs::create_dir(&sub).unwrap();
        let mut args = write_inputs_with(&sub, &files, 7, stats);
        args.extend(["--range-rows".to_string(), "10".into(), "--threads".into(), "2".into()]);
        let out = run("probe-group", &args, None);
        out.assert_ok();
        let ranges = out.stderr.split("key ranges ").nth(1).map(|r| r.split(',').next().unwrap().to_string());
        match ranges {
            Some(n) => assert!(ranged && n.parse::<usize>().unwrap() > 3, "{stats:?}: {}", out.stderr),
            None => assert!(!ranged, "{stats:?}: no key ranges: {}", out.stderr),
        }
        let (_, batches) = decode_ipc(&out.stdout);
        assert_groups_eq(&decode_groups(&batches, 1), &oracle::group(&v, &[0], 1, &[2, 3, 4]));
    }
}
