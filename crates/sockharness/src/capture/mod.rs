//! Packet capture: everything of [`sockharness_wire`] (pcap files, decoding, wire traces,
//! rendering), [`live`], the capture of a scenario's own namespace while it runs, and [`spill`],
//! its file once it outgrows memory.

pub mod live;
pub mod spill;

pub use sockharness_wire::*;
