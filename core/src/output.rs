//! Where a stage's batches go: stdout as an Arrow IPC stream, or a file whose format follows
//! its extension (`.parquet` or `.pq`, `.arrow`, `.ipc` or `.feather` = IPC file, anything else = IPC
//! stream).
//! [`check_output`] refuses, before any work, an output that is a directory or an input.
//!
//! ```text
//! let mut out = Output::create(args.output.as_deref(), schema, &OutputOptions::default())?;
//! out.write(&batch)?;
//! out.finish()?;   // renames the temp file into place; dropping instead removes it
//! ```
//!
//! A file is written under a temporary dot-name in the target's directory (input discovery
//! skips dot-names) and renamed on success, so a failed or killed run leaves nothing that looks
//! like a result.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::IpcWriteOptions;

use crate::ipc_writer::IpcWriter;
use arrow::record_batch::RecordBatch;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::cleanup;
use crate::error::{Error, Result};
use crate::input::Source;
use crate::meta;
use crate::parquet_writer::{
    EncodedRowGroup, ParallelParquetWriter, RowGroupEncoder, RowGroupEncoders, RowGroupLimits,
};
use crate::store;

/// Output encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFormat {
    /// Arrow IPC stream (stdout, `.arrows`, any other extension).
    IpcStream,
    /// Arrow IPC file (`.arrow`, `.ipc`, `.feather`).
    IpcFile,
    /// Parquet (`.parquet`, `.pq`).
    Parquet,
}

impl OutFormat {
    /// The format a path's extension asks for.
    pub fn for_path(path: &Path) -> OutFormat {
        match path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()) {
            Some(e) if e == "parquet" || e == "pq" => OutFormat::Parquet,
            Some(e) if e == "arrow" || e == "ipc" || e == "feather" => OutFormat::IpcFile,
            _ => OutFormat::IpcStream,
        }
    }
}

/// Arrow IPC buffer compression (the IPC format's own, which arrow-rs, pyarrow and every Arrow
/// reader decode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IpcCompression {
    /// No compression: the fastest to write and read, the largest files.
    None,
    /// LZ4 frame: 57% of the bytes on probe rows, cheapest to write.
    Lz4,
    /// Zstandard, level 1: 40% of the bytes on probe rows, reads faster than lz4 (the default for files).
    Zstd,
}

impl IpcCompression {
    /// What an IPC *file* output uses when no `--ipc-compression` is given. Pipes stay plain:
    /// the next stage decodes them at once, so compressing would only spend CPU on both sides.
    ///
    /// Why zstd: intermediate files exist to be rerun from, and disk was what kept users from
    /// large runs. Measured on 5M generated rows grouped (README, "Compressed intermediate
    /// files"): plain 263 MB, lz4 150 MB, zstd (level 1) 104 MB; writing costs +0.36 (lz4) and
    /// +0.63 (zstd) CPU seconds over plain, reading +0.56 and +0.27: zstd stores a third less
    /// than lz4 and reads faster.
    pub const FILE_DEFAULT: IpcCompression = IpcCompression::Zstd;

    fn codec(self) -> Option<arrow::ipc::CompressionType> {
        match self {
            IpcCompression::None => None,
            IpcCompression::Lz4 => Some(arrow::ipc::CompressionType::LZ4_FRAME),
            IpcCompression::Zstd => Some(arrow::ipc::CompressionType::ZSTD),
        }
    }
}

/// Knobs for file outputs.
#[derive(Debug, Clone)]
pub struct OutputOptions {
    /// Parquet compression.
    pub compression: Compression,
    /// Parquet row-group size in rows.
    pub max_row_group_rows: usize,
    /// Close a Parquet row group once it holds this much decoded Arrow memory; the writer holds
    /// the open row group decoded until it is encoded, so this bounds that. `None`: the caller
    /// flushes (see [`Output::flush_row_group`]).
    pub row_group_bytes: Option<usize>,
    /// Decoded bytes of closed Parquet row groups that may wait to be encoded on the pool
    /// (at least one row group always may); see [`crate::parquet_writer`].
    pub parquet_in_flight_bytes: usize,
    /// IPC buffer compression; `None`: [`IpcCompression::FILE_DEFAULT`] for files, none on stdout.
    pub ipc_compression: Option<IpcCompression>,
}

