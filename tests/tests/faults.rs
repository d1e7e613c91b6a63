//! Faults: stages killed or interrupted mid-run, an upstream stage that dies mid-stream, a
//! downstream that closes early, a full disk, a terminal on stdout. Each must fail loudly (or,
//! for a closed pipe, end quietly) and leave nothing that looks like a result.
//!
//! Signals are not timed against the clock: the stage reads a stream the test writes (or
//! writes to a pipe the test stops reading), so it is held mid-run when the signal comes. The
//! soak test that signals at arbitrary moments is `#[ignore]`d:
//! `cargo test -p probe-tests --test faults -- --ignored` runs it (`.ci/run` does). The
//! full-disk test mounts a small tmpfs and is skipped, with a message, where `mount` is not
//! allowed; the terminal test needs `script` (util-linux).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::UInt32Type;

use probe_tests::gen::{generate, generate_in_memory, GenConfig, Order};
use probe_tests::harness::{bin, encode_ipc, list_dir, read_file, run, sh};
use probe_tests::process::{feed, finish, send, spawn_on_stdin, wait_until, Tmpfs};

/// Generate `rows` measurements in `order` into `dir` (one Parquet file).
fn data(dir: &Path, rows: u64, order: Order) -> PathBuf {
    let mut cfg = GenConfig::new(rows, dir);
    cfg.order = order;
    if rows < 1_000_000 {
        cfg.row_group_rows = Some(10_000);
    }
    generate(&cfg).expect("generate test data");
    dir.to_path_buf()
}

