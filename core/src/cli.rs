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
    /// Write to PATH instead of stdout: `.parquet` or `.pq` = Parquet, `.arrow` (or `.ipc`,
    /// `.feather`) = Arrow IPC file, anything else = Arrow IPC stream (`.arrows` by
    /// convention). Written under a temporary name and renamed on success; PATH must not be one
    /// of the inputs. `-o -` is stdout.
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Arrow IPC buffer compression of an IPC output: zstd by default for files (40% of the
    /// bytes), none on stdout (the next stage decodes it at once). Every Arrow reader (arrow-rs,
    /// pyarrow) decodes both codecs.
    #[arg(long = "ipc-compression", value_enum, value_name = "CODEC")]
    pub ipc_compression: Option<crate::output::IpcCompression>,
}

impl OutputArgs {
    /// The output file; `None` for stdout (no `-o`, or `-o -`, the Unix convention).
    pub fn path(&self) -> Option<PathBuf> {
        self.output.clone().filter(|p| p.as_os_str() != "-")
    }
}

/// `-q`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct LogArgs {
    /// No progress and no summary on stderr (errors are still printed).
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
}

/// `--threads`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ThreadArgs {
    /// Worker threads; 0 = one per core. The output is byte-identical for any N.
    #[arg(short = 'j', long = "threads", value_name = "N", default_value_t = 0)]
    pub threads: usize,
}

/// `--key` and `--time`. Neither has a clap default, so a stage can tell a given name from a
/// default one: the defaults come from the input's schema metadata when it records the names
/// (see [`crate::meta`]), else `src_addr` and `event_time`.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArgs {
    #[command(flatten)]
    pub key: KeyArg,

    /// Time column: a timestamp, date, time, duration or integer column (probe-batch, which
    /// reads probe rows: the time field of the measurements) [default: the time column the
    /// input records, else event_time].
    #[arg(short = 't', long = "time", value_name = "COLUMN")]
    pub time: Option<String>,
}

/// `--key` alone, for stages that do not read times.
#[derive(Debug, Clone, clap::Args)]
pub struct KeyArg {
    /// Key column; repeat it or separate with commas for a composite key [default: the key the
    /// input records in its schema metadata (probe-group writes it), else src_addr].
    #[arg(short = 'k', long = "key", value_name = "COLUMN", value_delimiter = ',')]
    pub key: Vec<String>,
}

/// clap's value parser for `--compression`: accepts what [`parse_compression`] accepts, lists
/// the choices in `--help` and rejects anything else as a usage error (exit 2).
#[derive(Debug, Clone, Copy)]
pub struct CompressionParser;

impl clap::builder::TypedValueParser for CompressionParser {
    type Value = parquet::basic::Compression;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        // A plain fn parser formats the error as clap does for any bad value.
        let inner = crate::output::parse_compression as fn(&str) -> Result<Self::Value, String>;
        inner.parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        use clap::builder::PossibleValue;
        Some(Box::new(
            [
                PossibleValue::new("zstd").help("zstd level 1 (the default)"),
                PossibleValue::new("zstd:LEVEL").help("zstd at LEVEL, 1 (fast) to 22 (small)"),
                PossibleValue::new("snappy"),
                PossibleValue::new("lz4"),
                PossibleValue::new("gzip"),
                PossibleValue::new("none"),
            ]
            .into_iter(),
        ))
    }
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
