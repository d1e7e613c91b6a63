//! The Ray driver end to end (issue 14): `scripts/ray/pipeline.py` on a local Ray cluster that it
//! starts (`--address local`), N=4 buckets, M=2 map tasks, one task's Ray worker killed with
//! SIGKILL mid-task and retried by Ray, and the training rows equal to the single-machine run.
//!
//! The python with `ray` is `PROBE_RAY_PYTHON`, else `python3`. Without ray the test skips with
//! a message; under `CI=true` (.ci/run installs ray in its venv) it fails instead.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::process::Command;

use probe_tests::gen::{self, GenConfig, Order};
use probe_tests::harness::{bin, bin_dir, list_dir, read_file, sh, skip_unless_ci};
use probe_tests::oracle::{rows, Val};

fn python() -> String {
    std::env::var("PROBE_RAY_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts")
}

/// Training rows of every Parquet part under `dir`, by key then window index.
fn rows_under(dir: &Path) -> Vec<Vec<Val>> {
    let mut out = Vec::new();
    for name in list_dir(dir) {
        let p = dir.join(&name);
        if p.is_dir() {
            out.extend(rows_under(&p));
        } else if name.ends_with(".parquet") {
            out.extend(rows(&read_file(&p).1));
        }
    }
    out.sort_by(|a, b| match a[0].cmp_nulls_last(&b[0]) {
        Ordering::Equal => a[1].cmp_nulls_last(&b[1]),
        o => o,
    });
    out
}

#[test]
fn ray_driver_with_a_killed_task_equals_the_single_machine_run() {
    let ok = Command::new(python()).args(["-c", "import ray"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        skip_unless_ci(&format!("{} cannot import ray (pip install ray, or set PROBE_RAY_PYTHON)", python()));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut cfg = GenConfig::new(8_000, d.join("data"));
    cfg.files = 2;
    cfg.order = Order::Sorted;
    cfg.keys = 300;
    gen::generate(&cfg).unwrap();
    let settings = ["MAX_LEN=16", "RATIOS=train=0.7,val=0.2,test=0.1"];
    sh(&format!("PROBE_BIN= THREADS=1 {} {}/pipeline.sh data single", settings.join(" "), scripts().display()), d)
        .assert_ok();

    // The first probe-partition to start kills its Ray worker (its parent: shard.sh execs the
    // stage) and itself with SIGKILL, as a lost node would; Ray must run that task again.
    std::fs::create_dir(d.join("wrap")).unwrap();
    let wrapper = d.join("wrap/probe-partition");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/bash\nif mkdir {marker} 2>/dev/null; then\n  tr '\\0' ' ' < /proc/$PPID/cmdline > {marker}/parent\n  {real} \"$@\" & kill -KILL $! $PPID; exit 137\nfi\nexec {real} \"$@\"\n",
            marker = d.join("killed").display(),
            real = bin("probe-partition").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}:{}", d.join("wrap").display(), bin_dir().display(), std::env::var("PATH").unwrap());

    let mut cmd = Command::new(python());
    cmd.arg(scripts().join("ray/pipeline.py"))
        .args(["--input", "data", "--shuffle", "sh", "--out", "out", "--maps", "2", "--buckets", "4"])
        .args(["--num-cpus", "2", "--max-retries", "2"])
        .current_dir(d)
        .env("PATH", path)
        .env("PROBE_BIN", "")
        .env("RAY_USAGE_STATS_ENABLED", "0");
    for s in settings {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ray driver failed ({}):\n{stderr}", out.status);
    // The process killed was Ray's worker running the task (its title names the task function).
    let parent = std::fs::read_to_string(d.join("killed/parent")).unwrap_or_default();
    assert!(parent.contains("run_shard"), "the killed parent was not a Ray worker: `{parent}`\n{stderr}");
    for line in ["partition 0 done", "partition 1 done", "bucket 3 done", "ray-pipeline: rows 8000,"] {
        assert!(stderr.contains(line), "`{line}` missing:\n{stderr}");
    }
    // Two map files in every bucket: the killed task ran again to the end.
    for b in 0..4 {
        assert_eq!(list_dir(&d.join(format!("sh/bucket-{b}"))), ["part-00000.arrows", "part-00001.arrows"]);
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("out/logs/ray-report.json")).unwrap()).unwrap();
    assert_eq!((report["rows"].as_u64(), report["rows_in_buckets"].as_u64()), (Some(8000), Some(8000)));
    assert_eq!(report["keys"].as_u64(), Some(300));
    for s in ["train", "val", "test"] {
        let want = rows_under(&d.join("single").join(s));
        assert!(!want.is_empty(), "split {s} is empty");
        assert_eq!(list_dir(&d.join("out").join(s)), ["bucket-0", "bucket-1", "bucket-2", "bucket-3"]);
        let got = rows_under(&d.join("out").join(s));
        assert_eq!(got.len(), want.len(), "split {s}: rows");
        assert!(got == want, "split {s}: the Ray run differs from the single-machine run");
        assert_eq!(report["windows"][s].as_u64(), Some(want.len() as u64), "report of split {s}");
    }
}
