//! The scenario model: what a parsed `.scenario` file means, as plain data.
//!
//! Rust code can build the same model directly with [`ScenarioBuilder`], so tests and generators
//! need no text. Two models compare equal when they mean the same thing: source locations are
//! carried alongside ([`Step::origin`]) but are not part of the comparison.

use std::net::SocketAddr;
use std::time::Duration;

/// A whole scenario: its settings and its statements, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scenario {
    /// The file's settings (`timeout`, `tolerance`, `sysctl`).
    pub settings: Settings,
    /// The statements, in the order they run.
    pub steps: Vec<Step>,
}

/// Settings that apply to the whole scenario.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Deadline of every blocking statement (`timeout DUR`); `None` means the default.
    pub timeout: Option<Duration>,
    /// Absolute timing slack (`tolerance DUR`); `None` means the default.
    pub tolerance: Option<Duration>,
    /// Network sysctls for the scenario's private namespace, in file order.
    pub sysctls: Vec<(String, String)>,
    /// The 1-based line of each of `sysctls`, in the same order, when parsed from text.
    pub sysctl_lines: Vec<u32>,
    /// Programs the scenario needs on `PATH` (`require nginx`); without one it is skipped.
    pub requires: Vec<String>,
    /// The seed of every random decision of the scenario's links (`seed N`); `None` means 0,
    /// unless the run gives one.
    pub seed: Option<u64>,
}

impl Settings {
    /// The line `sysctls[i]` was written at, where it was parsed from text.
    pub fn sysctl_line(&self, i: usize) -> Option<u32> {
        self.sysctl_lines.get(i).copied()
    }
}

impl PartialEq for Settings {
    fn eq(&self, other: &Self) -> bool {
        // Where a sysctl was written is not what it means (as with `Step::origin`).
        self.timeout == other.timeout
            && self.tolerance == other.tolerance
            && self.sysctls == other.sysctls
            && self.requires == other.requires
            && self.seed == other.seed
    }
}

/// One statement with its modifiers: an optional background handle and an optional expectation.
#[derive(Debug, Clone)]
pub struct Step {
    /// What the statement does.
    pub statement: Statement,
    /// `&H`: run in the background under this handle.
    pub background: Option<String>,
    /// `== RESULT [within DUR]` or `within DUR`.
    pub expect: Option<Expectation>,
    /// Where the statement came from, when it was parsed from text.
    pub origin: Option<Origin>,
}

impl PartialEq for Step {
    fn eq(&self, other: &Self) -> bool {
        // The origin says where a statement was written, not what it means.
        self.statement == other.statement
            && self.background == other.background
            && self.expect == other.expect
    }
}

/// The source location of a parsed statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// 1-based line number.
    pub line: u32,
    /// The statement's source text, without its comment.
    pub text: String,
}