impl Default for OutputOptions {
    fn default() -> Self {
        OutputOptions {
            compression: Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()),
            max_row_group_rows: 1 << 20,
            row_group_bytes: Some(32 << 20),
            parquet_in_flight_bytes: 128 << 20,
            ipc_compression: None,
        }
    }
}

/// Parse a compression name (`zstd`, `zstd:3`, `snappy`, `lz4`, `gzip`, `none`).
pub fn parse_compression(s: &str) -> std::result::Result<Compression, String> {
    let (name, level) = match s.split_once(':') {
        Some((n, l)) => (n, Some(l.parse::<i32>().map_err(|_| format!("bad compression level `{l}`"))?)),
        None => (s, None),
    };
    Ok(match name.to_ascii_lowercase().as_str() {
        "zstd" => Compression::ZSTD(ZstdLevel::try_new(level.unwrap_or(1)).map_err(|e| e.to_string())?),
        "snappy" => Compression::SNAPPY,
        "lz4" => Compression::LZ4_RAW,
        "gzip" => Compression::GZIP(Default::default()),
        "none" | "uncompressed" => Compression::UNCOMPRESSED,
        other => {
            return Err(format!("unknown compression `{other}` (use zstd, zstd:LEVEL, snappy, lz4, gzip or none)"))
        }
    })
}

enum Writer {
    /// An Arrow IPC stream or file.
    Ipc(IpcWriter<BufWriter<Sink>>),
    Parquet(ParallelParquetWriter),
}

/// Where an output's bytes go: stdout, a local temp file (renamed by `finish`), or a multipart
/// upload to a store (completed by `finish`: the object appears only then).
#[derive(Debug)]
pub enum Sink {
    /// Standard output, as a duplicate of its descriptor: Rust's `io::Stdout` is line-buffered,
    /// and its `LineWriter` searched every byte of the stream for a newline (1.4% of
    /// `probe-group`'s CPU time to a pipe). Only this output writes to stdout.
    Stdout(File),
    /// A local (temp) file.
    File(File),
    /// A multipart upload to a store.
    Upload(Box<store::Upload>),
}

impl From<File> for Sink {
    fn from(f: File) -> Sink {
        Sink::File(f)
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stdout(w) => w.write(buf),
            Sink::File(w) => w.write(buf),
            Sink::Upload(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout(w) => w.flush(),
            Sink::File(w) => w.flush(),
            Sink::Upload(w) => w.flush(),
        }
    }
}

impl Sink {
    /// Complete an upload (the object appears now); nothing to do for the others.
    fn commit(self) -> Result<()> {
        if let Sink::Upload(up) = self {
            up.commit()?;
        }
        Ok(())
    }
}

/// An open output; `finish` completes it, dropping it discards it.
pub struct Output {
    writer: Option<Writer>,
    name: String,
    temp: Option<(tempfile::TempPath, PathBuf)>,
    rows: u64,
    /// For a Parquet output whose schema has types Parquet has no annotation for: the schema
    /// written ([`parquet_schema`]), each batch cast to it.
    cast_to: Option<SchemaRef>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output").field("name", &self.name).field("rows", &self.rows).finish()
    }
}

