//! The executor: runs a scenario on real kernel TCP sockets.
//!
//! Each scenario runs on the calling thread with its own current-thread tokio runtime, so a
//! scenario's sockets, timers and background statements live and die together. Every blocking
//! statement has a deadline (`timeout`, default 5s); when the scenario ends, passed or failed,
//! every background statement is cancelled and every socket closed.

mod check;
mod exec;
mod failure;
mod interrupt;
mod sock;
pub(crate) mod target;
mod timing;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use failure::{Failure, FailureKind};
pub use interrupt::{interrupt, interrupted};
pub use timing::{
    scale_from_env, Tolerance, DEFAULT_TIMEOUT, DEFAULT_TOLERANCE, RELATIVE, SCALE_VAR,
};

use crate::capture::live::{self, LiveCapture};
use crate::capture::spill::{self, CaptureFile};
use crate::capture::{decode, Capture, LinkType, RenderOptions, WireTrace};
pub use crate::network::link::Counts;
pub use crate::network::LinkCounts;
use crate::network::Network;
use crate::sandbox::{self, Isolation, SandboxError, Support};
use crate::script::{Endpoint, Scenario, Statement, TargetSource, WireStatement};
use crate::trace::Trace;

/// How a scenario ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Every expectation held.
    Passed,
    /// An expectation did not hold.
    Failed(Failure),
    /// The scenario could not run here, for this reason.
    Skipped(String),
}

/// How to run a scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Whether to run in a private network namespace.
    pub isolation: Isolation,
    /// Capture the scenario's packets (only possible when isolated: the capture must see the
    /// scenario's own traffic and nothing else).
    pub capture: bool,
    /// In-process services standing in for the scenario's targets, by target name.
    pub services: Services,
    /// Bytes of frames a capture keeps in memory before it goes on in a file
    /// ([`live::MEMORY`](crate::capture::live::MEMORY) when `None`).
    pub capture_memory: Option<usize>,
    /// Where that file is made (the system's temporary directory when `None`). A saved capture
    /// is linked from there where it can be, so the directory captures are saved in is best.
    pub capture_dir: Option<PathBuf>,
    /// The seed of the links' decisions, in place of the scenario's own `seed` (a run repeated
    /// with the seed a failure report gives meets the same fates).
    pub seed: Option<u64>,
}

/// A Rust service under test: called with every connection accepted on the target's address,
/// inside the scenario's runtime (so the future need not be `Send`).
pub type Service =
    Arc<dyn Fn(tokio::net::TcpStream) -> Pin<Box<dyn Future<Output = ()>>> + Send + Sync>;

/// In-process services by target name: `target web ...` in a scenario is served by the service
/// registered as `web`, whatever the statement says, and no process is started.
///
/// ```
/// use sockharness::run::{run_with, RunOptions, Services, Status};
/// use sockharness::script::parse;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// // The crate's own service: upper-cases what it reads.
/// let services = Services::default().with("app", |mut stream: tokio::net::TcpStream| async move {
///     let mut buf = [0u8; 1024];
///     while let Ok(n) = stream.read(&mut buf).await {
///         if n == 0 || stream.write_all(&buf[..n].to_ascii_uppercase()).await.is_err() {
///             break;
///         }
///     }
/// });
/// let scenario = parse("app.scenario", b"target app builtin echo\nconnect c to app\n\
///     send c \"hi\" chunk=1\nrecv c exact 2 == \"HI\"\n").unwrap();
/// let result = run_with(&scenario, &RunOptions { services, ..RunOptions::default() });
/// assert_eq!(result.status, Status::Passed);
/// ```
#[derive(Clone, Default)]
pub struct Services(Vec<(String, Service)>);

impl Services {
    /// Adds a service for target `name`.
    pub fn with<F, Fut>(mut self, name: &str, service: F) -> Services
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let service: Service = Arc::new(move |stream| Box::pin(service(stream)));
        self.0.push((name.to_string(), service));
        self
    }

    /// The service for target `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<&Service> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(n, _)| n))
            .finish()
    }
}

