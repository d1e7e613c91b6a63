//! Input discovery, format detection and one batch reader for every input format.
//!
//! ```text
//! let sources = discover(&["data/".into()])?;          // files in name order, `_`/`.` skipped
//! let input = Input::open(&sources[0])?;                // format from the bytes
//! let mut reader = input.reader(Some(&cols), 8 << 20)?; // projection pushed into Parquet
//! while let Some(batch) = reader.next_batch()? { ... }
//! ```
//!
//! An Arrow IPC input may hold several streams one after another (`cat a.arrows b.arrows`):
//! all are read ([`crate::streams`]). A stream that ends without its end-of-stream marker is
//! reported as a failed upstream stage: arrow-rs accepts such a stream as complete, so the
//! reader checks for the marker itself.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::FileReader;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;

use crate::error::{Error, Result};
use crate::guard::{self, check_ipc_file};
use crate::output::disk_error;
use crate::pread::SharedFile;
use crate::store;
use crate::streams::IpcStreams;

/// Default in-memory size aimed at for one decoded batch.
pub const DEFAULT_BATCH_BYTES: usize = 8 << 20;

/// Where one input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Standard input (`-` or no path at all).
    Stdin,
    /// A file on disk.
    File(PathBuf),
    /// An object in a store (`s3://bucket/key`, `gs://`, `az://`, `https://`): [`crate::store`].
    Url(String),
}

impl Source {
    /// Readable once only (stdin, a named pipe): an opened [`Input`] must be kept, never
    /// opened again.
    pub fn read_once(&self) -> bool {
        match self {
            Source::Stdin => true,
            Source::File(p) => !is_regular_file(p),
            Source::Url(_) => false,
        }
    }

    /// The name used in messages: the path as given, or `stdin`.
    pub fn name(&self) -> String {
        match self {
            Source::Stdin => "stdin".to_string(),
            Source::File(p) => p.display().to_string(),
            Source::Url(u) => u.clone(),
        }
    }
}

/// Expand the positional input arguments into sources.
///
/// No path or `-` means stdin; a directory means every regular file under it, subdirectories
/// included (hive-style `date=2024-01-01/` folders), walked in name order at every level, and
/// skipping names (of files and folders) that start with `_` or `.` (`_SUCCESS`,
/// `_manifest.json`, temp files). A file or folder reached twice, by any path (`x` and `./x`,
/// a symlink, a folder and a file in it), is an error: its rows would be read twice.
pub fn discover(paths: &[String]) -> Result<Vec<Source>> {
    if paths.is_empty() {
        return Ok(vec![Source::Stdin]);
    }
    let mut out = Vec::new();
    let mut seen = Seen::default();
    let mut seen_urls = std::collections::HashSet::new();
    for p in paths {
        if store::is_url(p) {
            discover_url(p, &mut out, &mut seen_urls)?;
            continue;
        }
        if p == "-" {
            if out.contains(&Source::Stdin) {
                return Err(Error::data("`-` (stdin) is given more than once"));
            }
            out.push(Source::Stdin);
            continue;
        }
        let path = PathBuf::from(p);
        let meta = std::fs::metadata(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::data(format!("{p}: no such file or directory; check the path"))
            } else {
                Error::io(&path, e)
            }
        })?;
        seen.add(&path, &meta)?;
        if meta.is_dir() {
            let before = out.len();
            walk(&path, &mut out, &mut seen)?;
            if out.len() == before {
                return Err(Error::data(format!(
                    "{p}: directory holds no data files (names starting with `_` or `.` are skipped); \
                     check the path or run the stage that fills it"
                )));
            }
        } else {
            out.push(Source::File(path));
        }
    }
    Ok(out)
}

/// A URL input: one object, or every object under a prefix, listed like a local folder (name
/// order at every level, `_`/`.` names skipped). An object reached twice is an error.
fn discover_url(p: &str, out: &mut Vec<Source>, seen: &mut std::collections::HashSet<String>) -> Result<()> {
    let loc = store::Location::parse(p)?;
    let twice = |u: &str| {
        Error::data(format!(
            "{u}: reached twice through the inputs ({p}); its rows would be read twice, so pass each input once"
        ))
    };
    if loc.size()?.is_some() {
        if !seen.insert(p.to_string()) {
            return Err(twice(p));
        }
        out.push(Source::Url(p.to_string()));
        return Ok(());
    }
    let objects = loc.list()?;
    if objects.is_empty() {
        return Err(Error::data(format!(
            "{p}: no such object, and no data objects under it as a prefix (names starting with `_` or `.` are \
             skipped); check the URL or run the stage that fills it"
        )));
    }
    for o in objects {
        if !seen.insert(o.url.clone()) {
            return Err(twice(&o.url));
        }
        out.push(Source::Url(o.url));
    }
    Ok(())
}

/// Files and folders already reached, by identity (device and inode), with the path first
/// used for each: the same file under two names is one file.
#[derive(Default)]
struct Seen(std::collections::HashMap<(u64, u64), PathBuf>);

impl Seen {
    fn add(&mut self, path: &Path, meta: &std::fs::Metadata) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let what = if meta.is_dir() { "directory" } else { "file" };
        match self.0.entry((meta.dev(), meta.ino())) {
            std::collections::hash_map::Entry::Occupied(first) => Err(Error::data(format!(
                "{}: the same {what} as {}, reached twice through the inputs; its rows would be read twice, \
                 so pass each input once",
                path.display(),
                first.get().display()
            ))),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(path.to_path_buf());
                Ok(())
            }
        }
    }
}

