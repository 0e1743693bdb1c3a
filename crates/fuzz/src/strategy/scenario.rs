//! Whole valid scenarios, generated statement by statement with references resolved against
//! the names defined so far, so that every shrunk sequence stays valid.

use std::net::SocketAddr;
use std::time::Duration;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use sockharness::script::{
    errno, CompareOp, Data, Endpoint, Expectation, Expected, IoCall, Property, RecvMode, Scenario,
    SendMode, Settings, ShutdownHow, SockOpts, Statement, Step, Value, TCP_STATES,
};

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
            Statement::Connect {
                name,
                from: None,
                to,
                opts,
            }
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
