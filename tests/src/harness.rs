//! Running the real stage binaries from tests.
//!
//! ```no_run
//! use probe_tests::harness::{decode_ipc, run};
//! let out = run("probe-group", &["data/"], None);
//! out.assert_ok();
//! let (schema, batches) = decode_ipc(&out.stdout);
//! # let _ = (schema, batches);
//! ```
//!
//! The binaries are built once per test process with the `cargo` that runs the tests (a
//! no-op when they are up to date), in the same profile and target dir, so
//! `cargo test --workspace` alone is enough.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

/// Directory holding the built binaries (`target/debug` or `target/release`).
pub fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Test executables live in target/<profile>/deps.
        let exe = std::env::current_exe().expect("test executable path");
        let deps = exe.parent().expect("deps dir");
        let dir =
            if deps.ends_with("deps") { deps.parent().expect("profile dir").to_path_buf() } else { deps.to_path_buf() };
        let release = dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--workspace", "--bins", "--manifest-path"]).arg(&manifest);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build for the stage binaries");
        assert!(status.success(), "cargo build --workspace --bins failed");
        dir
    })
    .clone()
}

/// Path of a stage binary.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// A finished command.
#[derive(Debug)]
pub struct Output {
    /// The command line, for failure messages.
    pub cmd: String,
    /// Exit status.
    pub status: ExitStatus,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: String,
}

impl Output {
    /// The exit code (-1 when killed by a signal).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Panic with the command, status and stderr unless it exited 0.
    pub fn assert_ok(&self) -> &Self {
        assert!(
            self.status.success(),
            "command failed: {}\nstatus: {}\nstderr:\n{}",
            self.cmd,
            self.status,
            self.stderr
        );
        self
    }

    /// Panic unless it exited with `code`.
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code(), code, "unexpected status for: {}\nstderr:\n{}", self.cmd, self.stderr);
        self
    }

    /// Assert a failure reported as exactly one `stage: error: ...` line containing each of
    /// `needles`; returns that line.
    pub fn assert_error(&self, stage: &str, needles: &[&str]) -> String {
        self.assert_code(1);
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "expected one stderr line from {}, got:\n{}", self.cmd, self.stderr);
        let line = lines[0];
        assert!(line.starts_with(&format!("{stage}: error: ")), "bad error line: {line}");
        for n in needles {
            assert!(line.contains(n), "error line of {} lacks `{n}`:\n{line}", self.cmd);
        }
        assert!(!self.stderr.contains("panicked"), "panic in {}:\n{}", self.cmd, self.stderr);
        line.to_string()
    }
}

/// Run a stage binary with arguments and optional stdin bytes (fed from a thread).
pub fn run<S: AsRef<std::ffi::OsStr>>(name: &str, args: &[S], stdin: Option<Vec<u8>>) -> Output {
    let path = bin(name);
    let mut cmd = Command::new(&path);
    cmd.args(args);
    let cmd_text = format!(
        "{name} {}",
        args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
    );
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
    let feeder = stdin.map(|bytes| {
        let mut sink = child.stdin.take().expect("piped stdin");
        std::thread::spawn(move || {
            let _ = sink.write_all(&bytes);
        })
    });
    let out = child.wait_with_output().expect("waiting for child");
    if let Some(f) = feeder {
        let _ = f.join();
    }
    Output {
        cmd: cmd_text,
        status: out.status,
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run a shell pipeline with `bash -o pipefail -c`, with the binaries on PATH.
pub fn sh(script: &str, dir: &Path) -> Output {
    let path = format!("{}:{}", bin_dir().display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", script])
        .current_dir(dir)
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
        .expect("running bash");
    Output {
        cmd: script.to_string(),
        status: out.status,
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Decode an Arrow IPC stream (panics if it is not one, or is truncated).
pub fn decode_ipc(bytes: &[u8]) -> (SchemaRef, Vec<RecordBatch>) {
    let reader = StreamReader::try_new(bytes, None).expect("valid IPC stream");
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().expect("valid IPC batches");
    assert!(bytes.ends_with(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]), "IPC stream lacks the end-of-stream marker");
    (schema, batches)
}

/// Read a file written by a stage: Parquet, IPC file or IPC stream.
pub fn read_file(path: &Path) -> (SchemaRef, Vec<RecordBatch>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    if bytes.starts_with(b"PAR1") {
        let file = std::fs::File::open(path).expect("open parquet");
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet footer");
        let schema = builder.schema().clone();
        let batches = builder.build().expect("parquet reader").collect::<Result<Vec<_>, _>>().expect("parquet data");
        (schema, batches)
    } else if bytes.starts_with(b"ARROW1") {
        let reader = arrow::ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None).expect("ipc file");
        let schema = reader.schema();
        (schema, reader.collect::<Result<Vec<_>, _>>().expect("ipc file batches"))
    } else {
        decode_ipc(&bytes)
    }
}

/// Write batches as Parquet with small row groups (so readers cross row-group boundaries).
pub fn write_parquet(path: &Path, schema: SchemaRef, batches: &[RecordBatch], row_group_rows: usize) {
    let file = std::fs::File::create(path).expect("create parquet");
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(row_group_rows.max(1))).build();
    let mut w = ArrowWriter::try_new(file, schema, Some(props)).expect("parquet writer");
    for b in batches {
        w.write(b).expect("write parquet");
    }
    w.close().expect("close parquet");
}

/// Encode batches as an Arrow IPC stream.
pub fn encode_ipc(schema: SchemaRef, batches: &[RecordBatch]) -> Vec<u8> {
    let mut buf = Vec::new();
    {
        let mut w = StreamWriter::try_new(&mut buf, &schema).expect("ipc writer");
        for b in batches {
            w.write(b).expect("write ipc");
        }
        w.finish().expect("finish ipc");
    }
    buf
}

/// A test cannot run here because of `reason` (a tool or a right this machine lacks). On a
/// developer's machine it is skipped with a message; under `CI=true` (.ci/run exports it) a
/// skip would hide a gap, so it fails instead.
pub fn skip_unless_ci(reason: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(!ci, "CI is set, but this test cannot run: {reason}");
    eprintln!("skipping: {reason}");
}

/// Whether `python3` can import pyarrow; if not, skipped with a message ([`skip_unless_ci`]:
/// under CI a missing pyarrow fails the test instead).
pub fn pyarrow_available() -> bool {
    let probe = std::process::Command::new("python3").args(["-c", "import pyarrow"]).output();
    if probe.is_ok_and(|o| o.status.success()) {
        return true;
    }
    skip_unless_ci("python3 cannot import pyarrow (pip install pyarrow; .ci/run installs it)");
    false
}

/// Files in a directory (names only), sorted, including hidden ones.
pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}