/// Whether `path` exists and is neither a regular file nor a directory (a device, FIFO or
/// socket): such an output is written in place, never replaced.
fn is_special(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// Makes a [`PieceEncoder`] per piece of an output ([`Output::piece_encoders`]).
#[derive(Clone)]
pub struct PieceEncoders {
    kind: EncodersKind,
    cast_to: Option<SchemaRef>,
    name: Arc<str>,
}

#[derive(Clone)]
enum EncodersKind {
    Parquet(RowGroupEncoders),
    Ipc(arrow::ipc::writer::IpcWriteOptions),
}

impl PieceEncoders {
    /// An encoder for one piece.
    pub fn encoder(&self) -> PieceEncoder {
        let kind = match &self.kind {
            EncodersKind::Parquet(e) => EncoderKind::Parquet(e.encoder()),
            EncodersKind::Ipc(o) => EncoderKind::Ipc(o.clone()),
        };
        PieceEncoder { kind, cast_to: self.cast_to.clone(), name: self.name.clone() }
    }
}

/// Encodes one piece of an output on the calling thread, as its batches arrive: Parquet row
/// groups, or compressed Arrow IPC messages (one per batch).
pub struct PieceEncoder {
    kind: EncoderKind,
    cast_to: Option<SchemaRef>,
    name: Arc<str>,
}

enum EncoderKind {
    Parquet(RowGroupEncoder),
    Ipc(arrow::ipc::writer::IpcWriteOptions),
}

/// What a [`PieceEncoder`] made, ready for [`Output::write_encoded`].
pub struct EncodedPiece {
    kind: EncodedKind,
    rows: usize,
    bytes: usize,
}

enum EncodedKind {
    RowGroup(EncodedRowGroup),
    Message(arrow::ipc::writer::EncodedData),
}

impl EncodedPiece {
    fn row_group(g: EncodedRowGroup) -> EncodedPiece {
        EncodedPiece { rows: g.rows(), bytes: g.encoded_bytes(), kind: EncodedKind::RowGroup(g) }
    }

    /// Its encoded (compressed) bytes: what it holds in memory until written.
    pub fn encoded_bytes(&self) -> usize {
        self.bytes
    }
}

impl PieceEncoder {
    /// Encode `batch`; returns what it completed, in order (a Parquet piece usually nothing:
    /// its row group is still open).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<Vec<EncodedPiece>> {
        let cast;
        let batch = match &self.cast_to {
            Some(to) => {
                cast = cast_for_parquet(batch, to, &self.name)?;
                &cast
            }
            None => batch,
        };
        match &mut self.kind {
            EncoderKind::Parquet(e) => Ok(e
                .write(batch)
                .map_err(|e| parquet_err(&self.name, e))?
                .into_iter()
                .map(EncodedPiece::row_group)
                .collect()),
            EncoderKind::Ipc(options) => {
                let m = crate::ipc_writer::encode_batch(batch, options).map_err(|e| write_err(&self.name, e))?;
                let bytes = m.arrow_data.len() + m.ipc_message.len();
                Ok(vec![EncodedPiece { kind: EncodedKind::Message(m), rows: batch.num_rows(), bytes }])
            }
        }
    }

    /// Close the piece: its last Parquet row group, if it holds rows.
    pub fn finish(&mut self) -> Result<Option<EncodedPiece>> {
        match &mut self.kind {
            EncoderKind::Parquet(e) => {
                Ok(e.finish().map_err(|e| parquet_err(&self.name, e))?.map(EncodedPiece::row_group))
            }
            EncoderKind::Ipc(_) => Ok(None),
        }
    }
}

/// Refuse an output file path that names a directory (`-o out/`, `-o existing_dir`).
pub fn check_file_path(path: &Path) -> Result<()> {
    let text = path.as_os_str().to_string_lossy();
    if path.is_dir() {
        return Err(Error::data(format!(
            "{}: is a directory; -o takes a file name, such as {}/out.arrows",
            path.display(),
            text.trim_end_matches('/')
        )));
    }
    if text.ends_with('/') {
        return Err(Error::data(format!(
            "{}: ends with `/`, so it names a directory; -o takes a file name, such as {}out.arrows",
            path.display(),
            text
        )));
    }
    Ok(())
}

/// Refuse, before any work, an output that is a directory or one of the inputs (by identity:
/// the same file through another path, a symlink or a directory input counts): the rename at
/// the end would replace data the stage is reading.
pub fn check_output(path: &Path, inputs: &[Source]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    if store::path_is_url(path) {
        let url = path.display().to_string();
        if inputs.iter().any(|i| matches!(i, Source::Url(u) if *u == url)) {
            return Err(Error::data(format!(
                "{url}: is also an input; writing it would replace the data being read, so choose another output"
            )));
        }
        return Ok(());
    }
    check_file_path(path)?;
    let out = match std::fs::metadata(path) {
        // Only a regular file can be an input (stdin from /dev/null is not the output /dev/null).
        Ok(m) if m.is_file() => m,
        // Not there yet, so not an input.
        _ => return Ok(()),
    };
    for input in inputs {
        let meta = match input {
            Source::File(p) => std::fs::metadata(p),
            // stdin redirected from a file (`< x.parquet`).
            Source::Stdin => std::fs::metadata("/dev/stdin"),
            // A local output is never an object in a store.
            Source::Url(_) => continue,
        };
        if meta.is_ok_and(|m| m.dev() == out.dev() && m.ino() == out.ino()) {
            return Err(Error::data(format!(
                "{}: is also an input ({}); writing it would replace the data being read, so choose another output",
                path.display(),
                input.name()
            )));
        }
    }
    Ok(())
}

