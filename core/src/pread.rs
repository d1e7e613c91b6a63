//! A Parquet file read by position on one open descriptor, however many readers share it.
//!
//! ```text
//! let file = SharedFile::open(path)?;                           // one descriptor
//! ParquetRecordBatchReaderBuilder::try_new(file.clone())?       // footer, then pages
//! ParquetRecordBatchReaderBuilder::new_with_metadata(file.clone(), meta)  // more readers, same descriptor
//! ```
//!
//! Why: arrow-rs's `ChunkReader for File` duplicates the descriptor (`try_clone`) for every
//! read, and a stage held a second one per input for its first-batch probe. With many inputs,
//! or key ranges on many threads each opening the inputs they read, that ran into the usual
//! limit of 1024 open files: 600 one-row files failed "cannot read the Parquet footer (Too many
//! open files)", and 150 overlapping daily files failed at `--threads 8`. Here every reader of
//! an input reads it with `pread` (`FileExt::read_at`) on the same descriptor, which needs no
//! file position and so no duplicate: one descriptor per input, whatever the threads.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use parquet::errors::{ParquetError, Result as PqResult};
use parquet::file::reader::{ChunkReader, Length};

/// An open file shared by its readers; cloning shares the descriptor.
#[derive(Debug, Clone)]
pub struct SharedFile {
    file: Arc<File>,
    len: u64,
}

impl SharedFile {
    /// Wrap an open file (its length is read once, here).
    pub fn new(file: File) -> io::Result<SharedFile> {
        let len = file.metadata()?.len();
        Ok(SharedFile { file: Arc::new(file), len })
    }

    /// Open `path` for reading.
    pub fn open(path: &Path) -> io::Result<SharedFile> {
        SharedFile::new(File::open(path)?)
    }
}

impl Length for SharedFile {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for SharedFile {
    type T = io::BufReader<At>;

    fn get_read(&self, start: u64) -> PqResult<Self::T> {
        Ok(io::BufReader::new(At { file: self.file.clone(), pos: start }))
    }

    fn get_bytes(&self, start: u64, length: usize) -> PqResult<Bytes> {
        let mut buf = vec![0u8; length];
        let mut read = 0;
        while read < length {
            match self.file.read_at(&mut buf[read..], start + read as u64) {
                Ok(0) => break,
                Ok(n) => read += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ParquetError::External(Box::new(e))),
            }
        }
        if read != length {
            // The words of arrow-rs's own reader, so a cut-short file reads the same.
            return Err(ParquetError::EOF(format!("Expected to read {length} bytes, read only {read}")));
        }
        Ok(buf.into())
    }
}

/// Sequential reads from a position of a shared file.
#[derive(Debug)]
pub struct At {
    file: Arc<File>,
    pos: u64,
}

impl Read for At {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;

    use super::*;

    #[test]
    fn reads_by_position_and_reports_short_reads() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"0123456789").unwrap();
        let shared = SharedFile::new(f).unwrap();
        assert_eq!(shared.len(), 10);
        // Readers share the descriptor but not a position.
        let mut a = shared.get_read(2).unwrap();
        let mut b = shared.clone().get_read(7).unwrap();
        let (mut sa, mut sb) = (String::new(), String::new());
        a.read_to_string(&mut sa).unwrap();
        b.read_to_string(&mut sb).unwrap();
        assert_eq!((sa.as_str(), sb.as_str()), ("23456789", "789"));
        assert_eq!(&shared.get_bytes(3, 4).unwrap()[..], b"3456");
        let e = shared.get_bytes(8, 5).unwrap_err().to_string();
        assert!(e.contains("Expected to read 5 bytes, read only 2"), "{e}");
    }
}
