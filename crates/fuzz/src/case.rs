//! A fuzz case: a seed scenario and the edits made to it. Edits are data, so a case can be
//! printed, replayed, and shrunk one edit at a time; [`Case::scenario`] turns one into the
//! scenario that runs.

use std::fmt;
use std::time::Duration;

use sockharness::script::{
    Data, Endpoint, Expectation, Expected, IoCall, RecvMode, Scenario, SendMode, ShutdownHow,
    SockOpts, Statement, Step, TargetSource,
};

use super::calibrate::{Baseline, End};

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

/// A request and the answer to its plain delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Plain {
    /// The request bytes.
    pub request: Vec<u8>,
    /// The answer, and whether its bytes (or only its length) repeat.
    pub baseline: Baseline,
    /// Whether clients connected at the same time get the same answers as one alone: only then
    /// may interleaved clients be compared against the plain answer.
    pub independent: bool,
}

impl Plain {
    /// The scenario in which `clients` clients each send the request, in pieces of `chunk`
    /// bytes taking turns, and each read the plain answer.
    pub fn scenario(
        &self,
        target: &str,
        clients: u32,
        chunk: Option<u64>,
        gap: Duration,
    ) -> Scenario {
        let mut steps = vec![statement(Statement::Target {
            name: target.to_string(),
            source: TargetSource::Builtin("echo".into()),
        })];
        steps.extend(self.steps(target, "c", clients, chunk, gap, true));
        let mut sc = Scenario {
            steps,
            ..Scenario::default()
        };
        sc.settings.timeout = Some(CASE_TIMEOUT);
        sc
    }

    /// The statements of [`Plain::scenario`] without its target, clients named `PREFIX1`...
    pub fn steps(
        &self,
        target: &str,
        prefix: &str,
        clients: u32,
        chunk: Option<u64>,
        gap: Duration,
        // With the checks past the answer (end of stream, nothing more); without them only
        // the answer itself, as a health check that holds for the correct server too.
        strict: bool,
    ) -> Vec<Step> {
        let mut steps = Vec::new();
        let closes = self.baseline.exchange().is_none_or(|e| e.end != End::Open);
        let names: Vec<String> = (1..=clients.max(1))
            .map(|i| format!("{prefix}{i}"))
            .collect();
        for n in &names {
            steps.push(statement(Statement::Connect {
                name: n.clone(),
                to: Endpoint::Name(target.to_string()),
                opts: SockOpts {
                    nodelay: true,
                    ..SockOpts::default()
                },
            }));
        }
        let len = self.request.len();
        let piece = chunk.map_or(len.max(1), |c| usize::try_from(c).unwrap_or(len).max(1));
        let mut at = 0;
        while at < len {
            let end = (at + piece).min(len);
            if at > 0 && !gap.is_zero() {
                steps.push(statement(Statement::Sleep { duration: gap }));
            }
            for n in &names {
                let mut s = statement(send(n, self.request[at..end].to_vec()));
                if closes {
                    // A server that answers and closes may do so before the last piece: writing
                    // on then fails, and only the answer tells right from wrong.
                    s.expect = Some(ok_or(&["EPIPE", "ECONNRESET"]));
                }
                steps.push(s);
            }
            at = end;
        }
        if let Some(ex) = self.baseline.exchange() {
            for n in &names {
                if !ex.response.is_empty() {
                    let mut s = statement(Statement::Recv {
                        socket: n.clone(),
                        mode: RecvMode::Exact(ex.response.len() as u64),
                        call: IoCall::Socket,
                    });
                    if matches!(self.baseline, Baseline::Exact(_)) {
                        s.expect = Some(result(Expected::Data(Data::Bytes(ex.response.clone()))));
                    }
                    steps.push(s);
                }
                if strict && ex.end == End::Open && matches!(self.baseline, Baseline::Exact(_)) {
                    // Nothing more than the plain answer: a server that answers a request twice,
                    // or answers pipelined requests only when they arrive apart, shows here.
                    if n == &names[0] {
                        steps.push(statement(Statement::Sleep {
                            duration: EXTRA_WAIT,
                        }));
                    }
                    let mut s = statement(Statement::Recv {
                        socket: n.clone(),
                        mode: RecvMode::Once {
                            size: 64 * 1024,
                            nowait: true,
                        },
                        call: IoCall::Socket,
                    });
                    s.expect = Some(result(Expected::Errors(vec!["EAGAIN".into()])));
                    steps.push(s);
                }
                if strict && ex.end == End::Closed {
                    let mut s = statement(Statement::Recv {
                        socket: n.clone(),
                        mode: RecvMode::Once {
                            size: 1,
                            nowait: false,
                        },
                        call: IoCall::Socket,
                    });
                    // After a write the server did not read (it had answered and closed), its kernel
                    // answers with RST.
                    s.expect = Some(result(Expected::EofOr(vec!["ECONNRESET".into()])));
                    steps.push(s);
                }
            }
        }
        for n in &names {
            steps.push(statement(Statement::Close { socket: n.clone() }));
        }
        steps
    }
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

fn crowd(e: &Edit) -> Option<(u32, u64, Duration)> {
    match e {
        Edit::Crowd {
            clients,
            chunk,
            gap,
        } => Some((*clients, *chunk, *gap)),
        _ => None,
    }
}

/// Points every target of `sc` at `source`.
pub fn retarget(sc: &mut Scenario, source: &TargetSource) {
    for step in &mut sc.steps {
        if let Statement::Target { source: s, .. } = &mut step.statement {
            *s = source.clone();
        }
    }
}

/// The name of the scenario's first target (`srv` if it has none).
pub fn first_target(sc: &Scenario) -> String {
    super::seed::target_names(sc)
        .into_iter()
        .next()
        .unwrap_or_else(|| "srv".into())
}

fn statement(statement: Statement) -> Step {
    Step {
        statement,
        background: None,
        expect: None,
        origin: None,
    }
}

/// `== ok|ERRNO|...`: success, or one of these errors.
fn ok_or(errors: &[&str]) -> Expectation {
    result(Expected::OkOr(
        errors.iter().map(|e| e.to_string()).collect(),
    ))
}

fn result(r: Expected) -> Expectation {
    Expectation {
        result: Some(r),
        within: None,
    }
}

fn send(socket: &str, bytes: Vec<u8>) -> Statement {
    Statement::Send {
        socket: socket.to_string(),
        data: Data::Bytes(bytes),
        mode: SendMode::Blocking {
            chunk: None,
            gap: None,
        },
        call: IoCall::Socket,
    }
}

/// A name no statement of `sc` uses, starting with `base`.
fn fresh_name(sc: &Scenario, base: &str) -> String {
    let text = sc.to_string();
    let used = |n: &str| {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|w| w == n)
    };
    (1..)
        .map(|i| format!("{base}{i}"))
        .find(|n| !used(n))
        .unwrap_or_else(|| base.to_string())
}