/// Refuse binary output to a terminal before any work starts.
pub fn check_stdout_not_terminal(path: Option<&Path>) -> Result<()> {
    if path.is_none() && io::stdout().is_terminal() {
        return Err(Error::data(
            "refusing to write binary Arrow data to a terminal: pipe it into another stage (| probe-...) or pass -o FILE",
        ));
    }
    Ok(())
}

impl Output {
    /// Open stdout (`None`) or a file (temp name now, renamed by `finish`).
    pub fn create(path: Option<&Path>, schema: SchemaRef, opts: &OutputOptions) -> Result<Output> {
        match path {
            None => {
                check_stdout_not_terminal(None)?;
                let sink = io::stdout()
                    .as_fd()
                    .try_clone_to_owned()
                    .map(|fd| Sink::Stdout(File::from(fd)))
                    .map_err(|e| Error::data(format!("cannot open standard output: {e}")))?;
                let compression = opts.ipc_compression.unwrap_or(IpcCompression::None);
                let w = IpcWriter::try_new(
                    BufWriter::with_capacity(1 << 20, sink),
                    &schema,
                    ipc_options(compression)?,
                    compression != IpcCompression::None,
                )
                .map_err(|e| Error::arrow("writing to standard output", e))?;
                Ok(Output { writer: Some(Writer::Ipc(w)), name: "stdout".into(), temp: None, rows: 0, cast_to: None })
            }
            Some(path) => {
                let name = path.display().to_string();
                // A URL: a multipart upload, completed by `finish`; a file: a temp file beside
                // the target, renamed by `finish`.
                let (file, temp) = if store::path_is_url(path) {
                    (Sink::Upload(Box::new(store::Upload::start(&name)?)), None)
                } else if is_special(path) {
                    // A device, FIFO or socket (`-o /dev/null`, a named pipe): written in place.
                    // A temp file renamed over it would replace the device itself (as root,
                    // /dev/null became a regular file that way).
                    let file = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| Error::io(path, e))?;
                    (Sink::File(file), None)
                } else {
                    check_file_path(path)?;
                    let (file, temp_path) = temp_beside(path)?;
                    (Sink::File(file), Some((temp_path, path.to_path_buf())))
                };
                let compression = opts.ipc_compression.unwrap_or(IpcCompression::FILE_DEFAULT);
                let ipc = || ipc_options(compression);
                let mut cast_to = None;
                let writer = match OutFormat::for_path(path) {
                    format @ (OutFormat::IpcStream | OutFormat::IpcFile) => {
                        let sink = BufWriter::with_capacity(1 << 20, file);
                        let compressed = compression != IpcCompression::None;
                        let w = if format == OutFormat::IpcFile {
                            IpcWriter::try_new_file(sink, &schema, ipc()?, compressed)
                        } else {
                            IpcWriter::try_new(sink, &schema, ipc()?, compressed)
                        };
                        Writer::Ipc(w.map_err(|e| Error::arrow(format!("writing {name}"), e))?)
                    }
                    OutFormat::Parquet => {
                        let stored = parquet_schema(&schema);
                        if stored != schema {
                            cast_to = Some(stored.clone());
                        }
                        let schema = stored;
                        let props = parquet_properties(&schema, opts);
                        let limits = RowGroupLimits {
                            max_rows: opts.max_row_group_rows,
                            row_group_bytes: opts.row_group_bytes,
                            in_flight_bytes: opts.parquet_in_flight_bytes,
                        };
                        Writer::Parquet(
                            ParallelParquetWriter::try_new(file, schema, props, limits)
                                .map_err(|e| Error::parquet(format!("writing {name}"), e))?,
                        )
                    }
                };
                Ok(Output { writer: Some(writer), name, temp, rows: 0, cast_to })
            }
        }
    }

    /// Append one batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let name = &self.name;
        let cast;
        let batch = match &self.cast_to {
            Some(to) => {
                cast = cast_for_parquet(batch, to, name)?;
                &cast
            }
            None => batch,
        };
        match self.writer.as_mut() {
            Some(Writer::Ipc(w)) => w.write(batch).map_err(|e| write_err(name, e))?,
            Some(Writer::Parquet(w)) => w.write(batch).map_err(|e| parquet_err(name, e))?,
            None => return Err(Error::internal(format!("{name}: write after finish"))),
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Encoders for pieces of this output built on threads of their own, each piece encoded on
    /// its thread and written with [`Output::write_encoded`] (see [`crate::parquet_writer`]):
    /// Parquet, and compressed Arrow IPC streams and files without dictionaries, whose messages are the
    /// same bytes either way. `None` for the rest, which take batches.
    pub fn piece_encoders(&self) -> Option<PieceEncoders> {
        let kind = match &self.writer {
            Some(Writer::Parquet(w)) => EncodersKind::Parquet(w.encoders()),
            Some(Writer::Ipc(w)) => EncodersKind::Ipc(w.piece_options()?),
            _ => return None,
        };
        Some(PieceEncoders { kind, cast_to: self.cast_to.clone(), name: Arc::from(self.name.as_str()) })
    }

    /// Append what a [`PieceEncoder`] of this output made.
    pub fn write_encoded(&mut self, piece: EncodedPiece) -> Result<()> {
        let name = &self.name;
        match (self.writer.as_mut(), piece.kind) {
            (Some(Writer::Parquet(w)), EncodedKind::RowGroup(g)) => {
                w.append_encoded(g).map_err(|e| parquet_err(name, e))?
            }
            (Some(Writer::Ipc(w)), EncodedKind::Message(m)) => w.write_encoded(m).map_err(|e| write_err(name, e))?,
            _ => return Err(Error::internal(format!("{name}: an encoded piece of another output's kind"))),
        }
        self.rows += piece.rows as u64;
        Ok(())
    }

    /// Parquet only: encoded bytes per decoded byte in the row groups appended so far.
    pub fn parquet_ratio(&self) -> Option<f64> {
        match &self.writer {
            Some(Writer::Parquet(w)) => w.ratio(),
            _ => None,
        }
    }

    /// Parquet only (0 otherwise): the file's size if closed now, less the footer, with data not
    /// yet encoded taken at this file's ratio or else `ratio`.
    pub fn parquet_estimated_bytes(&self, ratio: f64) -> u64 {
        match &self.writer {
            Some(Writer::Parquet(w)) => w.estimated_bytes(ratio),
            _ => 0,
        }
    }

    /// Parquet only: encode and append everything held, so the size so far is exact.
    pub fn parquet_settle(&mut self) -> Result<()> {
        if let Some(Writer::Parquet(w)) = self.writer.as_mut() {
            w.settle().map_err(|e| parquet_err(&self.name, e))?;
        }
        Ok(())
    }

    /// Decoded bytes buffered in memory by a Parquet writer (its open row group).
    pub fn in_progress_bytes(&self) -> usize {
        match &self.writer {
            Some(Writer::Parquet(w)) => w.in_progress_bytes(),
            _ => 0,
        }
    }

    /// Bytes of the file so far (Parquet only; 0 otherwise): written, plus the closed row groups
    /// still being encoded, estimated (deterministically) from the ones written.
    pub fn bytes_written(&self) -> u64 {
        match &self.writer {
            Some(Writer::Parquet(w)) => w.bytes_written(),
            _ => 0,
        }
    }

    /// Close the open Parquet row group now, so a stage can bound row groups (and the memory
    /// they hold) by size: call it when [`Output::in_progress_bytes`] reaches the target.
    /// A no-op for IPC outputs.
    pub fn flush_row_group(&mut self) -> Result<()> {
        if let Some(Writer::Parquet(w)) = self.writer.as_mut() {
            w.flush_row_group().map_err(|e| parquet_err(&self.name, e))?;
        }
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Write the end-of-stream marker or footer, flush, and move a file into place.
    pub fn finish(mut self) -> Result<u64> {
        let name = self.name.clone();
        let sink = match self.writer.take() {
            Some(Writer::Ipc(w)) => {
                let inner = w.finish().map_err(|e| write_err(&name, e))?;
                Some(inner.into_inner().map_err(|e| flush_err(&name, e.into_error()))?)
            }
            Some(Writer::Parquet(w)) => Some(w.into_inner().map_err(|e| parquet_err(&name, e))?),
            None => None,
        };
        if let Some(sink) = sink {
            sink.commit()?;
        }
        if let Some((temp, dest)) = self.temp.take() {
            cleanup::forget(&temp);
            temp.persist(&dest).map_err(|e| Error::io(&dest, e.error))?;
        }
        Ok(self.rows)
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some((temp, _)) = &self.temp {
            cleanup::forget(temp);
        }
    }
}

/// The zstd level of IPC outputs: 1, not arrow-rs's default 3. Measured on 10M generated rows
/// grouped, `probe-split` to zstd files: level 1 spent 30% less CPU than level 3 for 6.5% more
/// bytes (README, "Compressed intermediate files").
pub const IPC_ZSTD_LEVEL: i32 = 1;

fn ipc_options(compression: IpcCompression) -> Result<IpcWriteOptions> {
    let level = (compression == IpcCompression::Zstd).then_some(IPC_ZSTD_LEVEL);
    IpcWriteOptions::default()
        .try_with_compression(compression.codec())
        .and_then(|o| o.try_with_compression_level(level))
        .map_err(|e| Error::arrow("choosing the Arrow IPC compression", e))
}

fn write_err(name: &str, e: arrow::error::ArrowError) -> Error {
    if name == "stdout" {
        if let arrow::error::ArrowError::IoError(_, io) = e {
            return Error::Stdout(io);
        }
        return Error::arrow("writing to standard output", e);
    }
    if let arrow::error::ArrowError::IoError(_, io) = e {
        return disk_error(Path::new(name), io);
    }
    Error::arrow(format!("writing {name}"), e)
}

/// A Parquet writer error; a full disk gets the same message as for the other formats.
fn parquet_err(name: &str, e: parquet::errors::ParquetError) -> Error {
    if let parquet::errors::ParquetError::External(inner) = &e {
        if let Some(io) = inner.downcast_ref::<io::Error>() {
            if io.raw_os_error() == Some(libc::ENOSPC) {
                return disk_error(Path::new(name), io::Error::from_raw_os_error(libc::ENOSPC));
            }
        }
    }
    Error::parquet(format!("writing {name}"), e)
}

fn flush_err(name: &str, e: io::Error) -> Error {
    if name == "stdout" {
        Error::Stdout(e)
    } else {
        disk_error(Path::new(name), e)
    }
}

/// Whether an I/O error means the disk (or quota) is full: the one place that knows ENOSPC.
pub fn is_disk_full(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC)
}

