//! Proptest strategies: how a stream is cut into writes, the pauses between them, how it ends, and
//! whole valid scenarios.
//!
//! Every strategy shrinks toward the plainest case (one write, no pauses, a normal end, a short
//! scenario), so a failure is reported as the smallest input that still shows it.

use std::ops::Range;
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;

mod scenario;

pub use scenario::scenario;

/// Piece sizes, each at least 1 byte, that add up to `len` (none for `len == 0`).
///
/// Cuts fall anywhere, or the stream goes in pieces of one size (down to a byte at a time).
/// Shrinks toward fewer, bigger pieces; the simplest chunking is one piece holding everything.
///
/// ```
/// use proptest::strategy::{Strategy, ValueTree};
/// let mut runner = proptest::test_runner::TestRunner::deterministic();
/// let pieces = sockharness_fuzz::strategy::chunking(100).new_tree(&mut runner).unwrap().current();
/// assert_eq!(pieces.iter().sum::<usize>(), 100);
/// assert!(pieces.iter().all(|&p| p >= 1));
/// ```
pub fn chunking(len: usize) -> impl Strategy<Value = Vec<usize>> {
    // Cut positions are drawn from 1..len; for len < 2 there is nowhere to cut, and the range
    // 1..2 only yields positions that `pieces_from_cuts` throws away.
    let anywhere =
        vec(1..len.max(2), 0..len.max(1)).prop_map(move |cuts| pieces_from_cuts(len, cuts));
    // `len - d` with d shrinking to 0: equal pieces shrink toward one piece.
    let even = (0..len.max(1)).prop_map(move |d| even_pieces(len, len - d));
    prop_oneof![anywhere, even]
}

fn pieces_from_cuts(len: usize, mut cuts: Vec<usize>) -> Vec<usize> {
    cuts.retain(|&c| c > 0 && c < len);
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut last = 0;
    for c in cuts.into_iter().chain((len > 0).then_some(len)) {
        pieces.push(c - last);
        last = c;
    }
    pieces
}

fn even_pieces(len: usize, size: usize) -> Vec<usize> {
    let size = size.max(1);
    let mut pieces = vec![size; len / size];
    if len % size != 0 {
        pieces.push(len % size);
    }
    pieces
}

/// `n` pauses of at most `max` (whole microseconds), most of them zero.
///
/// Shrinks toward zero pauses; a pause that matters shrinks toward the shortest (1us).
pub fn gaps(n: usize, max: Duration) -> impl Strategy<Value = Vec<Duration>> {
    vec(gap(max), n)
}

fn gap(max: Duration) -> impl Strategy<Value = Duration> {
    let max_us = u64::try_from(max.as_micros()).unwrap_or(u64::MAX);
    // With a maximum under 1us the only pause is none.
    let lo = max_us.min(1);
    prop_oneof![
        3 => Just(Duration::ZERO),
        1 => (lo..=max_us).prop_map(Duration::from_micros),
    ]
}

/// Piece sizes adding up to `len` together with the pause after each piece but the last (at most
/// `max_gap`): a [`chunking`] and [`gaps`] drawn as one, each cut carrying its own pause.
///
/// Because a cut and its pause come and go together, a failure that needs two pieces apart
/// shrinks to exactly two pieces and one shortest pause, wherever the cut fell. Besides cuts
/// anywhere, the stream may go in pieces of one size with one pause between all of them.
pub fn paced(len: usize, max_gap: Duration) -> impl Strategy<Value = (Vec<usize>, Vec<Duration>)> {
    let anywhere = vec((1..len.max(2), gap(max_gap)), 0..len.max(1)).prop_map(move |mut cuts| {
        cuts.retain(|&(c, _)| c > 0 && c < len);
        cuts.sort_by_key(|&(c, _)| c);
        cuts.dedup_by_key(|&mut (c, _)| c);
        let pauses = cuts.iter().map(|&(_, g)| g).collect();
        let pieces = pieces_from_cuts(len, cuts.into_iter().map(|(c, _)| c).collect());
        (pieces, pauses)
    });
    let even = (0..len.max(1), gap(max_gap)).prop_map(move |(d, g)| {
        let pieces = even_pieces(len, len - d);
        let pauses = vec![g; pieces.len().saturating_sub(1)];
        (pieces, pauses)
    });
    prop_oneof![anywhere, even]
}

