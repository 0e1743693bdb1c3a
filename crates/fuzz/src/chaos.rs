//! Chaos I/O: a stream wrapper whose reads and writes return partial results, `Pending`, EOF
//! and errors on a schedule, so that a Rust service can be tested against everything a socket
//! may do to it, in-process and without a kernel.
//!
//! Partial results, `Pending` and errors come from the partial-io crate
//! ([`PartialAsyncRead`], [`PartialAsyncWrite`]); this module adds [`Op::Eof`] (the stream ends
//! here, for good), byte counts for an oracle ([`Stats`]), schedules from proptest ([`ops`],
//! [`ops_with_faults`]) or from fuzz input ([`ops_from_bytes`]), and [`drive`], which plays a
//! request against a service over [`tokio::io::duplex`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use partial_io::{PartialAsyncRead, PartialAsyncWrite, PartialOp};
use proptest::collection::vec;
use proptest::prelude::*;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::runtime::Runtime;

/// What one read or write call of a [`Chaos`] stream does. Once a schedule runs out, calls pass
/// through unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Move at most this many bytes (at least 1).
    Limited(usize),
    /// Move as many bytes as the call asks for and the stream has.
    Unlimited,
    /// Return `Pending` once, waking the task at once so that it is polled again.
    Pending,
    /// Fail with this error kind (`Interrupted` is retried, as async I/O must).
    Err(io::ErrorKind),
    /// The stream ends here: every later read returns 0 bytes (the peer's FIN), every later write
    /// fails with `BrokenPipe` (the peer is gone).
    Eof,
}

/// Byte counts and faults seen by one [`Chaos`] stream, for checking a service's output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes the service read.
    pub read: u64,
    /// Bytes the service wrote.
    pub written: u64,
    /// A read ended the stream early or failed: the service may not have seen everything.
    pub read_fault: bool,
    /// A write, flush or shutdown failed: the service may not have sent everything.
    pub write_fault: bool,
}

#[derive(Debug, Default)]
struct Shared {
    read: AtomicU64,
    written: AtomicU64,
    read_eof: AtomicBool,
    write_eof: AtomicBool,
    read_fault: AtomicBool,
    write_fault: AtomicBool,
    // The inner stream was not ready for the op just taken: it is taken again on the next call.
    read_unused: AtomicBool,
    write_unused: AtomicBool,
}

/// A handle on a [`Chaos`] stream's [`Stats`] that outlives the stream, once a service owns it.
#[derive(Debug, Clone)]
pub struct Probe(Arc<Shared>);

impl Probe {
    /// The counts so far.
    pub fn stats(&self) -> Stats {
        let s = &self.0;
        Stats {
            read: s.read.load(Ordering::Relaxed),
            written: s.written.load(Ordering::Relaxed),
            read_fault: s.read_fault.load(Ordering::Relaxed),
            write_fault: s.write_fault.load(Ordering::Relaxed),
        }
    }
}

/// The innermost layer: ends the stream once an [`Op::Eof`] was taken, and counts bytes.
#[derive(Debug)]
struct Gate<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Gate<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.shared.read_eof.load(Ordering::Relaxed) {
            // Nothing filled: the reader sees end of stream.
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.shared.read.fetch_add(n, Ordering::Relaxed);
        self.shared
            .read_unused
            .store(r.is_pending(), Ordering::Relaxed);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Gate<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.shared.write_eof.load(Ordering::Relaxed) {
            return Poll::Ready(Err(gone()));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.shared.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        self.shared
            .write_unused
            .store(r.is_pending(), Ordering::Relaxed);
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.shared.write_eof.load(Ordering::Relaxed) {
            return Poll::Ready(Err(gone()));
        }
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.shared
            .write_unused
            .store(r.is_pending(), Ordering::Relaxed);
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.shared.write_eof.load(Ordering::Relaxed) {
            return Poll::Ready(Err(gone()));
        }
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.shared
            .write_unused
            .store(r.is_pending(), Ordering::Relaxed);
        r
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the peer is gone (chaos EOF)")
}

/// Which side of the stream a schedule drives.
#[derive(Debug, Clone, Copy)]
enum Side {
    Read,
    Write,
}

/// Turns a schedule of [`Op`]s into partial-io's ops, raising the gate's flags as faults are
/// taken.
///
/// partial-io takes an op for every poll, also for one the inner stream answers with `Pending`
/// (nothing to read yet, no room to write); such an op is taken again on the next call, so that
/// `Limited(3)` means "the next read that returns data returns at most 3 bytes" however the
/// service and its peer interleave. After an EOF the schedule is over: the gate answers every
/// call.
struct Ops {
    ops: std::vec::IntoIter<Op>,
    side: Side,
    shared: Arc<Shared>,
    last: Option<PartialOp>,
    ended: bool,
}

impl Ops {
    fn new(ops: Vec<Op>, side: Side, shared: Arc<Shared>) -> Self {
        Ops {
            ops: ops.into_iter(),
            side,
            shared,
            last: None,
            ended: false,
        }
    }
}

impl Iterator for Ops {
    type Item = PartialOp;