/// Append the data files under `dir` in name order, descending into folders where their
/// names sort.
fn walk(dir: &Path, out: &mut Vec<Source>, seen: &mut Seen) -> Result<()> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let text = name.to_string_lossy();
        if text.starts_with('_') || text.starts_with('.') {
            continue;
        }
        entries.push((name, entry.path()));
    }
    entries.sort();
    for (_, path) in entries {
        // Follows symlinks: a link to a file or folder counts as what it points to.
        let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        if meta.is_dir() {
            seen.add(&path, &meta)?;
            walk(&path, out, seen)?;
        } else if meta.is_file() {
            seen.add(&path, &meta)?;
            out.push(Source::File(path));
        }
    }
    Ok(())
}

/// The three input formats, told apart by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Apache Parquet (`PAR1`).
    Parquet,
    /// Arrow IPC file (`ARROW1`, random access, `.arrow`).
    IpcFile,
    /// Arrow IPC stream (`.arrows`, what stages pipe to each other).
    IpcStream,
}

/// Detect the format from the first bytes (up to 8) of a file or stream.
pub fn detect(head: &[u8]) -> Option<Format> {
    if head.starts_with(b"PAR1") {
        Some(Format::Parquet)
    } else if head.starts_with(b"ARROW1") {
        Some(Format::IpcFile)
    } else if is_ipc_stream_start(head) {
        Some(Format::IpcStream)
    } else {
        None
    }
}

/// The largest schema message accepted at the start of an IPC stream by detection: far above
/// any real schema, and it keeps text or random bytes from passing for a stream.
const MAX_SCHEMA_MESSAGE: i32 = 64 << 20;

/// An IPC stream starts with the continuation marker `ff ff ff ff` and the schema message's
/// length (current format), or with that length alone, a multiple of 8 (pre-1.0 format). A
/// start cut inside the marker or the length is a stream too: reading it reports truncation.
fn is_ipc_stream_start(head: &[u8]) -> bool {
    let plausible = |b: &[u8]| {
        let len = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        len > 0 && len <= MAX_SCHEMA_MESSAGE
    };
    match head.len() {
        0 => false,
        1..=3 => head.iter().all(|&b| b == 0xff),
        4..=7 => head[..4] == [0xff; 4] || (plausible(head) && head[0].is_multiple_of(8)),
        _ if head[..4] == [0xff; 4] => plausible(&head[4..8]),
        _ => plausible(head) && head[0].is_multiple_of(8),
    }
}

/// An opened input whose format and schema are known, before any data is decoded.
pub struct Input {
    name: String,
    format: Format,
    schema: SchemaRef,
    total_rows: Option<u64>,
    /// Bytes of the file or object as stored (none for stdin).
    size: Option<u64>,
    kind: Kind,
    // Keeps a spooled copy of stdin alive while it is read.
    _spool: Option<Spool>,
}

/// Stdin copied to a temp file (Parquet and IPC files need random access), removed on drop,
/// and registered for removal on interrupt until then.
struct Spool(tempfile::NamedTempFile);

impl Spool {
    fn new() -> Result<Spool> {
        let file = tempfile::Builder::new()
            .prefix(".probe-stdin-")
            .tempfile()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?;
        // Copying a large stdin takes a while: an interrupt must remove the copy too.
        crate::cleanup::register(file.path());
        Ok(Spool(file))
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        crate::cleanup::forget(self.0.path());
    }
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input").field("name", &self.name).field("format", &self.format).finish()
    }
}

/// A Parquet object read by range requests.
type UrlParquet = store::ObjectParquet;

enum Kind {
    /// The reader, and the same file for the first-batch probe.
    Parquet(ParquetRecordBatchReaderBuilder<SharedFile>, SharedFile),
    ParquetUrl(parquet::arrow::ParquetRecordBatchStreamBuilder<UrlParquet>),
    IpcFile(FileReader<BufReader<File>>),
    IpcStream(IpcStreams),
}

impl Input {
    /// Open a source, detect its format and read its schema.
    pub fn open(source: &Source) -> Result<Input> {
        let input = Self::open_any(source)?;
        // Columns are named on the command line and matched by name between inputs: a name
        // given twice would pick one of them, or fail deep in arrow with a column index.
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = input.schema.fields().iter().find(|f| !seen.insert(f.name())) {
            return Err(Error::data(format!(
                "{}: column `{}` appears more than once; rename or drop the copies (the stages find columns by name)",
                input.name,
                dup.name()
            )));
        }
        Ok(input)
    }

    fn open_any(source: &Source) -> Result<Input> {
        let name = source.name();
        match source {
            Source::Url(url) => Self::open_url(url),
            Source::File(path) => {
                let mut file = File::open(path).map_err(|e| open_error(path, e))?;
                let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
                let mut head = [0u8; 8];
                let n = read_full(&mut file, &mut head).map_err(|e| Error::io(path, e))?;
                if n == 0 {
                    return Err(Error::data(format!(
                        "{name}: empty file (0 bytes), not Parquet or Arrow IPC: did the stage that wrote it fail? \
                         Re-create it or leave it out"
                    )));
                }
                if !is_regular_file(path) {
                    // A named pipe (`mkfifo`, `<(...)`, a `--split-to` fifo): read as stdin is.
                    return Self::open_unseekable(name, Box::new(file), &head[..n]);
                }
                file.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
                let Some(format) = detect(&head[..n]) else {
                    return Err(unknown_format(&name, &head[..n]));
                };
                let mut input = if format == Format::IpcStream {
                    let streams = IpcStreams::open(name.clone(), Box::new(file), Vec::new())?;
                    Self::stream(name, streams)
                } else {
                    Self::from_parts(name, format, path, file, None)?
                };
                input.size = Some(size);
                Ok(input)
            }
            Source::Stdin => {
                let mut stdin: Box<dyn Read + Send> = Box::new(io::stdin());
                let mut head = [0u8; 8];
                let n = read_full(&mut stdin, &mut head).map_err(|e| Error::io("stdin", e))?;
                if n == 0 {
                    return Err(Error::data(
                        "stdin: input is empty (0 bytes): did the stage before this one fail? \
                         Pass input files as arguments or pipe a stage's output in",
                    ));
                }
                Self::open_unseekable(name, stdin, &head[..n])
            }
        }
    }

