//! The run across machines, on one machine (issue 14): `scripts/shard.sh` run for every map index
//! and every bucket index, with the index in `JOB_COMPLETION_INDEX` (Kubernetes) or
//! `SLURM_ARRAY_TASK_ID` (Slurm), gives, for N in {1, 3, 8} buckets and M in {1, 2} map tasks,
//! the same training rows as the single-machine `scripts/pipeline.sh`: the same keys, the same
//! lists, the same split per key. The Kubernetes and Slurm manifests name what the script needs.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use probe_tests::gen::{self, GenConfig, Order};
use probe_tests::harness::{list_dir, read_file, run, sh, Output};
use probe_tests::oracle::{rows, Val};

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts")
}

/// Rows of every Parquet part under `dir` (subfolders too).
fn parts_under(dir: &Path) -> Vec<Vec<Val>> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            out.extend(parts_under(&p));
        } else if p.extension().is_some_and(|e| e == "parquet") {
            out.extend(rows(&read_file(&p).1));
        }
    }
    out
}

/// Training rows in a canonical order: by key, then window index (both unique together).
fn canonical(mut r: Vec<Vec<Val>>) -> Vec<Vec<Val>> {
    r.sort_by(|a, b| match a[0].cmp_nulls_last(&b[0]) {
        Ordering::Equal => a[1].cmp_nulls_last(&b[1]),
        o => o,
    });
    r
}

const SETTINGS: &str = "PROBE_BIN= MAX_LEN=16 RATIOS=a=0.5,b=0.3,c=0.1,d=0.1 THREADS=1 JOBS=1";

/// `shard.sh STEP` for one index, the index in the variable `var`.
fn shard(d: &Path, m: usize, n: usize, step: &str, var: &str, index: usize) -> Output {
    sh(
        &format!(
            "{var}={index} INPUT=data SHUFFLE=sh-{m}-{n} OUT=out-{m}-{n} M={m} N={n} {SETTINGS} {}/shard.sh {step}",
            scripts().display()
        ),
        d,
    )
}

#[test]
fn every_bucket_and_map_index_together_equal_the_single_machine_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Sorted across two files: slice I of M=2 is one sorted file, so each bucket holds M sorted
    // files that plain probe-group merges. 7 keys: with 8 buckets some are empty.
    let mut cfg = GenConfig::new(6_000, d.join("data"));
    cfg.files = 2;
    cfg.keys = 7;
    cfg.order = Order::Sorted;
    gen::generate(&cfg).unwrap();
    sh(&format!("{SETTINGS} {}/pipeline.sh data single", scripts().display()), d).assert_ok();
    let splits = ["a", "b", "c", "d"];
    let single: Vec<_> = splits.iter().map(|s| canonical(parts_under(&d.join("single").join(s)))).collect();
    assert!(single.iter().filter(|r| !r.is_empty()).count() >= 2, "too few splits hold rows");

    for m in [1, 2] {
        for n in [1, 3, 8] {
            // Map tasks as a Kubernetes Indexed Job would start them, buckets as a Slurm array.
            for i in 0..m {
                shard(d, m, n, "partition", "JOB_COMPLETION_INDEX", i).assert_ok();
            }
            let shuffle = d.join(format!("sh-{m}-{n}"));
            let buckets = list_dir(&shuffle);
            assert_eq!(buckets, (0..n).map(|b| format!("bucket-{b}")).collect::<Vec<_>>(), "M={m} N={n}");
            let names: Vec<String> = (0..m).map(|i| format!("part-{i:05}.arrows")).collect();
            let mut empty = 0;
            for b in &buckets {
                assert_eq!(list_dir(&shuffle.join(b)), names, "M={m} N={n} {b}");
                // Sorted input, sorted bucket files: plain probe-group merges them (exit 0).
                let check = run("probe-check-order", &["-q", &shuffle.join(b).display().to_string()], None);
                assert_eq!(
                    check.code(),
                    0,
                    "M={m} N={n} {b} needs --sort:\n{}",
                    String::from_utf8_lossy(&check.stdout)
                );
                empty += String::from_utf8_lossy(&check.stdout).contains("rows                   0 ") as usize;
            }
            if n == 8 {
                assert!(empty > 0, "no empty bucket among 8 with 7 keys");
            }
            for b in 0..n {
                shard(d, m, n, "bucket", "SLURM_ARRAY_TASK_ID", b).assert_ok();
            }
            let out = d.join(format!("out-{m}-{n}"));
            for (s, want) in splits.iter().zip(&single) {
                let per_bucket: Vec<String> = list_dir(&out.join(s));
                assert_eq!(per_bucket, (0..n).map(|b| format!("bucket-{b}")).collect::<Vec<_>>(), "M={m} N={n} {s}");
                for b in &per_bucket {
                    assert!(out.join(s).join(b).join("_manifest.json").exists(), "M={m} N={n} {s}/{b}: no manifest");
                }
                let got = canonical(parts_under(&out.join(s)));
                assert_eq!(got.len(), want.len(), "M={m} N={n} split {s}: row count");
                assert!(got == *want, "M={m} N={n} split {s}: rows differ from the single-machine run");
            }
            assert_eq!(list_dir(&out), ["a", "b", "c", "d", "logs"], "M={m} N={n}: temp files left");
        }
    }
}

