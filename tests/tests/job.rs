//! The whole job as the scripts run it (issue 11): `scripts/pipeline.sh` pipes group | split and
//! batch | merge, reports every stage, and leaves no temp files and no result that looks whole
//! after a failure anywhere in a pipe; `scripts/pipeline.mk` reruns one stage after a failure;
//! both give the same rows.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use probe_tests::gen::{self, GenConfig, Order};
use probe_tests::harness::{bin, list_dir, read_file, sh};
use probe_tests::oracle::{rows, Val};

fn generate(dir: &Path, rows: u64, order: Order) {
    let mut cfg = GenConfig::new(rows, dir.join("data"));
    cfg.order = order;
    cfg.files = 2;
    cfg.keys = rows / 25;
    cfg.seed = 5;
    gen::generate(&cfg).expect("generate");
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pipeline.sh")
}

fn makefile() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pipeline.mk")
}

/// Rows of every Parquet part of a merged split, in part order.
fn merged(dir: &Path) -> Vec<Vec<Val>> {
    let mut parts: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    parts.sort();
    parts.iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).flat_map(|p| rows(&read_file(p).1)).collect()
}

/// `/usr/bin/time` gives the report its times and peaks; without it they are `-` (CI has it).
fn have_time() -> bool {
    let ok = Path::new("/usr/bin/time").exists();
    assert!(ok || std::env::var("CI").is_err(), "CI=true but /usr/bin/time is missing (apt-get install time)");
    ok
}

/// One row of `logs/report.tsv`.
#[derive(Debug)]
struct Row {
    stage: String,
    split: String,
    wall: f64,
    cpu: f64,
    /// `None` where the stage printed no summary (a group that found the input unsorted).
    rows_in: Option<u64>,
    rows_out: Option<u64>,
    peak: u64,
    written: u64,
}

/// The report's rows and its `# name value` header lines.
fn report(out: &Path) -> (Vec<Row>, HashMap<String, u64>) {
    let text = std::fs::read_to_string(out.join("logs/report.tsv")).expect("logs/report.tsv");
    let mut header = HashMap::new();
    let mut table = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let (k, v) = rest.split_once(' ').unwrap();
            header.insert(k.to_string(), v.parse().unwrap());
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 8, "report line: {line}");
        if f[0] == "stage" {
            continue;
        }
        let num = |s: &str| if s == "-" { 0.0 } else { s.parse::<f64>().unwrap_or_else(|_| panic!("{s} in {line}")) };
        table.push(Row {
            stage: f[0].into(),
            split: f[1].into(),
            wall: num(f[2]),
            cpu: num(f[3]),
            rows_in: (f[4] != "-").then(|| f[4].parse().unwrap_or_else(|_| panic!("rows in of {line}"))),
            rows_out: f[5].parse().ok(),
            peak: num(f[6]) as u64,
            written: num(f[7]) as u64,
        });
    }
    (table, header)
}

