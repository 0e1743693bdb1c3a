//! The fuzzer's configuration, what it reports, and the server under test with the oracle
//! that judges one scenario against it ([`Fuzzer`]), shared by the loop ([`engine`](super::engine))
//! and the steps it takes: calibration, minimising and reproducers.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use sockharness::run::{self, Failure, RunOptions, Status};
use sockharness::sandbox::Isolation;
use sockharness::script::{Scenario, TargetSource};

use super::case::{Case, Plain, Seed};
use super::queue::{CoverageStats, Queue};
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

/// What guides the generator, beyond chance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// The edge map of a server built with AFL++ (`--coverage afl`).
    Afl,
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
    /// Coverage guidance, for a server built for it.
    pub coverage: Option<Coverage>,
    /// Tokens the server may compare its input with (`--dict`, AFL's format): mutations write
    /// them into the bytes, with words from the seeds and the server's answers.
    pub dict: Vec<Vec<u8>>,
    /// Where a guided run shares its queue with other runs (`--sync-dir`).
    pub sync: Option<super::sync::SyncDir>,
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
    /// Times the server was restarted after it died.
    pub restarts: u32,
    /// What is going on, when it is not the loop itself.
    pub phase: Phase,
    /// Coverage so far, in a guided run.
    pub coverage: Option<CoverageStats>,
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
    /// The reproducer's text.
    pub text: String,
    /// Why the reproducer file could not be written, if it could not: its text is then the
    /// only copy, for the caller to show.
    pub unwritten: Option<String>,
    /// Statements in the reproducer.
    pub statements: usize,
    /// Size of the reproducer file in bytes.
    pub bytes: usize,
    /// Runs of the reproducer, against a freshly started server, that failed, of `tries`.
    pub reproduced: u32,
    /// Runs tried: 0 when the run was interrupted first (the reproducer is then the case as
    /// found, not minimised).
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
    /// Times the server was restarted after it died.
    pub restarts: u32,
    /// Things the user should know (seeds without a comparable answer, failures that did not
    /// reproduce alone).
    pub notes: Vec<String>,
    /// Coverage reached, in a guided run.
    pub coverage: Option<CoverageStats>,
    /// From the start to the first input: the seeds' calibration and checks, and the server
    /// pool's start. `None` when no input ran.
    pub ready: Option<Duration>,
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
    /// Generated cases that were not valid scenarios: how many, and the first one's problems.
    pub(super) invalid: Mutex<(u64, Option<String>)>,
    /// In a guided run, more instances of the server, one per worker past the first (which
    /// uses `server`): each writes its coverage into a map of its own.
    pub(super) pool: Vec<Mutex<Running>>,
    /// In a guided run, the queue and the coverage so far.
    pub(super) queue: Option<Queue>,
}

/// Settling time after a case before the server's process is checked: a crash caused by the
/// last bytes of a case takes a moment to show.
pub(super) const SETTLE: Duration = Duration::from_millis(20);

