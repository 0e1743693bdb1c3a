//! A fuzz case: a seed scenario and the edits made to it. Edits are data, so a case can be
//! printed, replayed, and shrunk one edit at a time; [`Case::scenario`] turns one into the
//! scenario that runs.

use std::fmt;
use std::time::Duration;

use sockharness::script::{Scenario, TargetSource};

use super::calibrate::{Baseline, End};

mod apply;
mod plain;

pub use apply::{append_crash_check, append_health, expect_matches, first_target, retarget};
pub use plain::Plain;

use apply::{apply, crowd};

/// Deadline of every blocking statement of a case whose seed sets none: past it, the server
/// under test is taken to hang.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a client waits, after the plain answer, for bytes the plain answer did not have.
pub const EXTRA_WAIT: Duration = Duration::from_millis(2);

/// A seed the fuzzer mutates: a scenario against the server under test.
#[derive(Debug, Clone)]
pub struct Seed {
    /// Where it came from.
    pub label: String,
    /// The scenario, its targets to be pointed at the server under test.
    pub scenario: Scenario,
    /// For a seed made from a request stream: the request and its plain answer, from which
    /// cases with several interleaved clients are made.
    pub plain: Option<Plain>,
    /// A pause after each intruding client, so that a server whose connections share state
    /// (a chat room) has taken in the intruder's bytes before the seed's clients arrive and
    /// does not pass them on to them.
    pub settle: Option<Duration>,
}

/// One change to a seed.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// The send at seed step `step` writes in pieces of `chunk` bytes with `gap` between.
    Chunk {
        /// Index of the send among the seed's steps.
        step: usize,
        /// Piece size.
        chunk: u64,
        /// Pause between pieces.
        gap: Duration,
    },
    /// A pause before seed step `step`: a slow reader, or a slow client.
    Pause {
        /// Index of the statement among the seed's steps.
        step: usize,
        /// How long.
        pause: Duration,
    },
    /// A small receive buffer for the socket the connect at seed step `step` makes.
    RcvBuf {
        /// Index of the connect among the seed's steps.
        step: usize,
        /// SO_RCVBUF.
        size: u64,
    },
    /// The socket of the send at seed step `step` half-closes right after it (its last send).
    HalfClose {
        /// Index of the send among the seed's steps.
        step: usize,
    },
    /// Before the seed runs, another client sends these bytes and then goes away, or stalls.
    Intruder(Intruder),
    /// The seed's request sent by several clients at once, in interleaved pieces (seeds made
    /// from a request stream only; replaces the seed's steps).
    Crowd {
        /// How many clients.
        clients: u32,
        /// Piece size.
        chunk: u64,
        /// Pause between rounds.
        gap: Duration,
    },
}

/// How an intruding client ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// close(): FIN.
    Close,
    /// shutdown(write), then close.
    HalfClose,
    /// close() with linger 0: RST.
    Abort,
    /// Nothing: it stays connected, silent, while the seed runs.
    Stall,
}

/// A client that is not the seed's: what it sends and how it leaves.
#[derive(Debug, Clone, PartialEq)]
pub struct Intruder {
    /// The bytes it sends (a request stream, possibly mutated).
    pub data: Vec<u8>,
    /// Pieces of this size, if not all at once.
    pub chunk: Option<u64>,
    /// How it leaves.
    pub leave: Leave,
    /// The server must send the bytes back (`--expect echo`): they are sent in the background
    /// while the echo is read, so that any amount can go through.
    pub echo: bool,
    /// A small receive buffer: a slow reader, so the server's writes come back short.
    pub rcvbuf: Option<u64>,
    /// True when the bytes are not a seed's own: the server's answer is unknown.
    pub mutated: bool,
    /// Where its bytes were last changed: in a coverage-guided run, an intruder whose bytes
    /// reached new code joins the queue, and its next mutations are made near that place.
    pub focus: Option<usize>,
}

impl Edit {
    /// The same edit with pauses between pieces where it had none: pieces written back to back
    /// reach the server in one read or several as timing has it, pauses make that repeatable.
    pub fn steadied(&self) -> Edit {
        let apart = Duration::from_millis(1);
        match self {
            Edit::Chunk { step, chunk, gap } if gap.is_zero() => Edit::Chunk {
                step: *step,
                chunk: *chunk,
                gap: apart,
            },
            Edit::Crowd {
                clients,
                chunk,
                gap,
            } if gap.is_zero() => Edit::Crowd {
                clients: *clients,
                chunk: *chunk,
                gap: apart,
            },
            other => other.clone(),
        }
    }
}

impl fmt::Display for Edit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use sockharness::script::{Dur, Size};
        match self {
            Edit::Chunk { step, chunk, gap } => {
                write!(
                    f,
                    "send of step {} in pieces of {} gap {}",
                    step + 1,
                    Size(*chunk),
                    Dur(*gap)
                )
            }
            Edit::Pause { step, pause } => {
                write!(f, "pause {} before step {}", Dur(*pause), step + 1)
            }
            Edit::RcvBuf { step, size } => write!(f, "rcvbuf={} on step {}", Size(*size), step + 1),
            Edit::HalfClose { step } => write!(f, "half-close after step {}", step + 1),
            Edit::Intruder(i) => write!(
                f,
                "another client sends {} {}bytes{} and {}",
                i.data.len(),
                if i.mutated { "mutated " } else { "" },
                i.chunk
                    .map_or(String::new(), |c| format!(" in pieces of {c}")),
                match i.leave {
                    Leave::Close => "closes",
                    Leave::HalfClose => "half-closes",
                    Leave::Abort => "resets",
                    Leave::Stall => "stalls",
                }
            ),
            Edit::Crowd {
                clients,
                chunk,
                gap,
            } => write!(
                f,
                "{clients} clients interleaved in pieces of {} gap {}",
                Size(*chunk),
                Dur(*gap)
            ),
        }
    }
}

/// A seed and the edits made to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Index of the seed.
    pub seed: usize,
    /// The edits, applied in order.
    pub edits: Vec<Edit>,
}

impl Case {
    /// The scenario the case runs, every target served from `source`.
    pub fn scenario(&self, seed: &Seed, source: &TargetSource) -> Scenario {
        let mut sc = match (self.edits.iter().find_map(crowd), &seed.plain) {
            (Some((clients, chunk, gap)), Some(plain)) => {
                let mut sc =
                    plain.scenario(&first_target(&seed.scenario), clients, Some(chunk), gap);
                // The seed's deadline, as the run measured it.
                sc.settings.timeout = seed.scenario.settings.timeout.or(sc.settings.timeout);
                sc
            }
            _ => apply(&seed.scenario, &self.edits, seed.settle),
        };
        if sc.settings.timeout.is_none() {
            sc.settings.timeout = Some(CASE_TIMEOUT);
        }
        retarget(&mut sc, source);
        sc
    }
}
