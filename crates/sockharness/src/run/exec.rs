//! The interpreter: plays a scenario's statements on real sockets, in order, on one thread.

// A `Failure` ends the scenario: it is made once per run, so its size does not matter, and
// boxing it would only add noise to every `?`.
#![allow(clippy::result_large_err)]

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
/// The longest the end of a scenario waits for one close to reach the other end.
const CLOSE_SETTLE_MAX: Duration = Duration::from_millis(200);
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
}

type Shared = Rc<RefCell<State>>;

impl State {
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
}

impl<'a> Exec<'a> {
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
        }
    }

    pub(crate) async fn run(mut self) -> Ended {
        let drain = self
            .capture
            .clone()
            .map(|c| tokio::task::spawn_local(drain_continuously(c)));
        let mut status = Status::Passed;
        for step in &self.scenario.steps {
            if let Err(f) = self
                .step(step)
                .await
                .and_then(|()| self.check_targets(step))
            {
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
        let (socks, order) = {
            let mut st = self.state.borrow_mut();
            (std::mem::take(&mut st.socks), std::mem::take(&mut st.order))
        };
        let mut socks = socks;
        for name in order {
            let Some(sock) = socks.remove(&name) else {
                continue;
            };
            // If the other end is the scenario's too, let it take in this close before the next
            // one: under load the kernel may defer loopback delivery, and two closes crossing
            // on the wire would make the capture differ from run to run.
            let peer = connected_peer(&sock, &socks);
            drop(sock);
            if let Some(peer) = peer {
                let deadline = Instant::now() + CLOSE_SETTLE_MAX;
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
            settle(&mut cap.borrow_mut());
        }
        let names = self
            .state
            .borrow()
            .name_of
            .iter()
            .map(|(a, n)| (*a, n.clone()))
            .collect();
        Ended {
            status,
            trace: self.trace,
            names,
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

    async fn wait(&mut self, step: &Step, handle: &str) -> Result<(), Failure> {
        let at = Instant::now();
        let Some(bg) = self.handles.get_mut(handle) else {
            return Err(self.fail(
                step,
                Mismatch {
                    kind: FailureKind::Background,
                    expected: format!("background statement `{handle}`"),
                    actual: "it never started (an earlier statement failed to start it)".into(),
                    detail: None,
                },
            ));
        };
        bg.waited = true;
        // The task enforces its own deadline; this bound only guards against a bug in that.
        let guard = self.timeout + Duration::from_secs(1);
        let (actual, elapsed) = match tokio::time::timeout(guard, &mut bg.task).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => (
                Actual::Failed(io::Error::other(e.to_string())),
                at.elapsed(),
            ),
            Err(_) => (Actual::TimedOut(guard), guard),
        };
        let started = bg.step.clone();
        self.conclude(step, &actual, at, elapsed)?;
        if started.expect.is_some() {
            // Already recorded by this `wait`; only the start statement's expectation is left.
            self.expect_again(&started, &actual, elapsed)?;
        }
        Ok(())
    }

    async fn expect_pending(
        &mut self,
        step: &Step,
        handle: &str,
        d: Option<Duration>,
    ) -> Result<(), Failure> {
        let at = Instant::now();
        // Even "now" gives the runtime a moment to hear from the kernel, so a statement the
        // kernel has already finished (a refused connect) is not taken for pending.
        let wait = d.map_or(SETTLE, |d| self.tolerance.pending_wait(d).max(SETTLE));
        tokio::time::sleep(wait).await;
        let Some(bg) = self.handles.get_mut(handle) else {
            return Err(self.fail(
                step,
                Mismatch {
                    kind: FailureKind::Background,
                    expected: "pending".into(),
                    actual: format!("`{handle}` never started"),
                    detail: None,
                },
            ));
        };
        if bg.waited {
            return Err(self.fail(
                step,
                Mismatch {
                    kind: FailureKind::Timing,
                    expected: format!("`{handle}` still pending"),
                    actual: "it already finished: it was waited for earlier".into(),
                    detail: None,
                },
            ));
        }
        if bg.task.is_finished() {
            bg.waited = true;
            let elapsed = at.elapsed();
            let (actual, took) = match (&mut bg.task).await {
                Ok(done) => done,
                Err(e) => (Actual::Failed(io::Error::other(e.to_string())), elapsed),
            };
            let value = format!("finished: {}", outcome_of(&actual).render());
            self.record(step, Outcome::Observed { value }, at, elapsed);
            return Err(self.fail(
                step,
                Mismatch {
                    kind: FailureKind::Timing,
                    expected: format!("`{handle}` still pending"),
                    actual: format!("finished after {}: {}", fmt_ms(took), actual.describe()),
                    detail: None,
                },
            ));
        }
        bg.checked_pending = true;
        self.record(step, Outcome::Pending, at, at.elapsed());
        Ok(())
    }

    /// Fails at `step` if a target process exited without the script stopping it.
    fn check_targets(&self, step: &Step) -> Result<(), Failure> {
        let st = self.state.borrow();
        let mut names: Vec<_> = st.targets.keys().cloned().collect();
        names.sort();
        for name in names {
            let Some(t) = st.targets.get(&name) else {
                continue;
            };
            let mut t = t.borrow_mut();
            let p = match &mut *t {
                Target::Process(p) => p,
                Target::Builtin {
                    task: Some(task), ..
                } if task.is_finished() => {
                    return Err(self.fail(
                        step,
                        Mismatch {
                            kind: FailureKind::Target {
                                code: None,
                                signal: None,
                            },
                            expected: format!("target {name} running"),
                            actual: format!(
                                "{name} exited (its server's task ended) during this statement"
                            ),
                            detail: None,
                        },
                    ));
                }
                _ => continue,
            };
            if p.ended_by_script {
                continue;
            }
            if let Some(status) = p.exited() {
                let tail = p.output_tail(20);
                return Err(self.fail(
                    step,
                    Mismatch {
                        kind: FailureKind::target_exited(status),
                        expected: format!("target {name} running"),
                        actual: format!("{name} exited ({status}) during this statement"),
                        detail: (!tail.is_empty())
                            .then(|| format!("output of {name} (last lines):\n{tail}")),
                    },
                ));
            }
        }
        Ok(())
    }

    async fn expect_target(
        &mut self,
        step: &Step,
        name: &str,
        running: bool,
    ) -> Result<(), Failure> {
        let at = Instant::now();
        let settle = self.tolerance.slack(Duration::ZERO).min(self.timeout);
        loop {
            let state = self
                .state
                .borrow()
                .targets
                .get(name)
                .map(|t| t.borrow_mut().is_running());
            let now_running = state.unwrap_or(false);
            if now_running == running || at.elapsed() >= settle {
                let value = format!(
                    "{name} is {}",
                    if now_running { "running" } else { "exited" }
                );
                self.record(
                    step,
                    Outcome::Observed {
                        value: value.clone(),
                    },
                    at,
                    at.elapsed(),
                );
                if now_running == running {
                    // The script has seen it exit: that exit is expected from now on.
                    if let Some(t) = self.state.borrow().targets.get(name) {
                        if let Target::Process(p) = &mut *t.borrow_mut() {
                            p.ended_by_script |= !running;
                        }
                    }
                    return Ok(());
                }
                return Err(self.fail(
                    step,
                    Mismatch {
                        kind: FailureKind::Target {
                            code: None,
                            signal: None,
                        },
                        expected: format!("{name} {}", if running { "running" } else { "exited" }),
                        actual: value,
                        detail: None,
                    },
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn expect_wire(
        &mut self,
        step: &Step,
        from: &str,
        to: &str,
        measure: &WireMeasure,
        op: CompareOp,
        value: u64,
    ) -> Result<(), Failure> {
        let at = Instant::now();
        let what = match measure {
            WireMeasure::Count(flags) if flags.is_empty() => "segments".to_string(),
            WireMeasure::Count(flags) => format!("{flags} segments"),
            WireMeasure::Bytes => "payload bytes".to_string(),
        };
        let (src, dst) = {
            let st = self.state.borrow();
            (st.addr_of.get(from).copied(), st.addr_of.get(to).copied())
        };
        let (Some(src), Some(dst), Some(cap)) = (src, dst, self.capture.clone()) else {
            return Err(self.fail(
                step,
                Mismatch {
                    kind: FailureKind::Wire,
                    expected: format!("{what} from {from} to {to}"),
                    actual: "no capture, or one of the names has no address yet".into(),
                    detail: None,
                },
            ));
        };
        // Segments are captured as they cross loopback, but retransmissions and delayed ACKs
        // come later: the count gets until the tolerance to reach the expected value.
        let settle = self.tolerance.slack(Duration::ZERO).min(self.timeout);
        loop {
            let got = {
                let mut c = cap.borrow_mut();
                let _ = c.drain();
                let wire = decode(&Capture {
                    link: LinkType::Ethernet,
                    packets: c.packets().to_vec(),
                });
                match measure {
                    WireMeasure::Count(flags) => wire.count(src, dst, flags),
                    WireMeasure::Bytes => wire.bytes(src, dst),
                }
            };
            let holds = op.holds(&got, &value);
            if holds || at.elapsed() >= settle {
                let observed = format!("{got} {what} {from} -> {to}");
                self.record(
                    step,
                    Outcome::Observed {
                        value: observed.clone(),
                    },
                    at,
                    at.elapsed(),
                );
                if holds {
                    return Ok(());
                }
                return Err(self.fail(
                    step,
                    Mismatch {
                        kind: FailureKind::Wire,
                        expected: format!("{what} {from} -> {to} {} {value}", op.symbol()),
                        actual: format!("{observed} captured"),
                        detail: None,
                    },
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn expect_property(
        &mut self,
        step: &Step,
        subject: &str,
        property: Property,
        op: CompareOp,
        value: &Value,
    ) -> Result<(), Failure> {
        let at = Instant::now();
        // The kernel finishes some work (the last ACK of a handshake, a FIN) just after the call
        // that caused it returns, so a property gets until the tolerance to settle.
        let settle = self.tolerance.slack(Duration::ZERO).min(self.timeout);
        loop {
            let evaluated = {
                let st = self.state.borrow();
                let left = property_value(&st, subject, property);
                let right = match value {
                    Value::Number(n) => Ok(Prop::Num(*n)),
                    Value::Name(n) if property == Property::State => Ok(Prop::Text(n.clone())),
                    Value::Name(n) => st
                        .addr_of
                        .get(n)
                        .map(|a| Prop::Addr(*a))
                        .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF)),
                    Value::Addr(a) => Ok(Prop::Addr(*a)),
                    Value::Property(n, p) => property_value(&st, n, *p),
                };
                let peer = match property {
                    Property::Peer => st.sock(subject).ok().and_then(|s| st.peer_name(&s)),
                    _ => None,
                };
                (left, right, st.name_of.clone(), peer)
            };
            let (left, right, names, peer) = evaluated;
            let holds = match (&left, &right) {
                (Ok(l), Ok(r)) => l.compare(op, r),
                _ => false,
            };
            if holds || at.elapsed() >= settle {
                let shown = |v: &io::Result<Prop>| match v {
                    Ok(p) => p.show(&names),
                    Err(e) => errno_of(e),
                };
                let outcome = match &left {
                    // Descriptor numbers depend on what else the process has open.
                    Ok(_) if property == Property::Fd => Outcome::Observed {
                        value: format!("{subject}.fd is fd({subject})"),
                    },
                    Ok(_) => Outcome::Observed {
                        value: format!(
                            "{subject}.{} is {}",
                            property.name(),
                            peer.clone().unwrap_or_else(|| shown(&left))
                        ),
                    },
                    Err(e) => Outcome::Error { errno: errno_of(e) },
                };
                self.record(step, outcome, at, at.elapsed());
                if holds {
                    return Ok(());
                }
                let rhs = match value {
                    Value::Property(..) | Value::Name(_) if property != Property::State => {
                        format!("{value} ({})", shown(&right))
                    }
                    _ => value.to_string(),
                };
                return Err(self.fail(
                    step,
                    Mismatch {
                        kind: FailureKind::Property,
                        expected: format!("{subject}.{} {} {rhs}", property.name(), op.symbol()),
                        actual: format!(
                            "{subject}.{} is {}",
                            property.name(),
                            peer.unwrap_or_else(|| shown(&left))
                        ),
                        detail: None,
                    },
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Checks, at the end, that no background statement was forgotten.
    async fn finish(&mut self) -> Result<(), Failure> {
        if self.handles.values().any(|b| !b.waited) {
            tokio::time::sleep(SETTLE).await;
        }
        let mut pending: Vec<_> = self.handles.iter_mut().filter(|(_, b)| !b.waited).collect();
        pending.sort_by_key(|(_, b)| b.line);
        for (name, bg) in pending {
            let failure = |actual: String| Failure {
                kind: FailureKind::Background,
                line: bg.line,
                statement: bg.statement.clone(),
                expected: format!(
                    "`{name}` finished successfully or checked with `expect {name} pending`"
                ),
                actual,
                detail: None,
            };
            if !bg.task.is_finished() {
                if !bg.checked_pending {
                    return Err(failure("still running at the end of the scenario".into()));
                }
                continue;
            }
            if let Ok((actual, _)) = (&mut bg.task).await {
                if !actual.succeeded() {
                    return Err(failure(format!("{} (never waited for)", actual.describe())));
                }
            }
        }
        Ok(())
    }

    /// Runs a statement's synchronous part now and returns the part that may block.
    fn start(&mut self, statement: &Statement) -> Result<LocalFuture, Actual> {
        let shared = self.state.clone();
        let failed = |e: io::Error| Actual::Failed(e);
        let done = |r: io::Result<()>| -> Result<LocalFuture, Actual> {
            match r {
                Ok(()) => Ok(Box::pin(async { Actual::Done(None) })),
                Err(e) => Err(Actual::Failed(e)),
            }
        };
        match statement {
            Statement::Listen {
                name,
                on,
                backlog,
                opts,
            } => {
                let addr = self.endpoint(on).map_err(failed)?;
                let s = sock::listen(addr, *backlog, opts).map_err(failed)?;
                shared.borrow_mut().register(name, Rc::new(s));
                done(Ok(()))
            }
            Statement::Connect { name, to, opts } => {
                let addr = self.endpoint(to).map_err(failed)?;
                let (s, early) = sock::start_connect(addr, opts).map_err(failed)?;
                let s = Rc::new(s);
                shared.borrow_mut().register(name, s.clone());
                if let Some(e) = early {
                    return Err(Actual::Failed(e));
                }
                let name = name.clone();
                Ok(Box::pin(async move {
                    match sock::finish_connect(&s).await {
                        Ok(()) => {
                            // Registered again: the local address is final only once connected.
                            shared.borrow_mut().register(&name, s);
                            Actual::Done(None)
                        }
                        Err(e) => Actual::Failed(e),
                    }
                }))
            }
            Statement::Accept { listener, name } => {
                let l = shared.borrow().sock(listener).map_err(failed)?;
                let name = name.clone();
                Ok(Box::pin(async move {
                    match sock::accept(&l).await {
                        Ok(s) => {
                            let mut st = shared.borrow_mut();
                            let detail = st.peer_name(&s).map(|p| format!("peer {p}"));
                            st.register(&name, Rc::new(s));
                            Actual::Done(detail)
                        }
                        Err(e) => Actual::Failed(e),
                    }
                }))
            }
            Statement::Send {
                socket,
                data,
                mode,
                call,
            } => {
                let s = shared.borrow().sock(socket).map_err(failed)?;
                let (socket, call, data) = (socket.clone(), *call, data.clone());
                // The offset in the stream is taken at the first byte written, which may come
                // after other background sends on the same socket.
                let offset = |shared: &Shared, socket: &str| {
                    shared
                        .borrow()
                        .sent
                        .get(socket)
                        .map_or(0, |v| v.len() as u64)
                };
                match mode {
                    SendMode::Nowait => {
                        let bytes = data.range(0, ONE_CALL_MAX);
                        let start = offset(&shared, &socket);
                        match sock::write_once(&s, call, &bytes) {
                            Ok(n) => {
                                shared
                                    .borrow_mut()
                                    .sent
                                    .entry(socket)
                                    .or_default()
                                    .extend_from_slice(&bytes[..n]);
                                Err(Actual::Sent {
                                    count: n as u64,
                                    start,
                                })
                            }
                            Err(e) => Err(Actual::Failed(e)),
                        }
                    }
                    SendMode::Blocking { chunk, gap } => {
                        let (chunk, gap) = (*chunk, *gap);
                        Ok(Box::pin(async move {
                            if chunk.is_some() {
                                // Each piece must leave as its own segment, not wait for Nagle.
                                if let Err(e) = s.socket().set_tcp_nodelay(true) {
                                    return Actual::Failed(e);
                                }
                            }
                            // Without chunk=, pieces only bound memory: the data is produced
                            // as it is written, so the deadline can stop a large send.
                            let piece = chunk.unwrap_or(SEND_PIECE).max(1);
                            let mut start = None;
                            let mut written = 0u64;
                            let mut at = 0;
                            while at < data.len() {
                                if at > 0 && chunk.is_some() {
                                    if let Some(g) = gap {
                                        tokio::time::sleep(g).await;
                                    }
                                }
                                let bytes = data.range(at, at.saturating_add(piece));
                                at += bytes.len() as u64;
                                let r = sock::write_all(&s, call, &bytes, |done| {
                                    start.get_or_insert_with(|| offset(&shared, &socket));
                                    written += done.len() as u64;
                                    shared
                                        .borrow_mut()
                                        .sent
                                        .entry(socket.clone())
                                        .or_default()
                                        .extend_from_slice(done);
                                })
                                .await;
                                if let Err(e) = r {
                                    return Actual::Failed(e);
                                }
                            }
                            let start = start.unwrap_or_else(|| offset(&shared, &socket));
                            Actual::Sent {
                                count: written,
                                start,
                            }
                        }))
                    }
                }
            }
            Statement::Recv { socket, mode, call } => {
                let s = shared.borrow().sock(socket).map_err(failed)?;
                let (socket, mode, call) = (socket.clone(), mode.clone(), *call);
                if let RecvMode::Once { size, nowait: true } = mode {
                    let mut buf = vec![0; one_call_buffer(size)];
                    let r = sock::read_once(&s, call, &mut buf, false);
                    return Err(read_result(
                        &shared,
                        &socket,
                        &mode,
                        r.map(|n| {
                            buf.truncate(n);
                            (buf, n == 0)
                        }),
                    ));
                }
                Ok(Box::pin(async move {
                    let r = recv(&s, call, &mode).await;
                    read_result(&shared, &socket, &mode, r)
                }))
            }
            Statement::Shutdown { socket, how } => {
                let s = shared.borrow().sock(socket).map_err(failed)?;
                done(sock::shutdown(&s, *how))
            }
            Statement::Close { socket } => {
                let mut st = shared.borrow_mut();
                st.sock(socket).map_err(failed)?;
                st.socks.remove(socket);
                st.closed.insert(socket.clone());
                done(Ok(()))
            }
            Statement::Abort { socket } => {
                let mut st = shared.borrow_mut();
                let s = st.sock(socket).map_err(failed)?;
                s.socket()
                    .set_linger(Some(Duration::ZERO))
                    .map_err(failed)?;
                st.socks.remove(socket);
                st.closed.insert(socket.clone());
                done(Ok(()))
            }
            Statement::Set { socket, opts } => {
                let s = shared.borrow().sock(socket).map_err(failed)?;
                done(sock::apply_opts(s.socket(), opts))
            }
            Statement::Sleep { duration } => {
                let d = *duration;
                Ok(Box::pin(async move {
                    tokio::time::sleep(d).await;
                    Actual::Done(None)
                }))
            }
            Statement::Target { name, source } => self.start_target(name, source),
            Statement::Proxy { name, to, faults } => {
                let upstream = self.endpoint(&Endpoint::Name(to.clone())).map_err(failed)?;
                let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .and_then(tokio::net::TcpListener::from_std)
                    .map_err(failed)?;
                let addr = listener.local_addr().map_err(failed)?;
                let faults: crate::proxy::Faults = Rc::new(RefCell::new(faults.clone()));
                let task = tokio::task::spawn_local(crate::proxy::serve(
                    listener,
                    upstream,
                    faults.clone(),
                    None,
                ));
                let mut st = shared.borrow_mut();
                st.addr_of.insert(name.clone(), addr);
                st.name_of.insert(addr, name.clone());
                st.targets.insert(
                    name.clone(),
                    Rc::new(RefCell::new(Target::Builtin {
                        task: Some(task),
                        port: addr.port(),
                    })),
                );
                st.proxies.insert(name.clone(), faults);
                done(Ok(()))
            }
            Statement::SetFaults { proxy, faults } => {
                let st = shared.borrow();
                let Some(current) = st.proxies.get(proxy) else {
                    return Err(Actual::Broken(format!("`{proxy}` is not a proxy")));
                };
                *current.borrow_mut() = faults.clone();
                done(Ok(()))
            }
            Statement::Stop { target } | Statement::Kill { target } => {
                let signal = if matches!(statement, Statement::Stop { .. }) {
                    libc::SIGTERM
                } else {
                    libc::SIGKILL
                };
                let t = shared.borrow().targets.get(target).cloned();
                let Some(t) = t else {
                    return Err(Actual::Failed(io::Error::from_raw_os_error(libc::EBADF)));
                };
                let process = match &mut *t.borrow_mut() {
                    Target::Process(p) => {
                        p.ended_by_script = true;
                        p.signal(signal);
                        true
                    }
                    Target::Builtin { task, .. } => {
                        if let Some(task) = task.take() {
                            task.abort();
                        }
                        false
                    }
                    Target::At => {
                        return Err(Actual::Broken(format!(
                            "{target} was not started by this scenario, so it cannot be stopped"
                        )))
                    }
                };
                if !process {
                    return done(Ok(()));
                }
                Ok(Box::pin(async move {
                    while t.borrow_mut().is_running() {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Actual::Done(None)
                }))
            }
            Statement::Wait { .. }
            | Statement::ExpectPending { .. }
            | Statement::ExpectProperty { .. }
            | Statement::ExpectWire { .. }
            | Statement::ExpectTarget { .. } => {
                unreachable!("handled by Exec::step before start() is called")
            }
        }
    }

    /// Starts a target; the part that may block waits for it to listen.
    fn start_target(&mut self, name: &str, source: &TargetSource) -> Result<LocalFuture, Actual> {
        let shared = self.state.clone();
        let register = |addr: SocketAddr, t: Target| {
            let mut st = shared.borrow_mut();
            st.addr_of.insert(name.to_string(), addr);
            st.name_of.insert(addr, name.to_string());
            let t = Rc::new(RefCell::new(t));
            st.targets.insert(name.to_string(), t.clone());
            t
        };
        if let Some(service) = self.services.get(name).cloned() {
            let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .and_then(tokio::net::TcpListener::from_std)
                .map_err(Actual::Failed)?;
            let addr = listener.local_addr().map_err(Actual::Failed)?;
            let task = tokio::task::spawn_local(async move {
                let mut connections = tokio::task::JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    connections.spawn_local(service(stream));
                    while connections.try_join_next().is_some() {}
                }
            });
            register(
                addr,
                Target::Builtin {
                    task: Some(task),
                    port: addr.port(),
                },
            );
            return Ok(Box::pin(async {
                Actual::Done(Some("in-process service".into()))
            }));
        }
        match source {
            TargetSource::At(addr) => {
                register(*addr, Target::At);
                Ok(Box::pin(async { Actual::Done(None) }))
            }
            TargetSource::Builtin(server) => {
                if !crate::servers::is_bundled(server) {
                    let e = crate::servers::UnknownServer(server.clone());
                    return Err(Actual::Failed(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        e.to_string(),
                    )));
                }
                let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .and_then(tokio::net::TcpListener::from_std)
                    .map_err(Actual::Failed)?;
                let addr = listener.local_addr().map_err(Actual::Failed)?;
                let server = server.clone();
                let task = tokio::task::spawn_local(async move {
                    // Checked above: the name is bundled, so this never fails.
                    let _ = crate::servers::serve(&server, listener).await;
                });
                register(
                    addr,
                    Target::Builtin {
                        task: Some(task),
                        port: addr.port(),
                    },
                );
                Ok(Box::pin(async { Actual::Done(None) }))
            }
            TargetSource::Cmd { command, ready } => {
                let port = target::free_port().map_err(Actual::Failed)?;
                let process = Process::spawn(command, port).map_err(Actual::Failed)?;
                let t = register(target::cmd_addr(port), Target::Process(process));
                let ready = ready.unwrap_or(target::DEFAULT_READY);
                let name = name.to_string();
                Ok(Box::pin(async move {
                    let start = Instant::now();
                    loop {
                        if target::listening(port) {
                            return Actual::Done(Some("listening".into()));
                        }
                        if let Target::Process(p) = &mut *t.borrow_mut() {
                            if let Some(status) = p.exited() {
                                p.ended_by_script = true;
                                return Actual::Broken(format!(
                                    "{name} exited ({status}) before it listened on its port"
                                ));
                            }
                        }
                        if start.elapsed() >= ready {
                            return Actual::Broken(format!(
                                "{name} did not listen on its port within {}",
                                Dur(ready)
                            ));
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }))
            }
        }
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

/// Drains the capture until no frame has come for [`CLOSE_QUIET`] (at most
/// [`CLOSE_SETTLE_MAX`]). The closing segments cross loopback at once, and the answers to them (a
/// FIN's ACK, a RST) as a rule within microseconds, later only when the kernel defers delivery
/// under load; waiting for quiet rather than a fixed pause costs little where nothing is late.
/// The thread sleeps rather than the runtime, whose timer counts whole milliseconds.
fn settle(cap: &mut LiveCapture) {
    let deadline = Instant::now() + CLOSE_SETTLE_MAX;
    let _ = cap.drain();
    loop {
        let seen = cap.packets().len();
        std::thread::sleep(CLOSE_QUIET);
        let _ = cap.drain();
        if cap.packets().len() == seen || Instant::now() >= deadline {
            return;
        }
    }
}

/// Moves captured frames out of the kernel's buffer as they arrive, so a long transfer cannot
/// overflow it between checks.
async fn drain_continuously(cap: Rc<RefCell<LiveCapture>>) {
    let fd = BorrowedRaw(cap.borrow().raw_fd());
    // SAFETY: the descriptor belongs to the LiveCapture, which `cap` keeps alive for as long as
    // this future (and so the AsyncFd inside it) exists.
    let Ok(io) = (unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    }) else {
        return;
    };
    loop {
        let Ok(mut guard) = io.readable().await else {
            return;
        };
        if cap.borrow_mut().drain().is_err() {
            return;
        }
        guard.clear_ready();
    }
}

/// A descriptor owned elsewhere, for registering with the runtime.
struct BorrowedRaw(std::os::fd::RawFd);

impl std::os::fd::AsRawFd for BorrowedRaw {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
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

/// The buffer for one read call. A socket never holds more than its receive buffer, so past
/// [`ONE_CALL_MAX`] a larger buffer would change nothing but the memory used.
fn one_call_buffer(size: u64) -> usize {
    usize::try_from(size.min(ONE_CALL_MAX)).unwrap_or(usize::MAX)
}

/// Reads per `mode`; the flag says whether the stream ended.
async fn recv(
    s: &Sock,
    call: crate::script::IoCall,
    mode: &RecvMode,
) -> io::Result<(Vec<u8>, bool)> {
    match mode {
        RecvMode::Once { size, .. } => {
            let mut buf = vec![0; one_call_buffer(*size)];
            let n = sock::read_blocking(s, call, &mut buf, false).await?;
            buf.truncate(n);
            Ok((buf, n == 0))
        }
        RecvMode::Exact(n) => {
            let want = usize::try_from(*n).unwrap_or(usize::MAX);
            let mut out = Vec::with_capacity(want.min(64 << 20));
            let mut buf = vec![0; READ_CHUNK.min(want)];
            while out.len() < want {
                let k = (want - out.len()).min(buf.len());
                let got = sock::read_blocking(s, call, &mut buf[..k], false).await?;
                if got == 0 {
                    return Ok((out, true));
                }
                out.extend_from_slice(&buf[..got]);
            }
            Ok((out, false))
        }
        RecvMode::Until(delim) => read_until(s, call, delim).await,
        RecvMode::All => {
            let mut out = Vec::new();
            let mut buf = vec![0; READ_CHUNK];
            loop {
                let got = sock::read_blocking(s, call, &mut buf, false).await?;
                if got == 0 {
                    return Ok((out, true));
                }
                out.extend_from_slice(&buf[..got]);
            }
        }
    }
}

/// Reads up to and including `delim`, never past it: it peeks first and then takes only what
/// belongs to this statement, so the next statement finds the rest.
async fn read_until(
    s: &Sock,
    call: crate::script::IoCall,
    delim: &Data,
) -> io::Result<(Vec<u8>, bool)> {
    let delim = delim.bytes();
    let mut out: Vec<u8> = Vec::new();
    let mut buf = vec![0; READ_CHUNK];
    loop {
        let peeked = sock::read_blocking(s, call, &mut buf, true).await?;
        if peeked == 0 {
            return Ok((out, true));
        }
        let from = out.len().saturating_sub(delim.len() - 1);
        let mut joined = out[from..].to_vec();
        joined.extend_from_slice(&buf[..peeked]);
        let take = match joined
            .windows(delim.len())
            .position(|w| w == delim.as_slice())
        {
            Some(i) => from + i + delim.len() - out.len(),
            None => peeked,
        };
        let got = sock::read_once(s, call, &mut buf[..take], false)?;
        out.extend_from_slice(&buf[..got]);
        if out.ends_with(&delim) && got == take {
            return Ok((out, false));
        }
    }
}

/// The result of a read. `all` ends at EOF by design; `exact` and `until` ended by EOF were cut
/// short, and their result is `EOF` (with what came before it).
fn read_result(
    shared: &Shared,
    socket: &str,
    mode: &RecvMode,
    r: io::Result<(Vec<u8>, bool)>,
) -> Actual {
    match r {
        Ok((data, eof)) => {
            let mut st = shared.borrow_mut();
            let offset = st.received.entry(socket.to_string()).or_default();
            let start = *offset;
            *offset += data.len() as u64;
            match mode {
                _ if eof && data.is_empty() => Actual::Eof { data, start },
                RecvMode::All => Actual::Read { data, start, eof },
                _ if eof => Actual::Eof { data, start },
                _ => Actual::Read {
                    data,
                    start,
                    eof: false,
                },
            }
        }
        Err(e) => Actual::Failed(e),
    }
}

/// A property's value.
#[derive(Debug, Clone, PartialEq)]
enum Prop {
    Num(u64),
    Text(String),
    Addr(SocketAddr),
}

impl Prop {
    fn compare(&self, op: CompareOp, other: &Prop) -> bool {
        match (self, other) {
            (Prop::Num(a), Prop::Num(b)) => op.holds(a, b),
            _ => match op {
                CompareOp::Eq => self == other,
                CompareOp::Ne => self != other,
                _ => false,
            },
        }
    }

    fn show(&self, names: &HashMap<SocketAddr, String>) -> String {
        match self {
            Prop::Num(n) => n.to_string(),
            Prop::Text(t) => t.clone(),
            Prop::Addr(a) => names.get(a).cloned().unwrap_or_else(|| unnamed(*a)),
        }
    }
}

fn property_value(st: &State, name: &str, p: Property) -> io::Result<Prop> {
    if p == Property::Fds {
        return match st.targets.get(name).map(|t| t.borrow().fds()) {
            Some(Ok(n)) => Ok(Prop::Num(n)),
            Some(Err(e)) => Err(e),
            None => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
    }
    let s = match st.sock(name) {
        Ok(s) => s,
        Err(_) if p == Property::State && st.closed.contains(name) => {
            return Ok(Prop::Text("CLOSED".into()))
        }
        Err(e) => return Err(e),
    };
    let addr = |a: io::Result<socket2::SockAddr>| -> io::Result<Prop> {
        a?.as_socket()
            .map(Prop::Addr)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))
    };
    match p {
        Property::Peer => addr(s.socket().peer_addr()),
        Property::Local => addr(s.socket().local_addr()),
        Property::Fd => Ok(Prop::Num(u64::try_from(s.fd()).unwrap_or(0))),
        Property::State => sock::state(&s).map(|t| Prop::Text(t.into())),
        Property::Queued if s.listener => sock::queued(&s).map(Prop::Num),
        Property::Unread if !s.listener => sock::unread(&s).map(Prop::Num),
        Property::Unsent if !s.listener => sock::unsent(&s).map(Prop::Num),
        _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
    }
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
        Actual::Broken(message) => Outcome::Problem {
            message: message.clone(),
        },
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