/// An I/O error while writing, with a hint when the disk is full.
pub fn disk_error(path: &Path, e: io::Error) -> Error {
    if is_disk_full(&e) {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Error::data(format!(
            "{}: no space left on device while writing; free space in {} or write elsewhere",
            path.display(),
            dir.display()
        ))
    } else {
        Error::io(path, e)
    }
}

/// Create a temporary file beside `path` (same directory, so the final rename is atomic),
/// registered for removal on Ctrl-C.
pub fn temp_beside(path: &Path) -> Result<(File, tempfile::TempPath)> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::data(format!(
            "{}: directory {} does not exist; create it first",
            path.display(),
            dir.display()
        )));
    }
    let fname = path.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_else(|| "output".into());
    // tempfile creates 0600 files; results should get the usual 0666 & ~umask.
    let tmp = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .prefix(&format!(".{fname}."))
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|e| Error::io(&dir, e))?;
    let (file, temp_path) = tmp.into_parts();
    cleanup::register(&temp_path);
    Ok((file, temp_path))
}

/// The schema a Parquet output stores for `schema`. arrow-rs writes a few Arrow types as bare
/// integers with no Parquet annotation (they read back only through the Arrow schema it also
/// stores, which pyarrow and DuckDB do not use for them): second timestamps and `Date64` as
/// INT64, `Time32(Second)` as INT32, so pyarrow and DuckDB read numbers. Those are stored as
/// pyarrow stores them, in a type Parquet annotates: second timestamps as millisecond ones (same
/// time zone), `Time32(Second)` as `Time32(Millisecond)`, `Date64` as `Date32`, also inside
/// lists and structs. Every other type is kept.
pub fn parquet_schema(schema: &SchemaRef) -> SchemaRef {
    use arrow::datatypes::{Field, Schema};
    let fields: Vec<Field> = schema.fields().iter().map(|f| parquet_field(f)).collect();
    let stored = Schema::new(fields).with_metadata(schema.metadata().clone());
    if stored == **schema {
        schema.clone()
    } else {
        std::sync::Arc::new(stored)
    }
}