    fn next(&mut self) -> Option<PartialOp> {
        let s = &*self.shared;
        let (eof, fault, unused) = match self.side {
            Side::Read => (&s.read_eof, &s.read_fault, &s.read_unused),
            Side::Write => (&s.write_eof, &s.write_fault, &s.write_unused),
        };
        if unused.swap(false, Ordering::Relaxed) {
            if let Some(op) = self.last.clone() {
                return Some(op);
            }
        }
        self.last = None;
        if self.ended {
            return None;
        }
        let op = match self.ops.next()? {
            // partial-io reads Limited(0) as "accept nothing more" on writes; 1 is the least.
            Op::Limited(n) => PartialOp::Limited(n.max(1)),
            Op::Unlimited => PartialOp::Unlimited,
            // partial-io turns WouldBlock into Pending with a wake.
            Op::Pending => return Some(PartialOp::Err(io::ErrorKind::WouldBlock)),
            Op::Err(kind) => {
                if !matches!(kind, io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) {
                    fault.store(true, Ordering::Relaxed);
                }
                return Some(PartialOp::Err(kind));
            }
            Op::Eof => {
                self.ended = true;
                eof.store(true, Ordering::Relaxed);
                fault.store(true, Ordering::Relaxed);
                // The call goes on to the gate, which now reports the end.
                return Some(PartialOp::Unlimited);
            }
        };
        self.last = Some(op.clone());
        Some(op)
    }
}

/// A stream whose reads follow one schedule of [`Op`]s and whose writes (and flushes and
/// shutdowns) follow another.
#[derive(Debug)]
pub struct Chaos<S> {
    inner: PartialAsyncWrite<PartialAsyncRead<Gate<S>>>,
    shared: Arc<Shared>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Chaos<S> {
    /// Wraps `inner`: read calls take their turn from `read_ops`, write calls from `write_ops`.
    pub fn new(inner: S, read_ops: Vec<Op>, write_ops: Vec<Op>) -> Self {
        let shared = Arc::new(Shared::default());
        let gate = Gate {
            inner,
            shared: Arc::clone(&shared),
        };
        let reads = Ops::new(read_ops, Side::Read, Arc::clone(&shared));
        let writes = Ops::new(write_ops, Side::Write, Arc::clone(&shared));
        Chaos {
            inner: PartialAsyncWrite::new(PartialAsyncRead::new(gate, reads), writes),
            shared,
        }
    }

    /// A handle on the stream's counts that stays valid after the stream is moved or dropped.
    pub fn probe(&self) -> Probe {
        Probe(Arc::clone(&self.shared))
    }

    /// The wrapped stream.
    pub fn into_inner(self) -> S {
        self.inner.into_inner().into_inner().inner
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Chaos<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Chaos<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Schedules a correct service must come through unharmed: partial reads and writes, `Pending`
/// and `Interrupted`, no faults. Shrinks toward no chaos at all (an empty schedule), and single
/// ops toward `Unlimited`.
pub fn ops() -> impl Strategy<Value = Vec<Op>> {
    vec(benign_op(), 0..48)
}

fn benign_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Unlimited),
        4 => (1..=64usize).prop_map(Op::Limited),
        2 => Just(Op::Pending),
        1 => Just(Op::Err(io::ErrorKind::Interrupted)),
    ]
}

/// Schedules with faults as well: an early end ([`Op::Eof`]) or a hard error (reset, broken
/// pipe, anything else) somewhere among benign ops. Shrinks toward no chaos at all.
pub fn ops_with_faults() -> impl Strategy<Value = Vec<Op>> {
    let fault = prop_oneof![
        Just(Op::Eof),
        Just(Op::Err(io::ErrorKind::ConnectionReset)),
        Just(Op::Err(io::ErrorKind::BrokenPipe)),
        Just(Op::Err(io::ErrorKind::Other)),
    ];
    vec(prop_oneof![6 => benign_op(), 1 => fault], 0..48)
}

/// A schedule from fuzz input, one op per byte, deterministically: the top three bits choose the
/// kind (0-2 `Limited` of 1 to 96 bytes, 3 `Unlimited`, 4 `Pending`, 5 `Interrupted`, 6
/// `Eof`, 7 an error: reset, broken pipe, unexpected EOF or other, by the low bits).
pub fn ops_from_bytes(data: &[u8]) -> Vec<Op> {
    data.iter()
        .map(|&b| {
            let low = usize::from(b & 0x1f);
            match b >> 5 {
                k @ 0..=2 => Op::Limited(usize::from(k) * 32 + low + 1),
                3 => Op::Unlimited,
                4 => Op::Pending,
                5 => Op::Err(io::ErrorKind::Interrupted),
                6 => Op::Eof,
                _ => Op::Err(match low % 4 {
                    0 => io::ErrorKind::ConnectionReset,
                    1 => io::ErrorKind::BrokenPipe,
                    2 => io::ErrorKind::UnexpectedEof,
                    _ => io::ErrorKind::Other,
                }),
            }
        })
        .collect()
}

/// Read ops, write ops and a request, from fuzz input, deterministically: byte 0 (mod 32) says
/// how many read-op bytes follow, byte 1 (mod 32) how many write-op bytes follow them (see
/// [`ops_from_bytes`]); the rest is the request.
pub fn plan_from_bytes(data: &[u8]) -> (Vec<Op>, Vec<Op>, &[u8]) {
    let n_read = usize::from(data.first().copied().unwrap_or(0) % 32);
    let n_write = usize::from(data.get(1).copied().unwrap_or(0) % 32);
    let rest = data.get(2..).unwrap_or(&[]);
    let (reads, rest) = rest.split_at(n_read.min(rest.len()));
    let (writes, request) = rest.split_at(n_write.min(rest.len()));
    (ops_from_bytes(reads), ops_from_bytes(writes), request)
}

/// What a service did with a request under chaos.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Every byte the service sent back, in order, up to its end of stream.
    pub response: Vec<u8>,
    /// What passed through the service's chaos stream.
    pub stats: Stats,
}