    /// Open what can only be read front to back (stdin, a named pipe) whose first bytes are
    /// `head`: an IPC stream as it arrives; Parquet and IPC files, which need random access,
    /// spooled to a temp file first.
    fn open_unseekable(name: String, rest: Box<dyn Read + Send>, head: &[u8]) -> Result<Input> {
        let Some(format) = detect(head) else {
            return Err(unknown_format(&name, head));
        };
        if format == Format::IpcStream {
            let streams = IpcStreams::open(name.clone(), rest, head.to_vec())?;
            return Ok(Self::stream(name, streams));
        }
        let mut rest: Box<dyn Read + Send> = Box::new(io::Cursor::new(head.to_vec()).chain(rest));
        let mut spool = Spool::new()?;
        let path = spool.0.path().to_path_buf();
        io::copy(&mut rest, spool.0.as_file_mut()).map_err(|e| disk_error(&path, e))?;
        let file = File::open(&path).map_err(|e| open_error(&path, e))?;
        Self::from_parts(name, format, &path, file, Some(spool))
    }

    /// Open an object: its first bytes tell the format, as for files. Parquet is read by range
    /// requests (footer, then the projected column chunks of one row group at a time); an IPC
    /// stream as it arrives; an IPC file (random access, rare between stages) is spooled to a
    /// temp file first.
    fn open_url(url: &str) -> Result<Input> {
        let name = url.to_string();
        let loc = store::Location::parse(url)?;
        let Some(size) = loc.size()? else {
            return Err(Error::data(format!("{url}: no such object; check the URL")));
        };
        if size == 0 {
            return Err(Error::data(format!(
                "{url}: empty object (0 bytes), not Parquet or Arrow IPC: did the stage that wrote it fail? \
                 Re-create it or leave it out"
            )));
        }
        let head = loc.head_bytes(8, size)?;
        let Some(format) = detect(&head) else {
            return Err(unknown_format(url, &head));
        };
        match format {
            Format::IpcStream => {
                let streams = IpcStreams::open(name.clone(), Box::new(loc.stream()?), Vec::new())?;
                Ok(Input { size: Some(size), ..Self::stream(name, streams) })
            }
            Format::Parquet => {
                let reader = loc.parquet_reader(size);
                let builder = guard::decode(&name, "Parquet footer", || {
                    store::block(parquet::arrow::ParquetRecordBatchStreamBuilder::new(reader))?.map_err(|e| {
                        store::from_parquet_error(url, &e).unwrap_or_else(|| {
                            Error::data(format!(
                                "{name}: cannot read the Parquet footer ({e}): the object is corrupt or was cut short; \
                                 re-create it"
                            ))
                        })
                    })
                })?;
                // The same footer, its recorded time zones restored (crate::zones).
                let restored = ArrowReaderMetadata::try_new(builder.metadata().clone(), ArrowReaderOptions::default())
                    .map(crate::zones::restore)
                    .ok()
                    .filter(|m| m.schema() != builder.schema());
                let builder = match restored {
                    None => builder,
                    Some(m) => {
                        parquet::arrow::ParquetRecordBatchStreamBuilder::new_with_metadata(loc.parquet_reader(size), m)
                    }
                };
                let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
                let schema = builder.schema().clone();
                Ok(Input {
                    name,
                    format,
                    schema,
                    total_rows: Some(rows),
                    size: Some(size),
                    kind: Kind::ParquetUrl(builder),
                    _spool: None,
                })
            }
            Format::IpcFile => {
                let mut spool = Spool::new()?;
                let path = spool.0.path().to_path_buf();
                let mut body = loc.stream()?;
                io::copy(&mut body, spool.0.as_file_mut()).map_err(|e| match e.kind() {
                    io::ErrorKind::Other => Error::data(e.to_string()),
                    _ => disk_error(&path, e),
                })?;
                let file = File::open(&path).map_err(|e| open_error(&path, e))?;
                Ok(Input { size: Some(size), ..Self::from_parts(name, format, &path, file, Some(spool))? })
            }
        }
    }

    fn stream(name: String, streams: IpcStreams) -> Input {
        let schema = streams.schema();
        Input {
            name,
            format: Format::IpcStream,
            schema,
            total_rows: None,
            size: None,
            kind: Kind::IpcStream(streams),
            _spool: None,
        }
    }

