//! Defences against corrupt input that arrow-rs and parquet-rs do not catch themselves.
//!
//! - A decoder may panic on corrupt bytes (parquet's RLE/bit-packing readers assert on
//!   malformed varints, for one). [`decode`] runs a decoder call under `catch_unwind` and turns
//!   a panic into a one-line [`Error::Data`] naming the file; the panic message is kept out of
//!   stderr so the stage still prints exactly one error line.
//! - A compressed Arrow IPC buffer starts with its uncompressed length, which arrow-rs
//!   allocates up front: a corrupt length (`memory allocation of 37044092936611 bytes failed`)
//!   aborts the process, which no error handling can catch. [`IpcStreamGuard`] (streams) and
//!   [`check_ipc_file`] (files) read each message's metadata first and refuse a declared
//!   length that no codec can produce from the compressed bytes.
//!
//! ```text
//! let batch = guard::decode(&name, "Parquet data", || reader.next().transpose()...)?;
//! let checked = IpcStreamGuard::new(reader);             // a Read for arrow's StreamReader
//! check_ipc_file(&mut file)?;                            // before arrow's FileReader
//! ```

use std::cell::Cell;
use std::io::{self, Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use arrow::ipc::{root_as_footer, root_as_message, Message};

use crate::error::{Error, Result};

thread_local! {
    /// True while this thread runs a guarded decoder call: its panics are reported as errors.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Silence the panic hook for guarded calls only; every other panic is printed as before.
fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Run one decoder call; a panic inside it becomes
/// `{name}: corrupt {what}: the decoder failed (...); re-create the file`.
pub fn decode<T>(name: &str, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    install_hook();
    let was = GUARDED.with(|g| g.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(was));
    result.unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_string());
        Err(Error::data(format!(
            "{name}: corrupt {what}: the decoder failed ({msg}); the file is damaged, re-create it"
        )))
    })
}

/// The largest uncompressed size `compressed` bytes can decode to: zstd's densest block (RLE)
/// expands 4 bytes to 128 KiB, LZ4's about 255-fold; and never more than this machine's memory.
fn max_uncompressed(compressed: u64) -> u64 {
    let ratio_bound = compressed.saturating_add(1).saturating_mul(1 << 16);
    let memory = crate::progress::physical_memory_bytes().unwrap_or(1 << 40);
    ratio_bound.min(memory)
}

/// `(offset, length)` of the body buffers of a compressed record or dictionary batch.
fn compressed_buffers(msg: &Message) -> Vec<(i64, i64)> {
    let batch = msg.header_as_record_batch().or_else(|| msg.header_as_dictionary_batch().and_then(|d| d.data()));
    match batch {
        Some(b) if b.compression().is_some() => {
            b.buffers().map(|v| v.iter().map(|buf| (buf.offset(), buf.length())).collect()).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// Check one compressed buffer's 8-byte length prefix against what its bytes can hold.
fn check_prefix(prefix: [u8; 8], length: i64) -> io::Result<()> {
    let declared = i64::from_le_bytes(prefix);
    // -1: stored uncompressed; 0: empty; arrow-rs itself rejects other negative values.
    if declared > 0 && declared as u64 > max_uncompressed(length.max(0) as u64) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "corrupt compressed buffer: it declares {declared} bytes uncompressed from {length} compressed bytes"
            ),
        ));
    }
    Ok(())
}

/// Append up to `n` bytes from `r` to `out`, growing `out` as the bytes arrive (a corrupt `n`
/// costs nothing); true when all `n` came.
fn read_upto(r: &mut impl Read, out: &mut Vec<u8>, n: u64) -> io::Result<bool> {
    let got = r.take(n).read_to_end(out)? as u64;
    Ok(got == n)
}

/// A `Read` that passes an Arrow IPC stream through, holding back each compressed message until
/// the lengths its buffers declare are checked (uncompressed bodies stream straight through).
/// Anything it cannot parse is passed on untouched for arrow's reader to report. It never reads
/// past the end-of-stream marker, and reports end of input right after it, so that whatever
/// follows (another concatenated stream) stays unread in the wrapped reader.
pub struct IpcStreamGuard<R> {
    inner: R,
    out: Vec<u8>,
    pos: usize,
    /// Bytes of an uncompressed body still to pass through unbuffered.
    body_left: u64,
    /// After an unparseable message: plain pass-through.
    done: bool,
    /// The end-of-stream marker has been read: once it is handed out, reads return 0.
    eos: bool,
}

impl<R: Read> IpcStreamGuard<R> {
    /// Wrap a reader positioned at the start of a stream.
    pub fn new(inner: R) -> Self {
        IpcStreamGuard { inner, out: Vec::new(), pos: 0, body_left: 0, done: false, eos: false }
    }