/// The seed's steps with the edits made.
fn apply(seed: &Scenario, edits: &[Edit], settle: Option<Duration>) -> Scenario {
    let mut before: Vec<Vec<Step>> = vec![Vec::new(); seed.steps.len() + 1];
    let mut after: Vec<Vec<Step>> = vec![Vec::new(); seed.steps.len() + 1];
    let mut steps: Vec<Step> = seed.steps.clone();
    for step in &mut steps {
        // Reports show the statement as it ran, not as the seed wrote it.
        step.origin = None;
        // Edits change timing on purpose: the seed's timing checks are not the oracle.
        if let Some(e) = &mut step.expect {
            e.within = None;
            if e.result.is_none() {
                step.expect = None;
            }
        }
    }
    let target = first_target(seed);
    let after_targets = seed
        .steps
        .iter()
        .rposition(|s| matches!(s.statement, Statement::Target { .. }))
        .map_or(0, |i| i + 1);
    let mut used = seed.clone();
    for edit in edits {
        match edit {
            Edit::Chunk { step, chunk, gap } => {
                if let Some(Statement::Send { mode, .. }) =
                    steps.get_mut(*step).map(|s| &mut s.statement)
                {
                    if matches!(mode, SendMode::Blocking { .. }) {
                        *mode = SendMode::Blocking {
                            chunk: Some((*chunk).max(1)),
                            gap: (!gap.is_zero()).then_some(*gap),
                        };
                    }
                }
            }
            Edit::Pause { step, pause } => {
                if *step < steps.len() {
                    before[*step].push(statement(Statement::Sleep { duration: *pause }));
                }
            }
            Edit::RcvBuf { step, size } => {
                if let Some(Statement::Connect { opts, .. }) =
                    steps.get_mut(*step).map(|s| &mut s.statement)
                {
                    opts.rcvbuf = Some(*size);
                }
            }
            Edit::HalfClose { step } => {
                if let Some(Statement::Send { socket, .. }) = steps.get(*step).map(|s| &s.statement)
                {
                    after[*step].push(statement(Statement::Shutdown {
                        socket: socket.clone(),
                        how: ShutdownHow::Write,
                    }));
                }
            }
            Edit::Intruder(i) => {
                let name = fresh_name(&used, "fz");
                let steps = intruder_steps(&name, &target, i);
                used.steps.extend(steps.iter().cloned());
                // A client that stalls does so while the seed runs. One that sends and leaves
                // does so after it: what it sends may change the server's state (a key set, a
                // counter counted), and the seed's answers must not depend on that; whether the
                // server survived it, the next input and the health exchange tell.
                if i.leave == Leave::Stall {
                    let at = after_targets.min(seed.steps.len());
                    before[at].extend(steps);
                    if let Some(duration) = settle {
                        before[at].push(statement(Statement::Sleep { duration }));
                    }
                } else {
                    before[seed.steps.len()].extend(steps);
                }
            }
            Edit::Crowd { .. } => {}
        }
    }
    let mut out = Vec::with_capacity(steps.len() + 8);
    for (i, step) in steps.into_iter().enumerate() {
        out.append(&mut before[i]);
        out.push(step);
        out.append(&mut after[i]);
    }
    out.append(&mut before[seed.steps.len()]);
    Scenario {
        settings: seed.settings.clone(),
        steps: out,
    }
}

