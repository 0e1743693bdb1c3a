//! Packet capture: everything of [`sockharness_wire`] (pcap files, decoding, wire traces,
//! rendering), and [`live`], the capture of a scenario's own namespace while it runs.

pub mod live;

pub use sockharness_wire::*;