/// The result of running one scenario.
#[derive(Debug, Clone)]
pub struct ScenarioRun {
    /// Passed, failed or skipped.
    pub status: Status,
    /// What happened, statement by statement, up to the end or the failure.
    pub trace: Trace,
    /// Wall-clock time the run took.
    pub duration: Duration,
    /// Whether the scenario ran in a private network namespace.
    pub isolated: bool,
    /// Every frame on the scenario's loopback, from before the first statement to after the
    /// last, when capture was on. Where the capture outgrew its memory, the frames here are
    /// cut to their headers and `capture_file` has them whole.
    pub capture: Option<Capture>,
    /// The capture's pcap file, where it outgrew its memory.
    pub capture_file: Option<CaptureFile>,
    /// Why capture was off, or what went wrong with it.
    pub capture_note: Option<String>,
    /// The scenario's names for the addresses it used.
    pub names: BTreeMap<SocketAddr, String>,
    /// The seed the links' decisions came from, for a scenario with hosts.
    pub seed: Option<u64>,
    /// What each direction of each link did, for a scenario with hosts.
    pub links: Vec<LinkCounts>,
}

impl ScenarioRun {
    /// The result of a run that panicked (a bug in sockharness, reported as a failure).
    pub fn panicked() -> ScenarioRun {
        ScenarioRun::ended(
            Status::Failed(Failure {
                kind: FailureKind::Internal,
                ..setup_failure(
                    "the scenario to run",
                    "sockharness panicked while running it (a bug; please report it)",
                )
            }),
            Instant::now(),
        )
    }

    fn ended(status: Status, started: Instant) -> ScenarioRun {
        ScenarioRun {
            status,
            trace: Trace::default(),
            duration: started.elapsed(),
            isolated: false,
            capture: None,
            capture_file: None,
            capture_note: None,
            names: BTreeMap::new(),
            seed: None,
            links: Vec::new(),
        }
    }

    /// Writes the capture, every frame whole, as a pcap file at `to`; `false` when there was
    /// no capture.
    pub fn save_capture(&self, to: &Path) -> std::io::Result<bool> {
        let Some(capture) = &self.capture else {
            return Ok(false);
        };
        spill::save(capture, self.capture_file.as_ref(), to).map(|()| true)
    }

    /// The decoded capture, when there is one.
    pub fn wire(&self) -> Option<WireTrace> {
        self.capture.as_ref().map(decode)
    }

    /// The decoded capture as text, endpoints named after the scenario's sockets.
    pub fn render_wire(&self, opts: &RenderOptions) -> Option<String> {
        let names = |a: SocketAddr| self.names.get(&a).cloned();
        self.wire().map(|w| w.render(&names, opts))
    }
}

/// Runs `scenario` with the default options (isolated and captured where possible) and returns
/// its verdict and trace.
///
/// ```
/// use sockharness::{run::{run, Status}, script::parse};
/// let s = parse("doc", b"listen srv\nconnect cli to srv\naccept srv as conn\n\
///                        send cli \"hi\"\nrecv conn 16 == \"hi\"\n").unwrap();
/// let result = run(&s);
/// assert_eq!(result.status, Status::Passed);
/// assert!(result.trace.render().contains("received 2 bytes [0..2) \"hi\""));
/// ```
pub fn run(scenario: &Scenario) -> ScenarioRun {
    run_with(
        scenario,
        &RunOptions {
            isolation: Isolation::Auto,
            capture: true,
            ..RunOptions::default()
        },
    )
}

