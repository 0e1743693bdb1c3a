//! The two fast tiers that fuzz targets and benches drive, each keeping its runtime (and, for
//! sockets, its server) between inputs instead of starting them per input:
//!
//! - [`InProcess`]: the echo example's logic over an in-memory pipe under [chaos I/O](super::chaos),
//!   no kernel involved.
//! - [`EchoSockets`]: a bundled echo server on a real 127.0.0.1 socket, and a client that writes
//!   as a [`Schedule`] says.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::task::LocalSet;

use super::chaos::{self, DriveError, Outcome};
use super::strategy::{End, Schedule};
use sockharness::servers;

/// How an echo differs from what it should be.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Mismatch {
    /// The echo is not the bytes it should be.
    #[error("the echo differs at byte {at}: expected {expected} bytes, got {actual}")]
    Differs {
        /// The first offset where the two differ (or where the shorter one ends).
        at: usize,
        /// How many bytes should have come back.
        expected: usize,
        /// How many came back.
        actual: usize,
    },
    /// The service stopped reading although its stream did not end early.
    #[error("the service read {read} of the {sent} bytes sent and stopped")]
    Unread {
        /// Bytes the service read.
        read: u64,
        /// Bytes sent to it.
        sent: usize,
    },
    /// The play itself failed: a deadline passed or I/O failed where it should not.
    #[error("the play failed: {0}")]
    Failed(String),
}

/// The first offset where `a` and `b` differ, or where the shorter ends; `None` when equal.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(at) => Some(at),
        None if a.len() != b.len() => Some(a.len().min(b.len())),
        None => None,
    }
}

fn expect_bytes(expected: &[u8], actual: &[u8]) -> Result<(), Mismatch> {
    match first_difference(expected, actual) {
        None => Ok(()),
        Some(at) => Err(Mismatch::Differs {
            at,
            expected: expected.len(),
            actual: actual.len(),
        }),
    }
}

/// Checks an echo service's [`Outcome`] under chaos: what came back is the request's beginning,
/// in order; unless a fault stopped it early (a read fault ends its input, a write fault its
/// output, and either its reason to go on) the service read the whole request; and unless a
/// write fault stopped it, it sent back everything it read.
pub fn check_chaos_echo(request: &[u8], outcome: &Outcome) -> Result<(), Mismatch> {
    let s = outcome.stats;
    let read = usize::try_from(s.read)
        .unwrap_or(usize::MAX)
        .min(request.len());
    if !s.read_fault && !s.write_fault && read < request.len() {
        return Err(Mismatch::Unread {
            read: s.read,
            sent: request.len(),
        });
    }
    if s.write_fault {
        let n = outcome.response.len().min(read);
        expect_bytes(&request[..n], &outcome.response)
    } else {
        expect_bytes(&request[..read], &outcome.response)
    }
}

/// The echo example's logic (`servers/echo.rs`) over any stream: every byte back in order, a
/// half-close answered with a half-close.
pub use servers::echo;

/// How long one play may take before it counts as a hang.
pub const PLAY_DEADLINE: Duration = Duration::from_secs(5);

/// The in-process tier: [`echo`] over an in-memory pipe whose service end is a
/// [`Chaos`](super::chaos::Chaos) stream, on one current-thread runtime kept between inputs.
#[derive(Debug)]
pub struct InProcess {
    rt: Runtime,
}

impl InProcess {
    /// Builds the runtime.
    pub fn new() -> io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        Ok(InProcess { rt })
    }

    /// Plays one fuzz input (read ops, write ops and a request, see
    /// [`chaos::plan_from_bytes`]) and checks the echo with [`check_chaos_echo`].
    pub fn play(&self, data: &[u8]) -> Result<(), Mismatch> {
        let (read_ops, write_ops, request) = chaos::plan_from_bytes(data);
        let outcome = self.run(request, read_ops, write_ops)?;
        check_chaos_echo(request, &outcome)
    }

    /// Plays `request` through [`echo`] under the given schedules and returns what came back.
    pub fn run(
        &self,
        request: &[u8],
        read_ops: Vec<chaos::Op>,
        write_ops: Vec<chaos::Op>,
    ) -> Result<Outcome, Mismatch> {
        chaos::drive_on(&self.rt, PLAY_DEADLINE, echo, request, read_ops, write_ops)
            .map_err(|e: DriveError| Mismatch::Failed(e.to_string()))
    }
}

/// Yields after each play, so the server's side of the connection sees the client's close and
/// releases its socket before the next input instead of lingering.
const SETTLE_YIELDS: usize = 4;

/// The sockets tier: one bundled echo server on 127.0.0.1, and one current-thread runtime that
/// runs it and the client, both kept between inputs. Every play has a deadline; each play's
/// socket is closed when it returns, and the server's end soon after.
pub struct EchoSockets {
    // The server task lives on this set; dropping it stops the server and closes its sockets.
    // Declared before the runtime so that it is dropped first, while the runtime's I/O driver
    // can still deregister them.
    local: LocalSet,
    rt: Runtime,
    addr: SocketAddr,
    deadline: Duration,
}