/// How a client writes a byte stream: in which pieces, with which pauses, and how it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Piece sizes, each at least 1 byte, adding up to the stream's length.
    pub chunks: Vec<usize>,
    /// The pause after each piece but the last; a missing pause is zero.
    pub gaps: Vec<Duration>,
    /// How the stream ends.
    pub end: End,
}

/// How a scheduled stream ends. Offsets count bytes from the start of the stream and are at most
/// its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Every byte is sent, and the whole reply read back, before an ordinary close.
    Complete,
    /// The first `at` bytes are sent, then the write side is shut down (FIN); the reply is read
    /// to its end.
    HalfClose {
        /// Bytes sent before the FIN.
        at: usize,
    },
    /// The first `at` bytes are sent, then the connection is reset (RST).
    Abort {
        /// Bytes sent before the RST.
        at: usize,
    },
    /// The first `at` bytes are sent, then nothing for `for_`, then the rest; as `Complete`
    /// otherwise.
    Stall {
        /// Bytes sent before the stall.
        at: usize,
        /// How long the stream stalls.
        for_: Duration,
    },
}

/// The largest payload [`Schedule::from_fuzz_bytes`] passes on, so one input stays cheap.
pub const MAX_FUZZ_PAYLOAD: usize = 64 * 1024;

/// The most pausing one schedule from fuzz bytes may do in all, so one input stays cheap.
pub const MAX_FUZZ_PAUSE: Duration = Duration::from_millis(2);

impl Schedule {
    /// One piece, no pauses, a complete end: how a plain client writes `len` bytes.
    pub fn whole(len: usize) -> Self {
        Schedule {
            chunks: pieces_from_cuts(len, Vec::new()),
            gaps: Vec::new(),
            end: End::Complete,
        }
    }

    /// The stream's length: the sum of the pieces.
    pub fn len(&self) -> usize {
        self.chunks.iter().sum()
    }

    /// True for an empty stream.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many bytes the schedule sends: everything, or the bytes before a FIN or RST.
    pub fn sent(&self) -> usize {
        match self.end {
            End::Complete | End::Stall { .. } => self.len(),
            End::HalfClose { at } | End::Abort { at } => at.min(self.len()),
        }
    }

    /// The schedule of the stream's first `len` bytes: pieces past them dropped, the last one
    /// cut, offsets held to `len`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use sockharness_fuzz::strategy::{End, Schedule};
    /// let ms = Duration::from_millis(1);
    /// let s = Schedule { chunks: vec![2, 3, 4], gaps: vec![ms, ms], end: End::Abort { at: 8 } };
    /// let p = s.prefix(4);
    /// assert_eq!(p, Schedule { chunks: vec![2, 2], gaps: vec![ms], end: End::Abort { at: 4 } });
    /// ```
    pub fn prefix(&self, len: usize) -> Schedule {
        let mut chunks = Vec::new();
        let mut covered = 0;
        for &size in &self.chunks {
            if covered >= len {
                break;
            }
            let size = size.min(len - covered);
            chunks.push(size);
            covered += size;
        }
        let mut gaps = self.gaps.clone();
        gaps.truncate(chunks.len().saturating_sub(1));
        let end = match self.end {
            End::Complete => End::Complete,
            End::HalfClose { at } => End::HalfClose { at: at.min(len) },
            End::Abort { at } => End::Abort { at: at.min(len) },
            End::Stall { at, for_ } => End::Stall {
                at: at.min(len),
                for_,
            },
        };
        Schedule { chunks, gaps, end }
    }

    /// The writes to make, in order: each a byte range of the stream and the pause after it. A
    /// stall splits the piece it falls in; a FIN or RST cuts the stream at its offset.
    ///
    /// ```
    /// use std::time::Duration;
    /// use sockharness_fuzz::strategy::{End, Schedule};
    /// let ms = Duration::from_millis(1);
    /// let s = Schedule { chunks: vec![4, 4], gaps: vec![ms], end: End::Stall { at: 2, for_: ms } };
    /// assert_eq!(s.writes(), vec![(0..2, ms), (2..4, ms), (4..8, Duration::ZERO)]);
    /// let s = Schedule { end: End::HalfClose { at: 5 }, ..s };
    /// assert_eq!(s.writes(), vec![(0..4, ms), (4..5, Duration::ZERO)]);
    /// ```
    pub fn writes(&self) -> Vec<(Range<usize>, Duration)> {
        let stop = self.sent();
        let stall = match self.end {
            End::Stall { at, for_ } => Some((at, for_)),
            _ => None,
        };
        let mut out = Vec::with_capacity(self.chunks.len() + 2);
        if let Some((0, for_)) = stall.filter(|_| stop > 0) {
            // A stall before the first byte: an empty write, then the pause.
            out.push((0..0, for_));
        }
        let mut start = 0;
        for (i, &size) in self.chunks.iter().enumerate() {
            if start >= stop {
                break;
            }
            let end = (start + size).min(stop);
            let pause = self.gaps.get(i).copied().unwrap_or_default();
            match stall {
                Some((at, for_)) if at > start && at < end => {
                    out.push((start..at, for_));
                    out.push((at..end, pause));
                }
                Some((at, for_)) if at == end => out.push((start..end, pause.max(for_))),
                _ => out.push((start..end, pause)),
            }
            start = end;
        }
        // The last write has nothing after it to wait for.
        if let Some(last) = out.last_mut() {
            last.1 = Duration::ZERO;
        }
        out
    }