fn parquet_field(f: &arrow::datatypes::Field) -> arrow::datatypes::Field {
    f.clone().with_data_type(parquet_type(f.data_type()))
}

fn parquet_type(dt: &arrow::datatypes::DataType) -> arrow::datatypes::DataType {
    use arrow::datatypes::{DataType as D, TimeUnit};
    use std::sync::Arc;
    match dt {
        D::Timestamp(TimeUnit::Second, tz) => D::Timestamp(TimeUnit::Millisecond, tz.clone()),
        D::Time32(TimeUnit::Second) => D::Time32(TimeUnit::Millisecond),
        D::Date64 => D::Date32,
        D::List(f) => D::List(Arc::new(parquet_field(f))),
        D::LargeList(f) => D::LargeList(Arc::new(parquet_field(f))),
        D::FixedSizeList(f, n) => D::FixedSizeList(Arc::new(parquet_field(f)), *n),
        D::Struct(fields) => D::Struct(fields.iter().map(|f| parquet_field(f)).collect()),
        D::Map(f, sorted) => D::Map(Arc::new(parquet_field(f)), *sorted),
        D::Dictionary(k, v) => D::Dictionary(k.clone(), Box::new(parquet_type(v))),
        other => other.clone(),
    }
}

fn has_date64(dt: &arrow::datatypes::DataType) -> bool {
    use arrow::datatypes::DataType as D;
    match dt {
        D::Date64 => true,
        D::List(f) | D::LargeList(f) | D::FixedSizeList(f, _) | D::Map(f, _) => has_date64(f.data_type()),
        D::Struct(fields) => fields.iter().any(|f| has_date64(f.data_type())),
        D::Dictionary(_, v) => has_date64(v),
        _ => false,
    }
}

