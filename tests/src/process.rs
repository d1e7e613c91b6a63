//! Stages as child processes held mid-run, for the fault tests: fed from a thread that stops
//! half-way, signalled, waited for with a deadline; a small tmpfs as a full disk.
//!
//! ```text
//! let mut child = spawn_on_stdin("probe-split", &["--out-dir", dir, "-q"], Stdio::null());
//! let hold = feed(&mut child, bytes, bytes.len() / 2);   // the stage now waits for the rest
//! send(&child, "KILL");
//! let (status, stderr) = finish(child, 30);
//! ```
#![allow(clippy::unwrap_used)] // test support: a panic is the failure report

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{bin, list_dir};

/// Poll `cond` every 10 ms for up to `secs`; false if it never held.
pub fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Wait for a child (at most `secs`), returning its status and stderr.
pub fn finish(mut child: Child, secs: u64) -> (ExitStatus, String) {
    let mut err = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut status = None;
    if !wait_until(secs, || {
        status = child.try_wait().expect("wait");
        status.is_some()
    }) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the stage did not end within {secs} s");
    }
    (status.expect("status"), reader.join().unwrap_or_default())
}

/// Send `signal` (`KILL`, `INT`, ...) to the child.
pub fn send(child: &Child, signal: &str) {
    let ok = Command::new("kill").args(["-s", signal, &child.id().to_string()]).status().expect("kill").success();
    assert!(ok, "kill -s {signal} failed");
}

/// Start a stage reading stdin, with stdout discarded or piped, and stderr captured.
pub fn spawn_on_stdin(stage: &str, args: &[&str], stdout: Stdio) -> Child {
    Command::new(bin(stage))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {stage}: {e}"))
}

/// Write `bytes[..upto]` to the child's stdin from a thread, then keep stdin open until the
/// returned sender is dropped (all of `bytes` when `upto` is its length: then stdin closes).
pub fn feed(child: &mut Child, bytes: Arc<Vec<u8>>, upto: usize) -> std::sync::mpsc::Sender<()> {
    let mut stdin = child.stdin.take().expect("piped stdin");
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        // The stage may die first: a broken pipe here is expected.
        if stdin.write_all(&bytes[..upto]).is_ok() && upto < bytes.len() {
            let _ = rx.recv();
        }
    });
    tx
}

/// Every file under `dir`, hidden ones and those in hidden folders included, as paths relative
/// to `dir`, sorted.
pub fn all_files(dir: &Path) -> Vec<String> {
    walk(dir, true)
}

/// The files under `dir` that a reader would find: no name on the way starts with a dot (what
/// input discovery and shell globs skip). Folders alone do not count.
pub fn visible_files(dir: &Path) -> Vec<String> {
    walk(dir, false)
}

fn walk(dir: &Path, hidden: bool) -> Vec<String> {
    let mut out = Vec::new();
    for name in list_dir(dir) {
        if !hidden && name.starts_with('.') {
            continue;
        }
        let path = dir.join(&name);
        if path.is_dir() {
            out.extend(walk(&path, hidden).into_iter().map(|f| format!("{name}/{f}")));
        } else {
            out.push(name);
        }
    }
    out
}

/// A small tmpfs, unmounted on drop.
pub struct Tmpfs {
    /// Where it is mounted.
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (`1m`, `700k`) at `path`; `None`, with a message, where the
    /// test may not mount.
    pub fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        if let Err(e) = std::fs::create_dir_all(path) {
            crate::harness::skip_unless_ci(&format!("the full-disk test: cannot create {}: {e}", path.display()));
            return None;
        }
        let out =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(path).output();
        let why = match out {
            Err(e) => format!("cannot run `mount`: {e}"),
            Ok(o) if !o.status.success() => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Ok(_) => return Some(Tmpfs { path: path.to_path_buf() }),
        };
        // CI has the rights (.ci/run sets CI=true): there a skipped test would hide a gap.
        crate::harness::skip_unless_ci(&format!("the full-disk test: cannot mount a tmpfs ({why})"));
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
