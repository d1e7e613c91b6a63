//! Options every stage shares, as clap argument groups, so the wording is the same everywhere.

use std::path::PathBuf;

/// Positional inputs.
#[derive(Debug, Clone, clap::Args)]
pub struct InputArgs {
    /// Input files or directories (every file in name order, subdirectories too, skipping names
    /// that start with `_` or `.`); `-` or nothing reads stdin. Parquet, Arrow IPC file or
    /// Arrow IPC stream (concatenated streams too), detected from the bytes. All inputs must
    /// agree on the columns read, and no file may be given twice.
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<String>,
}

/// `-o` and `-q`.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// Write to PATH instead of stdout: `.parquet` or `.pq` = Parquet, `.arrow` = Arrow IPC
    /// file, anything else = Arrow IPC stream (`.arrows` by convention). Written under a
    /// temporary name and renamed on success; PATH must not be one of the inputs.
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Arrow IPC buffer compression of an IPC output: zstd by default for files (37% of the
    /// bytes), none on stdout (the next stage decodes it at once). Every Arrow reader (arrow-rs,
    /// pyarrow) decodes both codecs.
    #[arg(long = "ipc-compression", value_enum, value_name = "CODEC")]
    pub ipc_compression: Option<crate::output::IpcCompression>,
}

/// `-q`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct LogArgs {
    /// No progress and no summary on stderr (errors are still printed).
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
}

/// `--key` and `--time`.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    /// Key column; repeat it or separate with commas for a composite key.
    #[arg(short = 'k', long = "key", value_name = "COLUMN", value_delimiter = ',', default_value = "src_addr")]
    pub key: Vec<String>,

    /// Time column (a timestamp, date or integer column).
    #[arg(short = 't', long = "time", value_name = "COLUMN", default_value = "event_time")]
    pub time: String,
}

/// Parse a size like `512MiB`, `2GB`, `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("`{s}` is not a size ({e}); write it like 512MiB or 2GB"))
}

/// Format a byte count for people.
pub fn human_bytes(b: u64) -> String {
    bytesize::ByteSize::b(b).display().iec().to_string()
}