/// Runs `scenario` as `opts` say.
///
/// An isolated scenario runs on a thread of its own, which enters a new network namespace; the
/// calling thread's namespace never changes.
pub fn run_with(scenario: &Scenario, opts: &RunOptions) -> ScenarioRun {
    let started = Instant::now();
    if interrupted() {
        return ScenarioRun::ended(Status::Skipped(INTERRUPTED.into()), started);
    }
    if let Some(missing) = scenario.settings.requires.iter().find(|p| !on_path(p)) {
        return ScenarioRun::ended(
            Status::Skipped(format!("needs `{missing}`, which is not installed here")),
            started,
        );
    }
    let needs = needs_isolation(scenario);
    if let Some(addr) = host_target(scenario) {
        // A server already running on the host's loopback is out of reach of a private
        // namespace: such a scenario runs on the host loopback, without capture.
        if let Some(what) = needs {
            return ScenarioRun::ended(
                Status::Skipped(format!("{what} needs a private network namespace, but `target ... at {addr}` is on the host loopback")),
                started,
            );
        }
        let mut r = run_here(scenario, opts, None, started);
        r.capture_note = Some(format!(
            "capture off: the target at {addr} is on the host loopback"
        ));
        return r;
    }
    let unavailable = match (opts.isolation, sandbox::support()) {
        (Isolation::Never, _) => Some("isolation is off (--isolate never)".to_string()),
        (_, Support::Unavailable(why)) => Some(why.clone()),
        (_, Support::Available { .. }) => None,
    };
    if let Some(why) = unavailable {
        if opts.isolation == Isolation::Always {
            return ScenarioRun::ended(
                Status::Failed(setup_failure("a private network namespace", &why)),
                started,
            );
        }
        if let Some(what) = needs {
            return ScenarioRun::ended(
                Status::Skipped(format!("{what} needs a private network namespace: {why}")),
                started,
            );
        }
        let mut r = run_here(scenario, opts, None, started);
        r.capture_note = Some(format!(
            "capture off: it needs a private network namespace ({why})"
        ));
        return r;
    }
    if OWN_THREAD.with(|own| own.get()) {
        return run_isolated(scenario, opts, needs, started);
    }
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("scenario".into())
            .spawn_scoped(scope, || run_isolated(scenario, opts, needs, started));
        match worker.map(|h| h.join()) {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => ScenarioRun::ended(
                Status::Failed(setup_failure(
                    "the scenario thread to finish",
                    "it panicked",
                )),
                started,
            ),
            Err(e) => ScenarioRun::ended(
                Status::Failed(setup_failure("a scenario thread", &e.to_string())),
                started,
            ),
        }
    })
}