/// The report lists every stage in the order it ran, with rows in and out that chain from one
/// stage to the next, times, peaks and bytes written; the temp disk peak; and no temp files stay.
/// Sorted input runs no probe-check-order (probe-group checks the order itself); shuffled input
/// fails the plain attempt, which the report keeps as `unsorted` (`train/unsorted` for a split's
/// batch and merge), then check-order, then --sort.
#[test]
fn pipeline_report_explains_the_run_and_no_temp_files_stay() {
    for order in [Order::Sorted, Order::Shuffled] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        generate(d, 30_000, order);
        let out = sh(&format!("PROBE_BIN= MAX_LEN=16 MEMORY_LIMIT=16MiB {} data out", script().display()), d);
        out.assert_ok();
        let (table, header) = report(&d.join("out"));
        let stages: Vec<(&str, &str)> = table.iter().map(|r| (r.stage.as_str(), r.split.as_str())).collect();
        let mut expected = vec![];
        if order == Order::Shuffled {
            // The failed attempt: every stage of the streamed job, then the order check.
            expected.extend([("group", "unsorted"), ("split", "unsorted")]);
            expected.extend([
                ("batch", "train/unsorted"),
                ("merge", "train/unsorted"),
                ("batch", "test/unsorted"),
                ("merge", "test/unsorted"),
            ]);
            expected.push(("check-order", "-"));
            assert!(out.stderr.contains("grouping again with --sort"), "{}", out.stderr);
        }
        expected.extend([
            ("group", "-"),
            ("split", "-"),
            ("batch", "train"),
            ("merge", "train"),
            ("batch", "test"),
            ("merge", "test"),
            ("total", "-"),
        ]);
        assert_eq!(stages, expected, "{order:?}: {}", out.stderr);
        let row = |stage: &str, split: &str| table.iter().find(|r| r.stage == stage && r.split == split).unwrap();
        let keys = 30_000 / 25;
        if order == Order::Shuffled {
            assert_eq!(row("check-order", "-").rows_in, Some(30_000));
            // The failed attempt printed no summary: no rows counted twice.
            assert_eq!(row("group", "unsorted").rows_in, None);
        }
        assert_eq!((row("group", "-").rows_in, row("group", "-").rows_out), (Some(30_000), Some(keys)));
        assert_eq!((row("split", "-").rows_in, row("split", "-").rows_out), (Some(keys), Some(keys)));
        assert_eq!(row("batch", "train").rows_in.unwrap() + row("batch", "test").rows_in.unwrap(), keys);
        for s in ["train", "test"] {
            let windows = merged(&d.join("out").join(s)).len() as u64;
            assert_eq!(row("batch", s).rows_out, Some(windows), "batch {s}");
            assert_eq!(
                (row("merge", s).rows_in, row("merge", s).rows_out),
                (Some(windows), Some(windows)),
                "merge {s}"
            );
        }
        let total = row("total", "-");
        assert_eq!(total.rows_in, Some(30_000));
        // Every stage that ran to the end wrote something, the piped ones too (group's stdout,
        // batch's stdout).
        for r in table
            .iter()
            .filter(|r| !r.split.ends_with("unsorted") && !matches!(r.stage.as_str(), "check-order" | "total"))
        {
            assert!(r.written > 0, "no bytes written by {r:?}");
        }
        if have_time() {
            // A stage of the failed attempt that was stopped before it started has no figures.
            for r in table.iter().filter(|r| !(r.split.ends_with("unsorted") && r.peak == 0)) {
                assert!(r.peak > 1 << 20 && r.peak < 1 << 30, "peak memory of {r:?}");
                // /usr/bin/time counts in hundredths: a small stage can take 0.00 s.
                assert!(r.wall >= 0.0 && r.cpu >= 0.0 && r.wall <= total.wall + 0.01, "times of {r:?}");
            }
            let cpu: f64 = table.iter().filter(|r| r.stage != "total").map(|r| r.cpu).sum();
            assert!((total.cpu - cpu).abs() < 0.05, "total CPU {} is not the stages' {cpu}", total.cpu);
            assert!(total.wall > 0.0, "{total:?}");
        }
        // Shuffled under a small --memory-limit, the spill was temp disk.
        let input: u64 = std::fs::read_dir(d.join("data")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
        assert_eq!(header["input_bytes"], input);
        if order == Order::Shuffled {
            assert!(header["temp_peak_bytes"] > 0, "{header:?}");
        } else {
            // Streamed through named pipes: nothing but the folder itself on disk.
            assert!(header["temp_peak_bytes"] < 64 << 10, "{header:?}");
        }
        // The human report: the table and the temp disk line.
        for needle in ["pipeline: stage", "pipeline: temp disk peak", "measurements/s"] {
            assert!(out.stderr.contains(needle), "`{needle}` missing from the report:\n{}", out.stderr);
        }
        let merge_test = out.stderr.lines().find(|l| l.starts_with("pipeline: merge ") && l.contains(" test "));
        assert!(merge_test.is_some(), "no report line for merge of test:\n{}", out.stderr);
        // Temp files gone after success: no work/, no staging folders; results and logs stay.
        assert_eq!(list_dir(&d.join("out")), ["logs", "test", "train"]);
    }
}

/// `SORT=1` goes to `--sort` at once (no failed attempt, no check-order) and gives the same
/// result as the automatic fallback; `SORT=0` never falls back, so unsorted input fails with
/// probe-group's own order error and leaves no result; any other value is a usage error.
#[test]
fn pipeline_sort_setting() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 20_000, Order::Shuffled);
    let run = |vars: &str, out: &str| sh(&format!("{vars} PROBE_BIN= MAX_LEN=8 {} data {out}", script().display()), d);
    run("", "auto").assert_ok();
    let forced = run("SORT=1", "forced");
    forced.assert_ok();
    let (table, _) = report(&d.join("forced"));
    assert!(
        table.iter().all(|r| r.stage != "check-order" && r.split != "unsorted"),
        "SORT=1 ran more than --sort:\n{}",
        forced.stderr
    );
    for s in ["train", "test"] {
        assert_eq!(merged(&d.join("auto").join(s)), merged(&d.join("forced").join(s)), "split {s}");
    }
    let never = run("SORT=0", "never");
    assert_eq!(never.code(), 1, "{}", never.stderr);
    assert!(never.stderr.contains("probe-group: error:"), "{}", never.stderr);
    assert!(!never.stderr.contains("does the input need --sort?"), "{}", never.stderr);
    assert!(!never.stderr.contains("grouping again"), "{}", never.stderr);
    assert_eq!(list_dir(&d.join("never")), ["logs"]);
    let bad = run("SORT=maybe", "bad");
    assert_eq!(bad.code(), 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("SORT must be auto, 1 or 0"), "{}", bad.stderr);
}

