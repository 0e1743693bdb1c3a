//! sockharness: scripted scenarios on real kernel sockets.
//!
//! The crates, from the bottom:
//!
//! - [`script`] (`sockharness-script`): the scenario language (lexer, parser, diagnostics,
//!   model, builder, printer), the event [`trace`] and byte diffs. No I/O.
//! - [`capture`] (`sockharness-wire`, plus [`capture::live`]): pcap files, decoding, wire
//!   traces and their rendering. No sockets, but for the live capture here.
//! - This crate: [`run`], the executor that plays a scenario on real sockets with deadlines;
//!   [`sandbox`], the private network namespaces; [`process`], servers started as processes; [`proxy`], the fault-injecting proxy;
//!   [`servers`], the bundled example servers (and, with the `zoo` feature, their broken
//!   variants); [`suite`], many scenario files at once; [`report`], failure reports;
//!   [`harness`], the test API ([`Harness`]) for a crate's own `#[test]`s.
//!
//! The fuzzer (`sockharness-fuzz`) and the command line (`sockharness-cli`) build on this
//! crate's public API.

pub use sockharness_script as script;
pub use sockharness_script::trace;

pub use harness::{Checked, Harness};

pub mod capture;
mod fdpass;
pub mod harness;
mod network;
pub mod process;
mod procnet;
pub mod proxy;
pub mod report;
pub mod run;
pub mod sandbox;
pub mod servers;
pub mod suite;

/// The README's Rust examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
