//! The fuzzer of `sockharness fuzz` inside a cargo-fuzz target, for a Rust service the target
//! runs in its own process: libFuzzer's bytes become a case (a seed scenario of the crate's and
//! transport edits of it, [`mutate::decode`]), played over real 127.0.0.1 sockets against the
//! service with the same oracles (the plain answers, liveness, the server's exit), and a failure
//! is confirmed on a fresh start of the service, minimised and written as a `.scenario` file
//! before the target panics, so that libFuzzer keeps the input too. libFuzzer's coverage of the
//! service's code is what guides it.
//!
//! ```no_run
//! # async fn my_accept_loop(_: tokio::net::TcpListener) {}
//! use sockharness_fuzz::cargo_fuzz::{Options, Target};
//! use sockharness_fuzz::service::Service;
//!
//! thread_local! {
//!     static TARGET: Target = Target::new(
//!         Service::new("my-service", my_accept_loop),
//!         Options::new().seed("echo.scenario", "target srv builtin echo\nconnect c to srv\nsend c \"hi\\n\"\nrecv c 3 == \"hi\\n\"\n"),
//!     )
//!     .unwrap_or_else(|e| panic!("{e}"));
//! }
//! // fuzz_target!(|data: &[u8]| TARGET.with(|t| t.fuzz(data)));
//! ```

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sockharness::script;

use super::case::{Case, Edit};
use super::fuzzer::{Config, Expect, Found, Fuzzer, Report, Verdict};
use super::mutate::{self, Shape};
use super::prepare::{prepare, recheck};
use super::reproduce::conclude;
use super::seed::{SeedError, Seeds};
use super::server::{Running, Server};
use super::service::Service;
use super::FuzzError;

/// What a [`Target`] starts from and how it judges.
#[derive(Debug)]
pub struct Options {
    seeds: Seeds,
    expect: Option<Expect>,
    out: PathBuf,
    minimize_for: Duration,
    problem: Option<SeedError>,
}

impl Default for Options {
    fn default() -> Options {
        Options::new()
    }
}

impl Options {
    /// No seeds yet; reproducers go to `$SOCKHARNESS_REPRODUCERS`, else `sockharness-reproducers`
    /// in the working directory.
    pub fn new() -> Options {
        Options {
            seeds: Seeds::default(),
            expect: None,
            out: std::env::var_os("SOCKHARNESS_REPRODUCERS")
                .map_or_else(|| PathBuf::from("sockharness-reproducers"), PathBuf::from),
            minimize_for: Duration::from_secs(30),
            problem: None,
        }
    }

    /// A seed scenario, as text (`include_str!` of the crate's own): its `target` is replaced
    /// by the service, and its clients' requests are what the cases send. A seed that does not
    /// parse makes [`Target::new`] fail with its `label:line:column` diagnostics.
    pub fn seed(mut self, label: &str, text: &str) -> Options {
        let added = script::parse(label, text.as_bytes())
            .map_err(SeedError::Parse)
            .and_then(|sc| self.seeds.add_scenario(label, sc));
        if let Err(e) = added {
            self.problem.get_or_insert(e);
        }
        self
    }

    /// The service must send back every byte it is sent (`--expect echo`).
    pub fn expect_echo(mut self) -> Options {
        self.expect = Some(Expect::Echo);
        self
    }

    /// Where reproducers go.
    pub fn out(mut self, dir: impl Into<PathBuf>) -> Options {
        self.out = dir.into();
        self
    }

    /// How long to spend minimising a failure (30 s unless said).
    pub fn minimize_for(mut self, time: Duration) -> Options {
        self.minimize_for = time;
        self
    }
}

/// A service under test and the seeds calibrated against it, kept for the life of the fuzz
/// target's process (one per thread, in a `thread_local!`).
pub struct Target {
    state: Mutex<State>,
    /// The scenario the input being played runs, for the panic hook: a panic in the service
    /// aborts the process under libFuzzer before any other report.
    playing: Arc<Mutex<String>>,
}

