//! The interpreter: plays a scenario's statements on real sockets, in order, on one thread.
//!
//! This module holds the interpreter's state and its loop; what each kind of statement does is
//! in [`statements`], [`background`], [`targets`], [`properties`] and [`capture`].

// A `Failure` ends the scenario: it is made once per run, so its size does not matter, and
// boxing it would only add noise to every `?`.
#![allow(clippy::result_large_err)]

mod background;
mod capture;
mod network;
pub(crate) use network::on_host;
mod properties;
mod statements;
mod targets;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::check::{check_result, errno_of, Actual, Mismatch};
use super::sock::{self, Sock};
use super::target::{self, Process, Target};
use super::timing::Tolerance;
use super::{Failure, FailureKind, Services, Status};
use crate::capture::live::LiveCapture;
use crate::capture::{decode, Capture, LinkType};
use crate::script::{
    preview, CompareOp, Data, Dur, Endpoint, Property, RecvMode, Scenario, SendMode, Statement,
    Step, TargetSource, Value, WireMeasure,
};
use crate::trace::{Event, Outcome, Trace};

/// Statement text in traces is cut to this many characters.
const MAX_STATEMENT: usize = 72;
/// Bytes shown in a trace's data preview.
const PREVIEW: usize = 32;
/// How long the capture must stay quiet at the end of a scenario for the answers to its closing
/// segments to count as captured.
const CLOSE_QUIET: Duration = Duration::from_micros(200);
/// How often the capture is looked at while it settles.
const CLOSE_POLL: Duration = Duration::from_micros(50);
/// The longest the end of a scenario waits for one close to reach the other end.
const CLOSE_SETTLE_MAX: Duration = Duration::from_millis(200);
/// The same over links, where the wire has been seen quiet already and a close may never arrive
/// (a partition): well below TCP's shortest retransmission timeout (200 ms), so that waiting
/// for one close never lets an earlier one be sent again.
const CLOSE_SETTLE_LINKED: Duration = Duration::from_millis(50);
/// The moment given to the runtime to hear from the kernel before a background statement is
/// judged pending.
const SETTLE: Duration = Duration::from_millis(2);
/// Piece size of a send without `chunk=`.
const SEND_PIECE: u64 = 1 << 20;
/// The largest buffer given to one read or write call.
const ONE_CALL_MAX: u64 = 64 << 20;
/// Largest single read for `exact`, `until` and `all`.
const READ_CHUNK: usize = 64 * 1024;

type LocalFuture = Pin<Box<dyn Future<Output = Actual>>>;

/// Everything background statements share with the script.
#[derive(Default)]
struct State {
    socks: HashMap<String, Rc<Sock>>,
    /// Socket names in creation order: the order they are closed in at the end, so that the
    /// closing segments on the wire are the same on every run.
    order: Vec<String>,
    /// Local addresses of every socket and listener, kept after close for naming.
    addr_of: HashMap<String, SocketAddr>,
    name_of: HashMap<SocketAddr, String>,
    closed: HashSet<String>,
    targets: HashMap<String, Rc<RefCell<Target>>>,
    proxies: HashMap<String, crate::proxy::Faults>,
    sent: HashMap<String, Vec<u8>>,
    received: HashMap<String, u64>,
    /// Both ends of every connection closed so far, for what they leave in the kernel.
    connections: Vec<(SocketAddr, SocketAddr)>,
}

type Shared = Rc<RefCell<State>>;

impl State {
    /// Removes a socket (a `close`, an `abort`, the end of the scenario), noting its
    /// connection's ends first.
    fn remove(&mut self, name: &str) -> Option<Rc<Sock>> {
        let sock = self.socks.remove(name)?;
        let addr = |a: io::Result<socket2::SockAddr>| a.ok().and_then(|a| a.as_socket());
        if let (Some(local), Some(peer)) = (
            addr(sock.socket().local_addr()),
            addr(sock.socket().peer_addr()),
        ) {
            self.connections.push((local, peer));
        }
        Some(sock)
    }

    fn register(&mut self, name: &str, sock: Rc<Sock>) {
        if let Ok(addr) = sock.socket().local_addr() {
            if let Some(addr) = addr.as_socket() {
                self.addr_of.insert(name.to_string(), addr);
                // A listener keeps its address's name while it is open (accepted sockets share its
                // port); otherwise the newest socket on an address names it, as when a port
                // freed by a closed socket is taken again.
                let keep = self.name_of.get(&addr).is_some_and(|owner| {
                    owner != name && self.socks.get(owner).is_some_and(|s| s.listener)
                });
                if !keep {
                    self.name_of.insert(addr, name.to_string());
                }
            }
        }
        if self.socks.insert(name.to_string(), sock).is_none()
            && !self.order.iter().any(|n| n == name)
        {
            self.order.push(name.to_string());
        }
    }

