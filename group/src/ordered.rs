//! Independent pieces of work (key ranges) done on several threads, their batches written in
//! piece order: the output is the same for any number of threads.
//!
//! ```text
//! let results = ordered::run(n, threads, limits, &mut output, &|i, send| {
//!     /* group piece i */ send(batch)?; Ok(counts)
//! })?;
//! ```
//!
//! Up to `threads` pieces run at once, each taking the next piece not yet started. The writer
//! (the calling thread) takes the batches of piece 0, then piece 1, ... The pieces after the one
//! being written queue their batches for it, up to [`Limits::ahead_bytes`] all together, so a
//! thread that finishes a piece moves on to the next one instead of waiting for the writer; the
//! piece being written queues up to [`Limits::current_bytes`]. Past those, a piece waits.
//!
//! With one thread the pieces run one after another on the calling thread, each batch written
//! as it is built (`--threads 1` keeps to one core).
//!
//! To a Parquet output, or a compressed Arrow IPC stream, each piece encodes its own row groups
//! (messages) as its batches arrive ([`probe_core::output::PieceEncoder`]) and queues them
//! encoded: the encoding is spread over the pieces' threads, the writer only appends, and what
//! waits holds compressed bytes. Parquet row groups end with their piece and IPC messages are
//! the batches', so the file is the same for any number of threads.
//!
//! A piece that fails stops the pieces not yet started; the pieces before it are written,
//! nothing after it, and its error comes back as [`Failure::Piece`] (a write error as
//! [`Failure::Write`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Condvar, Mutex, MutexGuard};

use arrow::record_batch::RecordBatch;

use probe_core::output::{EncodedPiece, Output, PieceEncoder, PieceEncoders};
use probe_core::{Error, Result};

/// Where a piece hands its batches, in order.
pub type Send<'a> = dyn FnMut(RecordBatch) -> Result<()> + 'a;

/// How much built output may wait for the writer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Decoded bytes the pieces after the one being written may queue, all together.
    pub ahead_bytes: usize,
    /// Decoded bytes the piece being written may queue.
    pub current_bytes: usize,
}

/// How a run failed.
pub enum Failure {
    /// Writing the output failed.
    Write(Error),
    /// A piece failed: the pieces before it are written, nothing after.
    Piece(Error),
}

/// What a piece sends the writer.
enum Msg<T> {
    /// A built batch and its decoded bytes.
    Batch(RecordBatch, usize),
    /// What the piece encoded (Parquet row groups, compressed IPC messages) and its bytes.
    Encoded(EncodedPiece, usize),
    Done(T),
    Failed(Error),
}

/// Do pieces `0..n` with `work` on up to `threads` threads, writing their batches to `output` in
/// piece order; returns each piece's result, in order.
pub fn run<T: std::marker::Send>(
    n: usize,
    threads: usize,
    limits: Limits,
    output: &mut Output,
    work: &(dyn Fn(usize, &mut Send) -> Result<T> + Sync),
) -> std::result::Result<Vec<T>, Failure> {
    if threads <= 1 || n <= 1 {
        return run_here(n, output, work);
    }
    let gate = Gate::new(n, limits);
    let mut senders: Vec<Mutex<Option<Sender<Msg<T>>>>> = Vec::with_capacity(n);
    let mut receivers: Vec<Receiver<Msg<T>>> = Vec::with_capacity(n);
    for _ in 0..n {
        // Unbounded: the gate bounds what they hold.
        let (tx, rx) = channel();
        senders.push(Mutex::new(Some(tx)));
        receivers.push(rx);
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let encoders = output.piece_encoders();
    std::thread::scope(|scope| {
        for _ in 0..threads.min(n) {
            scope.spawn(|| loop {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return;
                }
                let Some(tx) = senders[i].lock().ok().and_then(|mut s| s.take()) else {
                    return;
                };
                let queue = |msg: Msg<T>, bytes: usize| {
                    gate.admit(i, bytes);
                    tx.send(msg).map_err(|_| Error::data("probe-group: output writer stopped"))
                };
                let mut encoder = encoders.as_ref().map(PieceEncoders::encoder);
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    piece(i, work, &mut encoder, &mut |item| match item {
                        Item::Batch(b) => {
                            let bytes = b.get_array_memory_size();
                            queue(Msg::Batch(b, bytes), bytes)
                        }
                        Item::Encoded(g) => {
                            let bytes = g.encoded_bytes();
                            queue(Msg::Encoded(g, bytes), bytes)
                        }
                    })
                }))
                .unwrap_or_else(|_| Err(Error::internal("grouping a key range panicked")));
                let msg = match result {
                    Ok(t) => Msg::Done(t),
                    Err(e) => {
                        stop.store(true, Ordering::SeqCst);
                        Msg::Failed(e)
                    }
                };
                let _ = tx.send(msg);
            });
        }
        // The writer: the pieces' batches, in piece order. Returning drops the receivers, which
        // stops any piece still sending.
        let mut write = |receivers: Vec<Receiver<Msg<T>>>| {
            let mut results = Vec::with_capacity(n);
            for (i, rx) in receivers.into_iter().enumerate() {
                gate.advance(i);
                loop {
                    match rx.recv() {
                        Ok(Msg::Batch(b, bytes)) => {
                            output.write(&b).map_err(Failure::Write)?;
                            gate.taken(i, bytes);
                        }
                        Ok(Msg::Encoded(g, bytes)) => {
                            output.write_encoded(g).map_err(Failure::Write)?;
                            gate.taken(i, bytes);
                        }
                        Ok(Msg::Done(t)) => {
                            results.push(t);
                            break;
                        }
                        Ok(Msg::Failed(e)) => return Err(Failure::Piece(e)),
                        Err(_) => return Err(Failure::Piece(Error::internal("a key range stopped without a result"))),
                    }
                }
            }
            Ok(results)
        };
        let result = write(receivers);
        if result.is_err() {
            stop.store(true, Ordering::SeqCst);
        }
        // The receivers are gone: wake the pieces waiting to queue, so that their sends fail.
        gate.close();
        result
    })
}