    /// Whether the stream's end-of-stream marker has been read (a stream without one was cut
    /// off: its writer died).
    pub fn saw_end_of_stream(&self) -> bool {
        self.eos
    }

    /// The wrapped reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The wrapped reader, to take it over after the end-of-stream marker.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Read the next message into `out` (all of it, or up to the end of the input).
    fn fill(&mut self) -> io::Result<()> {
        if self.out.capacity() > 64 << 20 {
            self.out = Vec::new();
        }
        self.out.clear();
        self.pos = 0;
        let out = &mut self.out;
        if !read_upto(&mut self.inner, out, 4)? {
            return Ok(());
        }
        let mut len = [out[0], out[1], out[2], out[3]];
        if len == [0xff; 4] {
            if !read_upto(&mut self.inner, out, 4)? {
                return Ok(());
            }
            len = [out[4], out[5], out[6], out[7]];
        }
        let len = i32::from_le_bytes(len);
        if len == 0 {
            self.eos = true;
            return Ok(());
        }
        if len < 0 {
            // Nonsense that arrow reports.
            self.done = true;
            return Ok(());
        }
        let meta_start = out.len();
        if !read_upto(&mut self.inner, out, len as u64)? {
            return Ok(());
        }
        let (body_len, buffers) = match root_as_message(&out[meta_start..]) {
            Ok(msg) => (msg.bodyLength(), compressed_buffers(&msg)),
            Err(_) => {
                self.done = true;
                return Ok(());
            }
        };
        if body_len <= 0 {
            return Ok(());
        }
        if buffers.is_empty() {
            self.body_left = body_len as u64;
            return Ok(());
        }
        let body_start = out.len();
        if !read_upto(&mut self.inner, out, body_len as u64)? {
            return Ok(());
        }
        for (offset, length) in buffers {
            let Some(start) = usize::try_from(offset).ok().and_then(|o| o.checked_add(body_start)) else {
                continue;
            };
            if length >= 8 {
                if let Some(p) = out.get(start..start + 8) {
                    check_prefix([p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]], length)?;
                }
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for IpcStreamGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.out.len() {
            if self.body_left > 0 {
                let n = buf.len().min(usize::try_from(self.body_left).unwrap_or(usize::MAX));
                let got = self.inner.read(&mut buf[..n])?;
                self.body_left -= got as u64;
                return Ok(got);
            }
            if self.eos {
                return Ok(0);
            }
            if self.done {
                return self.inner.read(buf);
            }
            self.fill()?;
            if self.pos == self.out.len() {
                return self.inner.read(buf);
            }
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Check the compressed buffers of every block an Arrow IPC file's footer lists, and that the
/// footer describes the whole file (an `InvalidInput` error: files concatenated into one). A
/// file whose footer or messages do not parse passes: arrow's `FileReader` reports those itself.
pub fn check_ipc_file<F: Read + Seek>(file: &mut F) -> io::Result<()> {
    let size = file.seek(SeekFrom::End(0))?;
    if size < 18 {
        return Ok(());
    }
    let mut tail = [0u8; 10];
    file.seek(SeekFrom::Start(size - 10))?;
    file.read_exact(&mut tail)?;
    if &tail[4..] != b"ARROW1" {
        return Ok(());
    }
    let footer_len = i32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    if footer_len <= 0 || footer_len as u64 + 10 > size {
        return Ok(());
    }
    let mut footer = vec![0u8; footer_len as usize];
    file.seek(SeekFrom::Start(size - 10 - footer_len as u64))?;
    file.read_exact(&mut footer)?;
    let Ok(footer) = root_as_footer(&footer) else {
        return Ok(());
    };
    check_footer_covers_file(file, size, size - 10 - footer_len as u64, &footer)?;
    let blocks = footer.dictionaries().into_iter().flatten().chain(footer.recordBatches().into_iter().flatten());
    let mut meta = Vec::new();
    for block in blocks {
        let (offset, meta_len) = (block.offset(), block.metaDataLength());
        if offset < 0 || meta_len < 8 || offset as u64 + meta_len as u64 > size {
            continue;
        }
        meta.clear();
        file.seek(SeekFrom::Start(offset as u64))?;
        file.take(meta_len as u64).read_to_end(&mut meta)?;
        let skip = if meta[..4] == [0xff; 4] { 8 } else { 4 };
        let Ok(msg) = root_as_message(&meta[skip..]) else {
            continue;
        };
        let body = offset as u64 + meta_len as u64;
        for (buf_offset, length) in compressed_buffers(&msg) {
            if buf_offset < 0 || length < 8 || body + buf_offset as u64 + 8 > size {
                continue;
            }
            let mut prefix = [0u8; 8];
            file.seek(SeekFrom::Start(body + buf_offset as u64))?;
            file.read_exact(&mut prefix)?;
            check_prefix(prefix, length)?;
        }
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(())
}

/// The footer's blocks must reach up to the footer: after the last block comes at most the
/// 8-byte end-of-stream marker. Two IPC files concatenated (`cat a.arrow b.arrow`) end with the
/// second file's footer, whose offsets point into the first file: read as one file, that would
/// silently yield the wrong rows (or the first file's rows once, when both are alike).
fn check_footer_covers_file<F: Read + Seek>(
    file: &mut F,
    size: u64,
    footer_start: u64,
    footer: &arrow::ipc::Footer,
) -> io::Result<()> {
    let blocks = footer.dictionaries().into_iter().flatten().chain(footer.recordBatches().into_iter().flatten());
    let mut end: Option<u64> = None;
    for b in blocks {
        let e = (b.offset().max(0) as u64)
            .saturating_add(b.metaDataLength().max(0) as u64)
            .saturating_add(b.bodyLength().max(0) as u64);
        end = Some(end.map_or(e, |x: u64| x.max(e)));
    }
    let data_end = match end {
        Some(e) => e,
        None => {
            // No batches: the schema message is all there is. It follows the magic, padded to
            // the writer's alignment (8 bytes in pyarrow, 64 in arrow-rs).
            let mut found = None;
            for at in (8..=64).step_by(8) {
                let mut head = [0u8; 8];
                file.seek(SeekFrom::Start(at))?;
                if file.read_exact(&mut head).is_err() {
                    break;
                }
                if head[..4] == [0xff; 4] {
                    found = Some(at + 8 + i32::from_le_bytes([head[4], head[5], head[6], head[7]]).max(0) as u64);
                    break;
                }
                if head.iter().any(|&b| b != 0) {
                    break;
                }
            }
            match found {
                Some(end) => end,
                // A layout this check does not know: leave it to arrow's reader.
                None => return Ok(()),
            }
        }
    };
    if footer_start > data_end.saturating_add(8) && footer_start <= size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "its footer does not describe bytes {data_end}..{footer_start}: several IPC files concatenated \
                 into one (cat a.arrow b.arrow) cannot be read as one file; pass them as separate inputs"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_naming_the_file() {
        let r: Result<()> = decode("a.parquet", "Parquet data", || panic!("boom"));
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.starts_with("a.parquet: corrupt Parquet data") && msg.contains("boom"), "{msg}");
        // Results pass through untouched.
        assert_eq!(decode("a", "b", || Ok(7)).ok(), Some(7));
    }

    #[test]
    fn streams_pass_through_unchanged() {
        use std::sync::Arc;

        use arrow::array::{Int64Array, StringArray};
        use arrow::datatypes::{DataType, Field, Schema};
        use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
        use arrow::ipc::CompressionType;
        use arrow::record_batch::RecordBatch;

        let schema =
            Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false), Field::new("b", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(0..1000)),
                Arc::new(StringArray::from_iter((0..1000).map(|i| (i % 7 != 0).then(|| format!("v{i}"))))),
            ],
        )
        .expect("batch");
        for compression in [None, Some(CompressionType::LZ4_FRAME), Some(CompressionType::ZSTD)] {
            let opts = IpcWriteOptions::default().try_with_compression(compression).expect("options");
            let mut bytes = Vec::new();
            let mut w = StreamWriter::try_new_with_options(&mut bytes, &schema, opts).expect("writer");
            for _ in 0..3 {
                w.write(&batch).expect("write");
            }
            w.finish().expect("finish");
            drop(w);
            // Read through the guard in odd-sized pieces: the same bytes come out.
            let mut guard = IpcStreamGuard::new(&bytes[..]);
            let mut out = Vec::new();
            let mut piece = [0u8; 13];
            loop {
                let n = guard.read(&mut piece).expect("read");
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&piece[..n]);
            }
            assert_eq!(out, bytes, "{compression:?}");
        }
    }

    #[test]
    fn implausible_uncompressed_lengths_are_refused() {
        assert!(check_prefix(1000i64.to_le_bytes(), 16).is_ok());
        assert!(check_prefix((-1i64).to_le_bytes(), 16).is_ok());
        assert!(check_prefix(0i64.to_le_bytes(), 16).is_ok());
        assert!(check_prefix(37_044_092_936_611i64.to_le_bytes(), 16).is_err());
        assert!(check_prefix(i64::MAX.to_le_bytes(), i64::MAX).is_err());
    }
}