    /// Read a random-access format (Parquet, IPC file) from `file`, open at `path`.
    fn from_parts(name: String, format: Format, path: &Path, file: File, spool: Option<Spool>) -> Result<Input> {
        let (schema, total_rows, kind) = match format {
            Format::Parquet => {
                let file = SharedFile::new(file).map_err(|e| Error::io(path, e))?;
                let probe_file = file.clone();
                let builder = guard::decode(&name, "Parquet footer", || {
                    ArrowReaderMetadata::load(&file, ArrowReaderOptions::default())
                        .map(|meta| ParquetRecordBatchReaderBuilder::new_with_metadata(file, crate::zones::restore(meta)))
                        .map_err(|e| {
                            Error::data(format!(
                                "{name}: cannot read the Parquet footer ({e}): the file is corrupt or was cut short; re-create it"
                            ))
                        })
                })?;
                let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
                (builder.schema().clone(), Some(rows), Kind::Parquet(builder, probe_file))
            }
            Format::IpcFile => {
                let mut file = file;
                file.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
                let corrupt = |e: &dyn std::fmt::Display| {
                    Error::data(format!(
                        "{name}: cannot read the Arrow IPC file ({e}): the file is corrupt or was cut short; re-create it"
                    ))
                };
                check_ipc_file(&mut file).map_err(|e| match e.kind() {
                    // Not damage: a complete message of its own (files concatenated into one).
                    io::ErrorKind::InvalidInput => Error::data(format!("{name}: {e}")),
                    _ => corrupt(&e),
                })?;
                let reader = guard::decode(&name, "Arrow IPC file", || {
                    FileReader::try_new_buffered(file, None).map_err(|e| corrupt(&e))
                })?;
                let rows = None;
                (reader.schema(), rows, Kind::IpcFile(reader))
            }
            Format::IpcStream => {
                let streams = IpcStreams::open(name.clone(), Box::new(file), Vec::new())?;
                (streams.schema(), None, Kind::IpcStream(streams))
            }
        };
        Ok(Input { name, format, schema, total_rows, size: None, kind, _spool: spool })
    }

    /// The name used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The detected format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The full schema of the input.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Row count when the format records it (Parquet), for progress bars.
    pub fn total_rows(&self) -> Option<u64> {
        self.total_rows
    }

    /// Bytes of the file or object as stored (what a listing or `du` counts); `None` for
    /// stdin, whose size is known only once it has been read.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Start decoding. `columns` selects and orders the columns (pushed down into the Parquet
    /// reader); `None` keeps all. Batches aim at `batch_bytes` of decoded data.
    pub fn reader(self, columns: Option<&[String]>, batch_bytes: usize) -> Result<BatchReader> {
        let indices = match columns {
            None => None,
            Some(cols) => {
                Some(cols.iter().map(|c| column_index(&self.schema, c, &self.name)).collect::<Result<Vec<usize>>>()?)
            }
        };
        let out_schema = match &indices {
            None => self.schema.clone(),
            Some(idx) => Arc::new(self.schema.project(idx).map_err(|e| Error::arrow(self.name.clone(), e))?),
        };
        let name = self.name;
        // Rows a Parquet batch decodes at once (0: not Parquet), for where a decode error is.
        let mut decode_rows = 0u64;
        let mut file_rows = u64::MAX;
        let inner = match self.kind {
            Kind::Parquet(builder, probe_file) => {
                let meta = builder.metadata().clone();
                let parquet_schema = builder.parquet_schema();
                // Leaf columns belonging to the selected root fields.
                let mask = match &indices {
                    None => ProjectionMask::all(),
                    Some(idx) => ProjectionMask::roots(parquet_schema, idx.iter().copied()),
                };
                let batch_rows = guard::decode(&name, "Parquet data", || {
                    ArrowReaderMetadata::try_new(meta.clone(), ArrowReaderOptions::default())
                        .and_then(|m| parquet_batch_rows(probe_file, &m, &mask, batch_bytes))
                        .map_err(|e| Error::data(format!("{name}: cannot read Parquet data ({e}); re-create the file")))
                })?;
                decode_rows = batch_rows as u64;
                file_rows = meta.file_metadata().num_rows().max(0) as u64;
                let reader =
                    guard::decode(&name, "Parquet data", || {
                        builder.with_projection(mask).with_batch_size(batch_rows).build().map_err(|e| {
                            Error::data(format!("{name}: cannot read Parquet data ({e}); re-create the file"))
                        })
                    })?;
                // The Parquet reader keeps file order; reorder to the requested order.
                let reorder = indices.as_ref().map(|idx| {
                    let mut sorted = idx.clone();
                    sorted.sort_unstable();
                    idx.iter().map(|i| sorted.binary_search(i).unwrap_or(0)).collect::<Vec<_>>()
                });
                Inner::Parquet(reader, reorder)
            }
            Kind::ParquetUrl(builder) => {
                let meta = builder.metadata().clone();
                let mask = match &indices {
                    None => ProjectionMask::all(),
                    Some(idx) => ProjectionMask::roots(builder.parquet_schema(), idx.iter().copied()),
                };
                // No probe decode here (it would cost a row group's requests): estimate a row's
                // decoded size from the footer's uncompressed sizes of the projected columns,
                // doubled for dictionary-encoded strings.
                let rows = meta.file_metadata().num_rows().max(1) as usize;
                let bytes: i64 = meta
                    .row_groups()
                    .iter()
                    .flat_map(|rg| rg.columns().iter().enumerate())
                    .filter(|(i, _)| mask.leaf_included(*i))
                    .map(|(_, c)| c.uncompressed_size())
                    .sum();
                let per_row = (2 * bytes.max(0) as usize / rows).max(1);
                let batch_rows = (batch_bytes / per_row).clamp(1, 1 << 20);
                decode_rows = batch_rows as u64;
                file_rows = meta.file_metadata().num_rows().max(0) as u64;
                let stream = builder.with_projection(mask).with_batch_size(batch_rows).build().map_err(|e| {
                    Error::data(format!("{name}: cannot read Parquet data ({e}); re-create the object"))
                })?;
                Inner::ParquetUrl(Box::new(stream), None, reorder_of(indices.as_ref()))
            }
            Kind::IpcFile(reader) => Inner::IpcFile(reader, indices),
            Kind::IpcStream(streams) => Inner::IpcStream(streams, indices),
        };
        Ok(BatchReader { name, schema: out_schema, inner, rows: 0, decode_rows, file_rows, poisoned: false })
    }
}

