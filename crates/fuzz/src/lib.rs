//! Fuzzing and property testing.
//!
//! - [`strategy`]: proptest strategies for chunkings, gap schedules, fault schedules and whole
//!   valid scenarios, all shrinking to minimal cases.
//! - [`chaos`]: a stream wrapper whose reads and writes return partial results, `Pending`, EOF
//!   and errors on a schedule, for unit tests of Rust services that need no kernel.
//! - [`rig`]: the two fast tiers that cargo-fuzz targets and benches drive: an in-process
//!   service under chaos I/O, and the echo example over real sockets through one persistent
//!   runtime.
//! - The fuzzer of real servers behind `sockharness fuzz` ([`fuzz()`]): [`seed`] (what it
//!   starts from), [`calibrate`] (the answer to plain delivery), [`case`] (a seed and its
//!   edits, as data), [`mutate`] (the seeded generator), [`engine`] (the loop), `fuzzer` (its
//!   configuration, reports and the oracle that judges one scenario), [`leak`] (the descriptor-leak oracle); privately, `server` (the process
//!   under test, reused and restarted), `prepare` (calibration), `minimize` (shrinking a
//!   failure) and `reproduce` (reproducers, checked against a fresh server).
//!
//! Nothing in `strategy`, `chaos`, `case` and `mutate` opens a socket.

pub mod calibrate;
pub mod cargo_fuzz;
pub mod case;
pub mod chaos;
pub mod coverage;
pub mod engine;
pub mod from_capture;
mod fuzzer;
pub mod leak;
mod minimize;
pub mod mutate;
mod prepare;
pub mod queue;
mod reproduce;
pub mod rig;
pub mod seed;
mod server;
pub mod service;
pub mod stats;
pub mod strategy;
pub mod sync;

pub use engine::fuzz;
pub use fuzzer::{Config, Coverage, Expect, Found, Phase, Progress, Report};
pub use queue::CoverageStats;
pub use server::{kill_now, Server};

use std::sync::atomic::{AtomicBool, Ordering};

use thiserror::Error;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Asks a running [`fuzz()`] to stop (on Ctrl-C, say): it finishes the inputs in flight, stops
/// its server, and returns what it found so far.
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Whether [`interrupt`] was called.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Why a fuzz run could not go on.
#[derive(Debug, Error)]
pub enum FuzzError {
    /// The server under test could not be started or reached.
    #[error("server under test: {0}")]
    Server(String),
    /// There is nothing to fuzz from.
    #[error("no seeds: give --seed-scenario, --corpus, or neither (to use the built-in probes)")]
    NoSeeds,
    /// A seed could not be loaded.
    #[error(transparent)]
    Seed(#[from] seed::SeedError),
    /// The output directory could not be written.
    #[error("cannot write {path}: {source}")]
    Out {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A server at an address (`--addr`) stopped answering: the inputs broke it, and it cannot
    /// be restarted to find out which.
    #[error("{0}")]
    Gone(String),
    /// The server cannot give the coverage asked for.
    #[error(transparent)]
    Coverage(#[from] coverage::CoverageError),
    /// The sync directory (`--sync-dir`) cannot be used.
    #[error("sync directory {0}")]
    Sync(String),
    /// The run was interrupted before anything was fuzzed.
    #[error("interrupted before anything was fuzzed")]
    Interrupted,
    /// No input ran in the time given, for this reason: a run that tested nothing is not a
    /// success.
    #[error("no input ran: {0}")]
    NothingRan(String),
    /// A bug in sockharness.
    #[error("internal error (a bug; please report it): {0}")]
    Internal(String),
}