    /// Derives a schedule and a payload from raw fuzz input, deterministically.
    ///
    /// Layout: byte 0 chooses the end (bits 0-1), how many piece-size bytes follow (bits 2-5),
    /// whether pieces pause (bit 6) and the stall's length (bit 7); byte 1 is the end's offset as
    /// a fraction of the payload; then the piece-size bytes (size `(b & 63) + 1`, pause
    /// `(b >> 6) * 100us`, used in turn until the payload is covered); the rest is the payload,
    /// cut to [`MAX_FUZZ_PAYLOAD`]. Pauses stop once they add up to [`MAX_FUZZ_PAUSE`].
    pub fn from_fuzz_bytes(data: &[u8]) -> (Schedule, &[u8]) {
        let control = data.first().copied().unwrap_or(0);
        let fraction = data.get(1).copied().unwrap_or(0);
        let rest = data.get(2..).unwrap_or(&[]);
        let n_sizes = usize::from((control >> 2) & 0x0f).min(rest.len());
        let (sizes, payload) = rest.split_at(n_sizes);
        let payload = &payload[..payload.len().min(MAX_FUZZ_PAYLOAD)];
        let len = payload.len();
        let pausing = control & 0x40 != 0;

        let mut chunks = Vec::new();
        let mut gaps = Vec::new();
        let mut paused = Duration::ZERO;
        let mut covered = 0;
        // Each turn covers at least one byte, so this ends within `len` turns.
        while covered < len {
            let b = sizes
                .get(chunks.len() % sizes.len().max(1))
                .copied()
                .unwrap_or(u8::MAX);
            let size = if sizes.is_empty() {
                len
            } else {
                usize::from(b & 0x3f) + 1
            };
            let size = size.min(len - covered);
            chunks.push(size);
            covered += size;
            let pause = Duration::from_micros(u64::from(b >> 6) * 100);
            let pause = if pausing && paused + pause <= MAX_FUZZ_PAUSE {
                pause
            } else {
                Duration::ZERO
            };
            paused += pause;
            gaps.push(pause);
        }
        gaps.pop();
        let at = len * usize::from(fraction) / 255;
        let end = match control & 0x03 {
            0 => End::Complete,
            1 => End::HalfClose { at },
            2 => End::Abort { at },
            _ => End::Stall {
                at,
                for_: Duration::from_micros(if control & 0x80 != 0 { 1000 } else { 100 }),
            },
        };
        (Schedule { chunks, gaps, end }, payload)
    }
}

/// How a stream of `len` bytes ends: shrinks toward [`End::Complete`], offsets toward 0.
pub fn end(len: usize, max_stall: Duration) -> impl Strategy<Value = End> {
    let stall = (0..=len, gap(max_stall)).prop_map(|(at, for_)| End::Stall { at, for_ });
    prop_oneof![
        2 => Just(End::Complete),
        1 => (0..=len).prop_map(|at| End::HalfClose { at }),
        1 => (0..=len).prop_map(|at| End::Abort { at }),
        1 => stall,
    ]
}

/// A whole fault schedule for a stream of `len` bytes: pieces with pauses of at most `max_gap`
/// between them ([`paced`]) and an [`end`] (a stall lasts at most `max_gap` too).
pub fn schedule(len: usize, max_gap: Duration) -> impl Strategy<Value = Schedule> {
    (paced(len, max_gap), end(len, max_gap)).prop_map(|((chunks, gaps), end)| Schedule {
        chunks,
        gaps,
        end,
    })
}