/// A bucket task started before every map task finished refuses to run (it would miss rows with
/// exit 0); an index out of range, or none at all, is a usage error; a retried map task replaces
/// its own files after a killed attempt left its staging folder.
#[test]
fn bucket_tasks_wait_for_every_map_file_and_indices_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut cfg = GenConfig::new(3_000, d.join("data"));
    cfg.files = 2;
    gen::generate(&cfg).unwrap();
    shard(d, 2, 3, "partition", "JOB_COMPLETION_INDEX", 1).assert_ok();
    let out = shard(d, 2, 3, "bucket", "SLURM_ARRAY_TASK_ID", 0);
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("1 of 2 map files missing") && out.stderr.contains("part-00000.arrows"),
        "{}",
        out.stderr
    );
    assert!(!d.join("out-2-3").exists(), "a refused bucket task wrote {:?}", list_dir(&d.join("out-2-3")));

    for (step, var, index) in [("partition", "JOB_COMPLETION_INDEX", 2), ("bucket", "SLURM_ARRAY_TASK_ID", 3)] {
        let out = shard(d, 2, 3, step, var, index);
        assert_eq!(out.code(), 2, "{step} {index}: {}", out.stderr);
        assert!(out.stderr.contains("is not below"), "{}", out.stderr);
    }
    let out = sh(&format!("INPUT=data SHUFFLE=x OUT=y M=1 N=1 {}/shard.sh partition", scripts().display()), d);
    assert_eq!(out.code(), 2);
    assert!(out.stderr.contains("no task index"), "{}", out.stderr);

    // A killed attempt of map task 0 left its staging folder: the retry removes it and succeeds.
    std::fs::create_dir_all(d.join("sh-2-3/.probe-staging-part-00000-99999/bucket-0")).unwrap();
    shard(d, 2, 3, "partition", "JOB_COMPLETION_INDEX", 0).assert_ok();
    assert_eq!(list_dir(&d.join("sh-2-3")), ["bucket-0", "bucket-1", "bucket-2"]);
    shard(d, 2, 3, "bucket", "SLURM_ARRAY_TASK_ID", 0).assert_ok();
}

/// The python that reads YAML: `PROBE_RAY_PYTHON` (ray brings pyyaml), else `python3`.
fn yaml_python() -> Option<String> {
    let py = std::env::var("PROBE_RAY_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = std::process::Command::new(&py).args(["-c", "import yaml"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        probe_tests::harness::skip_unless_ci(&format!("{py} cannot import yaml (pip install pyyaml)"));
        return None;
    }
    Some(py)
}

