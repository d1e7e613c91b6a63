//! Spill files of `probe-group --sort`: the private spill directory, and one sorted run
//! written to it and read back.
//!
//! ```text
//! let spill = SpillDir::new(&cfg.temp_dir)?;          // removed with its last reference
//! let mut w = RunWriter::create(&spill, 0, &schema, in_flight_bytes)?; // run-000000.arrows, LZ4 IPC
//!                                                      // stream, compressed on the pool
//! w.write(&sorted_batch)?;
//! let (path, bytes) = w.finish()?;
//! let run = RunReader::open(&path, &spill)?;           // a BatchSource; deletes the file on drop
//! ```
//!
//! The directory is registered with `probe_core::cleanup`, so SIGINT/SIGTERM remove it too; a
//! full disk is an error naming the directory and what to do.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::IpcWriteOptions;
use arrow::ipc::CompressionType;

use probe_core::cleanup;
use probe_core::ipc_writer::IpcWriter;
use probe_core::output::disk_error;
use probe_core::{Error, Result};

use crate::merge::BatchSource;

/// The private spill directory, removed with the last reference.
pub(crate) struct SpillDir {
    dir: tempfile::TempDir,
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        cleanup::forget(self.dir.path());
    }
}

impl SpillDir {
    /// The directory's path, for messages.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn new(parent: &Path) -> Result<Arc<SpillDir>> {
        let dir = tempfile::Builder::new().prefix("probe-group-spill-").tempdir_in(parent).map_err(|e| {
            Error::data(format!(
                "{}: cannot create a spill directory ({e}); pass --temp-dir with a writable directory",
                parent.display()
            ))
        })?;
        cleanup::register(dir.path());
        Ok(Arc::new(SpillDir { dir }))
    }
}

/// Writes one sorted run as a compressed Arrow IPC stream. A stream, not an IPC file: the
/// batches of a run come from many input batches, and a dictionary key column then has a
/// different dictionary in each, which only the stream format may replace.
pub(crate) struct RunWriter {
    path: PathBuf,
    writer: IpcWriter<BufWriter<File>>,
    budget_dir: PathBuf,
}

impl RunWriter {
    pub(crate) fn create(spill: &SpillDir, n: usize, schema: &Schema, in_flight_bytes: usize) -> Result<RunWriter> {
        let path = spill.dir.path().join(format!("run-{n:06}.arrows"));
        let file = File::create(&path).map_err(|e| disk_error(&path, e))?;
        let opts = IpcWriteOptions::default()
            .try_with_compression(Some(CompressionType::LZ4_FRAME))
            .map_err(|e| Error::arrow("spill options", e))?;
        // Compressed on the pool (LZ4 is most of a spill's cost), at most `in_flight_bytes` ahead.
        let writer = IpcWriter::try_new(BufWriter::with_capacity(1 << 20, file), schema, opts, true)
            .map_err(|e| spill_error(&path, spill.dir.path(), e))?
            .with_in_flight_bytes(in_flight_bytes);
        Ok(RunWriter { path, writer, budget_dir: spill.dir.path().to_path_buf() })
    }

    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).map_err(|e| spill_error(&self.path, &self.budget_dir, e))
    }

    pub(crate) fn finish(self) -> Result<(PathBuf, u64)> {
        self.writer.finish().map_err(|e| spill_error(&self.path, &self.budget_dir, e))?;
        let size = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        Ok((self.path, size))
    }
}

fn spill_error(path: &Path, dir: &Path, e: arrow::error::ArrowError) -> Error {
    if let arrow::error::ArrowError::IoError(_, io) = &e {
        if probe_core::output::is_disk_full(io) {
            return Error::data(format!(
                "{}: no space left for spill files (the sort needs about as much free space as the input's \
                 uncompressed size); free space there or pass --temp-dir on a larger disk",
                dir.display()
            ));
        }
    }
    Error::arrow(format!("writing spill file {}", path.display()), e)
}

/// Reads a spilled run back.
pub(crate) struct RunReader {
    name: String,
    reader: StreamReader<BufReader<File>>,
    rows: u64,
    _spill: Arc<SpillDir>,
    path: PathBuf,
    delete_on_drop: bool,
}

impl Drop for RunReader {
    fn drop(&mut self) {
        if self.delete_on_drop {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl RunReader {
    pub(crate) fn open(path: &Path, spill: &Arc<SpillDir>) -> Result<RunReader> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let reader = StreamReader::try_new_buffered(file, None)
            .map_err(|e| Error::arrow(format!("reading spill file {}", path.display()), e))?;
        Ok(RunReader {
            name: format!("spill run {}", path.display()),
            reader,
            rows: 0,
            _spill: spill.clone(),
            path: path.to_path_buf(),
            delete_on_drop: true,
        })
    }
}

impl BatchSource for RunReader {
    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        match self.reader.next() {
            None => Ok(None),
            Some(Err(e)) => Err(Error::arrow(self.name.clone(), e)),
            Some(Ok(b)) => {
                self.rows += b.num_rows() as u64;
                Ok(Some(b))
            }
        }
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn rows_read(&self) -> u64 {
        self.rows
    }
}
