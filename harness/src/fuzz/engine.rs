//! The fuzz loop against a real server: seeds checked and calibrated, cases run by worker
//! threads against one server process, failures confirmed alone, minimised, and written as
//! scenario files that reproduce them with `sockharness run`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use crate::run::{self, Failure, RunOptions, Status};
use crate::sandbox::Isolation;
use crate::script::{self, Scenario, TargetSource};

use super::calibrate::{self, Baseline};
use super::case::{Case, Edit, Plain, Seed, CASE_TIMEOUT};
use super::leak;
use super::minimize;
use super::mutate::{self, Shape};
use super::seed::Seeds;
use super::server::{Running, Server};
use super::FuzzError;

/// An extra check on the server's answers.
#[derive(Debug, Clone)]
pub enum Expect {
    /// The server sends back every byte it is sent (`--expect echo`).
    Echo,
    /// Every plain answer matches this pattern (`--expect regex:RE`).
    Regex(regex::bytes::Regex),
}

/// A fuzz run's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The server under test.
    pub server: Server,
    /// What to start from.
    pub seeds: Seeds,
    /// An extra check on the answers.
    pub expect: Option<Expect>,
    /// Stop after this long.
    pub time: Duration,
    /// Stop after this many inputs.
    pub runs: Option<u64>,
    /// The generator's seed: the same seed makes the same cases.
    pub seed: u64,
    /// Where reproducers go.
    pub out: PathBuf,
    /// Worker threads running cases at once.
    pub jobs: usize,
    /// How long to spend minimising one failure.
    pub minimize_for: Duration,
}

/// A progress report, sent about twice a second.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Inputs run so far.
    pub inputs: u64,
    /// Time since the fuzz loop started.
    pub elapsed: Duration,
    /// Failures found.
    pub failures: usize,
    /// Server restarts.
    pub restarts: u32,
    /// What is going on, when it is not the loop itself.
    pub phase: Phase,
}

/// What the run is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Running cases.
    Fuzzing,
    /// Replaying a failing case alone.
    Confirming,
    /// Shrinking a failing case.
    Minimizing,
}

/// A failure found, and the reproducer written for it.
#[derive(Debug, Clone)]
pub struct Found {
    /// What broke: `crash`, `hang`, `refused`, `mismatch`, ...
    pub oracle: String,
    /// The failing expectation, as the reproducer reports it.
    pub failure: Failure,
    /// How the server exited, for a crash.
    pub exit: Option<String>,
    /// The seed it came from and the edits that made it fail.
    pub how: String,
    /// The reproducer file.
    pub reproducer: PathBuf,
    /// Statements in the reproducer.
    pub statements: usize,
    /// Size of the reproducer file in bytes.
    pub bytes: usize,
    /// Runs of the reproducer, against a freshly started server, that failed, of `tries`.
    pub reproduced: u32,
    /// Runs tried.
    pub tries: u32,
    /// Time from the start of the run to the failure's first sighting.
    pub after: Duration,
    /// Inputs run before it was seen.
    pub inputs: u64,
}

/// The outcome of a fuzz run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Inputs run.
    pub inputs: u64,
    /// Time spent.
    pub elapsed: Duration,
    /// Failures found (the run stops at the first confirmed one).
    pub found: Vec<Found>,
    /// Server restarts.
    pub restarts: u32,
    /// Things the user should know (seeds without a comparable answer, failures that did not
    /// reproduce alone).
    pub notes: Vec<String>,
}

/// How one case ended against the server.
#[derive(Debug, Clone)]
pub(super) enum Verdict {
    Pass,
    Skip,
    Fail(Failure),
    Crash(String, Option<Failure>),
}

impl Verdict {
    /// Two verdicts are the same failure when both are crashes, or both failed at the same
    /// statement with the same expectation and the same result.
    pub(super) fn same(&self, other: &Verdict) -> bool {
        match (self, other) {
            (Verdict::Crash(..), Verdict::Crash(..)) => true,
            (Verdict::Fail(a), Verdict::Fail(b)) => {
                a.statement == b.statement && a.expected == b.expected && a.actual == b.actual
            }
            _ => false,
        }
    }

