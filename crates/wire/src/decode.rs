//! From captured packets to TCP segments: strip the link header, let etherparse slice IP and
//! TCP, then number each segment relative to its connection the way Wireshark does, so that
//! our numbers and tshark's can be compared field by field.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use etherparse::{
    EtherType, LaxIpPayloadSlice, LaxNetSlice, LaxSlicedPacket, TcpOptionElement, TcpSlice,
    TransportSlice,
};

use super::pcap::{Capture, LinkType, Packet};
use super::wire::{Flags, Segment, WireTrace, KEPT_PAYLOAD};

/// Decodes every TCP segment of a capture; other packets are counted in
/// [`WireTrace::skipped`]. In a capture of hosts' links a segment is the packet as its host
/// sent it, with what the link did to it; the copies the other host received only say when
/// it arrived.
pub fn decode(cap: &Capture) -> WireTrace {
    let mut trace = WireTrace {
        start: cap.packets.first().map(|p| p.ts).unwrap_or_default(),
        ..WireTrace::default()
    };
    let mut conns = Connections::default();
    // The segment each sent packet became, by packet index.
    let mut segment_of: HashMap<usize, usize> = HashMap::new();
    for (i, p) in cap.packets.iter().enumerate() {
        if let Some(of) = p.seen.and_then(|s| s.received) {
            if let Some(seg) = segment_of.get(&of).map(|&s| &mut trace.segments[s]) {
                seg.arrived.get_or_insert(p.ts);
            }
            continue;
        }
        match segment(cap.link, p) {
            Some(mut seg) => {
                conns.number(&mut seg);
                segment_of.insert(i, trace.segments.len());
                trace.segments.push(seg);
            }
            None => trace.skipped += 1,
        }
    }
    trace
}

/// Slices a packet from its link header down; `None` when it is not IP.
pub(super) fn slice(link: LinkType, data: &[u8]) -> Option<LaxSlicedPacket<'_>> {
    match link {
        LinkType::Ethernet => LaxSlicedPacket::from_ethernet(data).ok(),
        LinkType::Raw => LaxSlicedPacket::from_ip(data).ok(),
        LinkType::Null | LinkType::Loop => {
            let (family, rest) = data.split_first_chunk::<4>()?;
            // NULL is in the capturing host's byte order, which the file does not say; LOOP is
            // big-endian. Family values are small, so whichever end holds them tells.
            let family = match link {
                LinkType::Loop => u32::from_be_bytes(*family),
                _ if family[0] == 0 => u32::from_be_bytes(*family),
                _ => u32::from_le_bytes(*family),
            };
            // AF_INET is 2 everywhere; AF_INET6 is 24 (NetBSD, OpenBSD), 28 (FreeBSD) or
            // 30 (macOS).
            if !matches!(family, 2 | 24 | 28 | 30) {
                return None;
            }
            LaxSlicedPacket::from_ip(rest).ok()
        }
        // Cooked headers: etherparse's SLL parser refuses loopback's hardware type, and it has
        // no SLL2 at all, so read the one field needed, the EtherType, at its fixed place.
        LinkType::LinuxSll => cooked(data, 14, 16),
        LinkType::LinuxSll2 => cooked(data, 0, 20),
    }
}

/// An IP packet behind a Linux cooked header of `len` bytes with the EtherType at `at`.
fn cooked(data: &[u8], at: usize, len: usize) -> Option<LaxSlicedPacket<'_>> {
    let proto = data.get(at..at + 2)?;
    let ether = EtherType(u16::from_be_bytes([proto[0], proto[1]]));
    let ip = matches!(ether, EtherType::IPV4 | EtherType::IPV6);
    let rest = data.get(len..)?;
    ip.then(|| LaxSlicedPacket::from_ether_type(ether, rest))
}

/// The TCP segment in a packet, numbered absolutely; `None` when there is none.
fn segment(link: LinkType, packet: &Packet) -> Option<Segment> {
    let sliced = slice(link, &packet.data)?;
    let Some(TransportSlice::Tcp(tcp)) = &sliced.transport else {
        return None;
    };
    let (src, dst, ip_payload): (IpAddr, IpAddr, u32) = match sliced.net.as_ref()? {
        LaxNetSlice::Ipv4(v4) => {
            let h = v4.header();
            // What the IP header declares, even where the capture kept less.
            let declared = u32::from(h.total_len()).saturating_sub(u32::from(h.ihl()) * 4);
            let exts = v4.extensions().auth.map_or(0, |a| a.slice().len());
            let len = ip_payload_len(v4.payload(), declared, exts);
            (h.source_addr().into(), h.destination_addr().into(), len)
        }
        LaxNetSlice::Ipv6(v6) => {
            let h = v6.header();
            let exts = v6.extensions().slice().len();
            let len = ip_payload_len(v6.payload(), u32::from(h.payload_length()), exts);
            (h.source_addr().into(), h.destination_addr().into(), len)
        }
        LaxNetSlice::Arp(_) => return None,
    };
    let header_len = u32::from(tcp.data_offset()) * 4;
    let payload = tcp.payload();
    Some(Segment {
        ts: packet.ts,
        conn: 0,
        src: SocketAddr::new(src, tcp.source_port()),
        dst: SocketAddr::new(dst, tcp.destination_port()),
        flags: flags(tcp),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        rel_seq: 0,
        rel_ack: 0,
        window: tcp.window_size(),
        payload_len: ip_payload.saturating_sub(header_len),
        payload: payload[..payload.len().min(KEPT_PAYLOAD)].to_vec(),
        options: options(tcp),
        marks: packet.seen.map(|s| s.marks).unwrap_or_default(),
        arrived: None,
    })
}

