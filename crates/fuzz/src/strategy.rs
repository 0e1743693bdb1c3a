//! Proptest strategies: how a stream is cut into writes, the pauses between them, how it ends, and
//! whole valid scenarios.
//!
//! Every strategy shrinks toward the plainest case (one write, no pauses, a normal end, a short
//! scenario), so a failure is reported as the smallest input that still shows it.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use sockharness::script::{
    errno, CompareOp, Data, Endpoint, Expectation, Expected, IoCall, Property, RecvMode, Scenario,
    SendMode, Settings, ShutdownHow, SockOpts, Statement, Step, Value, TCP_STATES,
};

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

/// Whole valid scenarios: they print as text that [`parse`](sockharness::script::parse) accepts, and
/// parse back to the same model. They need not pass when run.
///
/// Covers settings (`timeout`, `tolerance`), `listen`, `connect`, `accept`, `send`/`write`
/// (`chunk`, `gap`, `nowait`), `recv`/`read` (one call, `exact`, `until`, `all`), `shutdown`,
/// `close`, `abort`, `set`, `sleep`, property checks, background statements with `wait` and
/// `expect H pending`, every data literal and every kind of expected result. Shrinks toward fewer
/// statements and plainer ones.
pub fn scenario() -> impl Strategy<Value = Scenario> {
    (settings(), vec(gen_step(), 0..16)).prop_map(|(settings, steps)| build(settings, steps))
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        option::of(duration(1_000, 10_000_000)),
        option::of(duration(0, 1_000_000)),
    )
        .prop_map(|(timeout, tolerance)| Settings {
            timeout,
            tolerance,
            ..Settings::default()
        })
}

/// Whole microseconds in `lo..=hi`, so printing is exact.
fn duration(lo: u64, hi: u64) -> impl Strategy<Value = Duration> {
    (lo..=hi).prop_map(Duration::from_micros)
}

/// A statement before its names are known: references are indexes into the names defined so
/// far, resolved by [`build`], so that every shrunk sequence stays valid.
#[derive(Debug, Clone)]
enum Gen {
    Listen(Option<usize>, Option<u32>, SockOpts),
    Connect(Option<usize>, SockOpts),
    Accept(usize),
    Send(usize, Data, SendMode, IoCall),
    Recv(usize, RecvMode, IoCall),
    Shutdown(usize, ShutdownHow),
    Close(usize),
    Abort(usize),
    Set(usize, SockOpts),
    Sleep(Duration),
    Wait(usize),
    Pending(usize, Option<Duration>),
    Property(usize, Property, CompareOp, GenValue),
}

#[derive(Debug, Clone)]
enum GenValue {
    Number(u64),
    Name(usize),
    Property(usize, Property),
    Addr(SocketAddr),
    State(usize),
}