/// A regular file, which can be opened again and read at any position (not a named pipe, a
/// device or `/dev/fd/N` of a pipe).
pub fn is_regular_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

fn open_error(path: &Path, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::NotFound => {
            Error::data(format!("{}: no such file or directory; check the path", path.display()))
        }
        io::ErrorKind::PermissionDenied => Error::data(format!(
            "{}: permission denied; make the file readable (chmod +r) or run as a user who can read it",
            path.display()
        )),
        // No number in the message: with every descriptor taken, /proc/self/limits cannot be read.
        _ if e.raw_os_error() == Some(libc::EMFILE) => Error::data(format!(
            "{}: too many open files (every input stays open while it is read): raise the limit \
             (`ulimit -n` shows it; `ulimit -n 65536`), or give this stage fewer files at once",
            path.display()
        )),
        _ => Error::io(path, e),
    }
}

/// Rows per batch for about `batch_bytes` of decoded data from a Parquet file's `mask` columns.
///
/// The reader counts rows, so a row's decoded size is estimated twice and the larger wins:
/// - **A first batch** (up to 2048 rows), decoded: the footer knows only *encoded* sizes, and a
///   dictionary-encoded string decodes to many times its size.
/// - **The footer**: the widest row group's uncompressed bytes a row. The first rows alone
///   missed rows that widen later in the file: 3000 rows of one byte and then 40 KB strings
///   made batches of 8 MiB / 60 bytes, each holding a whole 160 MB row group (`probe-group`
///   peaked at 587 MiB under `--memory-limit 16MiB`).
pub fn parquet_batch_rows<R: parquet::file::reader::ChunkReader + 'static>(
    file: R,
    meta: &ArrowReaderMetadata,
    mask: &ProjectionMask,
    batch_bytes: usize,
) -> parquet::errors::Result<usize> {
    let md = meta.metadata();
    let total = md.file_metadata().num_rows().max(0) as usize;
    let mut probe = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone())
        .with_projection(mask.clone())
        .with_batch_size(total.clamp(1, 2048))
        .build()?;
    let decoded = match probe.next() {
        Some(Ok(b)) if b.num_rows() > 0 => (b.get_array_memory_size() / b.num_rows()).max(1),
        // A decode error shows up again, with its row, when the data is read.
        _ => 64,
    };
    let footer = md
        .row_groups()
        .iter()
        .filter(|rg| rg.num_rows() > 0)
        .map(|rg| {
            let bytes: i64 = rg
                .columns()
                .iter()
                .enumerate()
                .filter(|(i, _)| mask.leaf_included(*i))
                .map(|(_, c)| c.uncompressed_size().max(0))
                .sum();
            bytes as usize / rg.num_rows() as usize
        })
        .max()
        .unwrap_or(0);
    Ok((batch_bytes / decoded.max(footer).max(1)).clamp(1, 1 << 20))
}

fn unknown_format(name: &str, head: &[u8]) -> Error {
    let hex: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Error::data(format!(
        "{name}: not Parquet or Arrow IPC (starts with bytes {}); pass Parquet or Arrow IPC files",
        hex.join(" ")
    ))
}

pub(crate) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Index of a column by name, or an error naming the file and the columns it does have.
pub fn column_index(schema: &arrow::datatypes::Schema, column: &str, file: &str) -> Result<usize> {
    schema.index_of(column).map_err(|_| {
        let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        Error::data(format!(
            "{file}: no column `{column}` (it has: {}); name the right column with the matching option",
            have.join(", ")
        ))
    })
}

/// Where a Parquet object's projected column chunks are wanted from, one row group at a time.
type UrlStream = parquet::arrow::async_reader::ParquetRecordBatchStream<UrlParquet>;

/// The requested column order as positions in the Parquet reader's (file) order.
fn reorder_of(indices: Option<&Vec<usize>>) -> Option<Vec<usize>> {
    indices.map(|idx| {
        let mut sorted = idx.clone();
        sorted.sort_unstable();
        idx.iter().map(|i| sorted.binary_search(i).unwrap_or(0)).collect::<Vec<_>>()
    })
}

enum Inner {
    Parquet(ParquetRecordBatchReader, Option<Vec<usize>>),
    /// The object's stream, the decoder of the row group in memory, the column order.
    ParquetUrl(Box<UrlStream>, Option<ParquetRecordBatchReader>, Option<Vec<usize>>),
    IpcFile(FileReader<BufReader<File>>, Option<Vec<usize>>),
    IpcStream(IpcStreams, Option<Vec<usize>>),
    /// Decoded on a thread of its own, a few batches ahead ([`BatchReader::read_ahead`]).
    Ahead(Receiver<Result<Option<RecordBatch>>>),
}

/// Inputs taken one after another, with the next ones opened early: `items` is a lazy iterator
/// whose items open an input (typically its [`BatchReader::ahead_with`], whose thread starts
/// decoding at once), and at most `window` of them are made before the caller has taken the
/// oldest. So while the caller reads input `i`, inputs `i+1 .. i+window-1` decode on threads of
/// their own. Batches, row numbers and errors are those of opening and reading the inputs in
/// order: an error waits in its turn, and nothing after it is opened.
///
/// ```text
/// for reader in Window::new(sources.iter().map(open), threads) { let reader = reader?; ... }
/// ```
pub struct Window<I: Iterator> {
    /// `None` once it has run out or given an error.
    items: Option<I>,
    window: usize,
    made: std::collections::VecDeque<I::Item>,
}

