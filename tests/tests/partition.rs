//! probe-partition through the real binary (issue 14): every row lands in exactly one bucket,
//! the bucket is the documented function of the key (computed here with xxhash directly, and
//! pinned by golden values), rows keep their input order within a bucket, every bucket file
//! exists (empty ones too, with the schema and the recorded key/time), and the outputs are
//! staged: a killed run leaves nothing that looks finished, a rerun replaces only its own files.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;

use probe_tests::gen::{self, GenConfig, Order};
use probe_tests::harness::{bin, encode_ipc, list_dir, read_file, run};
use probe_tests::oracle::{rows, Val};

/// The partition seed as the README documents it: "probepar".
const SEED: u64 = 0x7072_6f62_6570_6172;

/// The documented bucket of a string key among `n`: (XXH3_64(bytes, seed) * n) >> 64.
fn documented_bucket(key: &str, n: u64) -> usize {
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), SEED);
    ((h as u128 * n as u128) >> 64) as usize
}

fn generate(dir: &Path, rows: u64, order: Order) {
    let mut cfg = GenConfig::new(rows, dir.join("data"));
    cfg.order = order;
    cfg.files = 2;
    cfg.keys = rows / 40;
    cfg.seed = 3;
    gen::generate(&cfg).unwrap();
}

/// Every input row, files in name order, rows in file order.
fn input_rows(data: &Path) -> Vec<Vec<Val>> {
    let mut files: Vec<_> = std::fs::read_dir(data).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.iter().flat_map(|f| rows(&read_file(f).1)).collect()
}

fn key_of(row: &[Val]) -> &str {
    match &row[0] {
        Val::S(s) => s,
        other => panic!("key {other:?}"),
    }
}

/// Shuffled input through small buffers (many flushes) on 3 threads: bucket i's file holds
/// exactly the input rows whose key the documented function sends to i, in input order; the
/// schema records the key and time; the files are the same bytes for 1 thread.
#[test]
fn every_row_lands_in_its_documented_bucket_in_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    generate(d, 30_000, Order::Shuffled);
    let want = input_rows(&d.join("data"));
    let n = 8;
    for (out, threads) in [("p3", "3"), ("p1", "1")] {
        run(
            "probe-partition",
            &["--buckets", "8", "--out-dir", out, "--buffer-size", "16KiB", "--threads", threads, "-q", "data"]
                .map(|a| if a == "data" || a == out { d.join(a).display().to_string() } else { a.to_string() }),
            None,
        )
        .assert_ok();
    }
    let mut seen = 0;
    for i in 0..n {
        let path = d.join(format!("p3/bucket-{i}/part-00000.arrows"));
        let (schema, batches) = read_file(&path);
        let got = rows(&batches);
        let expected: Vec<Vec<Val>> =
            want.iter().filter(|r| documented_bucket(key_of(r), n as u64) == i).cloned().collect();
        assert!(!expected.is_empty(), "bucket {i} is empty: pick another seed");
        assert_eq!(got.len(), expected.len(), "rows of bucket {i}");
        assert!(got == expected, "bucket {i}: not the input rows of its keys in input order");
        assert_eq!(schema.metadata()["probe_rows.key"], r#"["src_addr"]"#);
        assert_eq!(schema.metadata()["probe_rows.time"], "event_time");
        // Threads change nothing, to the byte.
        let one = std::fs::read(d.join(format!("p1/bucket-{i}/part-00000.arrows"))).unwrap();
        assert!(one == std::fs::read(&path).unwrap(), "bucket {i} differs between 1 and 3 threads");
        seen += got.len();
    }
    assert_eq!(seen, want.len(), "every row in exactly one bucket");
    assert_eq!(list_dir(&d.join("p3")), (0..n).map(|i| format!("bucket-{i}")).collect::<Vec<_>>());
}