/// The two Indexed Job manifests parse as YAML and give shard.sh what it needs: Indexed
/// completion (Kubernetes then sets JOB_COMPLETION_INDEX), completions equal to M and N, the
/// shard.sh step as the command, INPUT/SHUFFLE/OUT/M/N the same in both, on the mounted volume.
#[test]
fn kubernetes_manifests_name_what_shard_sh_needs() {
    let Some(py) = yaml_python() else { return };
    let k8s = scripts().join("k8s");
    let mut env_of = Vec::new();
    for step in ["partition", "bucket"] {
        let file = k8s.join(format!("{step}-job.yaml"));
        let out = std::process::Command::new(&py)
            .args(["-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
        let job: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!((job["apiVersion"].as_str(), job["kind"].as_str()), (Some("batch/v1"), Some("Job")));
        let spec = &job["spec"];
        assert_eq!(spec["completionMode"], "Indexed", "{step}: JOB_COMPLETION_INDEX needs Indexed");
        let pod = &spec["template"]["spec"];
        assert!(matches!(pod["restartPolicy"].as_str(), Some("Never" | "OnFailure")), "{step}");
        let c = &pod["containers"][0];
        let cmd: Vec<&str> = c["command"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(cmd.len() == 2 && cmd[0].ends_with("scripts/shard.sh") && cmd[1] == step, "{step}: {cmd:?}");
        let env: std::collections::HashMap<String, String> = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap().to_string(), e["value"].as_str().unwrap().to_string()))
            .collect();
        let count = if step == "partition" { "M" } else { "N" };
        assert_eq!(spec["completions"].as_u64().map(|n| n.to_string()), Some(env[count].clone()), "{step}");
        assert!(spec["parallelism"].as_u64() <= spec["completions"].as_u64(), "{step}");
        let mount = c["volumeMounts"][0]["mountPath"].as_str().unwrap();
        for var in ["INPUT", "SHUFFLE", "OUT"] {
            assert!(env[var].starts_with(mount), "{step}: {var}={} is not on the volume at {mount}", env[var]);
        }
        env_of.push(env);
    }
    for var in ["INPUT", "SHUFFLE", "OUT", "M", "N"] {
        assert_eq!(env_of[0][var], env_of[1][var], "{var} differs between the two Jobs");
    }
}

/// `PATH` with fake `sbatch` and `kubectl` (DIR/fake) that log their arguments to DIR/calls.
fn fakes(d: &Path) -> String {
    let fake = d.join("fake");
    std::fs::create_dir_all(&fake).unwrap();
    let calls = d.join("calls").display().to_string();
    let scripts = [
        ("sbatch", format!("echo \"sbatch $*\" >> {calls}; echo $((1000 + $(wc -l < {calls})))")),
        ("kubectl", format!("echo \"kubectl $*\" >> {calls}; [[ \" $* \" == *\" get \"* ]] && echo Complete; exit 0")),
    ];
    for (name, body) in scripts {
        let p = fake.join(name);
        std::fs::write(&p, format!("#!/bin/bash\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    format!("{}:{}", fake.display(), std::env::var("PATH").unwrap())
}

/// The chains, with the schedulers' commands faked (no cluster here): submit.sh submits the
/// partition array of M tasks, then the bucket array of N with afterok on it; k8s/run.sh applies
/// the bucket Job only after the partition Job is Complete. The sbatch files, run as Slurm runs
/// them (a copy, SLURM_ARRAY_TASK_ID and SLURM_SUBMIT_DIR set), do the whole job.
#[test]
fn slurm_and_kubernetes_chains_run_partition_then_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = fakes(d);
    let root = scripts().parent().unwrap().to_path_buf();
    sh(&format!("PATH={path} INPUT=data SHUFFLE=sh OUT=out M=3 N=5 {}/slurm/submit.sh", scripts().display()), d)
        .assert_ok();
    let calls = std::fs::read_to_string(d.join("calls")).unwrap();
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(lines.len(), 2, "{calls}");
    assert!(lines[0].contains("--array=0-2") && lines[0].ends_with("slurm/partition.sbatch"), "{calls}");
    assert!(lines[1].contains("--array=0-4") && lines[1].contains("--dependency=afterok:1001"), "{calls}");
    assert!(lines[1].ends_with("slurm/bucket.sbatch"), "{calls}");

    std::fs::remove_file(d.join("calls")).unwrap();
    sh(&format!("PATH={path} POLL_SECONDS=0 {}/k8s/run.sh", scripts().display()), d).assert_ok();
    let calls = std::fs::read_to_string(d.join("calls")).unwrap();
    let order: Vec<&str> = calls.lines().filter(|l| l.contains(" apply ") || l.contains(" get ")).collect();
    assert_eq!(order.len(), 4, "{calls}");
    assert!(order[0].contains("partition-job.yaml") && order[1].contains("get job probe-rows-partition"), "{calls}");
    assert!(order[2].contains("bucket-job.yaml") && order[3].contains("get job probe-rows-bucket"), "{calls}");

    // The sbatch files themselves, as Slurm runs them: a copy of the file, index in the env.
    let mut cfg = GenConfig::new(2_000, d.join("data"));
    cfg.files = 2;
    gen::generate(&cfg).unwrap();
    for (step, count) in [("partition", 2), ("bucket", 2)] {
        let copy = d.join(format!("{step}.copy"));
        std::fs::copy(scripts().join(format!("slurm/{step}.sbatch")), &copy).unwrap();
        for i in 0..count {
            sh(
                &format!(
                    "SLURM_ARRAY_TASK_ID={i} SLURM_SUBMIT_DIR={} INPUT=data SHUFFLE=sh OUT=out M=2 N=2 PROBE_BIN= \
                     MAX_LEN=8 bash {}",
                    root.display(),
                    copy.display()
                ),
                d,
            )
            .assert_ok();
        }
    }
    sh(&format!("PROBE_BIN= MAX_LEN=8 {}/pipeline.sh data single", scripts().display()), d).assert_ok();
    // The Makefile runs one bucket too (BUCKET=I), into OUT/<split>/bucket-I/.
    for b in 0..2 {
        let make = format!(
            "make -s -f {}/pipeline.mk INPUT=sh/bucket-{b} OUT=mk BUCKET={b} PROBE_BIN= MAX_LEN=8",
            scripts().display()
        );
        sh(&make, d).assert_ok();
    }
    for s in ["train", "test"] {
        assert_eq!(list_dir(&d.join("out").join(s)), ["bucket-0", "bucket-1"], "split {s}");
        assert_eq!(list_dir(&d.join("mk").join(s)), ["bucket-0", "bucket-1"], "split {s} (make)");
        let want = canonical(parts_under(&d.join("single").join(s)));
        assert!(!want.is_empty() && canonical(parts_under(&d.join("out").join(s))) == want, "split {s} differs");
        assert!(canonical(parts_under(&d.join("mk").join(s))) == want, "split {s} differs (make)");
    }
}
