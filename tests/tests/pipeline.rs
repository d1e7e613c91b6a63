//! The whole job end to end: generated data through check-order, group | split, batch and merge,
//! as real processes in real pipes, with every exit status asserted and the data checked.
#![allow(clippy::unwrap_used, clippy::type_complexity)] // tests: a panic is the failure report

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;

use probe_tests::gen::{self, GenConfig, Order};
use probe_tests::harness::{read_file, run, sh, write_parquet};
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
    // Remove one split file: split runs again, but the other split's file comes out the same, so
    // it keeps its time and its batch and merge do not run again.
    let mtime = |p: &str| std::fs::metadata(d.join(p)).unwrap().modified().unwrap();
    let kept = ["out/work/train.arrows", "out/work/train-rows.arrows", "out/train/_manifest.json"].map(mtime);
    let test_rows = mtime("out/work/test-rows.arrows");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::remove_file(d.join("out/work/test.arrows")).unwrap();
    make("").assert_ok();
    assert_eq!(["out/work/train.arrows", "out/work/train-rows.arrows", "out/train/_manifest.json"].map(mtime), kept);
    assert!(mtime("out/work/test-rows.arrows") > test_rows, "test's batch did not run again");
    assert!(d.join("out/test/_manifest.json").exists() && !d.join("out/work/.split-new").exists());
}

/// Measurements in every split's result under `out` (the sum of the windows' `length`s).
fn measurements_in_results(out: &Path) -> u64 {
    let mut total = 0;
    for split in std::fs::read_dir(out).unwrap().map(|e| e.unwrap().path()) {
        if split.join("_manifest.json").exists() {
            for p in std::fs::read_dir(&split).unwrap().map(|e| e.unwrap().path()) {
                if p.extension().is_some_and(|e| e == "parquet") {
                    let (schema, batches) = read_file(&p);
                    let i = schema.index_of("length").unwrap();
                    for r in rows(&batches) {
                        let Val::U(len) = r[i] else { panic!("length: {:?}", r[i]) };
                        total += len;
                    }
                }
            }
        }
    }
    total
}

/// The Makefile follows the input files themselves, not only their times: a removed file, or
/// one added with an older time (cp -p, rsync -a), reruns the job (it did nothing, exit 0, with
/// stale results). And neither script writes beside results of other split names (a reader of
/// out/*/ would get those keys twice).
#[test]
fn makefile_follows_removed_and_old_inputs_and_scripts_refuse_stale_splits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 20_000, Order::Sorted, 2);
    let first: u64 = read_file(&d.join("data/part-00000.parquet")).1.iter().map(|b| b.num_rows() as u64).sum();
    let mk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pipeline.mk");
    let make =
        |vars: &str| sh(&format!("make -s -f {} INPUT=data OUT=out MAX_LEN=8 PROBE_BIN= {vars}", mk.display()), d);
    make("").assert_ok();
    assert_eq!(measurements_in_results(&d.join("out")), 20_000);

    std::fs::rename(d.join("data/part-00001.parquet"), d.join("part-00001.parquet")).unwrap();
    make("").assert_ok();
    assert_eq!(measurements_in_results(&d.join("out")), first, "after removing an input");
    // Back, under a new name, with a time older than every result (mv keeps it).
    sh("mv part-00001.parquet data/part-00002.parquet && touch -d '2001-01-01' data/part-00002.parquet", d).assert_ok();
    make("").assert_ok();
    assert_eq!(measurements_in_results(&d.join("out")), 20_000, "after adding an old input");

    // Other split names into the same out/: refused before any work, the results left as they were.
    let before = std::fs::read(d.join("out/train/_manifest.json")).unwrap();
    let out = make("RATIOS=a=0.5,b=0.5");
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(out.stderr.contains("holds results of splits this run does not write (test train"), "{}", out.stderr);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pipeline.sh");
    let out = sh(&format!("RATIOS=a=0.5,b=0.5 MAX_LEN=8 PROBE_BIN= {} data out", script.display()), d);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("out/test/ holds the result of a run with other splits"), "{}", out.stderr);
    assert!(!d.join("out/a").exists() && !d.join("out/b").exists());
    assert_eq!(std::fs::read(d.join("out/train/_manifest.json")).unwrap(), before);
    assert_eq!(measurements_in_results(&d.join("out")), 20_000);
}

/// The generated data again, with the key and time columns renamed (`host`, `ts`): a table
/// the scripts can only run with KEY and TIME.
fn rename_columns(d: &Path) {
    std::fs::create_dir(d.join("renamed")).unwrap();
    for entry in std::fs::read_dir(d.join("data")).unwrap() {
        let path = entry.unwrap().path();
        let (schema, batches) = read_file(&path);
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "src_addr" => f.as_ref().clone().with_name("host"),
                "event_time" => f.as_ref().clone().with_name("ts"),
                _ => f.as_ref().clone(),
            })
            .collect();
        let renamed = Arc::new(Schema::new(fields));
        let batches: Vec<RecordBatch> =
            batches.iter().map(|b| RecordBatch::try_new(renamed.clone(), b.columns().to_vec()).unwrap()).collect();
        write_parquet(&d.join("renamed").join(path.file_name().unwrap()), renamed, &batches, 5_000);
    }
}

/// Rows of every part of a merged split, in part order, and the largest `length` among them.
fn merged(dir: &Path) -> (Vec<Vec<Val>>, u64) {
    let mut parts: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    parts.sort();
    let mut all = Vec::new();
    let mut longest = 0;
    for p in parts.iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")) {
        let (schema, batches) = read_file(p);
        let len_idx = schema.index_of("length").unwrap();
        for r in rows(&batches) {
            let Val::U(len) = r[len_idx] else { panic!("length is not unsigned: {:?}", r[len_idx]) };
            longest = longest.max(len);
            all.push(r);
        }
    }
    (all, longest)
}

