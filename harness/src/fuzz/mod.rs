//! Fuzzing and property testing.
//!
//! - [`strategy`]: proptest strategies for chunkings, gap schedules, fault schedules and whole
//!   valid scenarios, all shrinking to minimal cases.
//! - [`chaos`]: a stream wrapper whose reads and writes return partial results, `Pending`, EOF
//!   and errors on a schedule, for unit tests of Rust services that need no kernel.
//! - [`rig`]: the two fast tiers that cargo-fuzz targets and benches drive: an in-process
//!   service under chaos I/O, and the echo example over real sockets through one persistent
//!   runtime.
//!
//! Nothing in `strategy` and `chaos` opens a socket.

pub mod chaos;
pub mod rig;
pub mod strategy;