/// An expected result before its statement is known; [`build`] keeps only results the
/// statement can produce.
#[derive(Debug, Clone)]
enum GenExpect {
    Ok,
    Errors(Vec<&'static str>),
    Eof,
    Data(Data),
    Size(u64),
    Sent(usize),
}

#[derive(Debug, Clone)]
struct GenStep {
    gen: Gen,
    background: bool,
    expect: Option<(Option<GenExpect>, Option<Duration>)>,
}

fn gen_step() -> impl Strategy<Value = GenStep> {
    let expect = option::of((option::of(gen_expect()), option::of(duration(0, 2_000_000))));
    (gen_statement(), any::<bool>(), expect).prop_map(|(gen, background, expect)| GenStep {
        gen,
        background,
        expect,
    })
}

fn index() -> impl Strategy<Value = usize> {
    0..8usize
}

fn gen_statement() -> impl Strategy<Value = Gen> {
    prop_oneof![
        (option::of(index()), option::of(0..1024u32), opts())
            .prop_map(|(on, b, o)| Gen::Listen(on, b, o)),
        (option::of(index()), opts()).prop_map(|(to, o)| Gen::Connect(to, o)),
        index().prop_map(Gen::Accept),
        (index(), data(), send_mode(), call()).prop_map(|(s, d, m, c)| Gen::Send(s, d, m, c)),
        (index(), recv_mode(), call()).prop_map(|(s, m, c)| Gen::Recv(s, m, c)),
        (index(), shutdown_how()).prop_map(|(s, h)| Gen::Shutdown(s, h)),
        index().prop_map(Gen::Close),
        index().prop_map(Gen::Abort),
        (index(), opts()).prop_map(|(s, o)| Gen::Set(s, o)),
        duration(0, 100_000).prop_map(Gen::Sleep),
        index().prop_map(Gen::Wait),
        (index(), option::of(duration(0, 1_000_000))).prop_map(|(h, d)| Gen::Pending(h, d)),
        (index(), property(), compare_op(), gen_value())
            .prop_map(|(s, p, op, v)| Gen::Property(s, p, op, v)),
    ]
}

fn opts() -> impl Strategy<Value = SockOpts> {
    (
        option::of(1..=1u64 << 20),
        option::of(1..=1u64 << 20),
        any::<[bool; 4]>(),
    )
        .prop_map(
            |(rcvbuf, sndbuf, [nodelay, reuseaddr, reuseport, keepalive])| SockOpts {
                rcvbuf,
                sndbuf,
                nodelay,
                reuseaddr,
                reuseport,
                keepalive,
            },
        )
}

fn data() -> impl Strategy<Value = Data> {
    prop_oneof![
        vec(any::<u8>(), 0..24).prop_map(Data::Bytes),
        (0..=1u64 << 17).prop_map(Data::Pattern),
        (0..=1u64 << 17, any::<u64>()).prop_map(|(size, seed)| Data::Random { size, seed }),
    ]
}

fn send_mode() -> impl Strategy<Value = SendMode> {
    prop_oneof![
        (option::of(1..=4096u64), option::of(duration(0, 10_000)))
            .prop_map(|(chunk, gap)| SendMode::Blocking { chunk, gap }),
        Just(SendMode::Nowait),
    ]
}

fn recv_mode() -> impl Strategy<Value = RecvMode> {
    prop_oneof![
        (1..=1u64 << 16, any::<bool>()).prop_map(|(size, nowait)| RecvMode::Once { size, nowait }),
        (0..=1u64 << 16).prop_map(RecvMode::Exact),
        // `until` needs at least one byte.
        data()
            .prop_filter("`until` needs a byte", |d| !d.is_empty())
            .prop_map(RecvMode::Until),
        Just(RecvMode::All),
    ]
}

fn call() -> impl Strategy<Value = IoCall> {
    prop_oneof![Just(IoCall::Socket), Just(IoCall::File)]
}

fn shutdown_how() -> impl Strategy<Value = ShutdownHow> {
    prop_oneof![
        Just(ShutdownHow::Write),
        Just(ShutdownHow::Read),
        Just(ShutdownHow::Both)
    ]
}

/// Every property but `fds`, which belongs to targets, which these scenarios do not start.
fn property() -> impl Strategy<Value = Property> {
    prop::sample::select(
        Property::ALL
            .into_iter()
            .filter(|p| *p != Property::Fds)
            .collect::<Vec<_>>(),
    )
}

fn compare_op() -> impl Strategy<Value = CompareOp> {
    prop::sample::select(vec![
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Lt,
        CompareOp::Le,
        CompareOp::Gt,
        CompareOp::Ge,
    ])
}

fn addr() -> impl Strategy<Value = SocketAddr> {
    let ip = prop::sample::select(vec![
        std::net::IpAddr::from([127, 0, 0, 1]),
        std::net::IpAddr::from([127, 0, 0, 2]),
        std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ]);
    (ip, any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
}

fn gen_value() -> impl Strategy<Value = GenValue> {
    prop_oneof![
        (0..=1u64 << 20).prop_map(GenValue::Number),
        index().prop_map(GenValue::Name),
        (index(), property()).prop_map(|(n, p)| GenValue::Property(n, p)),
        addr().prop_map(GenValue::Addr),
        (0..TCP_STATES.len()).prop_map(GenValue::State),
    ]
}

fn gen_expect() -> impl Strategy<Value = GenExpect> {
    let errnos: Vec<&'static str> = errno::names().collect();
    prop_oneof![
        Just(GenExpect::Ok),
        vec(prop::sample::select(errnos), 1..3).prop_map(GenExpect::Errors),
        Just(GenExpect::Eof),
        data().prop_map(GenExpect::Data),
        (0..=1u64 << 20).prop_map(GenExpect::Size),
        index().prop_map(GenExpect::Sent),
    ]
}

/// What a statement's result can be compared with, as validation sees it.
#[derive(Debug, Clone, Copy)]
struct Results {
    data: bool,
    size: bool,
}

/// Names defined so far, by kind, in definition order.
#[derive(Default)]
struct Names {
    listeners: Vec<String>,
    sockets: Vec<String>,
    /// Handle, what its statement produces, and whether it was waited for.
    handles: Vec<(String, Results, bool)>,
    /// How many names of any kind were made, so each new one is fresh.
    made: usize,
}

impl Names {
    fn fresh(&mut self, prefix: &str) -> String {
        self.made += 1;
        format!("{prefix}{}", self.made)
    }

    /// Listeners and sockets together: what `close`, `set` and most properties accept.
    fn any(&self, i: usize) -> Option<String> {
        let n = self.listeners.len() + self.sockets.len();
        if n == 0 {
            return None;
        }
        let i = i % n;
        Some(match self.listeners.get(i) {
            Some(l) => l.clone(),
            None => self.sockets[i - self.listeners.len()].clone(),
        })
    }
}

fn pick(names: &[String], i: usize) -> Option<String> {
    (!names.is_empty()).then(|| names[i % names.len()].clone())
}

/// Resolves generated steps into a valid scenario, skipping those whose names do not exist yet.
fn build(settings: Settings, gens: Vec<GenStep>) -> Scenario {
    let mut names = Names::default();
    let mut steps = Vec::new();
    for g in gens {
        if let Some(step) = resolve(&mut names, g) {
            steps.push(step);
        }
    }
    Scenario { settings, steps }
}

fn resolve(names: &mut Names, g: GenStep) -> Option<Step> {
    let none = Results {
        data: false,
        size: false,
    };
    let mut can_background = false;
    let mut results = none;
    // A new listener or socket is named only once the statement is known to be valid, and
    // registered after the statement's own uses are resolved.
    let mut defines: Option<(bool, String)> = None;
    let statement = match g.gen {
        Gen::Listen(on, backlog, opts) => {
            let on = match on.and_then(|i| names.any(i)) {
                Some(n) => Endpoint::Name(n),
                None => Endpoint::Addr(SocketAddr::from(([127, 0, 0, 1], 0))),
            };
            let name = names.fresh("l");
            defines = Some((true, name.clone()));
            Statement::Listen {
                name,
                on,
                backlog,
                opts,
            }
        }
        Gen::Connect(to, opts) => {
            let to = match to.and_then(|i| names.any(i)) {
                Some(n) => Endpoint::Name(n),
                None => Endpoint::Addr(SocketAddr::from(([127, 0, 0, 1], 9))),
            };
            let name = names.fresh("c");
            defines = Some((false, name.clone()));
            can_background = true;
            Statement::Connect { name, to, opts }
        }
        Gen::Accept(i) => {
            let listener = pick(&names.listeners, i)?;
            let name = names.fresh("a");
            defines = Some((false, name.clone()));
            can_background = true;
            Statement::Accept { listener, name }
        }
        Gen::Send(i, data, mode, call) => {
            can_background = true;
            results.size = true;
            Statement::Send {
                socket: pick(&names.sockets, i)?,
                data,
                mode,
                call,
            }
        }
        Gen::Recv(i, mode, call) => {
            can_background = true;
            results = Results {
                data: true,
                size: true,
            };
            Statement::Recv {
                socket: pick(&names.sockets, i)?,
                mode,
                call,
            }
        }
        Gen::Shutdown(i, how) => Statement::Shutdown {
            socket: pick(&names.sockets, i)?,
            how,
        },
        Gen::Close(i) => Statement::Close {
            socket: names.any(i)?,
        },
        Gen::Abort(i) => Statement::Abort {
            socket: pick(&names.sockets, i)?,
        },
        Gen::Set(i, mut opts) => {
            if opts.is_empty() {
                // `set` needs at least one option.
                opts.nodelay = true;
            }
            Statement::Set {
                socket: names.any(i)?,
                opts,
            }
        }
        Gen::Sleep(duration) => Statement::Sleep { duration },
        Gen::Wait(i) => {
            // Only a handle not yet waited for may be waited for.
            let open: Vec<usize> = (0..names.handles.len())
                .filter(|&k| !names.handles[k].2)
                .collect();
            let k = *open.get(i % open.len().max(1))?;
            names.handles[k].2 = true;
            results = names.handles[k].1;
            Statement::Wait {
                handle: names.handles[k].0.clone(),
            }
        }
        Gen::Pending(i, duration) => {
            let handle = names.handles.get(i % names.handles.len().max(1))?.0.clone();
            return Some(bare(Statement::ExpectPending { handle, duration }));
        }
        Gen::Property(i, property, op, value) => {
            return property_check(names, i, property, op, value).map(bare);
        }
    };
    let background = (g.background && can_background).then(|| {
        let h = names.fresh("h");
        names.handles.push((h.clone(), results, false));
        h
    });
    let expect = g.expect.and_then(|(result, within)| {
        let result = result.and_then(|r| expected(names, r, results));
        (result.is_some() || within.is_some()).then_some(Expectation { result, within })
    });
    match defines {
        Some((true, n)) => names.listeners.push(n),
        Some((false, n)) => names.sockets.push(n),
        None => {}
    }
    Some(Step {
        statement,
        background,
        expect,
        origin: None,
    })
}

fn bare(statement: Statement) -> Step {
    Step {
        statement,
        background: None,
        expect: None,
        origin: None,
    }
}

/// The expected result, if the statement can produce it.
fn expected(names: &Names, r: GenExpect, results: Results) -> Option<Expected> {
    Some(match r {
        GenExpect::Ok => Expected::Ok,
        GenExpect::Errors(e) => Expected::Errors(e.into_iter().map(String::from).collect()),
        GenExpect::Eof if results.data => Expected::Eof,
        GenExpect::Data(d) if results.data => Expected::Data(d),
        GenExpect::Size(n) if results.size => Expected::Size(n),
        GenExpect::Sent(i) if results.data => Expected::Sent(pick(&names.sockets, i)?),
        _ => return None,
    })
}

fn property_check(
    names: &Names,
    i: usize,
    property: Property,
    op: CompareOp,
    value: GenValue,
) -> Option<Statement> {
    let subject = match property {
        Property::Queued => pick(&names.listeners, i)?,
        Property::Peer | Property::Unread | Property::Unsent => pick(&names.sockets, i)?,
        _ => names.any(i)?,
    };
    // Only numbers compare with `<` and friends.
    let op = if property.is_numeric() || matches!(op, CompareOp::Eq | CompareOp::Ne) {
        op
    } else {
        CompareOp::Eq
    };
    let value = match (property, value) {
        (Property::State, GenValue::State(k) | GenValue::Name(k) | GenValue::Property(k, _)) => {
            Value::Name(TCP_STATES[k % TCP_STATES.len()].to_string())
        }
        (Property::State, _) => Value::Name(TCP_STATES[0].to_string()),
        (p, GenValue::Property(n, other)) if p.is_numeric() => {
            let other = if other.is_numeric() && other != Property::Fds {
                other
            } else {
                Property::Fd
            };
            Value::Property(names.any(n)?, other)
        }
        (p, GenValue::Number(n)) if p.is_numeric() => Value::Number(n),
        (p, _) if p.is_numeric() => Value::Number(0),
        (_, GenValue::Name(n)) => Value::Name(names.any(n)?),
        (_, GenValue::Property(n, other)) => {
            let other = if other == Property::Peer {
                Property::Peer
            } else {
                Property::Local
            };
            Value::Property(names.any(n)?, other)
        }
        (_, GenValue::Addr(a)) => Value::Addr(a),
        (_, _) => Value::Addr(SocketAddr::from(([127, 0, 0, 1], 80))),
    };
    Some(Statement::ExpectProperty {
        subject,
        property,
        op,
        value,
    })
}