struct State {
    fz: Fuzzer<'static>,
    shapes: Vec<Shape>,
    streams: Vec<Vec<u8>>,
    report: Report,
    started: Instant,
    inputs: u64,
    /// A seed that failed by itself: reported by the first input.
    pending: Option<Box<Found>>,
}

/// The run's time as far as calibration and minimising see it: a fuzz target runs as long as
/// libFuzzer says.
const TIME: Duration = Duration::from_secs(3600);

impl Target {
    /// Starts the service, delivers every seed's requests plainly to record their answers, and
    /// checks each seed unchanged. Calibration notes go to standard error.
    pub fn new(service: Service, options: Options) -> Result<Target, FuzzError> {
        if let Some(problem) = options.problem {
            return Err(FuzzError::Seed(problem));
        }
        if options.seeds.is_empty() {
            return Err(FuzzError::NoSeeds);
        }
        std::fs::create_dir_all(&options.out).map_err(|source| FuzzError::Out {
            path: options.out.display().to_string(),
            source,
        })?;
        // A target lives as long as its process: so does its configuration, which the
        // fuzzer's state borrows.
        let cfg: &'static Config = Box::leak(Box::new(Config {
            server: Server::Service(service),
            seeds: options.seeds,
            expect: options.expect,
            time: TIME,
            runs: None,
            seed: 0,
            out: options.out,
            jobs: 1,
            minimize_for: options.minimize_for,
            coverage: None,
            dict: Vec::new(),
            sync: None,
        }));
        let started = Instant::now();
        let mut fz = Fuzzer {
            cfg,
            server: Mutex::new(Running::start(&cfg.server, None)?),
            seeds: Vec::new(),
            health: None,
            invalid: Mutex::new((0, None)),
            pool: Vec::new(),
            queue: None,
        };
        let mut given = cfg.seeds.clone();
        given.dedup();
        let mut report = Report::default();
        prepare(&mut fz, &given, &mut report)?;
        let mut shapes: Vec<Shape> = fz.seeds.iter().map(Shape::of).collect();
        let mut pending = None;
        for (i, shape) in shapes.iter_mut().enumerate() {
            let case = Case {
                seed: i,
                edits: Vec::new(),
            };
            let v = match fz.check_fresh(&fz.seeds[i], &case)? {
                Verdict::Fail(f) if !f.kind.is_timeout() && recheck(&mut fz, i, &mut report)? => {
                    Verdict::Pass
                }
                v => v,
            };
            if matches!(v, Verdict::Skip) {
                shape.weight = 0.0;
            } else if v.failed() {
                // Not fuzzed: every case of it would fail the same way.
                shape.weight = 0.0;
                if pending.is_none() {
                    pending =
                        conclude(&fz, case, v, started, 0, &mut |_| {}, &mut report)?.map(Box::new);
                }
            }
        }
        for n in &report.notes {
            eprintln!("sockharness: note: {n}");
        }
        report.notes.clear();
        let streams = given.streams.iter().map(|s| s.bytes.clone()).collect();
        let playing = Arc::new(Mutex::new(String::new()));
        hook(playing.clone(), cfg.out.clone());
        fz.fresh()?;
        Ok(Target {
            state: Mutex::new(State {
                fz,
                shapes,
                streams,
                report,
                started,
                inputs: 0,
                pending,
            }),
            playing,
        })
    }

    /// Plays one input: `Err` with the failure found, its reproducer written, when the service
    /// fails it (and fails it again alone on a fresh start).
    pub fn run(&self, data: &[u8]) -> Result<(), Box<Found>> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = &mut *guard;
        if let Some(found) = st.pending.take() {
            return Err(found);
        }
        st.inputs += 1;
        let echo = matches!(st.fz.cfg.expect, Some(Expect::Echo));
        let case = mutate::decode(data, &st.fz.seeds, &st.shapes, &st.streams, echo);
        let source = st.fz.source();
        let sc = st.fz.with_health(&st.fz.seeds[case.seed], &case, &source);
        {
            // As a reproducer aims it: at a fresh start of the service.
            let mut aimed = sc.clone();
            super::case::retarget(&mut aimed, &st.fz.cfg.server.source());
            *self.playing.lock().unwrap_or_else(|e| e.into_inner()) = aimed.to_string();
        }
        let v = st.fz.run(&sc, Duration::ZERO);
        if !v.failed() {
            return Ok(());
        }
        // Alone on a fresh start, as it is, then with pauses between its pieces.
        let steadied = Case {
            seed: case.seed,
            edits: case.edits.iter().map(Edit::steadied).collect(),
        };
        let mut confirmed = None;
        for c in [case.clone(), steadied] {
            match st.fz.check_fresh(&st.fz.seeds[c.seed], &c) {
                Ok(v) if v.failed() => {
                    confirmed = Some((c, v));
                    break;
                }
                Ok(_) => {}
                Err(e) => gone(st, e),
            }
        }
        let result = match confirmed {
            None => Ok(()),
            Some((c, v)) => {
                let weakened = match &v {
                    Verdict::Fail(f) if !f.kind.is_timeout() => {
                        match recheck(&mut st.fz, c.seed, &mut st.report) {
                            Ok(w) => w,
                            Err(e) => gone(st, e),
                        }
                    }
                    _ => false,
                };
                if weakened {
                    Ok(())
                } else {
                    let (started, inputs) = (st.started, st.inputs);
                    match conclude(&st.fz, c, v, started, inputs, &mut |_| {}, &mut st.report) {
                        Ok(Some(found)) => Err(Box::new(found)),
                        Ok(None) => Ok(()),
                        Err(e) => gone(st, e),
                    }
                }
            }
        };
        for n in st.report.notes.drain(..) {
            eprintln!("sockharness: note: {n}");
        }
        if result.is_ok() {
            if let Err(e) = st.fz.fresh() {
                gone(st, e);
            }
        }
        result
    }

    /// [`run`](Target::run), panicking with the failure and where its reproducer is: what a
    /// `fuzz_target!` calls, so that libFuzzer keeps the input.
    pub fn fuzz(&self, data: &[u8]) {
        if let Err(found) = self.run(data) {
            panic!("{}", describe(&found));
        }
    }
}