/// A socket operation or check.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// `listen L [on ADDR|NAME] [backlog=N] [OPTS]`.
    Listen {
        /// The listener's name.
        name: String,
        /// Where to bind.
        on: Endpoint,
        /// The listen(2) backlog; `None` means the default.
        backlog: Option<u32>,
        /// Socket options.
        opts: SockOpts,
    },
    /// `connect C [from HOST] to L|ADDR [OPTS]`.
    Connect {
        /// The new socket's name.
        name: String,
        /// The host it connects from (extension); `None` outside scenarios with hosts.
        from: Option<String>,
        /// What to connect to.
        to: Endpoint,
        /// Socket options, set before connect().
        opts: SockOpts,
    },
    /// `accept L as A`.
    Accept {
        /// The listener.
        listener: String,
        /// The accepted socket's name.
        name: String,
    },
    /// `send S DATA ...` or `write S DATA ...`.
    Send {
        /// The socket.
        socket: String,
        /// The bytes to write.
        data: Data,
        /// Blocking (optionally chunked) or one non-blocking call.
        mode: SendMode,
        /// send(2) or write(2).
        call: IoCall,
    },
    /// `recv S ...` or `read S ...`.
    Recv {
        /// The socket.
        socket: String,
        /// How much to read and when to stop.
        mode: RecvMode,
        /// recv(2) or read(2).
        call: IoCall,
    },
    /// `shutdown S read|write|both`.
    Shutdown {
        /// The socket.
        socket: String,
        /// Which direction.
        how: ShutdownHow,
    },
    /// `close S`.
    Close {
        /// The socket or listener.
        socket: String,
    },
    /// `abort S`: close with SO_LINGER {on, 0}, so the peer gets RST.
    Abort {
        /// The socket.
        socket: String,
    },
    /// `set S OPT...`.
    Set {
        /// The socket or listener.
        socket: String,
        /// The options to set.
        opts: SockOpts,
    },
    /// `sleep DUR`.
    Sleep {
        /// How long.
        duration: Duration,
    },
    /// `wait H`: wait for a background statement and check its result.
    Wait {
        /// The handle.
        handle: String,
    },
    /// `expect H pending [for DUR]`.
    ExpectPending {
        /// The handle.
        handle: String,
        /// How long it must stay pending; `None` checks once, now.
        duration: Option<Duration>,
    },
    /// `expect S.PROP OP VALUE`.
    ExpectProperty {
        /// The socket or listener.
        subject: String,
        /// The property.
        property: Property,
        /// The comparison.
        op: CompareOp,
        /// The value compared against.
        value: Value,
    },
    /// `target T cmd "COMMAND" [ready=DUR] [on HOST]`, `target T at ADDR` or `target T
    /// builtin NAME [on HOST]` (extension): the server under test.
    Target {
        /// The target's name.
        name: String,
        /// Where the server comes from.
        source: TargetSource,
        /// The host it runs on, in a scenario with hosts.
        on: Option<String>,
    },
    /// `expect T running` or `expect T exited` (extension).
    ExpectTarget {
        /// The target.
        target: String,
        /// True for `running`, false for `exited`.
        running: bool,
    },
    /// `proxy P to T|L [FAULT...] [on HOST]` (extension): a fault-injecting proxy in front of a
    /// target or listener; clients connect to P.
    Proxy {
        /// The proxy's name.
        name: String,
        /// The target or listener it forwards to.
        to: String,
        /// Its faults, in order.
        faults: Vec<Fault>,
        /// The host it runs on, in a scenario with hosts.
        on: Option<String>,
    },
    /// `fault P FAULT...` (extension): replaces the proxy's faults from now on.
    SetFaults {
        /// The proxy.
        proxy: String,
        /// The new faults (none: forward faithfully).
        faults: Vec<Fault>,
    },
    /// `stop T`: SIGTERM, then wait for it to exit (extension).
    Stop {
        /// The target.
        target: String,
    },
    /// `kill T`: SIGKILL (extension).
    Kill {
        /// The target.
        target: String,
    },
    /// Hosts, links and their checks (extension).
    Wire(WireStatement),
    /// `expect wire A -> B count FLAGS OP N` or `expect wire A -> B bytes OP N` (extension):
    /// a check on the captured segments from A to B.
    ExpectWire {
        /// The sending socket or listener.
        from: String,
        /// The receiving socket or listener.
        to: String,
        /// What is counted.
        measure: WireMeasure,
        /// The comparison.
        op: CompareOp,
        /// The number compared against.
        value: u64,
    },
}

/// `host NAME`, `link ...` and `expect link ...` (extension): the scriptable wire.
#[derive(Debug, Clone, PartialEq)]
pub enum WireStatement {
    /// `host NAME`: a host, a network namespace of its own with its own address.
    Host {
        /// The host's name.
        name: String,
    },
    /// `link A B [IMPAIRMENT...]` (both directions) or `link A -> B IMPAIRMENT...`: joins two
    /// hosts, or changes how an existing link treats packets.
    Link {
        /// One end (the sender, for one direction).
        from: String,
        /// The other end (the receiver, for one direction).
        to: String,
        /// Both directions (`link A B`) or only `from` to `to` (`link A -> B`).
        both: bool,
        /// What is changed, in order.
        impairments: Vec<Impairment>,
    },
    /// `drop X -> Y [FLAGS] [count N]`: the next N packets (1 without `count`) from X to Y
    /// whose TCP flags include every letter of FLAGS are dropped. X and Y are hosts, sockets or
    /// listeners.
    Drop {
        /// Where the packets come from.
        from: String,
        /// Where they go.
        to: String,
        /// Flag letters every dropped packet has (`SFRPAUEC`); empty matches every packet.
        flags: String,
        /// How many packets are dropped.
        count: u64,
    },
    /// `hold X -> Y [FLAGS]`: matching packets are held, in order, until `release X -> Y`.
    Hold {
        /// Where the packets come from.
        from: String,
        /// Where they go.
        to: String,
        /// Flag letters every held packet has; empty matches every packet.
        flags: String,
    },
    /// `release X -> Y`: the packets held from X to Y go on, in the order they came, and no
    /// more are held.
    Release {
        /// Where the packets come from.
        from: String,
        /// Where they go.
        to: String,
    },
    /// `expect link A -> B COUNTER OP N`: a check on what the link from A to B did so far.
    ExpectLink {
        /// The sending host.
        from: String,
        /// The receiving host.
        to: String,
        /// What is counted.
        counter: LinkCounter,
        /// The comparison.
        op: CompareOp,
        /// The number compared against.
        value: u64,
    },
}