    fn sock(&self, name: &str) -> io::Result<Rc<Sock>> {
        // A closed (or not yet created) socket behaves as a closed descriptor does.
        self.socks
            .get(name)
            .cloned()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }

    /// The name of `sock`'s peer: the scenario's socket at the other end of the same
    /// connection. Two sockets may share a local address (one ephemeral port used towards two
    /// destinations), so the match is on both ends, not the address alone.
    fn peer_name(&self, sock: &Sock) -> Option<String> {
        let addr = |a: io::Result<socket2::SockAddr>| a.ok().and_then(|a| a.as_socket());
        let (peer, local) = (
            addr(sock.socket().peer_addr())?,
            addr(sock.socket().local_addr())?,
        );
        let exact = self.order.iter().find(|n| {
            self.socks.get(*n).is_some_and(|s| {
                !s.listener
                    && addr(s.socket().local_addr()) == Some(peer)
                    && addr(s.socket().peer_addr()) == Some(local)
            })
        });
        Some(
            exact
                .cloned()
                .or_else(|| self.name_of.get(&peer).cloned())
                .unwrap_or_else(|| unnamed(peer)),
        )
    }
}

/// An address no socket of the scenario owns (a proxy's upstream side, say), with its
/// ephemeral port hidden so that traces stay the same from run to run.
fn unnamed(addr: SocketAddr) -> String {
    format!("{}:*", addr.ip())
}

struct Background {
    line: u32,
    statement: String,
    /// The start statement's own expectation (`recv c 5 &h == "hello"`), checked when it ends.
    step: Step,
    task: JoinHandle<(Actual, Duration)>,
    waited: bool,
    checked_pending: bool,
}

/// What a finished run leaves behind.
pub(crate) struct Ended {
    pub(crate) status: Status,
    pub(crate) trace: Trace,
    /// The scenario's names for addresses, for rendering the capture.
    pub(crate) names: BTreeMap<SocketAddr, String>,
    /// Both ends of every connection the scenario's sockets had.
    pub(crate) connections: Vec<(SocketAddr, SocketAddr)>,
}

pub(crate) struct Exec<'a> {
    scenario: &'a Scenario,
    state: Shared,
    services: Services,
    capture: Option<Rc<RefCell<LiveCapture>>>,
    handles: HashMap<String, Background>,
    trace: Trace,
    timeout: Duration,
    tolerance: Tolerance,
    start: Instant,
    /// The scenario's hosts and links, where it has any.
    network: Option<Rc<RefCell<crate::network::Network>>>,
}

impl<'a> Exec<'a> {
    /// Runs the scenario's sockets on these hosts.
    pub(crate) fn with_network(
        mut self,
        network: Option<Rc<RefCell<crate::network::Network>>>,
    ) -> Self {
        self.network = network;
        self
    }

    pub(crate) fn new(
        scenario: &'a Scenario,
        timeout: Duration,
        tolerance: Tolerance,
        capture: Option<Rc<RefCell<LiveCapture>>>,
        services: Services,
    ) -> Self {
        Exec {
            scenario,
            state: Shared::default(),
            capture,
            services,
            handles: HashMap::new(),
            trace: Trace::default(),
            timeout,
            tolerance,
            start: Instant::now(),
            network: None,
        }
    }

