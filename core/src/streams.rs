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
//!
//! # Decoding on every thread
//! Decoding a message (decompressing its LZ4 or zstd buffers, checking offsets and UTF-8) is
//! most of what reading a stream costs, and arrow's `StreamReader` does it on the reading
//! thread. When the process has more than one thread and the stream's schema has no
//! dictionaries (a dictionary message changes how the batches after it decode), the messages
//! are framed here instead: the reading thread only reads each message's bytes, a task on the
//! rayon pool decodes it, and batches are handed out oldest first, so batches, errors and their
//! order are those of a serial reader. At most [`AHEAD_BYTES`] of message bodies (and at least
//! one message), and one message per thread, are read ahead of the caller.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::reader::{RecordBatchDecoder, StreamReader};
use arrow::ipc::{root_as_message, MessageHeader};
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::guard::{self, IpcStreamGuard};
use crate::input::{detect, Format};
use crate::ipc_writer::has_dictionary;
use crate::schema::check_agree;

/// Bytes of message bodies (as read: compressed, when they are) that may be read ahead of the
/// caller for decoding on the pool; at least one message is.
pub(crate) const AHEAD_BYTES: usize = 32 << 20;

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
    /// Streams may be decoded on the pool: it has more than one thread.
    pool: bool,
    /// The current stream's messages are framed here and decoded on the pool (see the module
    /// header); otherwise `reader` reads them.
    parallel: bool,
    /// Messages read ahead, oldest first, with their body bytes.
    ahead: VecDeque<(Pending, usize)>,
    ahead_bytes: usize,
    /// The current stream's last message has been read (its end-of-stream marker, the end of
    /// the input, or a failure queued in `ahead`).
    drained: bool,
}

/// Why a message could not be read or decoded; turned into the stage's message when its turn
/// comes, with the row number and truncation known then.
enum Failure {
    Arrow(ArrowError),
    /// Already a whole message (the decoder panicked).
    Done(Error),
}

type Decoded = std::result::Result<RecordBatch, Failure>;

