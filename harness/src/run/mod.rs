//! The executor: runs a scenario on real kernel TCP sockets.
//!
//! Each scenario runs on the calling thread with its own current-thread tokio runtime, so a
//! scenario's sockets, timers and background statements live and die together. Every blocking
//! statement has a deadline (`timeout`, default 5s); when the scenario ends, passed or failed,
//! every background statement is cancelled and every socket closed.

mod check;
mod exec;
mod sock;
mod timing;

use std::time::{Duration, Instant};

pub use timing::{
    scale_from_env, Tolerance, DEFAULT_TIMEOUT, DEFAULT_TOLERANCE, RELATIVE, SCALE_VAR,
};

use crate::script::Scenario;
use crate::trace::Trace;

/// Why a scenario failed: the first expectation that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// 1-based line of the statement (0 for statements built in Rust).
    pub line: u32,
    /// The statement as written.
    pub statement: String,
    /// What the script expected.
    pub expected: String,
    /// What happened.
    pub actual: String,
    /// More detail, such as where two byte streams first differ.
    pub detail: Option<String>,
}

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

/// The result of running one scenario.
#[derive(Debug, Clone)]
pub struct ScenarioRun {
    /// Passed, failed or skipped.
    pub status: Status,
    /// What happened, statement by statement, up to the end or the failure.
    pub trace: Trace,
    /// Wall-clock time the run took.
    pub duration: Duration,
}

/// Runs `scenario` on real sockets and returns its verdict and trace.
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
    let started = Instant::now();
    if let Some(reason) = skip_reason(scenario) {
        return ScenarioRun {
            status: Status::Skipped(reason),
            trace: Trace::default(),
            duration: started.elapsed(),
        };
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            return ScenarioRun {
                status: Status::Failed(Failure {
                    line: 0,
                    statement: String::new(),
                    expected: "a runtime for the scenario".into(),
                    actual: format!("could not start one: {e}"),
                    detail: None,
                }),
                trace: Trace::default(),
                duration: started.elapsed(),
            }
        }
    };
    let timeout = scenario.settings.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let tolerance = Tolerance::from_env(scenario.settings.tolerance);
    let local = tokio::task::LocalSet::new();
    let (status, trace) = local.block_on(
        &runtime,
        exec::Exec::new(scenario, timeout, tolerance).run(),
    );
    // Dropping the set and the runtime here cancels what is left and closes every socket.
    drop(local);
    drop(runtime);
    ScenarioRun {
        status,
        trace,
        duration: started.elapsed(),
    }
}

/// Why a scenario cannot run here, if it cannot.
fn skip_reason(scenario: &Scenario) -> Option<String> {
    let (key, value) = scenario.settings.sysctls.first()?;
    Some(format!(
        "needs a private network namespace for `sysctl {key}={value}`, and this build runs \
         scenarios on the host loopback only (the host's sysctls are never written)"
    ))
}