    pub(crate) async fn run(mut self) -> Ended {
        let drain = self
            .capture
            .clone()
            .map(|c| tokio::task::spawn_local(drain_continuously(c)));
        let mut status = Status::Passed;
        for step in &self.scenario.steps {
            let done = tokio::select! {
                biased;
                () = super::interrupt::wait() => None,
                r = self.step(step) => Some(r),
            };
            let Some(r) = done else {
                status =
                    Status::Skipped(format!("{} at line {}", super::INTERRUPTED, line_of(step)));
                break;
            };
            if let Err(f) = r.and_then(|()| self.check_targets(step)) {
                status = Status::Failed(f);
                break;
            }
        }
        if matches!(status, Status::Passed) {
            if let Err(f) = self.finish().await {
                status = Status::Failed(f);
            }
        }
        for (_, bg) in self.handles.drain() {
            bg.task.abort();
        }
        // Let the cancelled tasks go, then close what is left in a fixed order.
        tokio::task::yield_now().await;
        let order = std::mem::take(&mut self.state.borrow_mut().order);
        for name in order {
            let Some(sock) = self.state.borrow_mut().remove(&name) else {
                continue;
            };
            // If the other end is the scenario's too, let it take in this close before the next
            // one: under load the kernel may defer loopback delivery, and two closes crossing
            // on the wire would make the capture differ from run to run.
            let peer = connected_peer(&sock, &self.state.borrow().socks);
            drop(sock);
            // Over links, what the close sent (a FIN, the RSTs of a listener's queue) takes
            // its time to arrive: the next close waits for the wire to carry it.
            let mut settle_max = CLOSE_SETTLE_MAX;
            if let Some(net) = &self.network {
                let net = net.clone();
                network::quiet(&net).await;
                settle_max = CLOSE_SETTLE_LINKED;
            }
            if let Some(peer) = peer {
                let deadline = Instant::now() + settle_max;
                while sock::state(&peer).is_ok_and(|s| s == "ESTABLISHED")
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        // Servers go last, after their clients have closed, and never outlive the scenario.
        let targets: Vec<_> = self.state.borrow_mut().targets.drain().collect();
        for (name, t) in &targets {
            if let Target::Process(p) = &mut *t.borrow_mut() {
                p.terminate(target::TERM_GRACE);
                if let Status::Failed(f) = &mut status {
                    let tail = p.output_tail(20);
                    let shown = f
                        .detail
                        .as_ref()
                        .is_some_and(|d| d.contains(&format!("output of {name} ")));
                    if !tail.is_empty() && !shown {
                        let d = f.detail.get_or_insert_with(String::new);
                        if !d.is_empty() {
                            d.push('\n');
                        }
                        d.push_str(&format!("output of {name} (last lines):\n{tail}"));
                    }
                }
            }
        }
        drop(targets);
        if let Some(cap) = &self.capture {
            if let Some(d) = drain {
                d.abort();
            }
            settle(cap).await;
        }
        let names = self
            .state
            .borrow()
            .name_of
            .iter()
            .map(|(a, n)| (*a, n.clone()))
            .collect();
        let connections = std::mem::take(&mut self.state.borrow_mut().connections);
        Ended {
            status,
            trace: self.trace,
            names,
            connections,
        }
    }

    fn record(&mut self, step: &Step, outcome: Outcome, at: Instant, elapsed: Duration) {
        self.trace.events.push(Event {
            line: line_of(step),
            statement: statement_text(step),
            outcome,
            at_us: at.duration_since(self.start),
            elapsed_us: elapsed,
        });
    }

    fn fail(&self, step: &Step, m: Mismatch) -> Failure {
        Failure {
            kind: m.kind,
            line: line_of(step),
            statement: step
                .origin
                .as_ref()
                .map_or_else(|| step.to_string(), |o| o.text.clone()),
            expected: m.expected,
            actual: m.actual,
            detail: m.detail,
        }
    }

    async fn step(&mut self, step: &Step) -> Result<(), Failure> {
        let at = Instant::now();
        match &step.statement {
            Statement::Wait { handle } => return self.wait(step, handle).await,
            Statement::ExpectPending { handle, duration } => {
                return self.expect_pending(step, handle, *duration).await
            }
            Statement::ExpectProperty {
                subject,
                property,
                op,
                value,
            } => {
                return self
                    .expect_property(step, subject, *property, *op, value)
                    .await
            }
            Statement::ExpectTarget { target, running } => {
                return self.expect_target(step, target, *running).await
            }
            Statement::ExpectWire {
                from,
                to,
                measure,
                op,
                value,
            } => return self.expect_wire(step, from, to, measure, *op, *value).await,
            Statement::Wire(w) => return self.wire_statement(step, w).await,
            _ => {}
        }
        // `sleep` is deliberate waiting, not a blocking call: the deadline does not apply.
        let deadline = match step.statement {
            // A target's start is bounded by its own `ready=`.
            Statement::Sleep { .. } | Statement::Target { .. } => None,
            _ => Some(at + self.timeout),
        };
        let timeout = self.timeout;
        let fut = match self.start(&step.statement) {
            Ok(fut) => fut,
            // Finished on the spot; in the background it still gets its handle.
            Err(actual) if step.background.is_some() => Box::pin(std::future::ready(actual)),
            Err(actual) => return self.conclude(step, &actual, at, at.elapsed()),
        };
        let bounded = async move {
            let actual = match deadline {
                Some(d) => tokio::time::timeout_at(d.into(), fut)
                    .await
                    .unwrap_or(Actual::TimedOut(timeout)),
                None => fut.await,
            };
            // Measured from the statement's start, not from the task's first poll.
            (actual, at.elapsed())
        };
        if let Some(handle) = &step.background {
            let task = tokio::task::spawn_local(bounded);
            self.handles.insert(
                handle.clone(),
                Background {
                    line: line_of(step),
                    statement: statement_text(step),
                    step: step.clone(),
                    task,
                    waited: false,
                    checked_pending: false,
                },
            );
            self.record(
                step,
                Outcome::Started {
                    handle: handle.clone(),
                },
                at,
                Duration::ZERO,
            );
            // Let it run up to its first wait, as a program's thread would.
            tokio::task::yield_now().await;
            return Ok(());
        }
        let (actual, elapsed) = bounded.await;
        self.conclude(step, &actual, at, elapsed)
    }

    /// Records a finished statement and checks its expectation.
    fn conclude(
        &mut self,
        step: &Step,
        actual: &Actual,
        at: Instant,
        elapsed: Duration,
    ) -> Result<(), Failure> {
        self.record(step, outcome_of(actual), at, elapsed);
        self.expect_again(step, actual, elapsed)
    }

    /// Checks `step`'s expectation against `actual`.
    fn expect_again(&self, step: &Step, actual: &Actual, elapsed: Duration) -> Result<(), Failure> {
        let expect = step.expect.as_ref();
        let state = self.state.clone();
        check_result(expect.and_then(|e| e.result.as_ref()), actual, |s| {
            state.borrow().sent.get(s).cloned().unwrap_or_default()
        })
        .map_err(|m| self.fail(step, m))?;
        if let Some(d) = expect.and_then(|e| e.within) {
            if !self.tolerance.within(elapsed, d) {
                return Err(self.fail(
                    step,
                    Mismatch {
                        kind: FailureKind::Timing,
                        expected: format!(
                            "within {} (+{} tolerance)",
                            Dur(d),
                            fmt_ms(self.tolerance.slack(d))
                        ),
                        actual: format!("{} after {}", actual.describe(), fmt_ms(elapsed)),
                        detail: None,
                    },
                ));
            }
        }
        Ok(())
    }

    fn endpoint(&self, e: &Endpoint) -> io::Result<SocketAddr> {
        match e {
            Endpoint::Addr(a) => Ok(*a),
            Endpoint::Name(n) => self
                .state
                .borrow()
                .addr_of
                .get(n)
                .copied()
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF)),
        }
    }
}

