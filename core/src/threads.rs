//! The one rayon pool of a process, sized by `--threads`.
//!
//! ```text
//! let threads = probe_core::threads::init(args.threads.threads)?;   // once, before any work
//! batches.par_iter().map(encode).collect()                          // runs on that pool
//! ```
//!
//! Every stage builds rayon's global pool once, from its validated config, so every parallel
//! piece (Parquet encoding in [`crate::output`], grouping, sorting, windowing) shares the same
//! `N` threads and nothing oversubscribes the machine. Output never depends on `N`: work is
//! split by content (row groups, key ranges, batches), never by the number of threads.

use std::error::Error as _;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Build the global pool with `threads` threads (0: one per core, as the OS grants them to this
/// process) and return how many it has. Later calls in the same process (in-process tests run
/// several stages) keep the first pool and return its size.
pub fn init(threads: usize) -> Result<usize> {
    static BUILT: OnceLock<()> = OnceLock::new();
    if BUILT.get().is_some() {
        return Ok(rayon::current_num_threads());
    }
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("probe-worker-{i}"))
        .build_global();
    match built {
        Ok(()) => crate::malloc::tune(rayon::current_num_threads()),
        // Without a source the error is "already initialized" (a test, or a library that used
        // rayon first): that pool serves. With one, threads could not be started.
        Err(e) if e.source().is_none() => {}
        Err(e) => {
            return Err(Error::config(format!("cannot start {threads} threads ({e}); lower --threads")));
        }
    }
    let _ = BUILT.set(());
    Ok(rayon::current_num_threads())
}

/// Run `job` on the pool; its result arrives on the receiver returned, which the caller takes
/// when the result's turn comes. In place (the result there at once) with one thread, which
/// keeps `--threads 1` to one core, and on a pool thread, which must not wait for a task queued
/// behind itself.
pub fn on_pool<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
    let (tx, rx) = sync_channel(1);
    let run = move || {
        // The receiver is gone only when its owner stopped on an error of its own.
        let _ = tx.send(job());
    };
    if rayon::current_num_threads() <= 1 || rayon::current_thread_index().is_some() {
        run();
    } else {
        rayon::spawn(run);
    }
    rx
}