/// The length of the transport header and payload. Where the capture kept the whole packet
/// the captured length is right (and is what Wireshark uses when the IP length is 0, as with
/// TSO); where it was cut, only the header knows.
fn ip_payload_len(payload: &LaxIpPayloadSlice, declared: u32, exts: usize) -> u32 {
    let kept = u32::try_from(payload.payload.len()).unwrap_or(u32::MAX);
    if payload.incomplete {
        let exts = u32::try_from(exts).unwrap_or(u32::MAX);
        declared.saturating_sub(exts).max(kept)
    } else {
        kept
    }
}

fn flags(tcp: &TcpSlice) -> Flags {
    let bits = [
        (tcp.fin(), Flags::FIN),
        (tcp.syn(), Flags::SYN),
        (tcp.rst(), Flags::RST),
        (tcp.psh(), Flags::PSH),
        (tcp.ack(), Flags::ACK),
        (tcp.urg(), Flags::URG),
        (tcp.ece(), Flags::ECE),
        (tcp.cwr(), Flags::CWR),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .fold(0, |acc, (_, bit)| acc | bit);
    Flags::from_bits(bits)
}

fn options(tcp: &TcpSlice) -> Vec<String> {
    let mut out = Vec::new();
    for opt in tcp.options_iterator() {
        let text = match opt {
            Ok(TcpOptionElement::Noop) => continue,
            Ok(TcpOptionElement::MaximumSegmentSize(m)) => format!("mss {m}"),
            Ok(TcpOptionElement::WindowScale(w)) => format!("wscale {w}"),
            Ok(TcpOptionElement::SelectiveAcknowledgementPermitted) => "sackOK".to_string(),
            Ok(TcpOptionElement::SelectiveAcknowledgement(first, rest)) => {
                let blocks = std::iter::once(first).chain(rest.into_iter().flatten());
                let blocks: Vec<String> = blocks.map(|(l, r)| format!("{l}-{r}")).collect();
                format!("sack {}", blocks.join(" "))
            }
            Ok(TcpOptionElement::Timestamp(val, ecr)) => format!("ts val {val} ecr {ecr}"),
            Err(e) => {
                // The iterator cannot resume after a bad option; say so and stop.
                out.push(format!("bad options ({e})"));
                break;
            }
        };
        out.push(text);
    }
    out
}

/// The base of one direction's relative numbers: Wireshark's `base_seq`.
#[derive(Clone, Copy, Default)]
struct Direction {
    base: Option<u32>,
}

struct Conn {
    /// The sender of the first segment seen: direction 0.
    first: SocketAddr,
    dirs: [Direction; 2],
}

/// Assigns segments to connections and numbers them, following Wireshark's `tcp_analyze_seq`
/// so that `tcp.seq` and `tcp.ack` match ours exactly.
#[derive(Default)]
struct Connections {
    list: Vec<Conn>,
    /// The latest connection on each unordered address pair.
    by_pair: HashMap<(SocketAddr, SocketAddr), usize>,
}

impl Connections {
    fn number(&mut self, seg: &mut Segment) {
        let pair = if seg.src <= seg.dst {
            (seg.src, seg.dst)
        } else {
            (seg.dst, seg.src)
        };
        let pure_syn = seg.flags.has(Flags::SYN) && !seg.flags.has(Flags::ACK);
        let existing = self.by_pair.get(&pair).copied().filter(|&i| {
            // A SYN whose sequence number differs from the direction's base opens a new
            // connection on a reused address pair; the same number is a retransmission.
            let c = &self.list[i];
            let base = c.dirs[usize::from(c.first != seg.src)].base;
            !(pure_syn && base.is_some_and(|b| b != seg.seq))
        });
        let index = existing.unwrap_or_else(|| {
            self.list.push(Conn {
                first: seg.src,
                dirs: [Direction::default(); 2],
            });
            self.by_pair.insert(pair, self.list.len() - 1);
            self.list.len() - 1
        });
        let conn = &mut self.list[index];
        let fwd = usize::from(conn.first != seg.src);
        // Without the SYN, Wireshark puts the base one below the first number seen, so that
        // data numbering starts at 1 as it would after a handshake.
        let base = *conn.dirs[fwd]
            .base
            .get_or_insert(if seg.flags.has(Flags::SYN) {
                seg.seq
            } else {
                seg.seq.wrapping_sub(1)
            });
        seg.conn = index;
        seg.rel_seq = seg.seq.wrapping_sub(base);
        if seg.flags.has(Flags::ACK) {
            let rev = conn.dirs[1 - fwd]
                .base
                .get_or_insert(seg.ack.wrapping_sub(1));
            seg.rel_ack = seg.ack.wrapping_sub(*rev);
        } else {
            seg.rel_ack = seg.ack;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn seg(src: u16, dst: u16, flags: &str, seq: u32, ack: u32) -> Segment {
        let addr = |p| SocketAddr::from(([127, 0, 0, 1], p));
        Segment {
            ts: Duration::ZERO,
            conn: 0,
            src: addr(src),
            dst: addr(dst),
            flags: Flags::from_letters(flags).expect("valid letters"),
            seq,
            ack,
            rel_seq: 0,
            rel_ack: 0,
            window: 0,
            payload_len: 0,
            payload: Vec::new(),
            options: Vec::new(),
            marks: Default::default(),
            arrived: None,
        }
    }

    /// (conn, rel_seq, rel_ack) for each segment, numbered in order.
    fn numbered(segs: Vec<Segment>) -> Vec<(usize, u32, u32)> {
        let mut conns = Connections::default();
        segs.into_iter()
            .map(|mut s| {
                conns.number(&mut s);
                (s.conn, s.rel_seq, s.rel_ack)
            })
            .collect()
    }

    #[test]
    fn handshake_numbers_like_wireshark() {
        let got = numbered(vec![
            seg(1000, 80, "S", 5000, 0),
            seg(80, 1000, "SA", 9000, 5001),
            seg(1000, 80, "A", 5001, 9001),
            seg(1000, 80, "R", 5001, 77),
        ]);
        assert_eq!(got, [(0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 77)]);
    }

    #[test]
    fn midstream_starts_at_one_and_wraps() {
        let got = numbered(vec![
            seg(1000, 80, "PA", u32::MAX - 1, 50),
            seg(80, 1000, "A", 50, 3),
            seg(1000, 80, "PA", 3, 50),
        ]);
        assert_eq!(got, [(0, 1, 1), (0, 1, 6), (0, 6, 1)]);
    }

    #[test]
    fn a_new_syn_on_a_reused_pair_is_a_new_connection() {
        let got = numbered(vec![
            seg(1000, 80, "S", 5000, 0),
            seg(80, 1000, "RA", 0, 5001),
            seg(1000, 80, "S", 5000, 0), // retransmission: same connection
            seg(1000, 80, "S", 7000, 0), // new ISN: new connection
            seg(80, 1000, "SA", 100, 7001),
        ]);
        assert_eq!(got, [(0, 0, 0), (0, 1, 1), (0, 0, 0), (1, 0, 0), (1, 0, 1)]);
    }

    /// An Ethernet frame with a TCP segment from 10.0.0.1:1000 to 10.0.0.2:80 (or back).
    fn frame(back: bool, syn: bool, seq: u32) -> Vec<u8> {
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let (src, dst, sp, dp) = if back {
            (b, a, 80, 1000)
        } else {
            (a, b, 1000, 80)
        };
        let builder = etherparse::PacketBuilder::ethernet2([0; 6], [0; 6])
            .ipv4(src, dst, 64)
            .tcp(sp, dp, seq, 1024);
        let builder = if syn { builder.syn() } else { builder.ack(1) };
        let mut out = Vec::new();
        builder.write(&mut out, &[]).expect("writes to a Vec");
        out
    }

    #[test]
    fn a_hosts_capture_decodes_sent_copies_with_marks_and_arrivals() {
        use crate::pcap::Seen;
        use crate::Marks;
        let packet = |ms: u64, data: Vec<u8>, interface, received, marks| Packet {
            ts: Duration::from_millis(ms),
            orig_len: data.len() as u32,
            data,
            seen: Some(Seen {
                interface,
                received,
                marks: Marks::from_bits(marks),
            }),
        };
        let cap = Capture {
            link: LinkType::Ethernet,
            packets: vec![
                packet(0, frame(false, true, 5000), 0, None, Marks::DROPPED),
                packet(1000, frame(false, true, 5000), 0, None, Marks::DUPLICATED),
                packet(1010, frame(false, true, 5000), 1, Some(1), 0),
                packet(
                    1011,
                    frame(false, true, 5000),
                    1,
                    Some(1),
                    Marks::DUPLICATED,
                ),
                packet(1012, frame(true, false, 9000), 1, None, 0),
            ],
            interfaces: vec!["a".into(), "b".into()],
        };
        let wire = decode(&cap);
        assert_eq!(wire.skipped, 0);
        let got: Vec<_> = wire
            .segments
            .iter()
            .map(|s| (s.flags.letters(), s.marks.to_string(), s.arrived))
            .collect();
        assert_eq!(
            got,
            [
                ("S".to_string(), "dropped".to_string(), None),
                (
                    "S".to_string(),
                    "duplicated".to_string(),
                    Some(Duration::from_millis(1010))
                ),
                ("A".to_string(), String::new(), None),
            ]
        );
    }
}
