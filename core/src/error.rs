//! The one error type every stage returns, and the exit codes it maps to.
//!
//! The exit code belongs to the error ([`Error::code`]): usage errors (options that
//! contradict each other or the input's recorded meaning) exit 2 like clap's own, everything
//! else 1. `probe_core::main` takes the code from the error it gets.
//!
//! Messages are written for the person at the terminal: each names the file, row, column
//! or key involved and says what to do. `main` prints them as one line,
//! `probe-<stage>: error: <message>`, so variants hold a complete sentence and the wrapped
//! library error is appended only where it adds information.

use std::io;
use std::path::PathBuf;

use arrow::error::ArrowError;
use parquet::errors::ParquetError;

/// Exit status of a stage that failed on its input or environment.
pub const EXIT_ERROR: u8 = 1;

/// Exit status of a usage error (clap uses it too).
pub const EXIT_USAGE: u8 = 2;

/// Result alias used across the workspace.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input's content breaks a rule the stage relies on (order, schema, nulls, types).
    /// The message is complete and says what to do.
    #[error("{0}")]
    Data(String),

    /// The options make no sense together (or with what the input records about itself),
    /// found after clap parsed them. Exits 2, like clap's own usage errors.
    #[error("{0}")]
    Usage(String),

    /// A bug: a state the code should never reach. Never a user's fault; the message says to
    /// report it.
    #[error("internal error: {0}; please report it")]
    Internal(String),

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

    /// A usage error (exit 2) with a formatted message.
    pub fn usage(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    /// The same as [`Error::usage`]: options checked after parsing are usage errors.
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Usage(msg.into())
    }

    /// An internal error (a bug), with what went wrong.
    pub fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(msg.into())
    }

    /// The process exit status for this error: 2 for usage errors, 1 for everything else.
    pub fn code(&self) -> u8 {
        match self {
            Error::Usage(_) => EXIT_USAGE,
            _ => EXIT_ERROR,
        }
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
/// `Ok(code)` exits with `code`; a closed downstream pipe exits 0; any other error exits with
/// `code_of(&error)` (normally [`Error::code`]: 2 for usage errors, 1 otherwise).
pub fn exit_with(stage: &str, result: Result<u8>, code_of: impl Fn(&Error) -> u8) -> std::process::ExitCode {
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) if e.is_broken_pipe() => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let msg = one_line(&e.to_string());
            stderr_line(&format!("{stage}: error: {msg}"));
            std::process::ExitCode::from(code_of(&e))
        }
    }
}

/// Write one line to stderr, ignoring a failure: `eprintln!` panics (exit 101) when stderr is a
/// closed pipe (a log reader that died), turning a finished run into a failed one. The outcome
/// is in the exit status and the output; a lost message changes neither.
pub fn stderr_line(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_code_belongs_to_the_variant() {
        assert_eq!(Error::usage("x").code(), 2);
        assert_eq!(Error::config("x").code(), 2);
        assert_eq!(Error::data("x").code(), 1);
        assert_eq!(Error::internal("x").code(), 1);
        assert_eq!(Error::internal("no open output").to_string(), "internal error: no open output; please report it");
    }
}