fn intruder_steps(name: &str, target: &str, i: &Intruder) -> Vec<Step> {
    let mut steps = vec![statement(Statement::Connect {
        name: name.to_string(),
        to: Endpoint::Name(target.to_string()),
        opts: SockOpts {
            nodelay: true,
            rcvbuf: i.rcvbuf,
            ..SockOpts::default()
        },
    })];
    let writer = format!("{name}_w");
    let echoed = i.echo && !i.data.is_empty() && matches!(i.leave, Leave::Close | Leave::HalfClose);
    // A server may answer bytes it does not like by closing or resetting: writing on, the
    // client then sees EPIPE or ECONNRESET, which says nothing against the server.
    if !i.data.is_empty() {
        let mut s = statement(Statement::Send {
            socket: name.to_string(),
            data: literal(&i.data),
            mode: SendMode::Blocking {
                chunk: i.chunk,
                gap: None,
            },
            call: IoCall::Socket,
        });
        if echoed {
            s.background = Some(writer.clone());
        } else if !i.echo {
            s.expect = Some(ok_or(&["EPIPE", "ECONNRESET"]));
        }
        steps.push(s);
    }
    if echoed {
        let mut s = statement(Statement::Recv {
            socket: name.to_string(),
            mode: RecvMode::Exact(i.data.len() as u64),
            call: IoCall::Socket,
        });
        s.expect = Some(result(Expected::Sent(name.to_string())));
        steps.push(s);
        steps.push(statement(Statement::Wait { handle: writer }));
    }
    if i.leave == Leave::HalfClose {
        let mut s = statement(Statement::Shutdown {
            socket: name.to_string(),
            how: ShutdownHow::Write,
        });
        if !i.echo {
            s.expect = Some(ok_or(&["ENOTCONN", "ECONNRESET", "EPIPE"]));
        }
        steps.push(s);
    }
    match i.leave {
        Leave::Close | Leave::HalfClose => steps.push(statement(Statement::Close {
            socket: name.to_string(),
        })),
        Leave::Abort => steps.push(statement(Statement::Abort {
            socket: name.to_string(),
        })),
        Leave::Stall => {}
    }
    steps
}

/// Ends `sc` with a check that its targets are still running, a moment after the last
/// statement: a crash the last bytes caused shows there.
pub fn append_crash_check(sc: &mut Scenario) {
    sc.steps.push(statement(Statement::Sleep {
        duration: Duration::from_millis(100),
    }));
    for name in super::seed::target_names(sc) {
        sc.steps.push(statement(Statement::ExpectTarget {
            target: name,
            running: true,
        }));
    }
}

/// Ends `sc` with a plain request on a new connection, which must get an answer (at least a
/// byte): the server still accepts and answers after the case, whatever the case did to it.
/// Only that it answers: what it answers may rightly depend on what the case changed.
pub fn append_health(sc: &mut Scenario, plain: &Plain) {
    let target = first_target(sc);
    let name = format!("{}_c1", fresh_name(sc, "health"));
    sc.steps.push(statement(Statement::Connect {
        name: name.clone(),
        to: Endpoint::Name(target),
        opts: SockOpts {
            nodelay: true,
            ..SockOpts::default()
        },
    }));
    sc.steps.push(statement(send(&name, plain.request.clone())));
    sc.steps.push(statement(Statement::Recv {
        socket: name.clone(),
        mode: RecvMode::Exact(1),
        call: IoCall::Socket,
    }));
    sc.steps.push(statement(Statement::Close { socket: name }));
}

/// `bytes` as a data literal: `pattern(SIZE)` where they are that pattern, so a big reproducer
/// stays small.
fn literal(bytes: &[u8]) -> Data {
    let pattern = Data::Pattern(bytes.len() as u64);
    if bytes.len() > 64 && pattern.bytes() == bytes {
        pattern
    } else {
        Data::Bytes(bytes.to_vec())
    }
}

/// Holds every read with an expected answer in `sc` to the regular expression `re` instead of to
/// its bytes (`--expect regex:RE`).
pub fn expect_matches(sc: &mut Scenario, re: &str) {
    for step in &mut sc.steps {
        if let (
            Statement::Recv {
                mode: RecvMode::Exact(_),
                ..
            },
            Some(e),
        ) = (&step.statement, &mut step.expect)
        {
            if matches!(e.result, Some(Expected::Data(_)) | None) {
                e.result = Some(Expected::Matches(re.to_string()));
            }
        }
        if let (
            Statement::Recv {
                mode: RecvMode::Exact(_),
                ..
            },
            None,
        ) = (&step.statement, &step.expect)
        {
            step.expect = Some(result(Expected::Matches(re.to_string())));
        }
    }
}
