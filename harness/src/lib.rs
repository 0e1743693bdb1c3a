//! sockharness: scripted scenarios on real kernel sockets.
//!
//! Layers, from the bottom:
//!
//! - [`script`]: the scenario language (lexer, parser, diagnostics, model, printer). No sockets.
//! - [`trace`]: the event trace a run records, rendered as text for snapshots or as JSON. No
//!   sockets.
//! - [`run`]: the executor, which plays a scenario on real TCP sockets with deadlines.
//! - [`report`]: failure reports.

pub mod capture;
pub mod fuzz;
pub mod proxy;
pub mod report;
pub mod run;
pub mod sandbox;
pub mod script;
pub mod servers;
pub mod suite;
pub mod trace;

/// The README's Rust examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