/// The fuzzer itself cannot go on (the service does not start again): nothing an input can
/// be blamed for, and nothing later inputs could run against.
fn gone(st: &State, e: FuzzError) -> ! {
    panic!(
        "sockharness: the fuzzer cannot go on after {} inputs: {e}",
        st.inputs
    )
}

/// The failure as `sockharness fuzz` reports it.
pub fn describe(f: &Found) -> String {
    let clip = |s: &str| match s.char_indices().nth(160) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_string(),
    };
    let mut out = format!(
        "sockharness: {} at {}: expected {}, got {}",
        f.oracle,
        clip(&f.failure.statement),
        clip(&f.failure.expected),
        clip(&f.failure.actual)
    );
    if let Some(exit) = &f.exit {
        out.push_str(&format!(" ({exit})"));
    }
    if !f.how.is_empty() {
        out.push_str(&format!("\n  how: {}", f.how));
    }
    match &f.unwritten {
        Some(why) => out.push_str(&format!("\n  reproducer: {why}\n{}", f.text)),
        None => out.push_str(&format!(
            "\n  reproducer: {} ({} statements, {} bytes); it failed {} of {} runs against a fresh start",
            f.reproducer.display(),
            f.statements,
            f.bytes,
            f.reproduced,
            f.tries
        )),
    }
    out
}

/// Before the process goes down on a panic in the service (libFuzzer aborts on any panic), the
/// scenario of the input being played is written where reproducers go.
fn hook(playing: Arc<Mutex<String>>, out: PathBuf) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_service = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("service "));
        if in_service {
            if let Ok(text) = playing.try_lock() {
                let path = out.join(format!("panic-{}.scenario", std::process::id()));
                let header: String = format!("The service panicked during this scenario: {info}")
                    .lines()
                    .map(|l| format!("# {l}\n"))
                    .collect();
                if std::fs::write(&path, format!("{header}{text}")).is_ok() {
                    eprintln!(
                        "sockharness: the scenario that made the service panic: {}",
                        path.display()
                    );
                }
            }
        }
        previous(info);
    }));
}
