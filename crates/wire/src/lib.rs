//! Captures for sockharness: pcap files, TCP decoding into a wire trace, and ladder diagrams.
//!
//! Everything here works on bytes and files, without a socket (the live capture is in the
//! `sockharness` crate, as `sockharness_wire::live`). Layers, from the
//! bottom: [`pcap`] reads and writes capture files; `decode` turns packets into TCP segments
//! numbered as Wireshark numbers them ([`decode()`]); [`WireTrace`] answers wire expectations
//! and renders as text or JSON; [`svg`] draws it as a ladder diagram.

pub mod conversation;
mod decode;
mod lines;
pub mod pcap;
mod render;
pub mod streams;
pub mod svg;
mod wire;

pub use decode::decode;
pub use pcap::{Capture, LinkType, Packet, PcapError, Seen};
pub use render::RenderOptions;
pub use wire::{Flags, Marks, Segment, WireTrace, KEPT_PAYLOAD};
