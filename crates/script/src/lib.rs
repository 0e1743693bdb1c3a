//! The sockharness scenario language: lexer, parser, diagnostics, the model, a builder and a
//! printer; the event trace a run records ([`trace`]); byte diffs ([`diff`]).
//!
//! Nothing here touches the network (the crate depends on no I/O library), so all of it can be
//! tested, fuzzed and run under Miri without a socket. The executor is in the `sockharness`
//! crate, which re-exports this one as `sockharness::script`.

mod builder;
mod data;
mod diag;
pub mod diff;
pub mod errno;
mod lexer;
mod model;
mod parser;
mod printer;
pub mod trace;
mod validate;

pub use builder::ScenarioBuilder;
pub use data::{escape, preview, random_bytes};
pub use diag::{position, Diagnostics, Position, Problem, MAX_PROBLEMS};
pub use model::*;
pub use parser::{closest, parse, parse_faults, MAX_DATA, MAX_STATEMENTS};
pub use printer::{Dur, Size};