/// `DIR/NAME`, a bash script standing in for a stage: `REAL` in its body is the real binary.
fn wrapper(d: &Path, dir: &str, name: &str, body: &str) {
    std::fs::create_dir_all(d.join(dir)).unwrap();
    let path = d.join(dir).join(name);
    let real = bin(name).display().to_string();
    std::fs::write(&path, format!("#!/bin/bash\n{}\n", body.replace("REAL", &real))).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// A failing stage anywhere in a pipe fails the script and leaves no result, not even the one an
/// earlier successful run left, and no temp files: a group that dies mid-stream (split sees a
/// cut stream), a bad batch setting (merge sees no stream), a bad merge setting (batch's
/// downstream closes; batch itself exits 0), a batch that loses its output's tail with exit 0
/// (only merge's end-of-stream check sees it), and a corrupt input (check-order fails).
#[test]
fn pipeline_failure_in_any_stage_leaves_no_result_and_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 20_000, Order::Sorted);
    // A probe-batch that passes on only the first 3000 bytes of its output and exits 0; a
    // probe-group that dies after 3000 bytes.
    wrapper(d, "lossy", "probe-batch", "REAL \"$@\" | head -c 3000; exit 0");
    wrapper(d, "dying", "probe-group", "REAL \"$@\" | head -c 3000; exit 1");

    // (what to break, a setting, what the failing stage's message holds)
    let cases = [
        ("", "COMPRESSION=bogus", "bogus"),
        ("", "MAX_GAP=bogus", "--max-gap"),
        ("", "PATH=lossy:$PATH", "probe-merge: error:"),
        ("", "PATH=dying:$PATH", "probe-split: error:"),
        ("corrupt", "", "probe-check-order: error:"),
    ];
    for (what, vars, needle) in cases {
        sh(&format!("PROBE_BIN= MAX_LEN=8 {} data out", script().display()), d).assert_ok();
        assert!(d.join("out/train/_manifest.json").exists());
        if what == "corrupt" {
            std::fs::write(d.join("data/part-00001.parquet"), b"PAR1 not really").unwrap();
        }
        let out = sh(&format!("{vars} PROBE_BIN= MAX_LEN=8 {} data out", script().display()), d);
        assert_ne!(out.code(), 0, "{vars} {what}: the job must fail:\n{}", out.stderr);
        assert!(out.stderr.contains(needle), "{vars} {what}: no `{needle}`:\n{}", out.stderr);
        assert!(out.stderr.contains("pipeline: error:"), "{vars} {what}:\n{}", out.stderr);
        assert_eq!(list_dir(&d.join("out")), ["logs"], "{vars} {what}: left behind:\n{}", out.stderr);
    }
}

/// SIGTERM to the script stops every stage of the pipe that runs and removes what they wrote.
#[test]
fn pipeline_interrupted_stops_its_stages_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 20_000, Order::Sorted);
    // A probe-batch that announces itself, then waits: the script is killed while it waits.
    wrapper(d, "slow", "probe-batch", "touch started; sleep 4; touch woke; exec REAL \"$@\"");
    let path = format!(
        "{}:{}:{}",
        d.join("slow").display(),
        bin("probe-batch").parent().unwrap().display(),
        std::env::var("PATH").unwrap()
    );
    let mut child = std::process::Command::new("bash")
        .arg(script())
        .args(["data", "out"])
        .current_dir(d)
        .env("PATH", path)
        .env("PROBE_BIN", "")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !d.join("started").exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "probe-batch never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The script's own pid, which this test started.
    sh(&format!("kill -TERM {}", child.id()), d).assert_ok();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "killed script's status");
    std::thread::sleep(Duration::from_secs(5));
    assert!(!d.join("woke").exists(), "the batch stage outlived the script");
    assert_eq!(list_dir(&d.join("out")), ["logs"]);
}