/// Entries of `dir` that do not start with a dot (what input discovery would pick up).
fn visible(dir: &Path) -> Vec<String> {
    list_dir(dir).into_iter().filter(|n| !n.starts_with('.')).collect()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

// ---------------------------------------------------------------------------------------------
// Killed and interrupted stages.
//
// The stage reads an IPC stream on stdin that the test writes: it is held mid-run, blocked on
// its input (or on its output, which the test stops reading), so the signal always lands while
// it works, however fast the machine.

/// `rows` measurements in `order`, as an Arrow IPC stream.
fn measurement_stream(rows: u64, order: Order) -> Arc<Vec<u8>> {
    let mut cfg = GenConfig::new(rows, "unused");
    cfg.order = order;
    let (files, _) = generate_in_memory(&cfg).expect("generate");
    let batches: Vec<_> = files.into_iter().flatten().collect();
    Arc::new(encode_ipc(probe_tests::gen::schema(), &batches))
}

/// SIGKILL cannot be caught: the half-written output must stay under its dot-name (which
/// input discovery skips), never at the `-o` path.
#[test]
fn sigkill_leaves_no_file_at_the_output_path() {
    let dir = tempfile::tempdir().unwrap();
    let stream = measurement_stream(300_000, Order::Sorted);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    for name in ["grouped.parquet", "grouped.arrows"] {
        let target = out.join(name);
        let mut child = spawn_on_stdin("probe-group", &["-", "-q", "-o", p(&target)], Stdio::null());
        // Half the input, then the stage waits for the rest.
        let hold = feed(&mut child, stream.clone(), stream.len() / 2);
        assert!(wait_until(30, || !list_dir(&out).is_empty()), "no temp output appeared");
        std::thread::sleep(Duration::from_millis(300));
        assert!(child.try_wait().unwrap().is_none(), "probe-group ended before the kill");
        send(&child, "KILL");
        let (status, _) = finish(child, 30);
        drop(hold);
        assert_eq!(status.signal(), Some(9), "{status:?}");
        assert!(!target.exists(), "{name} exists after SIGKILL");
        assert!(visible(&out).is_empty(), "only dot-named temp files may remain: {:?}", list_dir(&out));
    }
    // What SIGKILL left is invisible to the next stage.
    let ran = run("probe-check-order", &[p(&out)], None);
    ran.assert_code(2);
    assert!(ran.stderr.contains("no data files"), "{}", ran.stderr);
}

/// SIGINT, SIGTERM and SIGHUP remove the temp output and every spill file and exit 130:
/// early (runs being spilled, the stage waiting for input) and late (the final merge writing
/// the output, the stage blocked on a full stdout).
#[test]
fn interrupts_remove_temp_and_spill_files() {
    let dir = tempfile::tempdir().unwrap();
    let stream = measurement_stream(500_000, Order::Shuffled);
    let spilled = |d: &Path| list_dir(d).iter().any(|s| !list_dir(&d.join(s)).is_empty());
    for (signal, late) in [("TERM", false), ("INT", false), ("HUP", false), ("TERM", true), ("INT", true)] {
        let spill = tempfile::tempdir_in(dir.path()).unwrap();
        let out = tempfile::tempdir_in(dir.path()).unwrap();
        let target = out.path().join("grouped.parquet");
        let mut args = vec![
            "--sort",
            "--allow-small-memory-limit",
            "--memory-limit",
            "8MiB",
            "--temp-dir",
            p(spill.path()),
            "-q",
            "-",
        ];
        let mut child;
        let hold;
        let mut unread = None;
        if late {
            // All the input; the output goes to a pipe the test stops reading.
            child = spawn_on_stdin("probe-group", &args, Stdio::piped());
            hold = feed(&mut child, stream.clone(), stream.len());
            let mut stdout = child.stdout.take().expect("piped stdout");
            let mut first = [0u8; 1];
            stdout.read_exact(&mut first).expect("the output starts after the sort");
            assert!(spilled(spill.path()), "the final merge reads no spill files");
            std::thread::sleep(Duration::from_millis(200));
            // Keep the pipe open, unread, until the stage is gone.
            unread = Some(stdout);
        } else {
            args.extend(["-o", p(&target)]);
            child = spawn_on_stdin("probe-group", &args, Stdio::null());
            hold = feed(&mut child, stream.clone(), stream.len() * 4 / 5);
            assert!(wait_until(60, || spilled(spill.path())), "no spill file appeared");
        }
        assert!(child.try_wait().unwrap().is_none(), "probe-group ended before SIG{signal}");
        send(&child, signal);
        let (status, stderr) = finish(child, 30);
        drop((hold, unread));
        let when = if late { "late" } else { "early" };
        assert_eq!(status.code(), Some(130), "SIG{signal} ({when}): {status:?} {stderr}");
        assert!(stderr.is_empty(), "SIG{signal} ({when}): {stderr}");
        assert_eq!(list_dir(spill.path()), Vec::<String>::new(), "SIG{signal} ({when}) left spill files");
        assert_eq!(list_dir(out.path()), Vec::<String>::new(), "SIG{signal} ({when}) left output files");
    }
}

/// Signals at arbitrary moments, many times: whatever the stage is doing (reading, sorting,
/// spilling, creating the next spill file, merging, writing, renaming), an interrupted run
/// leaves no file, and a run that finished first left its complete output.
#[test]
#[ignore = "slow: 24 interrupted external sorts"]
fn interrupts_at_arbitrary_moments_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let stream = measurement_stream(500_000, Order::Shuffled);
    let mut x = 12345u64;
    let (mut interrupted, mut finished) = (0, 0);
    for i in 0..24 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delay = Duration::from_millis((x >> 33) % 2500);
        let signal = ["TERM", "INT", "HUP"][i % 3];
        let spill = tempfile::tempdir_in(dir.path()).unwrap();
        let out = tempfile::tempdir_in(dir.path()).unwrap();
        let target = out.path().join("grouped.parquet");
        let mut child = spawn_on_stdin(
            "probe-group",
            &[
                "--sort",
                "--allow-small-memory-limit",
                "--memory-limit",
                "8MiB",
                "--fan-in",
                "4",
                "--temp-dir",
                p(spill.path()),
                "-q",
                "-o",
                p(&target),
                "-",
            ],
            Stdio::null(),
        );
        let hold = feed(&mut child, stream.clone(), stream.len());
        std::thread::sleep(delay);
        let ran = child.try_wait().unwrap().is_none();
        if ran {
            send(&child, signal);
        }
        let (status, stderr) = finish(child, 60);
        drop(hold);
        assert!(stderr.is_empty() || !ran, "SIG{signal} after {delay:?}: {stderr}");
        assert_eq!(list_dir(spill.path()), Vec::<String>::new(), "SIG{signal} after {delay:?}: spill files left");
        if status.code() == Some(130) {
            interrupted += 1;
            let left = list_dir(out.path());
            // A signal between the final rename and the exit finds the output complete.
            if left != vec!["grouped.parquet".to_string()] {
                assert_eq!(left, Vec::<String>::new(), "SIG{signal} after {delay:?}: output left");
            } else {
                read_file(&target);
            }
        } else {
            // The signal came too late to matter: the run is complete.
            assert!(status.success(), "SIG{signal} after {delay:?}: {status:?} {stderr}");
            finished += 1;
            assert_eq!(list_dir(out.path()), vec!["grouped.parquet".to_string()]);
        }
    }
    eprintln!("{interrupted} runs interrupted, {finished} finished before the signal");
    assert!(interrupted > 0, "no run was interrupted: the test lost its point");
}