thread_local! {
    /// Set on threads that exist only to run scenarios: they may move between namespaces, so an
    /// isolated scenario runs on them directly instead of on a thread of its own.
    static OWN_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Declares that the calling thread exists only to run scenarios, so isolated scenarios may move
/// it into their namespaces instead of starting a thread each (which costs a thread start and
/// exit per scenario). [`crate::suite::run_all`] does this for its workers.
pub fn dedicate_this_thread() {
    OWN_THREAD.with(|own| own.set(true));
}

fn run_isolated(
    scenario: &Scenario,
    opts: &RunOptions,
    needs: Option<String>,
    started: Instant,
) -> ScenarioRun {
    let reusable = leaves_namespace_reusable(scenario, opts);
    let entered = if reusable {
        sandbox::enter_reusable_netns()
    } else {
        sandbox::enter_private_netns()
    };
    if let Err(e) = entered {
        let why = e.to_string();
        if opts.isolation == Isolation::Always {
            return ScenarioRun::ended(
                Status::Failed(setup_failure("a private network namespace", &why)),
                started,
            );
        }
        if let Some(what) = needs {
            return ScenarioRun::ended(
                Status::Skipped(format!("{what} needs a private network namespace: {why}")),
                started,
            );
        }
        // This thread is still in the namespace it started in.
        let mut r = run_here(scenario, opts, None, started);
        r.capture_note = Some(format!("capture off: no private network namespace ({why})"));
        return r;
    }
    for (i, (key, value)) in scenario.settings.sysctls.iter().enumerate() {
        let setting = format!("sysctl {key}={value}");
        let failed = |why: &str| Failure {
            statement: setting.clone(),
            line: scenario.settings.sysctl_line(i).unwrap_or(0),
            ..setup_failure("the sysctl set", why)
        };
        match sandbox::set_sysctl(key, value) {
            Ok(()) => {}
            // A knob this kernel lacks, or one a user namespace may not set: the scenario
            // cannot run here, which is not its fault. Unless the key is a misspelling of one
            // that is there: that is a mistake, and skipping would hide it.
            Err(e @ SandboxError::Sysctl { .. }) if e.is_unavailable() => {
                if let Some(near) = sandbox::misspelt_sysctl(key) {
                    let why = format!("there is no sysctl `{key}`: did you mean `{near}`?");
                    return ScenarioRun::ended(Status::Failed(failed(&why)), started);
                }
                return ScenarioRun::ended(Status::Skipped(e.to_string()), started);
            }
            // A value the kernel rejects is a mistake in the scenario.
            Err(e) => return ScenarioRun::ended(Status::Failed(failed(&e.to_string())), started),
        }
    }
    let wants_capture = opts.capture || uses_wire(scenario);
    // With hosts, the wire is their links, and the forwarder records it (in `run_in`).
    let hosts = !host_names(scenario).is_empty();
    let (capture, note) = if wants_capture && !hosts {
        match LiveCapture::open_loopback() {
            Ok(c) => (Some(budget(c, opts)), None),
            Err(e) => (
                None,
                Some(format!("capture off: cannot open a packet socket ({e})")),
            ),
        }
    } else if wants_capture {
        (None, None)
    } else {
        (None, Some("capture off".to_string()))
    };
    if capture.is_none() && uses_wire(scenario) && !hosts {
        let why = note.unwrap_or_default();
        return ScenarioRun::ended(
            Status::Skipped(format!("wire expectations need a capture; {why}")),
            started,
        );
    }
    let (mut r, connections) = run_in(scenario, opts, capture, started);
    if hosts && !wants_capture {
        r.capture_note = Some("capture off".to_string());
    }
    // What such a scenario leaves is its connections' ends (TIME_WAIT, orphans closing): with
    // those gone the namespace is as new, and the next such scenario takes it instead of a new
    // one. After a failure it is not trusted.
    if reusable
        && matches!(r.status, Status::Passed)
        && sandbox::forget_connections(&connections).is_ok()
    {
        sandbox::hand_back_netns();
    }
    r.isolated = true;
    if r.capture_note.is_none() {
        r.capture_note = note;
    }
    r
}

/// A capture that keeps as much in memory, and spills where, as the options say.
fn budget(c: LiveCapture, opts: &RunOptions) -> LiveCapture {
    c.spill_after(
        opts.capture_memory.unwrap_or(live::MEMORY),
        opts.capture_dir.clone().unwrap_or_else(spill::default_dir),
    )
}

/// Runs on the calling thread, in whatever namespace it is in.
fn run_here(
    scenario: &Scenario,
    opts: &RunOptions,
    capture: Option<LiveCapture>,
    started: Instant,
) -> ScenarioRun {
    run_in(scenario, opts, capture, started).0
}

/// As [`run_here`], with the ends of every connection the scenario had.
fn run_in(
    scenario: &Scenario,
    opts: &RunOptions,
    capture: Option<LiveCapture>,
    started: Instant,
) -> (ScenarioRun, Vec<(SocketAddr, SocketAddr)>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            let failure = setup_failure("a runtime for the scenario", &e.to_string());
            return (
                ScenarioRun::ended(Status::Failed(failure), started),
                Vec::new(),
            );
        }
    };
    let timeout = scenario.settings.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let tolerance = Tolerance::from_env(scenario.settings.tolerance);
    let hosts = host_names(scenario);
    let seed = (!hosts.is_empty()).then(|| opts.seed.or(scenario.settings.seed).unwrap_or(0));
    let record = opts.capture || uses_wire(scenario);
    let network = match seed
        .map(|seed| Network::build(&hosts, seed, &scenario.settings.sysctls, record))
        .transpose()
    {
        Ok(n) => n.map(|n| Rc::new(RefCell::new(n))),
        Err(e) => {
            let mut failure = setup_failure("the scenario's hosts", &e.to_string());
            failure.line = first_host_line(scenario);
            let mut r = ScenarioRun::ended(Status::Failed(failure), started);
            r.seed = seed;
            return (r, Vec::new());
        }
    };
    let links_capture = network.as_ref().and_then(|n| {
        let n = n.borrow();
        let tape = n.tape()?;
        Some(budget(LiveCapture::of_links(tape, n.names()), opts))
    });
    let capture = capture.or(links_capture).map(|c| Rc::new(RefCell::new(c)));
    let local = tokio::task::LocalSet::new();
    let ended = local.block_on(
        &runtime,
        exec::Exec::new(
            scenario,
            timeout,
            tolerance,
            capture.clone(),
            opts.services.clone(),
        )
        .with_network(network.clone())
        .run(),
    );
    // Dropping the set cancels what is left (and the capture's reader) while the runtime that
    // registered them still exists. The wire goes after the scenario's sockets are closed, so
    // their closing segments still cross it.
    drop(local);
    // The network goes here, so the forwarder hands over its last frames before the capture
    // finishes.
    let links = network.map(|n| n.borrow().report()).unwrap_or_default();
    let mut note = None;
    let mut capture_file = None;
    let capture = capture.and_then(|c| Rc::try_unwrap(c).ok()).map(|c| {
        let mut c = c.into_inner();
        if let Ok(n) = c.dropped() {
            if n > 0 {
                note = Some(format!("capture incomplete: the kernel dropped {n} frames"));
            }
        }
        let finished = c.finish();
        capture_file = finished.file;
        note = match (note.take(), finished.note) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        Capture {
            link: LinkType::Ethernet,
            packets: finished.packets,
            interfaces: finished.interfaces,
        }
    });
    drop(runtime);
    let run = ScenarioRun {
        status: ended.status,
        trace: ended.trace,
        duration: started.elapsed(),
        isolated: false,
        capture,
        capture_file,
        capture_note: note,
        names: ended.names,
        seed,
        links,
    };
    (run, ended.connections)
}