/// Settings are inputs of the Makefile's targets: a changed setting reruns exactly the stages
/// it affects, an unchanged one nothing; a table with other column names runs with KEY/TIME.
#[test]
fn makefile_reruns_the_stages_a_changed_setting_affects() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 20_000, Order::Sorted, 2);
    rename_columns(d);
    let mk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pipeline.mk");
    let make = |vars: &str, flags: &str| {
        sh(&format!("make {flags} -f {} INPUT=renamed OUT=out KEY=host TIME=ts PROBE_BIN= {vars}", mk.display()), d)
    };
    let plan = |vars: &str| {
        let out = make(vars, "-n");
        out.assert_ok();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let ran: Vec<&str> = ["probe-check-order", "probe-group", "probe-split", "probe-batch", "probe-merge"]
            .into_iter()
            .filter(|stage| text.contains(&format!("{stage} ")))
            .collect();
        (ran, text)
    };
    make("MAX_LEN=8", "-s").assert_ok();
    let (_, longest) = merged(&d.join("out/train"));
    assert_eq!(longest, 8);

    // Nothing changed: nothing to do.
    let (ran, text) = plan("MAX_LEN=8");
    assert!(ran.is_empty(), "an unchanged run plans {ran:?}:\n{text}");
    // MAX_LEN: batch and merge again, with windows of 4.
    let (ran, text) = plan("MAX_LEN=4");
    assert_eq!(ran, ["probe-batch", "probe-merge"], "{text}");
    make("MAX_LEN=4", "-s").assert_ok();
    let (rows4, longest) = merged(&d.join("out/train"));
    assert_eq!(longest, 4, "outputs still built with the old MAX_LEN");
    // COMPRESSION: merge only, same rows.
    let (ran, text) = plan("MAX_LEN=4 COMPRESSION=snappy");
    assert_eq!(ran, ["probe-merge"], "{text}");
    make("MAX_LEN=4 COMPRESSION=snappy", "-s").assert_ok();
    assert_eq!(merged(&d.join("out/train")).0, rows4);
    // New split names: split, batch and merge, not group; every split's result exists. The old
    // splits' results go first (the Makefile refuses to write beside them).
    let (test, _) = merged(&d.join("out/test"));
    std::fs::remove_dir_all(d.join("out/train")).unwrap();
    std::fs::remove_dir_all(d.join("out/test")).unwrap();
    let (ran, text) = plan("MAX_LEN=4 COMPRESSION=snappy RATIOS=a=0.5,b=0.5");
    assert_eq!(ran, ["probe-split", "probe-batch", "probe-merge"], "{text}");
    make("MAX_LEN=4 COMPRESSION=snappy RATIOS=a=0.5,b=0.5", "-s").assert_ok();
    let (a, _) = merged(&d.join("out/a"));
    let (b, _) = merged(&d.join("out/b"));
    assert_eq!(a.len() + b.len(), rows4.len() + test.len(), "the a/b split lost or gained windows");
    // The key column came through under its own name.
    let part = std::fs::read_dir(d.join("out/a"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"));
    let (schema, _) = read_file(&part.unwrap());
    assert_eq!(schema.field(0).name(), "host");
    // A changed TIME reruns everything from check-order on.
    let (ran, text) = plan("MAX_LEN=4 COMPRESSION=snappy RATIOS=a=0.5,b=0.5 TIME=event_time");
    assert_eq!(ran, ["probe-check-order", "probe-group", "probe-split", "probe-batch", "probe-merge"], "{text}");
}

/// The script takes the stage options too, and its report gives each split its own line:
/// keys, measurements and training rows of that split, which add up to the totals.
#[test]
fn pipeline_script_takes_stage_options_and_reports_per_split() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 20_000, Order::Sorted, 2);
    rename_columns(d);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pipeline.sh");
    let out = sh(
        &format!(
            "PROBE_BIN= KEY=host TIME=ts RATIOS=a=0.7,b=0.3 SEED=3 MAX_LEN=6 STRIDE=3 DELTA_TIME=1 \
             COMPRESSION=snappy MAX_FILE_SIZE=64KiB {} renamed out",
            script.display()
        ),
        d,
    );
    out.assert_ok();
    let report: Vec<&str> = out.stderr.lines().skip_while(|l| !l.contains("---- report ----")).collect();
    let mut keys = 0;
    let mut measurements = 0;
    for s in ["a", "b"] {
        let line = report
            .iter()
            .find(|l| l.starts_with(&format!("pipeline: split {s}: ")))
            .unwrap_or_else(|| panic!("no report line for split {s}:\n{}", out.stderr));
        let num = |after: &str| -> u64 {
            let rest = line.split(after).nth(1).unwrap_or_else(|| panic!("`{after}` in {line}"));
            rest.trim_start().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
        };
        keys += num("keys ");
        measurements += num("measurements ");
        let (rows, _) = merged(&d.join("out").join(s));
        assert_eq!(num("training rows "), rows.len() as u64, "{line}");
        let (schema, _) = read_file(
            &std::fs::read_dir(d.join("out").join(s))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|e| e == "parquet"))
                .unwrap(),
        );
        assert!(schema.index_of("dt").is_ok(), "DELTA_TIME did not reach probe-batch");
    }
    assert_eq!(measurements, 20_000, "{}", out.stderr);
    assert_eq!(keys, 20_000 / 25, "{}", out.stderr);
    assert!(
        !out.stderr.contains("training rows") || report.iter().filter(|l| l.contains("training rows")).count() == 2
    );
}
