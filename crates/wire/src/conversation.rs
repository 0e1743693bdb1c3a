//! Each TCP connection of a capture as a conversation: what the client and the server sent, in
//! turns, in the order the bytes first appeared, and how it ended. What a seed scenario is
//! written from (`sockharness scenario-from-pcap`).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use etherparse::TransportSlice;

use super::decode::slice;
use super::pcap::Capture;
use super::streams::MAX_STREAM;

/// One side's bytes in a row, until the other side sent some.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// Whether the client sent them.
    pub from_client: bool,
    /// The bytes, retransmissions counted once.
    pub bytes: Vec<u8>,
}

/// How a conversation ended in the capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client sent the first FIN.
    ClientClosed,
    /// The server sent the first FIN.
    ServerClosed,
    /// The client reset the connection.
    ClientReset,
    /// The server reset it.
    ServerReset,
    /// The capture ends with the connection open.
    Open,
}

/// One captured TCP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The side that sent the SYN (or, for a connection captured after its handshake, the one
    /// with the higher port).
    pub client: SocketAddr,
    /// The other side.
    pub server: SocketAddr,
    /// The bytes, in turns.
    pub turns: Vec<Turn>,
    /// How it ended.
    pub end: End,
    /// How many turns there were when the client sent its FIN, if it did: a client that
    /// half-closes before the server answers (`shutdown(SHUT_WR)`) shows here.
    pub client_fin: Option<usize>,
    /// Whether the capture missed bytes (a hole it never filled): what follows the hole is left
    /// out.
    pub gap: bool,
}

/// One direction's reassembly: where its bytes start, how many are in, what waits for a hole.
#[derive(Default)]
struct Half {
    isn: Option<u32>,
    delivered: usize,
    waiting: BTreeMap<usize, Vec<u8>>,
}

impl Half {
    /// Takes in a segment; returns the bytes that became contiguous.
    fn segment(&mut self, seq: u32, payload: &[u8]) -> Vec<u8> {
        if payload.is_empty() {
            return Vec::new();
        }
        let isn = *self.isn.get_or_insert(seq);
        let off = seq.wrapping_sub(isn) as usize;
        if off + payload.len() > self.delivered {
            self.waiting.entry(off).or_insert_with(|| payload.to_vec());
        }
        let mut out = Vec::new();
        while let Some((&off, _)) = self.waiting.first_key_value() {
            if off > self.delivered || self.delivered >= MAX_STREAM {
                break;
            }
            let d = self.waiting.pop_first().map(|(_, d)| d).unwrap_or_default();
            if off + d.len() > self.delivered {
                out.extend_from_slice(&d[self.delivered - off..]);
                self.delivered = off + d.len();
            }
        }
        out
    }
}

struct Flow {
    client: SocketAddr,
    server: SocketAddr,
    /// By direction: 0 from the client, 1 from the server.
    halves: [Half; 2],
    turns: Vec<Turn>,
    end: End,
    client_fin: Option<usize>,
}

/// Every TCP connection of `cap`, in the order of their first packets. A 4-tuple reused after
/// a connection ended (a new SYN) starts a new conversation.
pub fn conversations(cap: &Capture) -> Vec<Conversation> {
    let mut flows: Vec<Flow> = Vec::new();
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
        let src = SocketAddr::new(src, tcp.source_port());
        let dst = SocketAddr::new(dst, tcp.destination_port());
        let opening = tcp.syn() && !tcp.ack();
        // The newest flow of this pair, unless a SYN starts another after it ended.
        let found = flows.iter().rposition(|f| {
            (f.client, f.server) == (src, dst) || (f.client, f.server) == (dst, src)
        });
        let i = match found {
            Some(i) if !(opening && flows[i].end != End::Open) => i,
            _ => {
                let (client, server) = if opening || src.port() > dst.port() {
                    (src, dst)
                } else {
                    (dst, src)
                };
                flows.push(Flow {
                    client,
                    server,
                    halves: [Half::default(), Half::default()],
                    turns: Vec::new(),
                    end: End::Open,
                    client_fin: None,
                });
                flows.len() - 1
            }
        };
        let f = &mut flows[i];
        let from_client = src == f.client;
        let half = &mut f.halves[usize::from(!from_client)];
        let seq = tcp.sequence_number();
        if tcp.syn() {
            // The SYN takes one sequence number; data starts after it.
            half.isn = Some(seq.wrapping_add(1));
        }
        let fresh = half.segment(seq, tcp.payload());
        if !fresh.is_empty() {
            match f.turns.last_mut() {
                Some(t) if t.from_client == from_client => t.bytes.extend_from_slice(&fresh),
                _ => f.turns.push(Turn {
                    from_client,
                    bytes: fresh,
                }),
            }
        }
        if tcp.fin() && from_client && f.client_fin.is_none() {
            f.client_fin = Some(f.turns.len());
        }
        if f.end == End::Open {
            f.end = match (tcp.rst(), tcp.fin(), from_client) {
                (true, _, true) => End::ClientReset,
                (true, _, false) => End::ServerReset,
                (false, true, true) => End::ClientClosed,
                (false, true, false) => End::ServerClosed,
                _ => End::Open,
            };
        }
    }
    flows
        .into_iter()
        .map(|f| Conversation {
            gap: f.halves.iter().any(|h| !h.waiting.is_empty()),
            client: f.client,
            server: f.server,
            turns: f.turns,
            end: f.end,
            client_fin: f.client_fin,
        })
        .collect()
}