/// What a link does to the packets of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impairment {
    /// `delay DUR [jitter DUR]`: every packet arrives DUR later, give or take up to the jitter.
    Delay {
        /// The delay.
        delay: Duration,
        /// At most this much more or less, drawn per packet; never more than `delay`.
        jitter: Option<Duration>,
    },
    /// `loss P%`: each packet is dropped with this probability.
    Loss(Percent),
    /// `reorder P%`: each packet is held back behind the next one with this probability.
    Reorder(Percent),
    /// `duplicate P%`: each packet is delivered twice with this probability.
    Duplicate(Percent),
    /// `corrupt P%`: each packet has one bit flipped with this probability, so that its
    /// checksum fails.
    Corrupt(Percent),
    /// `rate SIZE/s`: packets queue so that at most this many bytes per second pass.
    Rate(u64),
    /// `mtu N`: both ends' interface MTU.
    Mtu(u32),
    /// `down`: every packet is dropped (a partition).
    Down,
    /// `clear`: every impairment removed (and the link up again).
    Clear,
}

/// A probability, in millionths, so that `12.5%` is exact and prints back as written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Percent(pub u32);

impl Percent {
    /// 100%.
    pub const ALL: Percent = Percent(1_000_000);

    /// The probability as a fraction of one.
    pub fn fraction(self) -> f64 {
        f64::from(self.0) / 1e6
    }
}

/// What `expect link` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkCounter {
    /// Packets the link dropped (`loss`, `down`, a `drop`).
    Dropped,
    /// Extra copies delivered (`duplicate`).
    Duplicated,
    /// Packets held back behind a later one (`reorder`).
    Reordered,
    /// Packets delivered with a bit flipped (`corrupt`).
    Corrupted,
    /// Packets delivered later than they came (`delay`, `rate`).
    Delayed,
    /// Packets delivered (copies included).
    Delivered,
}

impl LinkCounter {
    /// Every counter, in the order the docs list them.
    pub const ALL: [LinkCounter; 6] = [
        LinkCounter::Dropped,
        LinkCounter::Duplicated,
        LinkCounter::Reordered,
        LinkCounter::Corrupted,
        LinkCounter::Delayed,
        LinkCounter::Delivered,
    ];

    /// The counter's name in scenarios.
    pub fn name(self) -> &'static str {
        match self {
            LinkCounter::Dropped => "dropped",
            LinkCounter::Duplicated => "duplicated",
            LinkCounter::Reordered => "reordered",
            LinkCounter::Corrupted => "corrupted",
            LinkCounter::Delayed => "delayed",
            LinkCounter::Delivered => "delivered",
        }
    }
}

/// Where a target's server comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSource {
    /// A command started inside the scenario's namespace; `{port}` and `$PORT` give it its port.
    Cmd {
        /// The shell command.
        command: String,
        /// How long it may take to listen; `None` means the default (5s).
        ready: Option<Duration>,
    },
    /// A server that is already running (loopback only).
    At(SocketAddr),
    /// One of the bundled example servers: `echo`, `chat`, `http`.
    Builtin(String),
}

/// A proxy fault: `up|down|both KIND [on conn N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Which direction it applies to.
    pub direction: Direction,
    /// What it does.
    pub kind: FaultKind,
    /// Only the Nth connection the proxy accepts (from 1); `None` means all of them.
    pub conn: Option<u32>,
}