/// `batch` cast to the stored schema `to` ([`parquet_schema`]). The cast must be exact: a value
/// that would change (a `Date64` with a time of day, a timestamp out of range in milliseconds)
/// is an error naming the column, never a silently different value.
fn cast_for_parquet(batch: &RecordBatch, to: &SchemaRef, name: &str) -> Result<RecordBatch> {
    use arrow::compute::{cast_with_options, CastOptions};
    let exact = CastOptions { safe: false, ..Default::default() };
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (i, (col, field)) in batch.columns().iter().zip(to.fields()).enumerate() {
        if col.data_type() == field.data_type() {
            columns.push(col.clone());
            continue;
        }
        let from = col.data_type();
        let inexact = |why: String| {
            Error::data(format!(
                "{name}: column `{}` ({from}) cannot be stored in Parquet as {} without changing values ({why}); \
                 cast it to a timestamp in microseconds before this stage",
                batch.schema().field(i).name(),
                field.data_type()
            ))
        };
        let stored = cast_with_options(col, field.data_type(), &exact).map_err(|e| inexact(e.to_string()))?;
        // Date64 -> Date32 drops a time of day without an error: casting back must give the
        // input again. (The other casts multiply by 1000, checked above.)
        if has_date64(from) {
            let back = cast_with_options(&stored, from, &exact).map_err(|e| inexact(e.to_string()))?;
            if back.to_data() != col.to_data() {
                return Err(inexact("a Date64 value is not a whole day".into()));
            }
        }
        columns.push(stored);
    }
    RecordBatch::try_new(to.clone(), columns).map_err(|e| Error::arrow(format!("writing {name}"), e))
}

/// Values a column writer takes at a time before it checks its page and dictionary sizes
/// (arrow-rs's default is 1024). Pages end up to this many values past the 1 MiB page size;
/// in exchange the per-batch bookkeeping, 5% of `probe-group -o x.parquet`'s CPU time at 1024,
/// is paid an eighth as often. Output stays byte-identical across `--threads`.
const WRITE_BATCH_SIZE: usize = 8192;

