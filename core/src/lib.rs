//! probe-core: what every probe-rows stage shares.
//!
//! - [`input`]: input discovery (files, directories, stdin), format detection from the bytes,
//!   one batch reader for Parquet / Arrow IPC file / Arrow IPC stream with projection pushdown;
//! - [`output`]: stdout IPC stream or a file by extension, written atomically;
//! - [`parquet_writer`]: Parquet encoded on every thread, row groups appended in order;
//! - [`error`]: the error type and the exit-code mapping used by every `main`;
//! - [`guard`]: decoder panics and corrupt IPC lengths turned into clean errors;
//! - [`progress`]: stderr progress bar, summary line, peak memory;
//! - [`columns`]: key/time column checks; [`cli`]: shared clap options;
//! - [`schema`]: the one rule for inputs that must agree on their columns;
//! - [`streams`]: several Arrow IPC streams concatenated in one input;
//! - [`meta`]: key/time column lists: their check, and the names recorded in schema metadata;
//! - [`time`]: times as ISO 8601 for messages, the unit of integer times;
//! - [`keyhash`]: the documented key hash used by `probe-split` and partitioning;
//! - [`cleanup`]: removal of temp files on Ctrl-C / SIGTERM;
//! - [`staging`]: multi-file outputs (`--out-dir`) that appear all at once;
//! - [`store`]: `s3://`, `gs://`, `az://`, `https://` URLs as inputs and outputs (object_store);
//! - [`threads`]: the one rayon pool of a process, sized by `--threads`.
//!
//! A stage's `main.rs` is a few lines:
//! ```no_run
//! use clap::Parser;
//!
//! /// probe-hello: the smallest stage.
//! #[derive(Parser)]
//! struct Args {
//!     #[command(flatten)]
//!     log: probe_core::cli::LogArgs,
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     probe_core::main("probe-hello", || {
//!         let _args = Args::parse();
//!         Ok(())
//!     })
//! }
//! ```

pub mod cleanup;
pub mod cli;
pub mod columns;
mod dict_leaf;
pub mod error;
pub mod guard;
pub mod input;
pub mod ipc_writer;
pub mod keycmp;
pub mod keyhash;
pub mod malloc;
pub mod meta;
pub mod output;
pub mod parquet_writer;
pub mod pread;
pub mod progress;
pub mod schema;
pub mod staging;
pub mod store;
pub mod streams;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod threads;
pub mod time;
pub mod zones;

pub use error::{Error, Result};

/// Run a stage: install the interrupt cleanup, run, print the error as one line, and exit
/// with the code the error carries (0 ok or closed pipe, 2 usage error, 1 any other error).
pub fn main(stage: &str, run: impl FnOnce() -> Result<()>) -> std::process::ExitCode {
    main_with_status(stage, Error::code, || run().map(|()| 0))
}

/// [`main`] for a stage whose success has several exit codes (`probe-check-order`: 0 or 1 by
/// verdict) or whose errors map to codes of their own (`code_of`).
pub fn main_with_status(
    stage: &str,
    code_of: impl Fn(&Error) -> u8,
    run: impl FnOnce() -> Result<u8>,
) -> std::process::ExitCode {
    cleanup::install();
    let result = run();
    if result.is_err() {
        cleanup::remove_all();
    }
    store::print_stats(stage);
    error::exit_with(stage, result, code_of)
}