/// A direction through a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
    /// Both.
    Both,
}

/// What a fault does to the bytes of its direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Forward in pieces of this size, pausing between them, so the receiver sees partial reads.
    Slice {
        /// Piece size.
        size: u64,
        /// Pause between pieces.
        gap: Option<Duration>,
    },
    /// Hold every chunk this long before forwarding it.
    Delay(Duration),
    /// Forward at most this many bytes per second.
    Rate(u64),
    /// Forward this many bytes, then nothing; the connection stays open.
    StallAfter(u64),
    /// Forward this many bytes, then reset both sides.
    RstAfter(u64),
    /// Forward this many bytes, then half-close this direction.
    FinAfter(u64),
    /// Forward nothing.
    Drop,
}

/// The bundled example servers, by name: the correct ones ([`CORRECT_BUILTINS`]), then the bug
/// zoo's ([`ZOO_BUILTINS`]). sockharness serves exactly these.
pub const BUILTINS: [&str; 17] = [
    "echo",
    "chat",
    "http",
    // The bug zoo (`servers/zoo`): broken variants, each with one realistic bug.
    "echo-one-read",
    "echo-short-write",
    "echo-one-at-a-time",
    "echo-exit-on-reset",
    "echo-leak-closed",
    "http-one-read",
    "http-first-pipelined",
    "http-body-as-request",
    "http-half-close-drop",
    "http-stop-accepting",
    "chat-echo-sender",
    "chat-one-read",
    "chat-slow-blocks",
    "chat-leak-closed",
];

/// The correct bundled servers, always built.
pub const CORRECT_BUILTINS: &[&str] = BUILTINS.split_at(3).0;

/// The bug zoo's broken servers, built with sockharness's `zoo` feature.
pub const ZOO_BUILTINS: &[&str] = BUILTINS.split_at(3).1;

/// What an `expect wire` statement measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireMeasure {
    /// Segments whose flags include every one of these letters (`S` SYN, `F` FIN, `R` RST,
    /// `P` PSH, `A` ACK, `U` URG, `E` ECE, `C` CWR); no letters counts every segment.
    Count(String),
    /// Payload bytes.
    Bytes,
}

/// An address to bind or connect to: a literal, or a name whose address is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// An address literal such as `127.0.0.1:0` or `[::1]:0`.
    Addr(SocketAddr),
    /// The (local) address of a listener or socket of the scenario.
    Name(String),
}

/// Socket options from `OPTS`; unset options keep the kernel's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SockOpts {
    /// SO_RCVBUF, in bytes.
    pub rcvbuf: Option<u64>,
    /// SO_SNDBUF, in bytes.
    pub sndbuf: Option<u64>,
    /// TCP_NODELAY.
    pub nodelay: bool,
    /// SO_REUSEADDR.
    pub reuseaddr: bool,
    /// SO_REUSEPORT.
    pub reuseport: bool,
    /// SO_KEEPALIVE.
    pub keepalive: bool,
}

impl SockOpts {
    /// True when no option is set.
    pub fn is_empty(&self) -> bool {
        *self == SockOpts::default()
    }
}

/// How a `send` writes.
#[derive(Debug, Clone, PartialEq)]
pub enum SendMode {
    /// Write everything, blocking as the kernel blocks; optionally in `chunk`-sized pieces with
    /// `gap` between them.
    Blocking {
        /// Piece size; `None` writes the data in one go.
        chunk: Option<u64>,
        /// Pause between pieces.
        gap: Option<Duration>,
    },
    /// Exactly one non-blocking write call.
    Nowait,
}

/// How a `recv` reads.
#[derive(Debug, Clone, PartialEq)]
pub enum RecvMode {
    /// Exactly one read call with a buffer of this size.
    Once {
        /// Buffer size.
        size: u64,
        /// Non-blocking.
        nowait: bool,
    },
    /// Read until this many bytes have arrived.
    Exact(u64),
    /// Read until these bytes have arrived (the result includes them).
    Until(Data),
    /// Read until end of stream.
    All,
}

/// Which system call does the I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoCall {
    /// send(2) / recv(2): the `send` and `recv` statements.
    Socket,
    /// write(2) / read(2) on the descriptor: the `write` and `read` statements.
    File,
}