/// [`run`] on this thread: piece after piece, each batch written as it is built.
fn run_here<T>(
    n: usize,
    output: &mut Output,
    work: &(dyn Fn(usize, &mut Send) -> Result<T> + Sync),
) -> std::result::Result<Vec<T>, Failure> {
    let mut results = Vec::with_capacity(n);
    let encoders = output.piece_encoders();
    for i in 0..n {
        let mut write_error = None;
        let mut encoder = encoders.as_ref().map(PieceEncoders::encoder);
        let result = piece(i, work, &mut encoder, &mut |item| {
            match item {
                Item::Batch(b) => output.write(&b),
                Item::Encoded(g) => output.write_encoded(g),
            }
            .map_err(|e| {
                write_error = Some(e);
                Error::data("probe-group: output writer stopped")
            })
        });
        if let Some(e) = write_error {
            return Err(Failure::Write(e));
        }
        results.push(result.map_err(Failure::Piece)?);
    }
    Ok(results)
}

/// What a piece hands the writer: batches, or what it encoded.
enum Item {
    Batch(RecordBatch),
    Encoded(EncodedPiece),
}

/// Piece `i`: its batches to `out`, encoded first where there is an encoder, the last row group
/// closed when the piece ends.
fn piece<T>(
    i: usize,
    work: &(dyn Fn(usize, &mut Send) -> Result<T> + Sync),
    encoder: &mut Option<PieceEncoder>,
    out: &mut dyn FnMut(Item) -> Result<()>,
) -> Result<T> {
    let result = {
        let mut send = |batch: RecordBatch| match encoder.as_mut() {
            None => out(Item::Batch(batch)),
            Some(e) => e.write(&batch)?.into_iter().try_for_each(|g| out(Item::Encoded(g))),
        };
        work(i, &mut send)?
    };
    if let Some(g) = encoder.as_mut().map(PieceEncoder::finish).transpose()?.flatten() {
        out(Item::Encoded(g))?;
    }
    Ok(result)
}

/// Who may queue output for the writer: see the module header.
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
    limits: Limits,
}

struct GateState {
    /// The piece being written.
    current: usize,
    /// Bytes queued, per piece.
    queued: Vec<usize>,
    /// Bytes queued by pieces after the current one.
    ahead: usize,
    /// The writer stopped: nobody waits any more.
    closed: bool,
}

impl Gate {
    fn new(pieces: usize, limits: Limits) -> Gate {
        Gate {
            state: Mutex::new(GateState { current: 0, queued: vec![0; pieces], ahead: 0, closed: false }),
            changed: Condvar::new(),
            limits,
        }
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait until piece `i` may queue `bytes` more, and count them. A piece with nothing queued
    /// may always queue one batch while nothing else waits ahead, so some piece always moves.
    fn admit(&self, i: usize, bytes: usize) {
        let mut g = self.lock();
        loop {
            let fits = if i == g.current {
                g.queued[i] == 0 || g.queued[i] + bytes <= self.limits.current_bytes
            } else {
                (g.queued[i] == 0 && g.ahead == 0) || g.ahead + bytes <= self.limits.ahead_bytes
            };
            if g.closed || fits {
                break;
            }
            g = self.changed.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        g.queued[i] += bytes;
        if i != g.current {
            g.ahead += bytes;
        }
    }

    /// The writer took `bytes` of piece `i` (the current one) off its queue.
    fn taken(&self, i: usize, bytes: usize) {
        let mut g = self.lock();
        g.queued[i] = g.queued[i].saturating_sub(bytes);
        self.changed.notify_all();
    }

    /// The writer moves on to piece `i`: what it queued ahead now counts as the current piece's.
    fn advance(&self, i: usize) {
        let mut g = self.lock();
        g.current = i;
        if let Some(&q) = g.queued.get(i) {
            g.ahead = g.ahead.saturating_sub(q);
        }
        self.changed.notify_all();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
}