/// A message read ahead: one that could not be read, or its decoding on the pool.
enum Pending {
    Ready(Decoded),
    Wait(Receiver<Decoded>),
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
        let schema = reader.schema();
        let pool = rayon::current_num_threads() > 1;
        Ok(IpcStreams {
            pool,
            parallel: pool && no_dictionaries(&schema),
            schema,
            name,
            reader,
            hit_eof,
            stream: 1,
            start: 0,
            remap: None,
            ahead: VecDeque::new(),
            ahead_bytes: 0,
            drained: false,
        })
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
            let next =
                if self.parallel { self.next_decoded() } else { self.reader.next().map(|r| r.map_err(Failure::Arrow)) };
            match next {
                Some(Ok(b)) => return self.conform(b).map(Some),
                Some(Err(Failure::Done(e))) => return Err(e),
                Some(Err(Failure::Arrow(e))) => return Err(self.decode_error(row, e)),
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

    /// The oldest message read ahead, decoded (waiting for the pool if need be); `None` after
    /// the current stream's last one.
    fn next_decoded(&mut self) -> Option<Decoded> {
        self.read_ahead();
        let (pending, bytes) = self.ahead.pop_front()?;
        self.ahead_bytes -= bytes;
        Some(match pending {
            Pending::Ready(d) => d,
            Pending::Wait(rx) => rx.recv().unwrap_or_else(|_| {
                Err(Failure::Arrow(ArrowError::IpcError("the decoder stopped without a result".into())))
            }),
        })
    }

    /// A message that could not be read or decoded near `row`.
    fn decode_error(&self, row: u64, e: ArrowError) -> Error {
        let label = self.label();
        if self.hit_eof.load(Ordering::Relaxed) {
            return Error::data(truncated_msg(&label));
        }
        Error::data(format!(
            "{label}: cannot decode Arrow IPC stream near row {row} ({e}): did the stage before this one fail?"
        ))
    }

    /// Read messages of the current stream and hand them to the pool, until one message per
    /// thread or [`AHEAD_BYTES`] of bodies wait (at least one message), or the stream is read.
    fn read_ahead(&mut self) {
        let limit = rayon::current_num_threads().max(1);
        while !self.drained && (self.ahead.is_empty() || (self.ahead.len() < limit && self.ahead_bytes < AHEAD_BYTES)) {
            let framed = read_message(self.reader.get_mut());
            let (meta, body) = match framed {
                Ok(Some(m)) => m,
                Ok(None) => {
                    self.drained = true;
                    break;
                }
                Err(e) => {
                    self.drained = true;
                    self.ahead.push_back((Pending::Ready(Err(Failure::Arrow(e))), 0));
                    break;
                }
            };
            let bytes = body.len();
            let schema = self.reader.schema();
            let label = self.label();
            let job = move || -> Decoded {
                guard::decode(&label, "Arrow IPC stream", || Ok(decode_message(&meta, body, schema)))
                    .unwrap_or_else(|e| Err(Failure::Done(e)))
            };
            self.ahead.push_back((Pending::Wait(crate::threads::on_pool(job)), bytes));
            self.ahead_bytes += bytes;
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
        self.parallel = self.pool && no_dictionaries(&schema);
        self.drained = false;
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
        // Nulls where stream 1 declares a column non-nullable: the input's schema (stream 1's,
        // which the stage has already taken for its output) cannot hold them.
        let null_in = self.schema.fields().iter().zip(&columns).find(|(f, c)| !f.is_nullable() && c.null_count() > 0);
        if let Some((field, _)) = null_in {
            return Err(Error::data(format!(
                "{}: column `{}` has nulls, and stream 1 declares it non-nullable, so the concatenation cannot be \
                 read as one input; give the streams as separate files (stage a.arrows b.arrows), whose nullability \
                 may differ, or write stream 1 with the column nullable",
                self.label(),
                field.name()
            )));
        }
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| {
            Error::data(format!(
                "{}: its data does not fit the schema of stream 1 ({e}); every stream concatenated in one input \
                 must have the same columns",
                self.label()
            ))
        })
    }
}

/// Whether a stream of this schema can be decoded on the pool (see the module header).
fn no_dictionaries(schema: &SchemaRef) -> bool {
    !schema.fields().iter().any(|f| has_dictionary(f.data_type()))
}

/// One message's metadata (a flatbuffer) and body, as read.
type Framed = (Vec<u8>, Vec<u8>);

/// Frame the next message of a stream as arrow's reader does: its metadata and its body.
/// `None` at the end-of-stream marker, or where the input ends before a message starts (the
/// caller tells the two apart by the marker). Bodies grow as their bytes arrive, so a corrupt
/// length costs a short read, not its allocation.
fn read_message(r: &mut impl Read) -> std::result::Result<Option<Framed>, ArrowError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    if len == [0xff; 4] {
        r.read_exact(&mut len)?;
    }
    let meta_len = i32::from_le_bytes(len);
    if meta_len == 0 {
        return Ok(None);
    }
    let meta_len = usize::try_from(meta_len)
        .map_err(|_| ArrowError::ParseError(format!("Invalid metadata length: {meta_len}")))?;
    let mut meta = Vec::new();
    if r.take(meta_len as u64).read_to_end(&mut meta)? != meta_len {
        return Err(ArrowError::ParseError(format!(
            "Unexpected end of stream: expected {meta_len} metadata bytes, got {}",
            meta.len()
        )));
    }
    let message =
        root_as_message(&meta).map_err(|e| ArrowError::ParseError(format!("Unable to get root as message: {e:?}")))?;
    let body_len = usize::try_from(message.bodyLength())
        .map_err(|_| ArrowError::ParseError(format!("Invalid IPC message body length: {}", message.bodyLength())))?;
    let mut body = Vec::with_capacity(body_len.min(64 << 20));
    if r.take(body_len as u64).read_to_end(&mut body)? != body_len {
        return Err(ArrowError::IoError(
            format!("Unexpected end of stream: expected {body_len} body bytes, got {}", body.len()),
            io::Error::from(io::ErrorKind::UnexpectedEof),
        ));
    }
    Ok(Some((meta, body)))
}

