//! The whole job end to end: generated data through check-order, group | split, batch and merge,
//! as real processes in real pipes, with every exit status asserted and the data checked.
#![allow(clippy::unwrap_used, clippy::type_complexity)] // tests: a panic is the failure report

use std::collections::{HashMap, HashSet};
use std::path::Path;

use probe_tests::gen::{self, GenConfig, Order};
use probe_tests::harness::{read_file, run, sh};
use probe_tests::oracle::{rows, Val};

fn generate(dir: &Path, rows: u64, order: Order, files: usize) {
    let mut cfg = GenConfig::new(rows, dir.join("data"));
    cfg.order = order;
    cfg.files = files;
    cfg.keys = rows / 25;
    cfg.seed = 11;
    gen::generate(&cfg).expect("generate");
}

/// Key -> number of measurements in a grouped (probe rows) file.
fn counts(path: &Path) -> HashMap<String, usize> {
    let (_, batches) = read_file(path);
    rows(&batches)
        .into_iter()
        .map(|r| {
            let Val::S(k) = &r[0] else { panic!("key is not a string: {:?}", r[0]) };
            let Val::List(m) = &r[r.len() - 1] else { panic!("no measurements list") };
            (k.clone(), m.len())
        })
        .collect()
}

#[test]
fn group_split_batch_merge_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 60_000, Order::SortedPerFile, 3);

    let out = sh("probe-check-order -q data/ > order.txt", d);
    out.assert_ok();
    let out = sh("probe-group -q data/ | probe-split -q --ratios train=0.8,test=0.2 --out-dir work/", d);
    out.assert_ok();
    let train = counts(&d.join("work/train.arrows"));
    let test = counts(&d.join("work/test.arrows"));

    // No key in two splits, and the measurements after split are the input rows.
    let overlap: HashSet<&String> = train.keys().filter(|k| test.contains_key(*k)).collect();
    assert!(overlap.is_empty(), "keys in both splits: {overlap:?}");
    let total: usize = train.values().chain(test.values()).sum();
    assert_eq!(total, 60_000);
    assert_eq!(train.len() + test.len(), 60_000 / 25);
    // The test share of keys is near its ratio (2400 keys: sd of the share ~0.8%).
    let share = test.len() as f64 / (train.len() + test.len()) as f64;
    assert!((share - 0.2).abs() < 0.04, "test share {share}");

    // Batch: windows of at most 16, covering every measurement when nothing is dropped.
    for workers in ["1", "2"] {
        let o = format!("work/train-rows-{workers}.arrows");
        run(
            "probe-batch",
            &[
                d.join("work/train.arrows").to_str().unwrap(),
                "--max-len",
                "16",
                "--workers",
                workers,
                "-q",
                "-o",
                d.join(&o).to_str().unwrap(),
            ],
            None,
        )
        .assert_ok();
    }
    let (s1, b1) = read_file(&d.join("work/train-rows-1.arrows"));
    let (s2, b2) = read_file(&d.join("work/train-rows-2.arrows"));
    assert_eq!(s1, s2);
    let r1 = rows(&b1);
    assert_eq!(r1, rows(&b2), "--workers 1 and 2 differ");
    let len_idx = s1.index_of("length").expect("length column");
    let key_idx = s1.index_of("src_addr").expect("key column");
    let mut covered: HashMap<String, usize> = HashMap::new();
    for r in &r1 {
        let Val::U(len) = r[len_idx] else { panic!("length is not unsigned: {:?}", r[len_idx]) };
        assert!((1..=16).contains(&len), "window of {len}");
        let Val::S(k) = &r[key_idx] else { panic!("key") };
        *covered.entry(k.clone()).or_default() += len as usize;
    }
    assert_eq!(covered, train, "windows do not cover the measurements exactly");

    // Merge: the Parquet parts hold the batch's rows, in order.
    run(
        "probe-merge",
        &[
            d.join("work/train-rows-1.arrows").to_str().unwrap(),
            "-q",
            "--out-dir",
            d.join("out/train").to_str().unwrap(),
        ],
        None,
    )
    .assert_ok();
    let mut merged = Vec::new();
    let mut parts: Vec<_> = std::fs::read_dir(d.join("out/train")).unwrap().map(|e| e.unwrap().path()).collect();
    parts.sort();
    assert!(parts.iter().any(|p| p.ends_with("_manifest.json")));
    for p in parts.iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")) {
        merged.extend(rows(&read_file(p).1));
    }
    assert_eq!(merged, r1, "merged Parquet differs from the batch output");
}

#[test]
fn pipeline_script_runs_the_whole_job_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 30_000, Order::Shuffled, 2);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pipeline.sh");
    let out = sh(&format!("PROBE_BIN= MAX_LEN=32 {} data out", script.display()), d);
    out.assert_ok();
    // Shuffled input: the script must have chosen --sort.
    assert!(out.stderr.contains("unordered"), "check-order verdict missing:\n{}", out.stderr);
    assert!(out.stderr.contains("measurements 30000"), "report:\n{}", out.stderr);
    for s in ["train", "test"] {
        let m = std::fs::read_to_string(d.join(format!("out/{s}/_manifest.json"))).expect("manifest");
        assert!(m.contains("\"rows\""), "{m}");
    }
    // A failed stage stops the script with a non-zero status and names the stage.
    std::fs::write(d.join("data/part-00000.parquet"), b"PAR1 not really").unwrap();
    let out = sh(&format!("PROBE_BIN= {} data out2", script.display()), d);
    assert_ne!(out.code(), 0, "a corrupt input must fail the pipeline");
    assert!(out.stderr.contains("part-00000.parquet"), "{}", out.stderr);
}

#[test]
fn makefile_reruns_only_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 20_000, Order::Sorted, 2);
    let mk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pipeline.mk");
    let make =
        |target: &str| sh(&format!("make -s -f {} INPUT=data OUT=out MAX_LEN=8 PROBE_BIN= {target}", mk.display()), d);
    make("split").assert_ok();
    assert!(d.join("out/work/train.arrows").exists() && !d.join("out/work/train-rows.arrows").exists());
    make("").assert_ok();
    assert!(d.join("out/train/_manifest.json").exists() && d.join("out/test/_manifest.json").exists());
    // Remove one split's batch output: only batch and merge of that split run again.
    std::fs::remove_file(d.join("out/work/test-rows.arrows")).unwrap();
    let out = sh(&format!("make -n -f {} INPUT=data OUT=out MAX_LEN=8 PROBE_BIN=", mk.display()), d);
    out.assert_ok();
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("probe-batch") && !plan.contains("probe-group") && !plan.contains("probe-split"),
        "plan:\n{plan}"
    );
    make("").assert_ok();
}
