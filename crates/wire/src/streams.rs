//! The bytes each client of a capture sent, reassembled in sequence order: what the fuzzer
//! replays from a pcap. Unlike the wire trace, which keeps a short preview of each payload,
//! this keeps every byte.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use etherparse::TransportSlice;

use super::decode::slice;
use super::pcap::Capture;

/// Bytes per client stream past which the rest is left out.
pub const MAX_STREAM: usize = 1 << 20;

/// One client-to-server byte stream of a captured TCP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientStream {
    /// The client's address (the side that sent the SYN, or else the higher port).
    pub client: SocketAddr,
    /// The server's address.
    pub server: SocketAddr,
    /// What the client sent, in sequence order, retransmissions counted once.
    pub bytes: Vec<u8>,
}

/// Every connection's client stream, in the order the connections first appear. Connections
/// whose client sent nothing are left out.
pub fn client_streams(cap: &Capture) -> Vec<ClientStream> {
    // Per (src, dst): the first sequence number seen and the payloads by sequence number.
    struct Half {
        isn: Option<u32>,
        syn_only: bool,
        data: BTreeMap<u32, Vec<u8>>,
    }
    let mut halves: Vec<((SocketAddr, SocketAddr), Half)> = Vec::new();
    // A copy a host received carries nothing its sender did not send.
    for p in cap.packets.iter().filter(|p| !p.is_received_copy()) {
        let Some(sliced) = slice(cap.link, &p.data) else {
            continue;
        };
        let Some(TransportSlice::Tcp(tcp)) = &sliced.transport else {
            continue;
        };
        let Some((src, dst)) = sliced.net.as_ref().and_then(|n| match n {
            etherparse::LaxNetSlice::Ipv4(v4) => Some((
                std::net::IpAddr::from(v4.header().source_addr()),
                std::net::IpAddr::from(v4.header().destination_addr()),
            )),
            etherparse::LaxNetSlice::Ipv6(v6) => Some((
                v6.header().source_addr().into(),
                v6.header().destination_addr().into(),
            )),
            etherparse::LaxNetSlice::Arp(_) => None,
        }) else {
            continue;
        };
        let key = (
            SocketAddr::new(src, tcp.source_port()),
            SocketAddr::new(dst, tcp.destination_port()),
        );
        let i = match halves.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                halves.push((
                    key,
                    Half {
                        isn: None,
                        syn_only: false,
                        data: BTreeMap::new(),
                    },
                ));
                halves.len() - 1
            }
        };
        let half = &mut halves[i].1;
        let seq = tcp.sequence_number();
        if tcp.syn() {
            // The SYN takes one sequence number; data starts after it.
            half.isn = Some(seq.wrapping_add(1));
            half.syn_only |= !tcp.ack();
        }
        let payload = tcp.payload();
        if !payload.is_empty() {
            half.isn.get_or_insert(seq);
            half.data.entry(seq).or_insert_with(|| payload.to_vec());
        }
    }
    let mut out = Vec::new();
    for ((src, dst), half) in &halves {
        let reverse = halves.iter().find(|((s, d), _)| s == dst && d == src);
        let is_client = if half.syn_only {
            true
        } else if reverse.is_some_and(|(_, h)| h.syn_only) {
            false
        } else {
            src.port() > dst.port()
        };
        if !is_client || half.data.is_empty() {
            continue;
        }
        let Some(isn) = half.isn else { continue };
        // Order by offset from the first byte, so a sequence number that wraps sorts right.
        let mut pieces: Vec<(u32, &Vec<u8>)> = half
            .data
            .iter()
            .map(|(seq, d)| (seq.wrapping_sub(isn), d))
            .collect();
        pieces.sort_by_key(|(off, _)| *off);
        let mut bytes = Vec::new();
        for (off, d) in pieces {
            let off = off as usize;
            let end = off + d.len();
            if end <= bytes.len() || off > bytes.len() {
                // A retransmission of what is already here, or a hole the capture missed.
                if off > bytes.len() {
                    break;
                }
                continue;
            }
            bytes.extend_from_slice(&d[bytes.len() - off..]);
            if bytes.len() >= MAX_STREAM {
                bytes.truncate(MAX_STREAM);
                break;
            }
        }
        if bytes.is_empty() {
            // The capture missed the start of the stream.
            continue;
        }
        out.push(ClientStream {
            client: *src,
            server: *dst,
            bytes,
        });
    }
    out
}