// ---------------------------------------------------------------------------------------------
// Upstream failures.

/// Probe rows and their measurements: 20k rows, 400 keys.
struct Small {
    dir: tempfile::TempDir,
}

fn small() -> Small {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    data(&d.join("data"), 20_000, Order::Sorted);
    data(&d.join("shuffled"), 20_000, Order::Shuffled);
    let input = d.join("data");
    for out in ["grouped.arrows", "grouped.parquet"] {
        run("probe-group", &[p(&input), "-q", "-o", p(&d.join(out))], None).assert_ok();
    }
    // The measurements as an IPC stream too.
    let (schema, batches) = read_file(&input.join("part-00000.parquet"));
    std::fs::write(d.join("measurements.arrows"), probe_tests::harness::encode_ipc(schema, &batches)).unwrap();
    Small { dir }
}

/// An upstream stage that died mid-stream: the downstream stage reports a truncated input and
/// `set -o pipefail` makes the pipeline fail; nothing is written at `-o`.
#[test]
fn a_truncated_stream_fails_the_downstream_stage_and_the_pipeline() {
    let s = small();
    let d = s.dir.path();
    let cases = [
        ("grouped.arrows", "probe-split --tag -q -o out.arrows", "probe-split"),
        ("grouped.arrows", "probe-split --out-dir splits -q", "probe-split"),
        ("grouped.arrows", "probe-batch --max-len 8 -q -o out.arrows", "probe-batch"),
        ("grouped.arrows", "probe-merge - -q -o out.parquet", "probe-merge"),
        ("measurements.arrows", "probe-group -q -o out.arrows", "probe-group"),
        ("measurements.arrows", "probe-check-order -q", "probe-check-order"),
    ];
    for (input, stage_cmd, stage) in cases {
        for cut in [100_000, 8] {
            // `head` stands in for a stage that died after writing `cut` bytes.
            let script = format!("rm -rf out.arrows out.parquet splits; head -c {cut} {input} | {stage_cmd}");
            let out = sh(&script, d);
            let code = if stage == "probe-check-order" { 2 } else { 1 };
            out.assert_code(code);
            let line = out.stderr.trim();
            assert!(
                line.starts_with(&format!("{stage}: error: stdin: "))
                    && line.contains("truncated")
                    && line.lines().count() == 1,
                "{script}: {line}"
            );
            let left: Vec<String> =
                list_dir(d).into_iter().filter(|n| n.starts_with("out") || n.starts_with('.')).collect();
            assert!(left.is_empty(), "{script}: left {left:?}");
            if d.join("splits").exists() {
                assert!(list_dir(&d.join("splits")).is_empty(), "{script}");
            }
        }
    }
}