impl Fuzzer<'_> {
    /// Runs `sc` against the running server, and checks the server outlived it.
    pub(super) fn run(&self, sc: &Scenario, settle: Duration) -> Verdict {
        self.run_on(&self.server, sc, settle)
    }

    /// Runs `sc` against the server `instance` (of the pool), and checks it outlived it.
    pub(super) fn run_on(
        &self,
        instance: &Mutex<Running>,
        sc: &Scenario,
        settle: Duration,
    ) -> Verdict {
        // A case is held to what a parsed scenario is; one that is not valid is a defect of the
        // generator, never a finding about the server, so it does not run.
        if let Err(problems) = sc.validate() {
            let mut invalid = self.invalid.lock().unwrap_or_else(|e| e.into_inner());
            invalid.0 += 1;
            invalid.1.get_or_insert_with(|| problems.to_string());
            return Verdict::Skip;
        }
        let opts = RunOptions {
            isolation: Isolation::Never,
            capture: false,
            ..RunOptions::default()
        };
        let r = run::run_with(sc, &opts);
        if !settle.is_zero() {
            std::thread::sleep(settle);
        }
        let exit = lock(instance).exited();
        match (r.status, exit) {
            (Status::Failed(f), Some(e)) => Verdict::Crash(e, Some(f)),
            (_, Some(e)) => Verdict::Crash(e, None),
            (Status::Failed(f), None) => Verdict::Fail(f),
            (Status::Passed, None) => Verdict::Pass,
            (Status::Skipped(_), None) => Verdict::Skip,
        }
    }

    /// Completes `report` at the end of a run.
    pub(super) fn finish(&self, report: &mut Report, started: std::time::Instant) {
        report.elapsed = started.elapsed();
        report.restarts =
            self.lock().restarts + self.pool.iter().map(|s| lock(s).restarts).sum::<u32>();
        report.coverage = self.queue.as_ref().map(Queue::stats);
        let invalid = self.invalid.lock().unwrap_or_else(|e| e.into_inner());
        if let (n @ 1.., Some(first)) = (invalid.0, &invalid.1) {
            report.notes.push(format!(
                "{n} generated cases were not valid scenarios and did not run (a defect in \
                 sockharness: please report it). The first:\n{first}"
            ));
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Running> {
        lock(&self.server)
    }

    /// Worker `w`'s server: the first uses the main one, the others their own in a guided run,
    /// and all share the main one otherwise.
    pub(super) fn instance(&self, w: usize) -> &Mutex<Running> {
        match w.checked_sub(1).and_then(|i| self.pool.get(i)) {
            Some(s) => s,
            None => &self.server,
        }
    }

    /// Restarts every instance of the pool that died.
    pub(super) fn pool_alive(&self) -> Result<(), FuzzError> {
        for s in &self.pool {
            let mut s = lock(s);
            if !s.alive() {
                s.restart(true)?;
            }
        }
        Ok(())
    }

    /// A progress report as of now.
    pub(super) fn progress(
        &self,
        report: &Report,
        started: std::time::Instant,
        inputs: u64,
        phase: Phase,
    ) -> Progress {
        Progress {
            inputs,
            elapsed: started.elapsed(),
            failures: report.found.len(),
            restarts: self.lock().restarts
                + self.pool.iter().map(|s| lock(s).restarts).sum::<u32>(),
            phase,
            coverage: self.queue.as_ref().map(Queue::stats),
        }
    }

    /// The server's open descriptors (counted without holding the lock the workers need).
    pub(super) fn fds(&self) -> Option<u64> {
        let pid = self.lock().pid()?;
        sockharness::process::group_fds(pid).ok()
    }

    /// The address cases aim at now.
    pub(super) fn source(&self) -> TargetSource {
        TargetSource::At(self.lock().addr())
    }

    /// Restarts the server if it died.
    pub(super) fn ensure_alive(&self) -> Result<(), FuzzError> {
        let mut s = self.lock();
        if s.alive() {
            return Ok(());
        }
        s.restart(true)
    }

    /// A server just started (one that was already running is only checked): what a case
    /// does to it is then the case's doing, not what came before.
    pub(super) fn fresh(&self) -> Result<(), FuzzError> {
        let mut s = self.lock();
        let died = !s.alive();
        // One started a moment ago that nothing has reached yet is as fresh as another start
        // would make it, and a start costs as long as the server takes (often more than a
        // hundred inputs).
        if s.untouched() && !died {
            return Ok(());
        }
        if !matches!(self.cfg.server, Server::Addr(_)) || died {
            return s.restart(died);
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

pub(super) fn lock(server: &Mutex<Running>) -> std::sync::MutexGuard<'_, Running> {
    // A worker that panicked holding the lock left the server as it was: still usable.
    server.lock().unwrap_or_else(|e| e.into_inner())
}