/// Decode one framed message, a record batch, as arrow's `StreamReader` does (buffers need not
/// be aligned; data is validated).
fn decode_message(meta: &[u8], body: Vec<u8>, schema: SchemaRef) -> Decoded {
    let fail = |m: &str| Failure::Arrow(ArrowError::IpcError(m.into()));
    let message = root_as_message(meta).map_err(|e| fail(&format!("Unable to get root as message: {e:?}")))?;
    match message.header_type() {
        MessageHeader::RecordBatch => {}
        MessageHeader::Schema => return Err(fail("Expected a record batch, but found a schema")),
        MessageHeader::DictionaryBatch => return Err(fail("a dictionary batch, but no column has a dictionary")),
        other => return Err(fail(&format!("Unsupported message header type in IPC stream: '{other:?}'"))),
    }
    let batch = message.header_as_record_batch().ok_or_else(|| fail("Unable to read IPC message as record batch"))?;
    let version = message.version();
    let body = Buffer::from_vec(body);
    let no_dictionaries = HashMap::new();
    RecordBatchDecoder::try_new(&body, batch, schema, &no_dictionaries, &version)
        .and_then(|d| d.with_require_alignment(false).read_record_batch())
        .map_err(Failure::Arrow)
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

    /// A zstd-compressed stream of `batches` batches of `k` strings and `t` values.
    fn compressed(batches: usize, from: i64) -> Vec<u8> {
        use arrow::ipc::writer::IpcWriteOptions;
        let schema = Arc::new(Schema::new(KT.iter().map(|(n, t)| Field::new(*n, t.clone(), true)).collect::<Vec<_>>()));
        let options = IpcWriteOptions::default()
            .try_with_compression(Some(arrow::ipc::CompressionType::ZSTD))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut out = Vec::new();
        let mut w = StreamWriter::try_new_with_options(&mut out, &schema, options).unwrap_or_else(|e| panic!("{e}"));
        for b in 0..batches as i64 {
            let rows: Vec<i64> = (0..50 + b * 13).map(|i| from + b * 1000 + i).collect();
            let k = StringArray::from_iter_values(rows.iter().map(|r| format!("key-{r}")));
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(k), Arc::new(Int64Array::from(rows))])
                .unwrap_or_else(|e| panic!("{e}"));
            w.write(&batch).unwrap_or_else(|e| panic!("{e}"));
        }
        w.finish().unwrap_or_else(|e| panic!("{e}"));
        drop(w);
        out
    }

    /// Every batch's `t` values and then the error, read serially or decoded on the pool.
    fn read_mode(bytes: &[u8], parallel: bool) -> (Vec<Vec<i64>>, Option<String>) {
        let mut s = match IpcStreams::open("in".into(), Box::new(io::Cursor::new(bytes.to_vec())), Vec::new()) {
            Ok(s) => s,
            Err(e) => return (Vec::new(), Some(e.to_string())),
        };
        (s.pool, s.parallel) = (parallel, parallel);
        let mut out = Vec::new();
        let mut rows = 0u64;
        loop {
            match s.next(rows) {
                Ok(Some(b)) => {
                    rows += b.num_rows() as u64;
                    let t = b.column(1).as_any().downcast_ref::<Int64Array>().map(|a| a.values().to_vec());
                    out.push(t.unwrap_or_default());
                }
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }

    /// Decoding on the pool hands out the same batches, in the same order, and the same error
    /// at the same place as arrow's serial reader: whole inputs, and inputs cut at any byte.
    #[test]
    fn decoding_on_the_pool_matches_the_serial_reader() {
        let whole = [compressed(9, 0), stream(&KT, &[7, 8]), compressed(4, 50_000)].concat();
        let (batches, err) = read_mode(&whole, true);
        assert_eq!(err, None);
        assert_eq!(batches.len(), 14);
        assert_eq!((batches, err), read_mode(&whole, false));
        let mut cuts: Vec<usize> = (0..whole.len()).step_by(97).collect();
        cuts.extend([whole.len() - 1, whole.len() - 8, whole.len() - 9]);
        for cut in cuts {
            let part = &whole[..cut];
            let (parallel, serial) = (read_mode(part, true), read_mode(part, false));
            assert_eq!(parallel, serial, "cut at byte {cut}");
            assert!(serial.1.is_some(), "cut at byte {cut}: no error");
        }
        // A flipped byte in a compressed body: the same error from both.
        let mut bad = whole.clone();
        let at = whole.len() / 5;
        bad[at] ^= 0x5a;
        assert_eq!(read_mode(&bad, true), read_mode(&bad, false));
    }

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
