//! Packet capture: pcap files, TCP decoding into a wire trace, and ladder diagrams.
//!
//! Everything here except `live` works on bytes and files, without a socket.