/// Why [`drive`] has no outcome.
#[derive(Debug, Error)]
pub enum DriveError {
    /// The runtime to drive the service on could not be built.
    #[error("cannot start a runtime: {0}")]
    Runtime(#[source] io::Error),
    /// The service neither finished nor closed its stream in time.
    #[error("the service did not finish within {0:?}")]
    Deadline(Duration),
    /// Reading the service's response failed.
    #[error("reading the response failed: {0}")]
    Read(#[source] io::Error),
}

/// How long [`drive`] waits for a service.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// The capacity of each direction of the duplex pipe: small, so that large requests and
/// responses meet backpressure.
const PIPE: usize = 1024;

/// Plays `request` against `service` over an in-memory pipe whose service end is a [`Chaos`]
/// stream with `read_ops` and `write_ops`: the client writes the request, shuts its write side
/// down, and reads the response to its end, on a fresh current-thread runtime, within
/// [`DEADLINE`].
pub fn drive<F, Fut>(
    service: F,
    request: &[u8],
    read_ops: Vec<Op>,
    write_ops: Vec<Op>,
) -> Result<Outcome, DriveError>
where
    F: FnOnce(Chaos<DuplexStream>) -> Fut,
    Fut: Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(DriveError::Runtime)?;
    drive_on(&rt, DEADLINE, service, request, read_ops, write_ops)
}

/// [`drive`] on a runtime the caller keeps (it needs its time driver), with a chosen deadline.
pub fn drive_on<F, Fut>(
    rt: &Runtime,
    deadline: Duration,
    service: F,
    request: &[u8],
    read_ops: Vec<Op>,
    write_ops: Vec<Op>,
) -> Result<Outcome, DriveError>
where
    F: FnOnce(Chaos<DuplexStream>) -> Fut,
    Fut: Future<Output = ()>,
{
    let (client, server) = tokio::io::duplex(PIPE);
    let chaos = Chaos::new(server, read_ops, write_ops);
    let probe = chaos.probe();
    let (mut rx, mut tx) = tokio::io::split(client);
    let writer = async move {
        // A service may stop reading (and drop its end) at any point; the write then fails,
        // which is the service's choice, not a failure of the play.
        let _ = tx.write_all(request).await;
        let _ = tx.shutdown().await;
    };
    let reader = async move {
        let mut response = Vec::new();
        rx.read_to_end(&mut response).await.map(|_| response)
    };
    let played = rt.block_on(async {
        tokio::time::timeout(deadline, async {
            let ((), (), response) = tokio::join!(service(chaos), writer, reader);
            response
        })
        .await
    });
    match played {
        Err(_) => Err(DriveError::Deadline(deadline)),
        Ok(Err(e)) => Err(DriveError::Read(e)),
        Ok(Ok(response)) => Ok(Outcome {
            response,
            stats: probe.stats(),
        }),
    }
}