/// Writer properties: the chosen codec, and per leaf column what pays for itself.
///
/// - **Dictionary** only for strings and binary (for timestamps, floats and ids it rarely pays
///   and costs a hash per value).
/// - **Delta encoding** (`DELTA_BINARY_PACKED`) for 64-bit integers and timestamps: inside a
///   probe row the times ascend, and ids usually grow, so the deltas take a few bits where plain
///   takes 8 bytes, and the codec has less to compress. Measured on 10M generated rows grouped
///   (zstd): `event_time` 64.7 -> 50.7 MB, `probe_id` 12.1 -> 3.3 MB, with fewer instructions
///   than plain + zstd. Narrower integers stay plain (on `ttl` delta was 3.1 -> 3.8 MB).
/// - **Statistics** (min/max per page and column chunk) for the top-level columns (the key:
///   what readers prune row groups and pages on) and the time column; none for the other
///   fields inside the lists. No reader prunes on them, and for strings they cost a comparison
///   per value: 7% of `probe-group -o x.parquet`'s instructions.
fn parquet_properties(schema: &SchemaRef, opts: &OutputOptions) -> WriterProperties {
    use parquet::basic::{Encoding, Type};
    use parquet::file::properties::EnabledStatistics;
    let mut b = WriterProperties::builder()
        .set_compression(opts.compression)
        .set_max_row_group_row_count(Some(opts.max_row_group_rows))
        .set_write_batch_size(WRITE_BATCH_SIZE)
        .set_dictionary_enabled(false);
    let time = meta::recorded_time(schema);
    if let Ok(descr) = parquet::arrow::ArrowSchemaConverter::new().convert(schema) {
        for col in descr.columns() {
            let path = col.path().clone();
            match col.physical_type() {
                Type::BYTE_ARRAY => b = b.set_column_dictionary_enabled(path.clone(), true),
                Type::INT64 => b = b.set_column_encoding(path.clone(), Encoding::DELTA_BINARY_PACKED),
                _ => {}
            }
            let parts = path.parts();
            let nested = parts.len() > 1;
            // The time leaf: `measurements.list.item.<time>` in grouped rows, `<time>.list.item` in
            // batched ones, `<time>` at the top.
            let is_time = time.is_some_and(|t| [parts.first(), parts.last()].into_iter().flatten().any(|p| p == t));
            if nested && !is_time {
                b = b.set_column_statistics_enabled(path, EnabledStatistics::None);
            }
        }
    }
    b.build()
}

/// Create an `--out-dir`. A directory this run creates is registered for removal, so a run that
/// fails or is interrupted before [`keep_out_dir`] leaves no empty directory behind.
pub fn create_out_dir(dir: &Path) -> Result<()> {
    if store::path_is_url(dir) {
        // A store has no folders to create: objects appear under the prefix.
        return Ok(());
    }
    if dir.exists() {
        if !dir.is_dir() {
            return Err(Error::data(format!(
                "{}: exists and is not a directory; choose another --out-dir",
                dir.display()
            )));
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| disk_error(dir, e))?;
    cleanup::register(dir);
    Ok(())
}

/// The run succeeded: keep the `--out-dir` it created.
pub fn keep_out_dir(dir: &Path) {
    cleanup::forget(dir);
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
    use parquet::file::properties::EnabledStatistics;
    use parquet::schema::types::ColumnPath;

    use super::*;

    /// Statistics: the key and the time leaf, wherever the layout puts it (grouped rows:
    /// `measurements.list.item.<time>`; batched rows: `<time>.list.item`); no other list leaf.
    #[test]
    fn statistics_for_the_key_and_the_time_leaf_only() {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        let meta = HashMap::from([(crate::meta::TIME_METADATA.to_string(), "event_time".to_string())]);
        let item =
            Fields::from(vec![Field::new("event_time", ts.clone(), true), Field::new("rtt", DataType::Float64, true)]);
        let grouped = Schema::new(vec![
            Field::new("src_addr", DataType::Utf8, true),
            Field::new_list("measurements", Field::new_list_field(DataType::Struct(item), true), false),
        ])
        .with_metadata(meta.clone());
        let batched = Schema::new(vec![
            Field::new("src_addr", DataType::Utf8, true),
            Field::new_list("event_time", Field::new_list_field(ts, true), false),
            Field::new_list("rtt", Field::new_list_field(DataType::Float64, true), false),
        ])
        .with_metadata(meta);
        let on = |schema: Schema, path: &str| {
            let props = parquet_properties(&Arc::new(schema), &OutputOptions::default());
            props.statistics_enabled(&ColumnPath::from(path.split('.').map(String::from).collect::<Vec<_>>()))
                != EnabledStatistics::None
        };
        assert!(on(grouped.clone(), "src_addr"));
        assert!(on(grouped.clone(), "measurements.list.item.event_time"));
        assert!(!on(grouped, "measurements.list.item.rtt"));
        assert!(on(batched.clone(), "src_addr"));
        assert!(on(batched.clone(), "event_time.list.item"));
        assert!(!on(batched, "rtt.list.item"));
    }
}