/// A real upstream stage killed mid-stream (SIGKILL: no end-of-stream marker), its output piped
/// into the next stage: the downstream stage fails naming the truncation and writes nothing.
#[test]
fn a_killed_upstream_stage_fails_the_downstream_stage() {
    let dir = tempfile::tempdir().unwrap();
    let input = data(&dir.path().join("data"), 200_000, Order::Sorted);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut upstream = Command::new(bin("probe-group"))
        .args([p(&input), "-q"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("probe-group");
    let target = out.join("tagged.arrows");
    let mut downstream = spawn_on_stdin("probe-split", &["--tag", "-q", "-o", p(&target)], Stdio::null());
    // Pass on the first MiB, then kill the upstream stage while it waits to write more.
    let mut from = upstream.stdout.take().expect("piped stdout");
    let mut to = downstream.stdin.take().expect("piped stdin");
    let mut chunk = vec![0u8; 1 << 20];
    from.read_exact(&mut chunk).expect("1 MiB of probe rows");
    to.write_all(&chunk).expect("to probe-split");
    send(&upstream, "KILL");
    let status = upstream.wait().expect("wait");
    assert_eq!(status.signal(), Some(9), "{status:?}");
    drop(to);
    let (status, stderr) = finish(downstream, 30);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.trim().starts_with("probe-split: error: stdin: input stream is truncated")
            && stderr.trim().lines().count() == 1,
        "{stderr}"
    );
    assert!(list_dir(&out).is_empty(), "left {:?}", list_dir(&out));
}

// ---------------------------------------------------------------------------------------------
// Pipes.

/// Every stage reads stdin and writes stdout inside a pipeline; every exit status is 0.
#[test]
fn stages_compose_in_pipelines() {
    let s = small();
    let d = s.dir.path();
    for source in ["probe-group data -q", "cat data/part-00000.parquet | probe-group -q"] {
        let out = sh(
            &format!(
                "{source} | probe-split --tag -q | probe-batch --max-len 8 -q > rows.arrows; \
                 echo \"${{PIPESTATUS[*]}}\""
            ),
            d,
        );
        out.assert_ok();
        let statuses = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(statuses.split(' ').all(|s| s == "0"), "{source}: statuses {statuses}: {}", out.stderr);
        assert!(out.stderr.is_empty(), "{}", out.stderr);
        let (schema, batches) = read_file(&d.join("rows.arrows"));
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(&names[..5], ["src_addr", "window", "start_time", "end_time", "length"]);
        let mut measurements = 0u64;
        let mut keys = std::collections::BTreeSet::new();
        for b in &batches {
            let len = b.column(4).as_primitive::<UInt32Type>();
            assert!(len.values().iter().all(|&l| (1..=8).contains(&l)));
            measurements += len.values().iter().map(|&l| u64::from(l)).sum::<u64>();
            let k = b.column(0).as_string::<i32>();
            keys.extend((0..k.len()).map(|i| k.value(i).to_string()));
        }
        // Windows of 8 with stride 8 cover every measurement exactly once.
        assert_eq!(measurements, 20_000);
        assert_eq!(keys.len(), 20_000 / 30);
    }
    // probe-merge takes stdin too.
    let out = sh(
        "probe-group data -q | probe-split --tag -q | probe-batch --max-len 8 -q | probe-merge - -q -o final.parquet",
        d,
    );
    out.assert_ok();
    let (_, a) = read_file(&d.join("final.parquet"));
    let (_, b) = read_file(&d.join("rows.arrows"));
    let rows = |v: &[arrow::record_batch::RecordBatch]| v.iter().map(|b| b.num_rows()).sum::<usize>();
    assert_eq!(rows(&a), rows(&b));
}

/// A consumer that stops reading (`| head -c 100`) ends every stage quietly: exit 0, no stderr.
#[test]
fn a_closed_downstream_pipe_ends_every_stage_quietly() {
    let s = small();
    let d = s.dir.path();
    for (cmd, want) in [
        ("probe-group data -q", "0 0"),
        ("probe-split --tag -q grouped.arrows", "0 0"),
        ("probe-batch --max-len 4 -q grouped.arrows", "0 0"),
        // A long report (every violation listed); its exit status is still the verdict.
        ("probe-check-order shuffled -q --max-violations 1000000", "1 0"),
        ("probe-check-order shuffled -q --max-violations 1000000 --json", "1 0"),
        ("probe-group data -q | probe-split --tag -q", "0 0 0"),
        ("probe-group data -q | probe-split --tag -q | probe-batch --max-len 4 -q", "0 0 0 0"),
    ] {
        let out = sh(&format!("{cmd} | head -c 100 > /dev/null; echo \"${{PIPESTATUS[*]}}\""), d);
        out.assert_ok();
        let statuses = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(statuses, want, "{cmd}: {}", out.stderr);
        assert!(out.stderr.is_empty(), "{cmd}: stderr noise on a closed pipe: {}", out.stderr);
    }
}

/// A closed stderr (a log reader that died) does not turn a finished run into a failed one:
/// the summary line is lost, the exit status and the output are not (it was a panic, exit 101).
#[test]
fn a_closed_stderr_changes_no_outcome() {
    let s = small();
    let d = s.dir.path();
    let stage = |name: &str, args: &[&str]| {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        Command::new(bin(name)).args(args).current_dir(d).stdout(Stdio::null()).stderr(writer).status().unwrap()
    };
    // Summaries (not -q), in every stage that writes a file.
    assert_eq!(stage("probe-group", &["data", "-o", "g.parquet"]).code(), Some(0));
    assert_eq!(stage("probe-split", &["grouped.arrows", "--out-dir", "splits"]).code(), Some(0));
    assert_eq!(stage("probe-batch", &["grouped.arrows", "-o", "rows.arrows"]).code(), Some(0));
    assert_eq!(stage("probe-merge", &["rows.arrows", "-o", "rows.parquet"]).code(), Some(0));
    assert_eq!(stage("probe-check-order", &["data"]).code(), Some(0));
    let rows = |f: &str| read_file(&d.join(f)).1.iter().map(|b| b.num_rows()).sum::<usize>();
    assert_eq!(rows("g.parquet"), rows("grouped.arrows"));
    assert_eq!(rows("rows.parquet"), rows("rows.arrows"));
    // An error keeps its status.
    assert_eq!(stage("probe-group", &["no-such-dir"]).code(), Some(1));
    assert_eq!(stage("probe-group", &["--no-such-flag"]).code(), Some(2));
}

/// Binary output to a terminal is refused with a hint; the text report of check-order is not.
#[test]
fn binary_output_to_a_terminal_is_refused() {
    if Command::new("script").arg("--version").output().is_err() {
        probe_tests::harness::skip_unless_ci("`script` (util-linux) is not installed, so no terminal to test with");
        return;
    }
    let s = small();
    let d = s.dir.path();
    for cmd in ["probe-group data", "probe-split --tag grouped.arrows", "probe-batch grouped.arrows"] {
        // `script` runs the command on a pseudo-terminal and returns its exit status.
        let out = sh(&format!("script -qec '{cmd}' /dev/null < /dev/null"), d);
        let tty = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.code(), 1, "{cmd}: {tty}");
        assert!(
            tty.contains("error: refusing to write binary Arrow data to a terminal") && tty.contains("-o FILE"),
            "{cmd}: {tty}"
        );
        assert!(!tty.contains("panicked"), "{tty}");
    }
    let out = sh("script -qec 'probe-check-order data' /dev/null < /dev/null", d);
    let tty = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.code(), 0, "{tty}");
    assert!(tty.contains("sorted"), "{tty}");
}