/// The scenario's socket at the other end of `sock`'s connection, if there is one.
fn connected_peer(sock: &Sock, socks: &HashMap<String, Rc<Sock>>) -> Option<Rc<Sock>> {
    let addr = |a: io::Result<socket2::SockAddr>| a.ok().and_then(|a| a.as_socket());
    let (local, peer) = (
        addr(sock.socket().local_addr())?,
        addr(sock.socket().peer_addr())?,
    );
    socks
        .values()
        .find(|s| {
            !s.listener
                && addr(s.socket().local_addr()) == Some(peer)
                && addr(s.socket().peer_addr()) == Some(local)
        })
        .cloned()
}

fn outcome_of(actual: &Actual) -> Outcome {
    match actual {
        Actual::Done(detail) => Outcome::Ok {
            detail: detail.clone(),
        },
        Actual::Sent { count, start } => Outcome::Sent {
            count: *count,
            start: *start,
        },
        Actual::Read { data, start, eof } => Outcome::Received {
            count: data.len() as u64,
            start: *start,
            preview: preview(data, PREVIEW),
            eof: *eof,
        },
        Actual::Eof { data, .. } if data.is_empty() => Outcome::Eof,
        Actual::Eof { data, start } => Outcome::Received {
            count: data.len() as u64,
            start: *start,
            preview: preview(data, PREVIEW),
            eof: true,
        },
        Actual::Failed(e) => Outcome::Error { errno: errno_of(e) },
        Actual::TimedOut(d) => Outcome::TimedOut { after: *d },
        Actual::Broken(message) | Actual::Exited(message, _) | Actual::Internal(message) => {
            Outcome::Problem {
                message: message.clone(),
            }
        }
    }
}

fn line_of(step: &Step) -> u32 {
    step.origin.as_ref().map_or(0, |o| o.line)
}

fn statement_text(step: &Step) -> String {
    let text = step.to_string();
    if text.chars().count() <= MAX_STATEMENT {
        return text;
    }
    let cut: String = text.chars().take(MAX_STATEMENT - 3).collect();
    format!("{cut}...")
}

fn fmt_ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

use capture::{drain_continuously, settle};