impl<T, I: Iterator<Item = Result<T>>> Window<I> {
    /// The items of `items`, at most `window` (at least one) made ahead of the caller.
    pub fn new(items: I, window: usize) -> Window<I> {
        Window { items: Some(items), window: window.max(1), made: std::collections::VecDeque::new() }
    }
}

impl<T, I: Iterator<Item = Result<T>>> Iterator for Window<I> {
    type Item = Result<T>;

    /// The next item in order, `None` after the last.
    fn next(&mut self) -> Option<Result<T>> {
        while self.made.len() < self.window {
            let Some(item) = self.items.as_mut().and_then(Iterator::next) else {
                self.items = None;
                break;
            };
            if item.is_err() {
                self.items = None;
            }
            self.made.push_back(item);
        }
        self.made.pop_front()
    }
}

/// Where a Parquet decode error is: the batch being decoded, rows `start` to `start + n - 1`
/// at most to the file's last row (arrow-rs does not say which page failed).
fn rows_span(start: u64, n: u64, file_rows: u64) -> String {
    let end = start.saturating_add(n).min(file_rows).saturating_sub(1).max(start);
    if end > start {
        format!("rows {start}-{end} (the batch being decoded)")
    } else {
        format!("row {start}")
    }
}

/// Yields record batches from one input, with the projection applied.
pub struct BatchReader {
    name: String,
    schema: SchemaRef,
    inner: Inner,
    rows: u64,
    /// Rows a Parquet batch decodes at once: a decode error is somewhere in the next that many.
    decode_rows: u64,
    /// Rows in the file, where the footer says (else u64::MAX).
    file_rows: u64,
    /// A decoder panicked: its state is unknown, so every later call fails too.
    poisoned: bool,
}

impl std::fmt::Debug for BatchReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchReader").field("name", &self.name).field("rows", &self.rows).finish()
    }
}

impl BatchReader {
    /// The input's name for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Schema of the batches this reader yields (after projection).
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Rows yielded so far: the file row number of the next batch's first row.
    pub fn rows_read(&self) -> u64 {
        self.rows
    }

    /// The next batch, `None` at a proper end of input.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.poisoned {
            return Err(Error::data(format!("{}: the input is corrupt (see the error before)", self.name)));
        }
        let name = self.name.clone();
        let what = match self.inner {
            Inner::Parquet(..) | Inner::ParquetUrl(..) => "Parquet data",
            Inner::IpcFile(..) => "Arrow IPC file",
            Inner::IpcStream(..) => "Arrow IPC stream",
            Inner::Ahead(..) => "input",
        };
        let result = guard::decode(&name, what, || self.decode_next());
        if result.is_err() {
            // Any error ends the input; after a panic the decoder must not be called again.
            self.poisoned = true;
        }
        result
    }

    /// Decode this input on a thread of its own, `depth` batches ahead of the caller (at least
    /// one): the batches, errors and row numbers are the same, only the decoding (Parquet pages,
    /// IPC buffer decompression) overlaps the caller's work. The thread stops at the end of
    /// the input, at an error, or when the reader returned is dropped.
    pub fn read_ahead(self, depth: usize) -> Result<BatchReader> {
        let (name, schema, rows, decode_rows, file_rows) =
            (self.name.clone(), self.schema.clone(), self.rows, self.decode_rows, self.file_rows);
        let (tx, rx) = sync_channel(depth.max(1));
        let mut inner = self;
        std::thread::Builder::new()
            .name("probe-read".into())
            .spawn(move || loop {
                let next = inner.next_batch();
                let end = !matches!(next, Ok(Some(_)));
                // A closed channel: the caller stopped (on an error of its own); so do we.
                if tx.send(next).is_err() || end {
                    return;
                }
            })
            .map_err(|e| Error::config(format!("cannot start a reader thread ({e}); lower --threads")))?;
        Ok(BatchReader { name, schema, inner: Inner::Ahead(rx), rows, decode_rows, file_rows, poisoned: false })
    }

    /// [`Self::read_ahead`] two batches ahead when the stage has more than one thread; with one
    /// (`--threads 1`: one core) the reader stays as it is.
    pub fn ahead_with(self, threads: usize) -> Result<BatchReader> {
        if threads > 1 {
            self.read_ahead(2)
        } else {
            Ok(self)
        }
    }

    fn decode_next(&mut self) -> Result<Option<RecordBatch>> {
        let name = &self.name;
        let batch = match &mut self.inner {
            Inner::Parquet(reader, reorder) => match reader.next() {
                None => None,
                Some(Err(e)) => {
                    return Err(Error::data(format!(
                        "{name}: cannot decode Parquet data in {} ({e}): the file is corrupt; re-create it",
                        rows_span(self.rows, self.decode_rows, self.file_rows)
                    )))
                }
                Some(Ok(b)) => Some(match reorder {
                    None => b,
                    Some(order) => b.project(order).map_err(|e| Error::arrow(name.clone(), e))?,
                }),
            },
            Inner::ParquetUrl(stream, current, reorder) => loop {
                if let Some(rg) = current.as_mut() {
                    match rg.next() {
                        Some(Ok(b)) => {
                            break Some(match reorder {
                                None => b,
                                Some(order) => b.project(order).map_err(|e| Error::arrow(name.clone(), e))?,
                            })
                        }
                        Some(Err(e)) => {
                            return Err(Error::data(format!(
                                "{name}: cannot decode Parquet data in {} ({e}): the object is corrupt; re-create it",
                                rows_span(self.rows, self.decode_rows, self.file_rows)
                            )))
                        }
                        None => *current = None,
                    }
                }
                // The next row group: its projected column chunks, fetched by range requests.
                match store::block(stream.next_row_group())? {
                    Ok(Some(rg)) => *current = Some(rg),
                    Ok(None) => break None,
                    Err(e) => {
                        return Err(store::from_parquet_error(name, &e).unwrap_or_else(|| {
                            Error::data(format!(
                            "{name}: cannot read Parquet data near row {} ({e}): the object is corrupt; re-create it",
                            self.rows
                        ))
                        }))
                    }
                }
            },
            Inner::IpcFile(reader, proj) => match reader.next() {
                None => None,
                Some(Err(e)) => {
                    return Err(Error::data(format!(
                        "{name}: cannot decode Arrow IPC data near row {} ({e}): the file is corrupt; re-create it",
                        self.rows
                    )))
                }
                Some(Ok(b)) => Some(project(b, proj.as_deref(), name)?),
            },
            Inner::IpcStream(streams, proj) => match streams.next(self.rows)? {
                None => None,
                Some(b) => Some(project(b, proj.as_deref(), name)?),
            },
            // The reader thread's own errors name the input and row already.
            Inner::Ahead(rx) => rx
                .recv()
                .map_err(|_| Error::internal(format!("{name}: the reader thread stopped without a result")))??,
        };
        if let Some(b) = &batch {
            self.rows += b.num_rows() as u64;
        }
        Ok(batch)
    }
}