/// Four keys, given as an Arrow IPC stream on stdin.
fn four_keys() -> (Vec<&'static str>, Vec<u8>) {
    let keys = vec!["192.0.2.1", "198.51.100.7", "2001:db8::1", "10.0.0.1"];
    let schema = Arc::new(Schema::new(vec![
        Field::new("src_addr", DataType::Utf8, true),
        Field::new("event_time", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("rtt", DataType::Int64, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(keys.clone())),
        Arc::new(TimestampMicrosecondArray::from(vec![1, 2, 3, 4])),
        Arc::new(Int64Array::from(vec![10, 20, 30, 40])),
    ];
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    (keys, encode_ipc(schema, &[batch]))
}

/// The bucket function cannot drift: golden buckets for N = 3 and 8 (worked out with Python's
/// `xxhash` as the README shows), and the empty buckets are complete, empty streams.
#[test]
fn bucket_function_is_pinned_and_empty_buckets_exist() {
    let dir = tempfile::tempdir().unwrap();
    let (keys, stdin) = four_keys();
    for (n, golden) in [(3u64, [1, 1, 1, 2]), (8, [4, 3, 4, 7])] {
        let out = dir.path().join(format!("n{n}"));
        let o = out.display().to_string();
        run("probe-partition", &["--buckets", &n.to_string(), "--out-dir", &o, "-q", "-"], Some(stdin.clone()))
            .assert_ok();
        for (k, g) in keys.iter().zip(golden) {
            assert_eq!(documented_bucket(k, n), g, "the documented function of {k} (N={n})");
        }
        for i in 0..n as usize {
            let (schema, batches) = read_file(&out.join(format!("bucket-{i}/part-00000.arrows")));
            let got: Vec<String> = rows(&batches).iter().map(|r| key_of(r).to_string()).collect();
            let want: Vec<String> =
                keys.iter().zip(golden).filter(|(_, g)| *g == i).map(|(k, _)| k.to_string()).collect();
            assert_eq!(got, want, "bucket {i} of {n}");
            assert_eq!(schema.fields().len(), 3, "bucket {i} of {n} keeps every column");
            assert_eq!(schema.metadata()["probe_rows.key"], r#"["src_addr"]"#, "bucket {i} of {n}");
        }
    }
    // Two streams concatenated on stdin (`cat a.arrows b.arrows |`): both are read.
    let out = dir.path().join("twice");
    let o = out.display().to_string();
    run("probe-partition", &["--buckets", "8", "--out-dir", &o, "-q"], Some([stdin.clone(), stdin].concat()))
        .assert_ok();
    let (_, batches) = read_file(&out.join("bucket-4/part-00000.arrows"));
    let got: Vec<String> = rows(&batches).iter().map(|r| key_of(r).to_string()).collect();
    assert_eq!(got, ["192.0.2.1", "2001:db8::1", "192.0.2.1", "2001:db8::1"]);
}

/// A rerun replaces its own NAME's files and leaves another NAME's alone; a staging folder left
/// by a killed run of the same NAME is refused (one error line, nothing written), one of another
/// NAME is not; a run killed with SIGKILL leaves no bucket file of its NAME, only its hidden
/// staging folder.
#[test]
fn outputs_are_staged_and_reruns_touch_only_their_own_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, stdin) = four_keys();
    // A relative --out-dir, as the scripts give it: run in the temp dir through bash.
    let cwd_run = |name: &str| {
        probe_tests::harness::sh(
            &format!("{} --buckets 3 --out-dir sh --name {name} -q - < in.arrows", bin("probe-partition").display()),
            d,
        )
    };
    std::fs::write(d.join("in.arrows"), &stdin).unwrap();
    cwd_run("part-00000").assert_ok();
    cwd_run("part-00001").assert_ok();
    let other = d.join("sh/bucket-2/part-00001.arrows");
    let before = std::fs::metadata(&other).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    cwd_run("part-00000").assert_ok();
    assert_eq!(std::fs::metadata(&other).unwrap().modified().unwrap(), before, "another name's file was rewritten");
    assert_eq!(list_dir(&d.join("sh/bucket-1")), ["part-00000.arrows", "part-00001.arrows"]);

    std::fs::create_dir(d.join("sh/.probe-staging-part-00001-4242")).unwrap();
    cwd_run("part-00000").assert_ok();
    let out = cwd_run("part-00001");
    out.assert_error("probe-partition", &[".probe-staging-part-00001-4242", "rm -rf"]);
    std::fs::remove_dir(d.join("sh/.probe-staging-part-00001-4242")).unwrap();

    // A run that never sees the end of its input, killed: nothing of part-00002 in any bucket.
    let mut child = std::process::Command::new(bin("probe-partition"))
        .args(["--buckets", "3", "--out-dir", "sh", "--name", "part-00002", "-q", "-"])
        .current_dir(d)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut sink = child.stdin.take().unwrap();
    // The stream without its end-of-stream marker, so the stage waits for more.
    std::io::Write::write_all(&mut sink, &stdin[..stdin.len() - 8]).unwrap();
    let start = std::time::Instant::now();
    while !list_dir(&d.join("sh")).iter().any(|n| n.starts_with(".probe-staging-part-00002-")) {
        assert!(start.elapsed().as_secs() < 30, "no staging folder appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    for i in 0..3 {
        assert_eq!(list_dir(&d.join(format!("sh/bucket-{i}"))), ["part-00000.arrows", "part-00001.arrows"]);
    }
}

/// Bad settings are usage errors (exit 2); bad input one error line naming the column (exit 1);
/// nothing is written either way.
#[test]
fn bad_settings_and_inputs_are_refused_before_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let (_, stdin) = four_keys();
    let o = dir.path().join("o").display().to_string();
    for (args, needle) in [
        (vec!["--buckets", "0"], "--buckets 0"),
        (vec!["--buckets", "2", "--name", "_hidden"], "--name `_hidden`"),
        (vec!["--buckets", "2", "--name", "a/b"], "--name `a/b`"),
    ] {
        let mut a = args.clone();
        a.extend(["--out-dir", &o, "-"]);
        let out = run("probe-partition", &a, Some(stdin.clone()));
        out.assert_code(2);
        assert!(out.stderr.contains(needle), "{}", out.stderr);
    }
    let out = run("probe-partition", &["--buckets", "2", "--key", "dst", "--out-dir", &o, "-"], Some(stdin.clone()));
    out.assert_error("probe-partition", &["`dst`"]);
    let out = run("probe-partition", &["--buckets", "2", "--time", "ts", "--out-dir", &o, "-"], Some(stdin.clone()));
    out.assert_error("probe-partition", &["`ts`", "--time"]);
    assert!(!dir.path().join("o").exists(), "a refused run left {:?}", list_dir(&dir.path().join("o")));
}

/// Map tasks share the out-dir: one that created it and then fails must not remove it, with the
/// files another task finished in it meanwhile (other stages remove an --out-dir they created
/// when they fail).
#[test]
fn a_failing_task_leaves_the_shared_out_dir_and_other_tasks_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, stdin) = four_keys();
    std::fs::write(d.join("in.arrows"), &stdin).unwrap();
    // Task A reads the start of a stream, creates sh/ and waits for the rest of its input.
    let mut a = std::process::Command::new(bin("probe-partition"))
        .args(["--buckets", "2", "--out-dir", "sh", "--name", "part-00000", "-q", "-"])
        .current_dir(d)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut sink = a.stdin.take().unwrap();
    std::io::Write::write_all(&mut sink, &stdin[..stdin.len() - 8]).unwrap();
    let start = std::time::Instant::now();
    while !list_dir(&d.join("sh")).iter().any(|n| n.starts_with(".probe-staging-part-00000-")) {
        assert!(start.elapsed().as_secs() < 30, "task A never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Task B finishes into the same folder.
    probe_tests::harness::sh(
        &format!("{} --buckets 2 --out-dir sh --name part-00001 -q in.arrows", bin("probe-partition").display()),
        d,
    )
    .assert_ok();
    // Task A's input goes on with bytes that are not Arrow: it fails.
    std::io::Write::write_all(&mut sink, b"this is not Arrow IPC").unwrap();
    drop(sink);
    let out = a.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    for b in 0..2 {
        assert_eq!(list_dir(&d.join(format!("sh/bucket-{b}"))), ["part-00001.arrows"], "task B's files");
    }
    assert_eq!(list_dir(&d.join("sh")), ["bucket-0", "bucket-1"]);
}
