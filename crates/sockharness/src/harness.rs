//! The test API: scenarios as `#[test]`s of a Rust project, against its own services.
//!
//! ```
//! use sockharness::Harness;
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! // The crate's own service: upper-cases what it reads.
//! async fn shout(mut stream: tokio::net::TcpStream) {
//!     let mut buf = [0u8; 1024];
//!     while let Ok(n) = stream.read(&mut buf).await {
//!         if n == 0 || stream.write_all(&buf[..n].to_ascii_uppercase()).await.is_err() {
//!             break;
//!         }
//!     }
//! }
//!
//! Harness::new()
//!     .service("app", shout)
//!     .run_text(
//!         "shout.scenario",
//!         "target app builtin echo\n\
//!          connect c to app\n\
//!          send c \"hi\" chunk=1\n\
//!          recv c exact 2 == \"HI\"\n",
//!     )
//!     .assert_passed();
//! ```
//!
//! A failure panics with the whole report: the file and line, what was expected and what
//! happened, where two byte streams first differ, the trace up to the failure, and the capture
//! kept under the target directory. A skipped scenario is never taken for a pass:
//! [`Checked::assert_passed`] panics with the reason, and a caller that can live with it says
//! so with [`Checked::assert_passed_or_skipped`].
//!
//! Scenarios run isolated, each in a private network namespace, unless [`Harness::isolation`]
//! says otherwise; for an ordinary user that works through the user namespace the process
//! enters before `main` (see [`sandbox`](crate::sandbox)), so libtest's threads do not stand in
//! the way. Where isolation is impossible, the scenario fails at setup with the reason.

use std::future::Future;
use std::path::{Path, PathBuf};

use crate::report;
use crate::run::{self, Failure, RunOptions, ScenarioRun, Status};
use crate::sandbox::Isolation;
use crate::script::{self, Scenario};

/// Runs scenarios for tests: services, isolation and capture set once, then one call a
/// scenario.
#[derive(Debug, Clone)]
pub struct Harness {
    options: RunOptions,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    /// Isolated, captured, with no services.
    pub fn new() -> Harness {
        Harness {
            options: RunOptions {
                isolation: Isolation::Always,
                capture: true,
                ..RunOptions::default()
            },
        }
    }

    /// Serves every connection to the scenario's `target NAME` with `service`, in-process, in
    /// the scenario's runtime; no process is started, whatever the `target` statement says.
    pub fn service<F, Fut>(mut self, name: &str, service: F) -> Harness
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.options.services = self.options.services.with(name, service);
        self
    }

    /// How to isolate (default [`Isolation::Always`]). [`Isolation::Never`] runs on the host
    /// loopback, for scenarios that talk to a server already running there (`target T at`);
    /// [`Isolation::Auto`] isolates where possible and otherwise skips what needs it.
    pub fn isolation(mut self, isolation: Isolation) -> Harness {
        self.options.isolation = isolation;
        self
    }

    /// Whether to capture packets (default on; only isolated scenarios are captured).
    pub fn capture(mut self, on: bool) -> Harness {
        self.options.capture = on;
        self
    }

    /// Reads, parses and runs a scenario file (relative paths are from the current directory:
    /// the package's root under `cargo test`). A file that cannot be read or parsed panics
    /// with its diagnostics.
    #[track_caller]
    pub fn run_file(&self, path: impl AsRef<Path>) -> Checked {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {shown}: {e}"));
        self.run_bytes(&shown, &bytes)
    }

    /// Parses and runs scenario text, shown as `path` in reports. Text that does not parse
    /// panics with its diagnostics.
    #[track_caller]
    pub fn run_text(&self, path: &str, text: &str) -> Checked {
        self.run_bytes(path, text.as_bytes())
    }

    #[track_caller]
    fn run_bytes(&self, path: &str, bytes: &[u8]) -> Checked {
        match script::parse(path, bytes) {
            Ok(scenario) => self.check(path, &scenario),
            Err(d) => panic!("{path} does not parse:\n{d}"),
        }
    }

    /// Runs a scenario built in Rust ([`ScenarioBuilder`](crate::script::ScenarioBuilder)),
    /// validated as a parsed one is; a problem panics with the same message `check` gives.
    #[track_caller]
    pub fn run(&self, scenario: &Scenario) -> Checked {
        if let Err(d) = scenario.validate() {
            panic!("the scenario is not valid:\n{d}");
        }
        self.check("<built scenario>", scenario)
    }

    /// Runs a parsed scenario, shown as `path` in reports.
    pub(crate) fn check(&self, path: &str, scenario: &Scenario) -> Checked {
        let run = run::run_with(scenario, &self.options);
        let capture = match &run.status {
            Status::Failed(_) => save_capture(path, &run),
            _ => None,
        };
        Checked {
            path: path.to_string(),
            run,
            capture,
        }
    }
}