    pub(super) fn failed(&self) -> bool {
        matches!(self, Verdict::Fail(_) | Verdict::Crash(..))
    }
}

/// The fuzzer's state between phases.
pub(super) struct Fuzzer<'a> {
    pub(super) cfg: &'a Config,
    pub(super) server: Mutex<Running>,
    pub(super) seeds: Vec<Seed>,
    /// The plain exchange that follows a case being confirmed, minimised or reproduced.
    pub(super) health: Option<Plain>,
}

/// Settling time after a case before the server's process is checked: a crash caused by the
/// last bytes of a case takes a moment to show.
const SETTLE: Duration = Duration::from_millis(20);

impl Fuzzer<'_> {
    /// Runs `sc` against the running server, and checks the server outlived it.
    pub(super) fn run(&self, sc: &Scenario, settle: Duration) -> Verdict {
        let opts = RunOptions {
            isolation: Isolation::Never,
            capture: false,
            ..RunOptions::default()
        };
        let r = run::run_with(sc, &opts);
        if !settle.is_zero() {
            std::thread::sleep(settle);
        }
        let exit = self.lock().exited();
        match (r.status, exit) {
            (Status::Failed(f), Some(e)) => Verdict::Crash(e, Some(f)),
            (_, Some(e)) => Verdict::Crash(e, None),
            (Status::Failed(f), None) => Verdict::Fail(f),
            (Status::Passed, None) => Verdict::Pass,
            (Status::Skipped(_), None) => Verdict::Skip,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        // A worker that panicked holding the lock left the server as it was: still usable.
        self.server.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server's open descriptors (counted without holding the lock the workers need).
    pub(super) fn fds(&self) -> Option<u64> {
        let pid = self.lock().pid()?;
        run::target::group_fds(pid).ok()
    }

    /// The address cases aim at now.
    pub(super) fn source(&self) -> TargetSource {
        TargetSource::At(self.lock().addr())
    }

    /// Restarts the server if it died; false if it cannot be.
    pub(super) fn ensure_alive(&self) -> Result<(), FuzzError> {
        let mut s = self.lock();
        if s.alive() {
            return Ok(());
        }
        s.restart()
    }

    /// Runs `case` alone on a live server.
    pub(super) fn check(&self, case: &Case) -> Result<Verdict, FuzzError> {
        self.ensure_alive()?;
        let sc = case.scenario(&self.seeds[case.seed], &self.source());
        Ok(self.run(&sc, SETTLE))
    }

    /// A server just started (one that was already running is only checked): what a case
    /// does to it is then the case's doing, not what came before.
    pub(super) fn fresh(&self) -> Result<(), FuzzError> {
        let mut s = self.lock();
        if matches!(self.cfg.server, Server::Cmd(_)) || !s.alive() {
            return s.restart();
        }
        Ok(())
    }

    /// The scenario of `case` on `seed`, followed by the health exchange.
    pub(super) fn with_health(&self, seed: &Seed, case: &Case, source: &TargetSource) -> Scenario {
        let mut sc = case.scenario(seed, source);
        if let Some(h) = &self.health {
            super::case::append_health(&mut sc, h);
        }
        sc
    }

    /// Runs `case` on `seed` alone, on a fresh server, followed by the health exchange.
    pub(super) fn check_fresh(&self, seed: &Seed, case: &Case) -> Result<Verdict, FuzzError> {
        self.fresh()?;
        let sc = self.with_health(seed, case, &self.source());
        Ok(self.run(&sc, SETTLE))
    }
}

/// Fuzzes the server as `cfg` says; `progress` hears how it goes about twice a second.
pub fn fuzz(cfg: &Config, mut progress: impl FnMut(&Progress)) -> Result<Report, FuzzError> {
    let started = Instant::now();
    std::fs::create_dir_all(&cfg.out).map_err(|source| FuzzError::Out {
        path: cfg.out.display().to_string(),
        source,
    })?;
    let mut report = Report::default();
    let server = Running::start(&cfg.server)?;
    let mut fz = Fuzzer {
        cfg,
        server: Mutex::new(server),
        seeds: Vec::new(),
        health: None,
    };
    let mut given = cfg.seeds.clone();
    given.dedup();
    prepare(&mut fz, &given, &mut report)?;
    let mut shapes: Vec<Shape> = fz.seeds.iter().map(Shape::of).collect();
    // A seed that fails with nothing changed is the first finding.
    for (i, shape) in shapes.iter_mut().enumerate() {
        let case = Case {
            seed: i,
            edits: Vec::new(),
        };
        let t = Instant::now();
        let v = fz.check_fresh(&fz.seeds[i], &case)?;
        let cost = t.elapsed();
        shape.weight = 1.0 / (cost.as_secs_f64() * 1000.0 + 2.0);
        if matches!(v, Verdict::Skip) {
            report.notes.push(format!(
                "{}: skipped here (a program it requires is missing?), so it is not fuzzed",
                fz.seeds[i].label
            ));
            shape.weight = 0.0;
            continue;
        }
        // Past a few times what the seed takes plainly, a case is hanging: say so then, not at
        // the seed's own (generous) deadline.
        let settings = &mut fz.seeds[i].scenario.settings;
        let own = settings.timeout.unwrap_or(run::DEFAULT_TIMEOUT);
        settings.timeout = Some(own.min(CASE_TIMEOUT.max(cost * 4)));
        // Three clients at once, each sending its request whole: a server that answers one
        // connection at a time hangs here.
        let crowd = fz.seeds[i].plain.as_ref().map(|p| Case {
            seed: i,
            edits: vec![Edit::Crowd {
                clients: 3,
                chunk: p.request.len().max(1) as u64,
                gap: Duration::ZERO,
            }],
        });
        let crowd = match crowd {
            Some(c) if !v.failed() => match fz.check(&c)? {
                Verdict::Fail(f) if f.actual.contains("timed out") => Some((c, Verdict::Fail(f))),
                v @ Verdict::Crash(..) => Some((c, v)),
                _ => None,
            },
            _ => None,
        };
        let failed = match (v.failed(), crowd) {
            (true, _) => Some((case, v)),
            (false, c) => c,
        };
        if let Some((case, v)) = failed {
            if let Some(found) = conclude(&fz, case, v, started, 0, &mut progress, &mut report)? {
                report.found.push(found);
                report.elapsed = started.elapsed();
                report.restarts = fz.lock().restarts;
                return Ok(report);
            }
            // The note is in the report; fuzz from the other seeds.
            shape.weight = 0.0;
            fz.fresh()?;
        }
    }
    if shapes.iter().all(|s| s.weight == 0.0) {
        return Err(FuzzError::Server(format!(
            "no seed runs the same way twice against this server, so nothing can be compared:\n{}",
            report.notes.join("\n")
        )));
    }
    let streams: Vec<Vec<u8>> = given.streams.iter().map(|s| s.bytes.clone()).collect();
    // The server's descriptors when idle, once the seed checks' connections are closed.
    std::thread::sleep(Duration::from_millis(200));
    let idle = fz.fds();
    let mut leak_checks = idle.is_some();
    let mut jobs = cfg.jobs.max(1);
    let echo = matches!(cfg.expect, Some(Expect::Echo));
    let next = AtomicU64::new(0);
    let deadline = started + cfg.time;
    loop {
        let stop = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<(u64, Case, Verdict)>();
        let mut failing: Vec<(u64, Case, Verdict)> = Vec::new();
        let mut leaking = None;
        let mut recent: Vec<(u64, Case)> = Vec::new();
        std::thread::scope(|scope| {
            for _ in 0..jobs {
                let tx = tx.clone();
                let (fz, next, stop, shapes, streams) = (&fz, &next, &stop, &shapes, &streams);
                scope.spawn(move || {
                    let source = fz.source();
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if cfg.runs.is_some_and(|r| i >= r) {
                            break;
                        }
                        let case = mutate::generate(cfg.seed, i, &fz.seeds, shapes, streams, echo);
                        let sc = case.scenario(&fz.seeds[case.seed], &source);
                        let v = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            fz.run(&sc, Duration::ZERO)
                        }))
                        .unwrap_or(Verdict::Skip);
                        if tx.send((i, case, v)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut last = Instant::now();
            loop {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok((i, case, v)) => {
                        report.inputs += 1;
                        if v.failed() {
                            stop.store(true, Ordering::Relaxed);
                            failing.push((i, case, v));
                        } else {
                            recent.push((i, case));
                            if recent.len() > 64 {
                                recent.remove(0);
                            }
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
                if last.elapsed() >= Duration::from_millis(500) {
                    last = Instant::now();
                    let fds = if leak_checks { fz.fds() } else { None };
                    if let (Some(idle), Some(now)) = (idle, fds) {
                        if now > idle + leak::margin(jobs) && leaking.is_none() {
                            leaking = Some(now);
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    progress(&Progress {
                        inputs: report.inputs,
                        elapsed: started.elapsed(),
                        failures: report.found.len(),
                        restarts: fz.lock().restarts,
                        phase: Phase::Fuzzing,
                    });
                }
            }
        });
        // A failure may be a leak's symptom (out of descriptors, it stops accepting), and the
        // replays that follow restart the server, which hides the leak: look at it first.
        let high = |fds: Option<u64>| matches!((idle, fds), (Some(i), Some(n)) if n > i + leak::margin(jobs));
        if let (Some(idle), true) = (
            idle,
            leaking.is_some() || (leak_checks && !failing.is_empty() && high(fz.fds())),
        ) {
            // With every input finished, what is still open is the server's own doing.
            std::thread::sleep(Duration::from_millis(500));
            let now = fz.fds().unwrap_or(0);
            let seen = leaking.unwrap_or(now);
            if now > idle + leak::margin(jobs) {
                if let Some(found) =
                    conclude_leak(&fz, idle, seen.max(now), started, report.inputs)?
                {
                    report.found.push(found);
                    break;
                }
                report.notes.push(format!(
                    "the server held {now} descriptors after {} inputs (idle: {idle}), but {} connections opened and closed on a fresh server did not show it",
                    report.inputs,
                    leak::CONNECTIONS
                ));
                // Once is enough: what this server holds on to is not what the reproducer does.
                leak_checks = false;
                fz.fresh()?;
            }
            if failing.is_empty() && Instant::now() < deadline {
                continue;
            }
        }
        if failing.is_empty() {
            break;
        }
        // Several workers share one server: the case that failed may be the victim of another
        // that broke the server. Replay the failing cases, then the recent ones, each alone.
        failing.sort_by_key(|(i, ..)| *i);
        recent.sort_by_key(|(i, _)| *i);
        progress(&Progress {
            inputs: report.inputs,
            elapsed: started.elapsed(),
            failures: report.found.len(),
            restarts: fz.lock().restarts,
            phase: Phase::Confirming,
        });
        let first_seen = started.elapsed();
        let suspects = failing
            .iter()
            .map(|(i, c, _)| (*i, c.clone()))
            .chain(recent.iter().rev().take(SUSPECTS).cloned())
            .collect::<Vec<_>>();
        let mut confirmed = None;
        'suspects: for (_, case) in suspects {
            let steadied = Case {
                seed: case.seed,
                edits: case.edits.iter().map(Edit::steadied).collect(),
            };
            for case in [case.clone(), case, steadied] {
                let v = fz.check_fresh(&fz.seeds[case.seed], &case)?;
                if v.failed() {
                    confirmed = Some((case, v));
                    break 'suspects;
                }
            }
        }
        match confirmed {
            Some((case, v)) => {
                let inputs = report.inputs;
                if let Some(mut found) =
                    conclude(&fz, case, v, started, inputs, &mut progress, &mut report)?
                {
                    found.after = first_seen;
                    report.found.push(found);
                    break;
                }
                fz.ensure_alive()?;
            }
            None => {
                let (i, case, v) = &failing[0];
                report.notes.push(format!(
                    "input {i} failed ({}) but did not fail again when replayed alone: {}",
                    describe(v),
                    case.edits
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
                if jobs > 1 {
                    // Inputs running at once disturb each other here (the server shares state
                    // between connections, or slows down under load): one at a time from now.
                    jobs = 1;
                    report.notes.push("inputs running at the same time disturbed each other, so the rest of the run went one input at a time".into());
                }
                fz.ensure_alive()?;
            }
        }
        if Instant::now() >= deadline || cfg.runs.is_some_and(|r| next.load(Ordering::Relaxed) >= r)
        {
            break;
        }
    }
    report.elapsed = started.elapsed();
    report.restarts = fz.lock().restarts;
    fz.lock().stop();
    Ok(report)
}

/// Mutated variants of the request streams that get an answer of their own, compared like the
/// streams themselves: transport invariance then covers bytes no seed has.
const VARIANTS: usize = 16;
/// Between the two plain deliveries of a request: an answer that carries the time of day (an
/// HTTP `Date`) differs across a second, and is then compared by its length only.
const APART: Duration = Duration::from_millis(1050);
/// The pause after an intruding client on a server whose connections share state.
const SHARED_SETTLE: Duration = Duration::from_millis(20);
/// Inputs that ran just before a failure, replayed alone as its possible cause.
const SUSPECTS: usize = 8;

/// Turns the given seeds into runnable seeds: seed scenarios as they are, and every request
/// stream (and a few mutated variants of them) with the answer its plain delivery gets.
fn prepare(fz: &mut Fuzzer<'_>, given: &Seeds, report: &mut Report) -> Result<(), FuzzError> {
    let cfg = fz.cfg;
    let mut seeds: Vec<Seed> = given
        .scenarios
        .iter()
        .map(|s| Seed {
            label: s.label.clone(),
            scenario: s.scenario.clone(),
            plain: None,
            settle: None,
        })
        .collect();
    let mut shared = false;
    let mut crowd_hangs = false;
    let mut requests: Vec<(String, Vec<u8>, bool)> = given
        .streams
        .iter()
        .map(|s| (s.label.clone(), s.bytes.clone(), false))
        .collect();
    let originals: Vec<Vec<u8>> = given.streams.iter().map(|s| s.bytes.clone()).collect();
    if !originals.is_empty() && !matches!(cfg.expect, Some(Expect::Echo)) {
        let mut rng = mutate::rng_for(cfg.seed, u64::MAX);
        for k in 0..VARIANTS {
            let stream = &given.streams[k % given.streams.len()];
            let (label, bytes) = (&stream.label, &stream.bytes);
            let mut b = bytes.clone();
            mutate::mutate(&mut rng, &mut b, &originals);
            b.truncate(4096);
            if !b.is_empty() && !requests.iter().any(|(_, r, _)| *r == b) {
                requests.push((format!("{label} (mutation {})", k + 1), b, true));
            }
        }
    }
    // Round one for every request, round two a second after each one's first.
    let quiet = Duration::from_millis(60);
    let limit = Duration::from_secs(2);
    let mut first = Vec::with_capacity(requests.len());
    // Each on a fresh server: the answer must not depend on the requests before it, as
    // confirmations and reproducers run on fresh servers too.
    for (_, bytes, _) in &requests {
        fz.fresh()?;
        let addr = fz.lock().addr();
        let at = Instant::now();
        let ex = calibrate::exchange(addr, bytes, quiet, limit);
        // A request whose plain delivery breaks the server is a finding: its seed, checked
        // first thing, shows it on a fresh server.
        let dead = !fz.lock().alive();
        if dead || ex.is_err() {
            fz.fresh()?;
        }
        first.push((at, ex.ok().filter(|_| !dead)));
    }
    for ((label, bytes, variant), (at, a)) in requests.iter().zip(first) {
        std::thread::sleep((at + APART).saturating_duration_since(Instant::now()));
        fz.fresh()?;
        let addr = fz.lock().addr();
        let b = match a {
            Some(_) => calibrate::exchange(addr, bytes, quiet, limit).ok(),
            None => None,
        };
        if b.is_none() && !fz.lock().alive() {
            fz.fresh()?;
        }
        let addr = fz.lock().addr();
        let compared = match (a, &b) {
            (Some(a), Some(b)) => calibrate::compare(a, b),
            _ => Baseline::Broke,
        };
        let baseline = match (&cfg.expect, compared) {
            (_, Baseline::Broke) => Baseline::Broke,
            // The answer an echo server must give is known: the request.
            (Some(Expect::Echo), _) => Baseline::Exact(calibrate::Exchange {
                response: bytes.clone(),
                end: calibrate::End::Open,
            }),
            (_, Baseline::Unstable) if *variant => continue,
            (_, Baseline::Unstable) => {
                report.notes.push(format!(
                    "{label}: the answer to its plain delivery changes from one delivery to the next; only liveness is checked for it"
                ));
                Baseline::Unstable
            }
            // A variant nobody answers adds nothing the intruders do not already do.
            (_, b) if *variant && b.exchange().is_some_and(|e| e.response.is_empty()) => continue,
            (_, b) => b,
        };
        let mut plain = Plain {
            request: bytes.clone(),
            baseline,
            independent: false,
        };
        // Only a server that answers each connection on its own may be held to the plain answer
        // when clients interleave.
        if plain.baseline.exchange().is_some() && !crowd_hangs {
            let mut crowd = plain.scenario("srv", 3, None, Duration::ZERO);
            super::case::retarget(&mut crowd, &TargetSource::At(addr));
            let v = fz.run(&crowd, Duration::ZERO);
            plain.independent = !v.failed();
            // Clients at once that get other answers than one alone (not none at all): the
            // server's connections share state.
            shared |= matches!(&v, Verdict::Fail(f) if !f.actual.contains("timed out"));
            // One hang says the server cannot take clients at once; the seed checks show it,
            // and asking again for every request would only wait out more deadlines.
            crowd_hangs |= matches!(&v, Verdict::Fail(f) if f.actual.contains("timed out"));
            if !plain.independent {
                // What the crowd did (a hang, a crash) is checked again with the seeds, on a
                // fresh server; what follows must not inherit it.
                fz.fresh()?;
            }
        }
        let mut scenario = plain.scenario("srv", 1, None, Duration::ZERO);
        if let (Some(Expect::Regex(re)), Some(ex)) = (&cfg.expect, plain.baseline.exchange()) {
            // An answer that does not match is held to the pattern instead of to its bytes, so
            // the seed's own check fails, and its reproducer says why.
            if !re.is_match(&ex.response) {
                super::case::expect_matches(&mut scenario, re.as_str());
            }
        }
        seeds.push(Seed {
            label: label.clone(),
            scenario,
            plain: Some(plain),
            settle: None,
        });
    }
    if seeds.is_empty() {
        return Err(FuzzError::NoSeeds);
    }
    fz.health = seeds
        .iter()
        .filter_map(|s| s.plain.as_ref())
        .find(|p| p.baseline.exchange().is_some())
        .cloned();
    if shared {
        for s in &mut seeds {
            s.settle = Some(SHARED_SETTLE);
        }
    }
    fz.seeds = seeds;
    Ok(())
}

fn describe(v: &Verdict) -> String {
    match v {
        Verdict::Crash(e, _) => format!("the server exited: {}", e.lines().next().unwrap_or("")),
        Verdict::Fail(f) => format!("{}: expected {}, got {}", f.statement, f.expected, f.actual),
        Verdict::Pass | Verdict::Skip => "passed".into(),
    }
}

/// What kind of failure a verdict is, in a word.
fn oracle(v: &Verdict) -> String {
    match v {
        Verdict::Crash(..) => "crash".into(),
        Verdict::Fail(f) if f.actual.contains("timed out") => "hang".into(),
        Verdict::Fail(f) if f.actual.contains("ECONNREFUSED") => "refused".into(),
        Verdict::Fail(f) if f.actual.contains("ECONNRESET") || f.actual.contains("EPIPE") => {
            "reset".into()
        }
        Verdict::Fail(_) => "mismatch".into(),
        Verdict::Pass | Verdict::Skip => "none".into(),
    }
}

/// Minimises a confirmed failure, writes its reproducer and checks it against a fresh server.
fn conclude(
    fz: &Fuzzer<'_>,
    case: Case,
    verdict: Verdict,
    started: Instant,
    inputs: u64,
    progress: &mut impl FnMut(&Progress),
    report: &mut Report,
) -> Result<Option<Found>, FuzzError> {
    progress(&Progress {
        inputs,
        elapsed: started.elapsed(),
        failures: report.found.len(),
        restarts: fz.lock().restarts,
        phase: Phase::Minimizing,
    });
    // Shrinking stays within the run's time, but always gets a few seconds.
    let left = (started + fz.cfg.time).saturating_duration_since(Instant::now());
    let budget = fz.cfg.minimize_for.min(left.max(Duration::from_secs(5)));
    let min = minimize::minimize(fz, &case, &verdict, budget)?;
    let name = format!(
        "fuzz-{}-seed{}-{}.scenario",
        oracle(&verdict),
        fz.cfg.seed,
        inputs
    );
    let path = fz.cfg.out.join(name);
    let original = fz.seeds[case.seed].clone();
    // Checked the way a user will run it, against a freshly started server, before it counts:
    // the shrunk case, then the case as found (shrinking may have made it depend on the state
    // of the long-running server), each also with pauses between its pieces. One that fails
    // only now and then is no help, nor a sure sign of a bug: the first that fails every run
    // is taken, else the best that fails three runs in four.
    let tries = 4;
    let steady = |c: &Case| Case {
        seed: c.seed,
        edits: c.edits.iter().map(Edit::steadied).collect(),
    };
    let mut chosen: Option<(String, Scenario, u32, Option<Failure>, Case)> = None;
    for (seed, case) in [
        (&min.seed, min.case.clone()),
        (&min.seed, steady(&min.case)),
        (&original, case.clone()),
        (&original, steady(&case)),
    ] {
        let (text, sc) = reproducer(fz, &verdict, seed, &case);
        let (reproduced, last) = replay(&path, &text, tries, |f| shows(&verdict, f))?;
        if reproduced * 4 >= tries * 3 && chosen.as_ref().is_none_or(|c| c.2 < reproduced) {
            chosen = Some((text, sc, reproduced, last, case));
        }
        if reproduced == tries {
            break;
        }
    }
    let Some((text, sc, reproduced, last, kept)) = chosen else {
        report.notes.push(format!(
                        "{} ({}) failed against the long-running server but not in three of {tries} runs against a freshly started one",
            describe(&verdict),
            case.edits.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
        ));
        return Ok(None);
    };
    let how = std::iter::once(format!("seed {}", original.label))
        .chain(kept.edits.iter().map(|e| e.to_string()))
        .collect::<Vec<_>>()
        .join("; ");
    write(&path, &text)?;
    let failure = last.unwrap_or_else(|| match &verdict {
        Verdict::Fail(f) | Verdict::Crash(_, Some(f)) => f.clone(),
        _ => Failure {
            line: 0,
            statement: String::new(),
            expected: "the server running".into(),
            actual: "it exited".into(),
            detail: None,
        },
    });
    Ok(Some(Found {
        oracle: oracle(&verdict),
        exit: match &verdict {
            Verdict::Crash(e, _) => Some(e.clone()),
            _ => None,
        },
        failure,
        how,
        statements: sc.steps.len(),
        bytes: text.len(),
        reproducer: path,
        reproduced,
        tries,
        after: started.elapsed(),
        inputs,
    }))
}

/// Writes and checks the reproducer of a descriptor leak; `None` when a fresh server does not
/// show it.
fn conclude_leak(
    fz: &Fuzzer<'_>,
    idle: u64,
    seen: u64,
    started: Instant,
    inputs: u64,
) -> Result<Option<Found>, FuzzError> {
    let Some(plain) = &fz.health else {
        return Ok(None);
    };
    let cfg = fz.cfg;
    let what = format!(
        "the server's open descriptors grew from {idle} to {seen} over {inputs} inputs and stayed up after its clients left"
    );
    let header = format!(
        "# Found by sockharness fuzz (--seed {}).\n# Failure: {what}.\n# Reproduce: sockharness run THIS_FILE (it fails while the bug is there)\n",
        cfg.seed
    );
    let target = crate::script::Step {
        statement: crate::script::Statement::Target {
            name: "srv".into(),
            source: cfg.server.source(),
        },
        background: None,
        expect: None,
        origin: None,
    };
    let text = leak::reproducer(&target.to_string(), plain, idle, &header);
    let path = cfg
        .out
        .join(format!("fuzz-leak-seed{}-{inputs}.scenario", cfg.seed));
    let tries = 3;
    // Only the descriptor check counts: a server that refuses 300 clients at once has other
    // troubles, not this one.
    let (reproduced, last) = replay(&path, &text, tries, |f| {
        f.statement.starts_with("expect srv.fds")
    })?;
    if reproduced == 0 {
        return Ok(None);
    }
    write(&path, &text)?;
    let statements = script::parse("leak", text.as_bytes()).map_or(0, |s| s.steps.len());
    Ok(Some(Found {
        oracle: "leak".into(),
        failure: last.unwrap_or_else(|| Failure {
            line: 0,
            statement: String::new(),
            expected: "the server's descriptors back to its idle count".into(),
            actual: what.clone(),
            detail: None,
        }),
        exit: None,
        how: what,
        reproducer: path,
        statements,
        bytes: text.len(),
        reproduced,
        tries,
        after: started.elapsed(),
        inputs,
    }))
}

/// Whether a reproducer's failure is the one `v` found: for a crash, any failure once the
/// server is up; else the same statement and expectation, or the health exchange that follows.
fn shows(v: &Verdict, f: &Failure) -> bool {
    match v {
        // A dying server shows wherever it is talked to next: an exit, a refused connection,
        // a reset, an early end of stream. Only a failure to start it says nothing.
        Verdict::Crash(..) => !f.statement.is_empty() && !f.statement.starts_with("target "),
        Verdict::Fail(orig) => {
            (f.statement == orig.statement && f.expected == orig.expected)
                || f.statement.contains(" health")
        }
        Verdict::Pass | Verdict::Skip => false,
    }
}

/// The reproducer of `case` on `seed`, as text and as the scenario it holds.
fn reproducer(fz: &Fuzzer<'_>, v: &Verdict, seed: &Seed, case: &Case) -> (String, Scenario) {
    let cfg = fz.cfg;
    let mut sc = fz.with_health(seed, case, &cfg.server.source());
    if matches!(v, Verdict::Crash(..)) && matches!(cfg.server, Server::Cmd(_)) {
        // The server's exit may come just after the last statement.
        super::case::append_crash_check(&mut sc);
    }
    let how = std::iter::once(format!("seed {}", seed.label))
        .chain(case.edits.iter().map(|e| e.to_string()))
        .collect::<Vec<_>>()
        .join("; ");
    (reproducer_text(cfg, v, &how, &sc), sc)
}

/// Runs a reproducer `tries` times as `sockharness run` would: how many runs failed, and the
/// last failure.
fn replay(
    path: &Path,
    text: &str,
    tries: u32,
    counts: impl Fn(&Failure) -> bool,
) -> Result<(u32, Option<Failure>), FuzzError> {
    let parsed = script::parse(&path.display().to_string(), text.as_bytes())
        .map_err(|d| FuzzError::Internal(format!("a reproducer does not parse:\n{d}")))?;
    let mut failed = 0;
    let mut last = None;
    for _ in 0..tries {
        let r = run::run_with(
            &parsed,
            &RunOptions {
                isolation: Isolation::Auto,
                capture: false,
                ..RunOptions::default()
            },
        );
        if let Status::Failed(f) = r.status {
            if counts(&f) {
                failed += 1;
                last = Some(f);
            }
        }
    }
    Ok((failed, last))
}

fn write(path: &Path, text: &str) -> Result<(), FuzzError> {
    std::fs::write(path, text).map_err(|source| FuzzError::Out {
        path: path.display().to_string(),
        source,
    })
}

/// The reproducer file: what failed and how it was found, as comments, then the scenario.
fn reproducer_text(cfg: &Config, v: &Verdict, how: &str, sc: &Scenario) -> String {
    let mut out = String::new();
    out.push_str("# Found by sockharness fuzz");
    out.push_str(&format!(" (--seed {}).\n", cfg.seed));
    out.push_str(&format!("# Failure: {}\n", comment(&describe(v))));
    out.push_str(&format!("# How: {}\n", comment(how)));
    out.push_str("# Reproduce: sockharness run THIS_FILE (it fails while the bug is there)\n");
    out.push_str(&sc.to_string());
    out
}

fn comment(s: &str) -> String {
    s.replace('\n', " ").chars().take(400).collect()
}
