//! Removal of temporary files and spill directories when the stage is interrupted.
//!
//! Temp outputs and spill files are removed by their destructors on success and on error;
//! SIGINT, SIGTERM and SIGHUP skip destructors, so they are registered here and a signal
//! handler removes them before exiting with status 130. (SIGKILL cannot be caught: it leaves a
//! dot-named temp file, which input discovery skips.)

use std::path::{Path, PathBuf};
use std::sync::Mutex;

static PATHS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Held while a multi-file result is moved into place ([`crate::staging`]); the signal handler
/// takes it first, so an interrupt never lands between two of those renames.
static COMMIT: Mutex<()> = Mutex::new(());

/// Hold off the interrupt handler until the returned guard is dropped.
pub fn commit_lock() -> std::sync::MutexGuard<'static, ()> {
    COMMIT.lock().unwrap_or_else(|p| p.into_inner())
}

/// Install the signal handler (once, from `main`).
pub fn install() {
    let _ = ctrlc::set_handler(|| {
        // The stage keeps running while its files go; holding stderr keeps it from printing
        // an error about a vanished spill file before the exit.
        let _stderr = std::io::stderr().lock();
        let _commit = commit_lock();
        remove_all();
        std::process::exit(130);
    });
}

/// Something to undo on interruption that is not a local path: an object-storage upload to
/// abort ([`crate::store::Upload`]).
type Hook = Box<dyn FnOnce() + Send>;

static HOOKS: Mutex<Vec<(u64, Hook)>> = Mutex::new(Vec::new());
static NEXT_HOOK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Run `hook` on interruption (or [`remove_all`]) unless forgotten first; returns its id.
pub fn register_hook(hook: Hook) -> u64 {
    let id = NEXT_HOOK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let Ok(mut g) = HOOKS.lock() {
        g.push((id, hook));
    }
    id
}

/// Forget a hook (its upload completed or was aborted already).
pub fn forget_hook(id: u64) {
    if let Ok(mut g) = HOOKS.lock() {
        g.retain(|(i, _)| *i != id);
    }
}

/// Remove every registered path now, and run the registered hooks.
pub fn remove_all() {
    let hooks = match HOOKS.lock() {
        Ok(mut g) => std::mem::take(&mut *g),
        Err(p) => std::mem::take(&mut *p.into_inner()),
    };
    for (_, hook) in hooks {
        hook();
    }
    let paths = match PATHS.lock() {
        Ok(mut g) => std::mem::take(&mut *g),
        Err(p) => std::mem::take(&mut *p.into_inner()),
    };
    for p in paths.iter().rev() {
        if p.is_dir() {
            // A running stage may add a file while the directory is emptied: try again.
            for _ in 0..5 {
                if std::fs::remove_dir_all(p).is_ok() || !p.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        } else {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Remember a file or directory to remove on interruption.
pub fn register(path: &Path) {
    if let Ok(mut g) = PATHS.lock() {
        g.push(path.to_path_buf());
    }
}

/// Forget a path (it was renamed into place or removed already).
pub fn forget(path: &Path) {
    if let Ok(mut g) = PATHS.lock() {
        g.retain(|p| p != path);
    }
}