/// The direction of a `shutdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownHow {
    /// SHUT_RD.
    Read,
    /// SHUT_WR: sends FIN, the socket stays readable.
    Write,
    /// SHUT_RDWR.
    Both,
}

/// A data literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// Literal bytes, from `"text"` or `hex"..."`.
    Bytes(Vec<u8>),
    /// `pattern(SIZE)`: byte *i* is `i mod 251`.
    Pattern(u64),
    /// `random(SIZE, seed=N)`: deterministic pseudo-random bytes.
    Random {
        /// Length in bytes.
        size: u64,
        /// Generator seed.
        seed: u64,
    },
}

/// What a statement is expected to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    /// `== RESULT`; `None` for a bare `within DUR`, which also requires success.
    pub result: Option<Expected>,
    /// `within DUR`.
    pub within: Option<Duration>,
}

/// The RESULT of an expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// `ok`: the statement succeeded.
    Ok,
    /// `EOF`: a read returned 0 bytes.
    Eof,
    /// One of these errno names (`ECONNRESET|EPIPE`).
    Errors(Vec<String>),
    /// Success, or one of these errno names (`ok|EPIPE|ECONNRESET`, extension): for a
    /// statement whose outcome legitimately depends on the peer, such as a write racing the
    /// peer's close.
    OkOr(Vec<String>),
    /// End of stream, or one of these errno names (`EOF|ECONNRESET`, extension): for a read
    /// after a peer that closes may or may not have been sent more, which it answers with RST.
    EofOr(Vec<String>),
    /// Exactly these bytes were read.
    Data(Data),
    /// This many bytes were written or read.
    Size(u64),
    /// Every byte the named socket has written so far.
    Sent(String),
    /// The bytes read match this regular expression (`matches "RE"`, extension; the syntax of
    /// the regex crate, unanchored unless it says `^` or `$`).
    Matches(String),
}

/// A property of a socket or listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Property {
    /// The peer's address (or name).
    Peer,
    /// The local address.
    Local,
    /// The file descriptor number.
    Fd,
    /// The TCP state.
    State,
    /// Completed connections in a listener's accept queue.
    Queued,
    /// Bytes in the receive queue.
    Unread,
    /// Bytes in the send queue not yet acknowledged.
    Unsent,
    /// A target's open file descriptors (extension).
    Fds,
    /// The largest segment the socket sends (TCP_MAXSEG), options taken off (extension).
    Mss,
}

impl Property {
    /// Every property, in documentation order.
    pub const ALL: [Property; 9] = [
        Property::Peer,
        Property::Local,
        Property::Fd,
        Property::State,
        Property::Queued,
        Property::Unread,
        Property::Unsent,
        Property::Fds,
        Property::Mss,
    ];

    /// The property's name in the language.
    pub fn name(self) -> &'static str {
        match self {
            Property::Peer => "peer",
            Property::Local => "local",
            Property::Fd => "fd",
            Property::State => "state",
            Property::Queued => "queued",
            Property::Unread => "unread",
            Property::Unsent => "unsent",
            Property::Fds => "fds",
            Property::Mss => "mss",
        }
    }

    /// True for properties whose values are numbers (and so allow `<`, `<=`, `>`, `>=`).
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Property::Fd
                | Property::Queued
                | Property::Unread
                | Property::Unsent
                | Property::Fds
                | Property::Mss
        )
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CompareOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }

    /// Applies the operator to two ordered values.
    pub fn holds<T: PartialOrd>(self, left: &T, right: &T) -> bool {
        match self {
            CompareOp::Eq => left == right,
            CompareOp::Ne => left != right,
            CompareOp::Lt => left < right,
            CompareOp::Le => left <= right,
            CompareOp::Gt => left > right,
            CompareOp::Ge => left >= right,
        }
    }
}

/// The right-hand side of a property comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A number.
    Number(u64),
    /// A socket or listener of the scenario (its address), or a TCP state name.
    Name(String),
    /// Another property: `srv.local`.
    Property(String, Property),
    /// An address literal.
    Addr(SocketAddr),
}

/// TCP states as Linux numbers them (`include/net/tcp_states.h`), by their language names.
pub const TCP_STATES: [&str; 12] = [
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSED",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
    "NEW_SYN_RECV",
];