/// Installed as the wheel installs it (`probe-pipeline` in a venv's bin/, beside the binaries),
/// the script runs them with neither PROBE_BIN set nor the binaries on PATH (a venv that is not
/// activated); an option it does not take is a usage error that writes nothing; `--help` prints
/// its header.
#[test]
fn pipeline_script_installed_beside_the_binaries_runs_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 5_000, Order::Sorted);
    let venv_bin = d.join("venv/bin");
    std::fs::create_dir_all(&venv_bin).unwrap();
    std::fs::copy(script(), venv_bin.join("probe-pipeline")).unwrap();
    for name in ["probe-check-order", "probe-group", "probe-split", "probe-batch", "probe-merge"] {
        std::os::unix::fs::symlink(bin(name), venv_bin.join(name)).unwrap();
    }
    let run = |args: &[&str]| {
        std::process::Command::new(venv_bin.join("probe-pipeline"))
            .args(args)
            .current_dir(d)
            .env("PATH", "/usr/bin:/bin")
            .env_remove("PROBE_BIN")
            .env_remove("CARGO_TARGET_DIR")
            // What Python's readline exports (pdb, doctest, REPLs): the terminal size. The
            // scripts' payload columns used to be COLUMNS, and took this as `--columns 80`.
            .env("COLUMNS", "80")
            .env("LINES", "24")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&["data", "out"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "probe-pipeline data out: {:?}\n{stderr}", out.status);
    let windows = merged(&d.join("out/train")).len() + merged(&d.join("out/test")).len();
    assert!(windows >= 5_000 / 25, "{windows} windows for 200 keys");

    let out = run(&["--make", "x"]);
    assert_eq!(out.status.code(), Some(2), "an unknown option is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown option '--make'"));
    assert!(!d.join("x").exists() && !d.join("--make").exists());

    let out = run(&["--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("PROBE_BIN: directory of the binaries"));
}

/// The script (pipes, no rows files) and the Makefile (a file between every two stages) give
/// the same rows for every split, with one thread per stage or two.
#[test]
fn pipeline_script_and_makefile_give_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 20_000, Order::SortedPerFile);
    let opts = "MAX_LEN=8 STRIDE=4 DELTA_TIME=1 RATIOS=a=0.6,b=0.3,c=0.1 MAX_FILE_SIZE=64KiB";
    sh(&format!("PROBE_BIN= JOBS=2 THREADS=1 {opts} {} data sh-out", script().display()), d).assert_ok();
    sh(&format!("make -s -f {} INPUT=data OUT=mk-out PROBE_BIN= THREADS=2 {opts}", makefile().display()), d)
        .assert_ok();
    let mut total = 0;
    for s in ["a", "b", "c"] {
        let a = merged(&d.join("sh-out").join(s));
        assert!(!a.is_empty(), "split {s} is empty");
        assert_eq!(a, merged(&d.join("mk-out").join(s)), "split {s} differs between pipeline.sh and pipeline.mk");
        total += a.len();
    }
    assert!(total > 20_000 / 8, "{total} windows");
}

/// After a batch that fails on a bad setting, the fixed rerun runs batch and merge only: the
/// split files stay, the failed stage left no output that make would take as done.
#[test]
fn makefile_reruns_only_the_failed_stage_after_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 20_000, Order::Sorted);
    let make = |vars: &str, flags: &str| {
        sh(&format!("make {flags} -f {} INPUT=data OUT=out PROBE_BIN= MAX_LEN=8 {vars}", makefile().display()), d)
    };
    let out = make("MAX_GAP=bogus", "-s");
    assert_ne!(out.code(), 0, "a bad MAX_GAP must fail make");
    assert!(out.stderr.contains("--max-gap"), "{}", out.stderr);
    let work = d.join("out/work");
    assert!(work.join("train.arrows").exists() && work.join("test.arrows").exists());
    assert!(!work.join("train-rows.arrows").exists() && !work.join("test-rows.arrows").exists());
    assert!(!d.join("out/train").exists() && !d.join("out/test").exists());
    let mtime = |p: &str| std::fs::metadata(work.join(p)).unwrap().modified().unwrap();
    let before = (mtime("grouped.arrows"), mtime("train.arrows"));

    let plan = make("MAX_GAP=30m", "-n");
    plan.assert_ok();
    let plan = String::from_utf8_lossy(&plan.stdout).into_owned();
    let ran: Vec<&str> = ["probe-check-order ", "probe-group ", "probe-split ", "probe-batch ", "probe-merge "]
        .into_iter()
        .filter(|stage| plan.contains(stage))
        .collect();
    assert_eq!(ran, ["probe-batch ", "probe-merge "], "{plan}");
    make("MAX_GAP=30m", "-s").assert_ok();
    assert_eq!((mtime("grouped.arrows"), mtime("train.arrows")), before, "group or split ran again");
    assert!(!merged(&d.join("out/train")).is_empty() && !merged(&d.join("out/test")).is_empty());
}