impl std::fmt::Debug for EchoSockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoSockets")
            .field("addr", &self.addr)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl EchoSockets {
    /// Starts the correct echo server.
    pub fn new() -> io::Result<Self> {
        Self::serving("echo")
    }

    /// Starts the bundled server `name`, such as `echo` or one of the bug zoo's broken echoes
    /// (`echo-one-read`, with sockharness's `zoo` feature); see [`servers`].
    pub fn serving(name: &str) -> io::Result<Self> {
        if !servers::is_bundled(name) {
            let e = servers::UnknownServer(name.to_string());
            return Err(io::Error::new(io::ErrorKind::InvalidInput, e.to_string()));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let local = LocalSet::new();
        let listener = local.block_on(&rt, TcpListener::bind(("127.0.0.1", 0)))?;
        let addr = listener.local_addr()?;
        let name = name.to_string();
        // Checked above: the name is bundled, so this never fails.
        local.spawn_local(async move {
            let _ = servers::serve(&name, listener).await;
        });
        Ok(EchoSockets {
            local,
            rt,
            addr,
            deadline: PLAY_DEADLINE,
        })
    }

    /// The same rig with a different deadline per play.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connects (TCP_NODELAY), writes `payload` as `schedule` says (pieces, pauses, and a FIN,
    /// RST or stall at its offset) while reading the echo, and returns the bytes that came back:
    /// for [`End::Complete`] and [`End::Stall`] until as many as were sent have arrived, for
    /// [`End::HalfClose`] until end of stream, for [`End::Abort`] whatever had arrived when the
    /// connection was reset. Fails with `TimedOut` past the deadline. `payload` should be
    /// `schedule.len()` bytes; a schedule longer than it is cut to it.
    pub fn play(&self, schedule: &Schedule, payload: &[u8]) -> io::Result<Vec<u8>> {
        let addr = self.addr;
        let deadline = self.deadline;
        self.local.block_on(&self.rt, async move {
            let played = tokio::time::timeout(deadline, client(addr, schedule, payload)).await;
            for _ in 0..SETTLE_YIELDS {
                tokio::task::yield_now().await;
            }
            played.unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the echo did not finish within {deadline:?}"),
                ))
            })
        })
    }

    /// Checks what [`play`](Self::play) returned: exactly the bytes sent, or for an abort the
    /// beginning of them.
    pub fn check(schedule: &Schedule, payload: &[u8], echoed: &[u8]) -> Result<(), Mismatch> {
        let sent = &payload[..schedule.sent().min(payload.len())];
        match schedule.end {
            End::Abort { .. } => expect_bytes(&sent[..echoed.len().min(sent.len())], echoed),
            _ => expect_bytes(sent, echoed),
        }
    }

    /// [`play`](Self::play) and [`check`](Self::check) in one, an I/O failure being a mismatch.
    pub fn play_and_check(&self, schedule: &Schedule, payload: &[u8]) -> Result<(), Mismatch> {
        let echoed = self
            .play(schedule, payload)
            .map_err(|e| Mismatch::Failed(e.to_string()))?;
        Self::check(schedule, payload, &echoed)
    }
}

async fn client(addr: SocketAddr, schedule: &Schedule, payload: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let sent = schedule.sent().min(payload.len());
    let writes = schedule.writes();
    // More than was sent is already wrong; reading one byte past it shows that and stops.
    let limit = sent + 1;

    if let End::Abort { .. } = schedule.end {
        let mut echoed = Vec::new();
        write_pieces(&mut stream, &writes, payload).await?;
        // Take what has arrived without waiting, then reset.
        let mut buf = vec![0u8; 16 * 1024];
        while echoed.len() < limit {
            match stream.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => echoed.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
        drop(stream);
        return Ok(echoed);
    }

    let half_close = matches!(schedule.end, End::HalfClose { .. });
    let (mut rx, mut tx) = stream.split();
    let writer = async {
        write_pieces(&mut tx, &writes, payload).await?;
        if half_close {
            tx.shutdown().await?;
        }
        Ok::<_, io::Error>(())
    };
    let reader = async {
        let mut echoed = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        // Ends at end of stream, or once everything sent is back (when no FIN asks the server to
        // close), or past the limit.
        while echoed.len() < limit && (half_close || echoed.len() < sent) {
            let n = rx.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            echoed.extend_from_slice(&buf[..n]);
        }
        Ok::<_, io::Error>(echoed)
    };
    let (wrote, echoed) = tokio::join!(writer, reader);
    let echoed = echoed?;
    // A short echo says more than the write error it causes (the server closed early).
    if echoed.len() == sent {
        wrote?;
    }
    Ok(echoed)
}

async fn write_pieces<W: AsyncWrite + Unpin>(
    w: &mut W,
    writes: &[(std::ops::Range<usize>, Duration)],
    payload: &[u8],
) -> io::Result<()> {
    for (range, pause) in writes {
        let end = range.end.min(payload.len());
        let start = range.start.min(end);
        w.write_all(&payload[start..end]).await?;
        if !pause.is_zero() {
            tokio::time::sleep(*pause).await;
        }
    }
    Ok(())
}
