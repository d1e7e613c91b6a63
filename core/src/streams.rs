//! Arrow IPC streams read one after another from one input: `cat a.arrows b.arrows | stage`.
//!
//! ```text
//! let mut streams = IpcStreams::open("stdin".into(), Box::new(io::stdin()), head)?;
//! let schema = streams.schema();                 // the first stream's
//! while let Some(batch) = streams.next(rows)? { ... }   // every stream's batches, in order
//! ```
//!
//! A Unix user expects `cat a b | stage` to read all of `a` and `b`. arrow's `StreamReader`
//! stops at the first end-of-stream marker, so the bytes go through an [`IpcStreamGuard`] that
//! reports end of input right after the marker: whatever follows is still unread in the
//! [`ByteSource`] underneath. After each stream the next few bytes decide:
//!
//! 1. no bytes: the input ends here;
//! 2. the start of an IPC stream: a new `StreamReader` reads it; its schema must agree with the
//!    first stream's ([`crate::schema::check_agree`], columns matched by name, types equal) and
//!    its batches are handed out in the first stream's schema;
//! 3. anything else: an error naming the stream and byte offset, never silently ignored.
//!
//! A stream that ends without its end-of-stream marker is truncated (its writer died), in any
//! position: an error asking whether the stage before failed.

use std::io::{self, BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::guard::{self, IpcStreamGuard};
use crate::input::{detect, Format};
use crate::schema::check_agree;

/// The bytes of one input: counts what it hands out (for byte offsets in messages), gives back
/// bytes read ahead, and remembers hitting the end of the input.
///
/// A stream that carries its end-of-stream marker is never read to EOF by arrow's reader; one
/// that was cut off is. That flag tells a truncated message apart from a corrupt one.
pub(crate) struct ByteSource {
    inner: Box<dyn Read + Send>,
    /// Bytes read ahead, handed out before `inner`'s.
    ahead: Vec<u8>,
    ahead_pos: usize,
    /// Bytes handed out so far: the offset of the next one in the input.
    pos: u64,
    hit_eof: Arc<AtomicBool>,
}

impl ByteSource {
    /// `ahead`: bytes already taken from the start of `inner` (format detection).
    pub(crate) fn new(inner: Box<dyn Read + Send>, ahead: Vec<u8>) -> ByteSource {
        ByteSource { inner, ahead, ahead_pos: 0, pos: 0, hit_eof: Arc::new(AtomicBool::new(false)) }
    }

    /// Hand `bytes` out again before anything else.
    fn unread(&mut self, bytes: &[u8]) {
        let mut ahead = bytes.to_vec();
        ahead.extend_from_slice(&self.ahead[self.ahead_pos..]);
        self.ahead = ahead;
        self.ahead_pos = 0;
        self.pos -= bytes.len() as u64;
    }
}

impl Read for ByteSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ahead_pos < self.ahead.len() {
            let n = buf.len().min(self.ahead.len() - self.ahead_pos);
            buf[..n].copy_from_slice(&self.ahead[self.ahead_pos..self.ahead_pos + n]);
            self.ahead_pos += n;
            self.pos += n as u64;
            return Ok(n);
        }
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.hit_eof.store(true, Ordering::Relaxed);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// arrow's stream reader over the checked, counted bytes.
type Reader = StreamReader<BufReader<IpcStreamGuard<ByteSource>>>;

/// Every IPC stream of one input, in order.
pub(crate) struct IpcStreams {
    name: String,
    reader: Reader,
    hit_eof: Arc<AtomicBool>,
    /// The first stream's schema: every batch is handed out in it.
    schema: SchemaRef,
    /// Number of the current stream, from 1.
    stream: usize,
    /// Byte offset where the current stream starts.
    start: u64,
    /// Columns of the current stream in the first stream's order, when they differ.
    remap: Option<Vec<usize>>,
}

/// The message for a stream without its end-of-stream marker.
pub(crate) fn truncated_msg(name: &str) -> String {
    format!("{name}: input stream is truncated (no end-of-stream marker): did the stage before this one fail?")
}

fn open_stream(label: &str, source: ByteSource) -> Result<Reader> {
    let hit_eof = source.hit_eof.clone();
    guard::decode(label, "Arrow IPC stream", || {
        StreamReader::try_new(BufReader::with_capacity(1 << 16, IpcStreamGuard::new(source)), None).map_err(|e| {
            if hit_eof.load(Ordering::Relaxed) {
                Error::data(truncated_msg(label))
            } else {
                Error::data(format!("{label}: not a readable Arrow IPC stream ({e}); re-create it"))
            }
        })
    })
}

impl IpcStreams {
    /// Read the first stream's schema. `ahead` holds bytes already taken from `inner`.
    pub(crate) fn open(name: String, inner: Box<dyn Read + Send>, ahead: Vec<u8>) -> Result<IpcStreams> {
        let source = ByteSource::new(inner, ahead);
        let hit_eof = source.hit_eof.clone();
        let reader = open_stream(&name, source)?;
        Ok(IpcStreams { schema: reader.schema(), name, reader, hit_eof, stream: 1, start: 0, remap: None })
    }

    /// The first stream's schema.
    pub(crate) fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The input's name, with the stream and its offset after the first one.
    fn label(&self) -> String {
        if self.stream == 1 {
            self.name.clone()
        } else {
            format!("{} (stream {} at byte {})", self.name, self.stream, self.start)
        }
    }

    /// The next batch of any stream, in the first stream's schema; `None` after the last.
    /// `row` (the input's row number of the next row) is for messages.
    pub(crate) fn next(&mut self, row: u64) -> Result<Option<RecordBatch>> {
        loop {
            match self.reader.next() {
                Some(Ok(b)) => return self.conform(b).map(Some),
                Some(Err(e)) => {
                    let label = self.label();
                    if self.hit_eof.load(Ordering::Relaxed) {
                        return Err(Error::data(truncated_msg(&label)));
                    }
                    return Err(Error::data(format!(
                        "{label}: cannot decode Arrow IPC stream near row {row} ({e}): did the stage before this one fail?"
                    )));
                }
                None => {
                    if !self.reader.get_ref().get_ref().saw_end_of_stream() {
                        return Err(Error::data(truncated_msg(&self.label())));
                    }
                    if !self.next_stream()? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// After an end-of-stream marker: start the next stream, or see the input end (false).
    fn next_stream(&mut self) -> Result<bool> {
        let buffered = self.reader.get_mut();
        // The guard reports end of input after the marker, so nothing past it is buffered;
        // give back anything that is, all the same.
        let leftover = buffered.buffer().to_vec();
        let guard = buffered.get_mut();
        let mut source = std::mem::replace(guard.get_mut(), ByteSource::new(Box::new(io::empty()), Vec::new()));
        source.unread(&leftover);
        let start = source.pos;
        let mut head = [0u8; 8];
        let n = crate::input::read_full(&mut source, &mut head).map_err(|e| Error::io(&self.name, e))?;
        if n == 0 {
            return Ok(false);
        }
        if detect(&head[..n]) != Some(Format::IpcStream) {
            let hex: Vec<String> = head[..n].iter().map(|b| format!("{b:02x}")).collect();
            return Err(Error::data(format!(
                "{}: after the end of stream {} come bytes that do not start another Arrow IPC stream (at byte {start}: \
                 {}); something else was appended to the input: re-create it",
                self.name,
                self.stream,
                hex.join(" ")
            )));
        }
        source.unread(&head[..n]);
        self.stream += 1;
        self.start = start;
        let label = self.label();
        self.reader = open_stream(&label, source)?;
        let schema = self.reader.schema();
        let first = format!("stream 1 of {}", self.name);
        check_agree(&self.schema, &first, &schema, &label, None)?;
        let same_order = schema.fields().iter().zip(self.schema.fields()).all(|(a, b)| a.name() == b.name());
        self.remap = if same_order {
            None
        } else {
            Some(self.schema.fields().iter().filter_map(|f| schema.index_of(f.name()).ok()).collect())
        };
        Ok(true)
    }

    /// A later stream's batch in the first stream's schema (columns by name; a null in a column
    /// the first stream declares non-nullable is an error).
    fn conform(&self, batch: RecordBatch) -> Result<RecordBatch> {
        if self.stream == 1 {
            return Ok(batch);
        }
        let columns = match &self.remap {
            None => batch.columns().to_vec(),
            Some(idx) => idx.iter().map(|&i| batch.column(i).clone()).collect(),
        };
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| {
            Error::data(format!(
                "{}: its data does not fit the schema of stream 1 ({e}); every stream concatenated in one input \
                 must have the same columns",
                self.label()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::ipc::writer::StreamWriter;

    fn stream(fields: &[(&str, DataType)], rows: &[i64]) -> Vec<u8> {
        let schema =
            Arc::new(Schema::new(fields.iter().map(|(n, t)| Field::new(*n, t.clone(), true)).collect::<Vec<_>>()));
        let cols: Vec<arrow::array::ArrayRef> = fields
            .iter()
            .map(|(_, t)| -> arrow::array::ArrayRef {
                match t {
                    DataType::Utf8 => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| format!("k{r}")))),
                    _ => Arc::new(Int64Array::from(rows.to_vec())),
                }
            })
            .collect();
        let mut out = Vec::new();
        let mut w = StreamWriter::try_new(&mut out, &schema).unwrap_or_else(|e| panic!("{e}"));
        if !rows.is_empty() {
            let batch = RecordBatch::try_new(schema.clone(), cols).unwrap_or_else(|e| panic!("{e}"));
            w.write(&batch).unwrap_or_else(|e| panic!("{e}"));
        }
        w.finish().unwrap_or_else(|e| panic!("{e}"));
        drop(w);
        out
    }

    /// Every batch's first column as i64, or the error message.
    fn read(bytes: Vec<u8>) -> std::result::Result<Vec<i64>, String> {
        let mut s =
            IpcStreams::open("in".into(), Box::new(io::Cursor::new(bytes)), Vec::new()).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(b) = s.next(out.len() as u64).map_err(|e| e.to_string())? {
            let col = b.column_by_name("t").ok_or("no t")?;
            let col = col.as_any().downcast_ref::<Int64Array>().ok_or("not i64")?;
            out.extend(col.values().iter().copied());
        }
        Ok(out)
    }

    const KT: [(&str, DataType); 2] = [("k", DataType::Utf8), ("t", DataType::Int64)];

    #[test]
    fn reads_every_stream_empty_ones_too() {
        let bytes = [stream(&KT, &[]), stream(&KT, &[1, 2]), stream(&KT, &[]), stream(&KT, &[3])].concat();
        assert_eq!(read(bytes), Ok(vec![1, 2, 3]));
        let reordered = [("t", DataType::Int64), ("k", DataType::Utf8)];
        assert_eq!(read([stream(&KT, &[1]), stream(&reordered, &[2])].concat()), Ok(vec![1, 2]));
    }

    #[test]
    fn refuses_what_follows_unless_it_is_a_stream_alike() {
        let one = stream(&KT, &[1]);
        let at = one.len();
        let e = read([one.clone(), b"garbage".to_vec()].concat()).err().unwrap_or_default();
        assert!(
            e.starts_with("in: after the end of stream 1 come bytes") && e.contains(&format!("at byte {at}")),
            "{e}"
        );
        let other = stream(&[("k", DataType::Utf8), ("t", DataType::Utf8)], &[2]);
        let e = read([one.clone(), other].concat()).err().unwrap_or_default();
        assert!(e.starts_with(&format!("in (stream 2 at byte {at}): column `t` has type Utf8")), "{e}");
        let two = stream(&KT, &[2]);
        let e = read([one.clone(), two[..two.len() - 8].to_vec()].concat()).err().unwrap_or_default();
        assert!(e.contains("stream 2") && e.contains("truncated"), "{e}");
        let e = read(one[..one.len() - 8].to_vec()).err().unwrap_or_default();
        assert!(e.starts_with("in: input stream is truncated"), "{e}");
    }
}
