//! The one error type every stage returns, and the exit codes it maps to.
//!
//! Messages are written for the person at the terminal: each names the file, row, column
//! or key involved and says what to do. `main` prints them as one line,
//! `probe-<stage>: error: <message>`, so variants hold a complete sentence and the wrapped
//! library error is appended only where it adds information.

use std::io;
use std::path::PathBuf;

use arrow::error::ArrowError;
use parquet::errors::ParquetError;

/// Result alias used across the workspace.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input's content breaks a rule the stage relies on (order, schema, nulls, types).
    /// The message is complete and says what to do.
    #[error("{0}")]
    Data(String),

    /// The options make no sense together, found after clap parsed them.
    #[error("{0}")]
    Config(String),

    /// Reading or writing a named path failed at the operating-system level.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },

    /// Writing to standard output failed (a closed pipe lands here and ends the stage quietly).
    #[error("writing to standard output: {0}")]
    Stdout(#[source] io::Error),

    /// Arrow could not decode or encode data; `context` names the file and what was being done.
    #[error("{context}: {source}")]
    Arrow {
        /// Where it happened, e.g. `reading data/a.parquet`.
        context: String,
        /// The arrow-rs error.
        #[source]
        source: ArrowError,
    },

    /// The Parquet reader or writer failed; `context` names the file.
    #[error("{context}: {source}")]
    Parquet {
        /// Where it happened.
        context: String,
        /// The parquet-rs error.
        #[source]
        source: ParquetError,
    },
}

impl Error {
    /// A data error with a formatted message.
    pub fn data(msg: impl Into<String>) -> Self {
        Error::Data(msg.into())
    }

    /// A configuration error with a formatted message.
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }

    /// Wrap an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// Wrap an arrow error with context.
    pub fn arrow(context: impl Into<String>, source: ArrowError) -> Self {
        Error::Arrow { context: context.into(), source }
    }

    /// Wrap a parquet error with context.
    pub fn parquet(context: impl Into<String>, source: ParquetError) -> Self {
        Error::Parquet { context: context.into(), source }
    }

    /// True when the error (anywhere in its chain) is a closed downstream pipe: the consumer
    /// (`| head`) has what it wanted and the stage should end quietly with success.
    pub fn is_broken_pipe(&self) -> bool {
        fn io_is_pipe(e: &io::Error) -> bool {
            e.kind() == io::ErrorKind::BrokenPipe
        }
        fn arrow_is_pipe(e: &ArrowError) -> bool {
            match e {
                ArrowError::IoError(_, e) => io_is_pipe(e),
                ArrowError::ExternalError(e) => chain_is_pipe(e.as_ref()),
                _ => false,
            }
        }
        fn chain_is_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
            let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
            while let Some(err) = cur {
                if let Some(io) = err.downcast_ref::<io::Error>() {
                    if io_is_pipe(io) {
                        return true;
                    }
                }
                if let Some(a) = err.downcast_ref::<ArrowError>() {
                    if arrow_is_pipe(a) {
                        return true;
                    }
                }
                cur = err.source();
            }
            false
        }
        match self {
            Error::Stdout(e) | Error::Io { source: e, .. } => io_is_pipe(e),
            Error::Arrow { source, .. } => arrow_is_pipe(source),
            Error::Parquet { source: ParquetError::External(e), .. } => chain_is_pipe(e.as_ref()),
            _ => false,
        }
    }
}

/// Turn a stage's result into the process exit status, printing the error as one line.
///
/// Exit 0 on success or a closed downstream pipe, 1 on any error. Usage errors never reach
/// here: clap exits 2 on its own.
pub fn exit_with(stage: &str, result: Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let msg = one_line(&e.to_string());
            eprintln!("{stage}: error: {msg}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Fold a message onto one line: library errors sometimes carry newlines.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, part) in s.lines().map(str::trim).filter(|l| !l.is_empty()).enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(part);
    }
    out
}