fn project(b: RecordBatch, proj: Option<&[usize]>, name: &str) -> Result<RecordBatch> {
    match proj {
        None => Ok(b),
        Some(idx) => b.project(idx).map_err(|e| Error::arrow(name.to_string(), e)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::testing::write_file;

    /// `Window` hands items out in order, makes at most `window` before the oldest is taken,
    /// and hands an error out in its turn with nothing opened after it.
    #[test]
    fn a_decode_error_names_the_rows_of_its_batch_within_the_file() {
        assert_eq!(rows_span(0, 131_072, 30), "rows 0-29 (the batch being decoded)");
        assert_eq!(rows_span(8192, 8192, u64::MAX), "rows 8192-16383 (the batch being decoded)");
        assert_eq!(rows_span(29, 8192, 30), "row 29");
        assert_eq!(rows_span(5, 0, 30), "row 5");
    }

    #[test]
    fn window_opens_ahead_in_order_and_stops_at_an_error() {
        for window in [1, 2, 3, 10] {
            let opened = std::cell::RefCell::new(Vec::new());
            let open = |i: usize| {
                opened.borrow_mut().push(i);
                if i == 5 {
                    Err(Error::data(format!("input {i} is bad")))
                } else {
                    Ok(i * 10)
                }
            };
            let mut w = Window::new((0..8).map(open), window);
            let mut got = Vec::new();
            for item in w.by_ref() {
                // What has been opened when item k is handed out: k + window at most.
                let k = got.len();
                assert!(opened.borrow().len() <= (k + window).min(6), "window {window}: {:?}", opened.borrow());
                match item {
                    Ok(v) => got.push(v),
                    Err(e) => {
                        assert_eq!((k, e.to_string()), (5, "input 5 is bad".to_string()));
                        break;
                    }
                }
            }
            assert!(w.next().is_none(), "window {window}: nothing after the error");
            drop(w);
            assert_eq!(got, vec![0, 10, 20, 30, 40], "window {window}");
            assert_eq!(*opened.borrow(), vec![0, 1, 2, 3, 4, 5], "window {window}: opened");
        }
    }

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    fn names(sources: &[Source], root: &Path) -> Vec<String> {
        sources
            .iter()
            .map(|s| match s {
                Source::Stdin => "-".into(),
                Source::File(p) => p.strip_prefix(root).expect("under root").display().to_string(),
                Source::Url(u) => u.clone(),
            })
            .collect()
    }

    #[test]
    fn detect_tells_the_formats_apart_by_their_first_bytes() {
        assert_eq!(detect(b"PAR1\x15\x04"), Some(Format::Parquet));
        assert_eq!(detect(b"ARROW1\0\0"), Some(Format::IpcFile));
        // Current stream format: continuation marker, then a plausible schema length.
        assert_eq!(detect(&[0xff, 0xff, 0xff, 0xff, 0x78, 0, 0, 0]), Some(Format::IpcStream));
        // Pre-1.0 stream format: the length alone, a multiple of 8.
        assert_eq!(detect(&[0x78, 0, 0, 0, 0x10, 0, 0, 0]), Some(Format::IpcStream));
        // A start cut inside the marker is a stream (reading it reports truncation).
        assert_eq!(detect(&[0xff, 0xff]), Some(Format::IpcStream));
        // Text, an empty input, a zero or huge length are none of them.
        assert_eq!(detect(b"src_addr,event_time\n"), None);
        assert_eq!(detect(b""), None);
        assert_eq!(detect(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]), None);
        assert_eq!(detect(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0x7f]), None);
        assert_eq!(detect(&[0x79, 0, 0, 0, 0, 0, 0, 0]), None, "pre-1.0 length not a multiple of 8");
    }

    #[test]
    fn discover_walks_folders_in_name_order_and_skips_hidden_and_underscore_names() -> Result<()> {
        let dir = tmp();
        let d = dir.path();
        for f in ["b/2.parquet", "b/10.parquet", "a.parquet", "c/_SUCCESS", "c/x", ".tmp/y", "_temporary/z", "b0"] {
            let p = d.join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).map_err(|e| Error::io(&p, e))?;
            std::fs::write(&p, b"").map_err(|e| Error::io(&p, e))?;
        }
        let got = discover(&[d.display().to_string()])?;
        // Byte order of names at each level; a folder's files come where its name sorts.
        assert_eq!(names(&got, d), ["a.parquet", "b/10.parquet", "b/2.parquet", "b0", "c/x"]);
        assert_eq!(discover(&[])?, vec![Source::Stdin]);
        assert_eq!(discover(&["-".into()])?, vec![Source::Stdin]);
        Ok(())
    }

    #[test]
    fn discover_refuses_the_same_file_twice_stdin_twice_missing_paths_and_empty_folders() {
        let dir = tmp();
        let d = dir.path();
        let f = d.join("a.parquet");
        std::fs::write(&f, b"").expect("write");
        let err = |paths: &[String]| discover(paths).expect_err("must fail").to_string();
        let a = f.display().to_string();
        let dot = format!("{}/./a.parquet", d.display());
        assert!(err(&[a.clone(), dot]).contains("reached twice"));
        assert!(err(&[d.display().to_string(), a]).contains("reached twice"));
        assert!(err(&["-".into(), "-".into()]).contains("more than once"));
        assert!(err(&[d.join("nope").display().to_string()]).contains("no such file"));
        let empty = d.join("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        std::fs::write(empty.join("_SUCCESS"), b"").expect("write");
        assert!(err(&[empty.display().to_string()]).contains("holds no data files"));
    }

    #[test]
    fn open_reads_every_format_with_a_projection() -> Result<()> {
        let dir = tmp();
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("t", DataType::Int64, true),
            Field::new("v", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef,
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(Int64Array::from(vec![7, 8, 9])),
            ],
        )
        .map_err(|e| Error::arrow("batch", e))?;
        for (file, format) in
            [("x.parquet", Format::Parquet), ("x.arrow", Format::IpcFile), ("x.bin", Format::IpcStream)]
        {
            let path = dir.path().join(file);
            write_file(&path, schema.clone(), std::slice::from_ref(&batch))?;
            let input = Input::open(&Source::File(path))?;
            assert_eq!(input.format(), format, "{file}");
            assert_eq!(input.schema().fields().len(), 3);
            let mut r = input.reader(Some(&["v".to_string(), "k".to_string()]), 1 << 20)?;
            let mut rows = 0;
            while let Some(b) = r.next_batch()? {
                let cols: Vec<&str> = b.schema_ref().fields().iter().map(|f| f.name().as_str()).collect();
                assert!(cols.contains(&"k") && cols.contains(&"v") && !cols.contains(&"t"), "{file}: {cols:?}");
                rows += b.num_rows();
            }
            assert_eq!(rows, 3, "{file}");
            assert_eq!(r.rows_read(), 3, "{file}");
        }
        Ok(())
    }

    #[test]
    fn a_file_of_no_known_format_and_a_missing_column_are_named() {
        let dir = tmp();
        let path = dir.path().join("data.csv");
        std::fs::write(&path, "src_addr,event_time\n1,2\n").expect("write");
        let Err(e) = Input::open(&Source::File(path)) else { panic!("csv must be refused") };
        let e = e.to_string();
        assert!(e.contains("data.csv"), "{e}");
        let schema = Schema::new(vec![Field::new("k", DataType::Utf8, true)]);
        let e = column_index(&schema, "src_addr", "f.parquet").expect_err("missing").to_string();
        assert!(e.contains("f.parquet") && e.contains("`src_addr`") && e.contains("it has: k"), "{e}");
    }

    /// Rows that widen after the first batch size the batches: the footer's widest row group
    /// wins over the narrow first rows.
    #[test]
    fn batches_are_sized_for_the_widest_row_group() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("wide.parquet");
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let narrow: ArrayRef = Arc::new(StringArray::from_iter_values((0..3000).map(|i| format!("{i}"))));
        let wide: ArrayRef = Arc::new(StringArray::from_iter_values((0..1000).map(|i| format!("{i:>20000}"))));
        let batches = [
            RecordBatch::try_new(schema.clone(), vec![narrow]).map_err(|e| Error::arrow("batch", e))?,
            RecordBatch::try_new(schema.clone(), vec![wide]).map_err(|e| Error::arrow("batch", e))?,
        ];
        let mut out = crate::output::Output::create(
            Some(&path),
            schema,
            &crate::output::OutputOptions { max_row_group_rows: 3000, ..Default::default() },
        )?;
        for b in &batches {
            out.write(b)?;
            out.flush_row_group()?;
        }
        out.finish()?;
        let file = SharedFile::open(&path).map_err(|e| Error::io(&path, e))?;
        let meta =
            ArrowReaderMetadata::load(&file, ArrowReaderOptions::default()).map_err(|e| Error::data(e.to_string()))?;
        let rows =
            parquet_batch_rows(file, &meta, &ProjectionMask::all(), 8 << 20).map_err(|e| Error::data(e.to_string()))?;
        // 8 MiB of 20 KB rows: about 400, where the first 2048 rows (a few bytes each) said 1 Mi.
        assert!((300..=420).contains(&rows), "{rows} rows a batch");
        Ok(())
    }
}
