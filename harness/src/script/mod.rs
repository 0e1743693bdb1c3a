//! The scenario language: lexer, parser, diagnostics, the model, and a printer.
//!
//! Nothing here touches the network, so all of it can be tested, fuzzed and run under Miri
//! without a socket.

mod builder;
mod data;
mod diag;
pub mod errno;
mod lexer;
mod model;
mod parser;
mod printer;
mod validate;

pub use builder::ScenarioBuilder;
pub use data::{escape, preview, random_bytes};
pub use diag::{position, Diagnostics, Position, Problem, MAX_PROBLEMS};
pub use model::*;
pub use parser::{parse, parse_faults, MAX_DATA};
pub use printer::{Dur, Size};