// ---------------------------------------------------------------------------------------------
// A full disk.

/// Output or spill files on a full disk: a clear "no space left" error naming the file or
/// directory, and nothing left on the disk.
#[test]
fn a_full_disk_is_reported_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(full) = Tmpfs::mount(&d.join("full"), "1m") else {
        return;
    };
    let f = full.path.clone();
    // 100k rows: about 1 MiB of Parquet, several MiB decoded, grouped or spilled.
    data(&d.join("data"), 100_000, Order::Sorted);
    data(&d.join("shuffled"), 100_000, Order::Shuffled);
    let grouped = d.join("grouped.arrows");
    run("probe-group", &[p(&d.join("data")), "-q", "-o", p(&grouped)], None).assert_ok();
    let data_dir = d.join("data");
    let shuffled = d.join("shuffled");
    let elsewhere = d.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let t = |name: &str| f.join(name).display().to_string();

    let cases: Vec<(&str, Vec<String>, Vec<String>)> = vec![
        ("probe-group", vec![p(&data_dir).into(), "-o".into(), t("grouped.parquet")], vec!["grouped.parquet".into()]),
        ("probe-group", vec![p(&data_dir).into(), "-o".into(), t("grouped.arrows")], vec!["grouped.arrows".into()]),
        ("probe-group", vec![p(&data_dir).into(), "-o".into(), t("grouped.arrow")], vec!["grouped.arrow".into()]),
        (
            "probe-split",
            vec![p(&grouped).into(), "--tag".into(), "-o".into(), t("tagged.parquet")],
            vec!["tagged.parquet".into()],
        ),
        ("probe-split", vec![p(&grouped).into(), "--out-dir".into(), t("splits")], vec!["splits".into()]),
        (
            "probe-batch",
            vec![p(&grouped).into(), "--max-len".into(), "4".into(), "-o".into(), t("rows.arrows")],
            vec!["rows.arrows".into()],
        ),
        (
            "probe-merge",
            vec![p(&grouped).into(), "--compression".into(), "none".into(), "-o".into(), t("merged.parquet")],
            vec!["merged.parquet".into()],
        ),
        (
            "probe-merge",
            vec![p(&grouped).into(), "--compression".into(), "none".into(), "--out-dir".into(), t("merged")],
            vec!["merged".into()],
        ),
        // Spill files of --sort on the full disk; the output goes elsewhere.
        (
            "probe-group",
            vec![
                "--sort".into(),
                "--allow-small-memory-limit".into(),
                "--memory-limit".into(),
                "4MiB".into(),
                "--temp-dir".into(),
                p(&f).into(),
                p(&shuffled).into(),
                "-o".into(),
                p(&elsewhere.join("grouped.parquet")).into(),
            ],
            vec![p(&f).into(), "spill".into()],
        ),
    ];
    for (stage, mut args, needles) in cases {
        args.push("-q".into());
        let out = run(stage, &args, None);
        let mut needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        needles.push("no space left");
        out.assert_error(stage, &needles);
        // Nothing on the full disk but the out-dirs the stages made (empty).
        for name in list_dir(&f) {
            let path = f.join(&name);
            assert!(path.is_dir() && list_dir(&path).is_empty(), "{}: left {name} on the full disk", out.cmd);
            std::fs::remove_dir(&path).unwrap();
        }
        assert!(list_dir(&elsewhere).is_empty(), "{}: left output", out.cmd);
    }

    // Redirected stdout on a full disk: the shell made the file, the stage says why it failed.
    let out = sh(&format!("probe-group data -q > {}", t("stdout.arrows")), d);
    out.assert_error("probe-group", &["standard output", "No space left on device"]);
    drop(full);
}