/// A scenario's run, to assert on.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The path shown in reports.
    pub path: String,
    /// What happened.
    pub run: ScenarioRun,
    /// Where a failed run's capture was written, if it was captured.
    pub capture: Option<PathBuf>,
}

impl Checked {
    /// The report as `sockharness run` prints it, with the capture's path.
    pub fn report(&self) -> String {
        let mut out = report::render(&self.path, &self.run);
        if let Some(path) = &self.capture {
            out.push_str(&format!("  capture: {}\n", path.display()));
        }
        out
    }

    /// Panics with the report unless the scenario passed; a skipped one panics too, with its
    /// reason.
    #[track_caller]
    pub fn assert_passed(&self) -> &Checked {
        match &self.run.status {
            Status::Passed => self,
            Status::Skipped(why) => panic!(
                "{} was skipped, not passed: {why}\n(use assert_passed_or_skipped to accept that)",
                self.path
            ),
            Status::Failed(_) => panic!("{}", self.report()),
        }
    }

    /// Panics with the report if the scenario failed; returns the reason it was skipped, if it
    /// was, for the caller to print or check.
    #[track_caller]
    pub fn assert_passed_or_skipped(&self) -> Option<&str> {
        match &self.run.status {
            Status::Passed => None,
            Status::Skipped(why) => Some(why),
            Status::Failed(_) => panic!("{}", self.report()),
        }
    }

    /// Panics unless the scenario failed; returns the failure, to check its kind or line.
    #[track_caller]
    pub fn assert_failed(&self) -> &Failure {
        match &self.run.status {
            Status::Failed(f) => f,
            Status::Passed => panic!("{} passed, but it was expected to fail", self.path),
            Status::Skipped(why) => panic!(
                "{} was skipped, but it was expected to fail: {why}",
                self.path
            ),
        }
    }
}

/// Writes a failed run's capture where `sockharness run` keeps them (`target/sockharness/`,
/// found from the test binary's own path; else the temporary directory), or returns `None` if
/// it cannot.
fn save_capture(path: &str, run: &ScenarioRun) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // A test binary is TARGET/PROFILE/deps/NAME; anything else (a doctest, an example) keeps
    // its captures in the temporary directory.
    let deps = exe.parent()?;
    let dir = match deps.parent().and_then(Path::parent) {
        Some(target) if deps.file_name().is_some_and(|n| n == "deps") => target.join("sockharness"),
        _ => std::env::temp_dir().join("sockharness"),
    };
    // Paths under the current directory (the package's root, under `cargo test`) are named
    // from there: `backlog/overflow.scenario` is kept as `backlog__overflow.pcap`.
    let cwd = std::env::current_dir().unwrap_or_default();
    let shown = Path::new(path)
        .strip_prefix(&cwd)
        .unwrap_or(Path::new(path));
    let name: String = shown
        .to_string_lossy()
        .trim_end_matches(".scenario")
        .replace(['/', '\\'], "__")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let file = dir.join(format!("{name}.pcap"));
    std::fs::create_dir_all(&dir).ok()?;
    run.save_capture(&file).ok()?.then_some(file)
}