/// Whether a namespace used by `scenario` can be as new again once its connections' ends are
/// gone: nothing in the scenario changes what they cannot undo. A sysctl changes the namespace;
/// a process or a caller's service may leave anything behind; a fixed port is where a
/// previous scenario's random port could still be in use.
fn leaves_namespace_reusable(scenario: &Scenario, opts: &RunOptions) -> bool {
    scenario.settings.sysctls.is_empty()
        && scenario.steps.iter().all(|s| match &s.statement {
            Statement::Target { name, source, .. } => {
                matches!(source, TargetSource::Builtin(_)) && opts.services.get(name).is_none()
            }
            Statement::Proxy { .. } | Statement::Wire(_) => false,
            Statement::Listen {
                on: Endpoint::Addr(a),
                ..
            } => a.port() == 0,
            _ => true,
        })
}

/// Why a scenario stopped by [`interrupt`] was skipped.
pub(crate) const INTERRUPTED: &str = "interrupted";

fn setup_failure(expected: &str, why: &str) -> Failure {
    Failure {
        kind: FailureKind::Setup,
        line: 0,
        statement: String::new(),
        expected: expected.to_string(),
        actual: why.to_string(),
        detail: None,
    }
}

/// The scenario's hosts, in the order they are declared.
fn host_names(scenario: &Scenario) -> Vec<String> {
    scenario
        .steps
        .iter()
        .filter_map(|s| match &s.statement {
            Statement::Wire(WireStatement::Host { name }) => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// The line of the scenario's first `host`, where a failure to make the hosts is reported.
fn first_host_line(scenario: &Scenario) -> u32 {
    scenario
        .steps
        .iter()
        .find(|s| matches!(s.statement, Statement::Wire(WireStatement::Host { .. })))
        .and_then(|s| s.origin.as_ref())
        .map_or(0, |o| o.line)
}

/// What in the scenario needs a private namespace, if anything.
fn needs_isolation(scenario: &Scenario) -> Option<String> {
    if let Some((key, value)) = scenario.settings.sysctls.first() {
        return Some(format!("`sysctl {key}={value}`"));
    }
    if let Some(host) = host_names(scenario).first() {
        return Some(format!("`host {host}` (a network namespace per host)"));
    }
    uses_wire(scenario)
        .then(|| "`expect wire` (a capture of the scenario's own traffic)".to_string())
}

/// Whether `program` is an executable file on `PATH`.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// The address of a `target ... at` in the scenario, if any.
fn host_target(scenario: &Scenario) -> Option<SocketAddr> {
    scenario.steps.iter().find_map(|s| match &s.statement {
        Statement::Target {
            source: TargetSource::At(addr),
            ..
        } => Some(*addr),
        _ => None,
    })
}

fn uses_wire(scenario: &Scenario) -> bool {
    scenario
        .steps
        .iter()
        .any(|s| matches!(s.statement, Statement::ExpectWire { .. }))
}
