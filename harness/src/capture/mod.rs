//! Packet capture: pcap files, TCP decoding into a wire trace, and ladder diagrams.
//!
//! Everything here except `live` works on bytes and files, without a socket.

pub mod live;
pub mod pcap;
pub mod svg;
mod wire;

pub use pcap::{Capture, LinkType, Packet, PcapError};
pub use wire::{decode, Flags, RenderOptions, Segment, WireTrace};
