//! Trace normalisation and rendering, the part of sockharness that snapshots depend on.
//!
//! The input describes TCP packets between a few named endpoints, which are encoded under a
//! fuzz-chosen link type, written through sockharness's pcap writer, read back and decoded, as
//! a real capture would be. The checks:
//!
//! - well-formed packets all decode, with the numbers they were built with;
//! - every rendering (each combination of [`RenderOptions`]) is deterministic and does not
//!   depend on what it was not asked to show: windows, options and timestamps;
//! - the default view is what makes snapshots stable across runs, so a retransmitted data
//!   segment or a pure ACK inside a connection leaves it unchanged;
//! - the event trace renders deterministically and without its timings, and its JSON parses.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sockharness::capture::pcap::{self, Capture, LinkType, Packet, Seen};
use sockharness::capture::{decode, Flags, Marks, RenderOptions, Segment, WireTrace};
use sockharness::trace::{Event, Outcome, Trace};

/// The endpoints packets travel between: enough for a few connections, including two that share
/// a server port, while keeping the inputs small.
const PORTS: [u16; 4] = [80, 1000, 1001, 8080];

#[derive(Arbitrary, Debug)]
struct Input {
    v6: bool,
    link: Link,
    /// Each endpoint's name in the scenario; `None` leaves it as `ip:port`.
    names: [Option<String>; 4],
    /// Each endpoint's initial sequence number.
    isn: [u32; 4],
    packets: Vec<Pkt>,
    /// Whether the capture is of hosts' links (pcapng, each packet saying which host sent it
    /// and what the link did to it).
    hosts: bool,
    /// Which decoded segment to retransmit, and which fields to disturb.
    retransmit: u16,
    jitter: u32,
    events: Vec<Ev>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Link {
    Ethernet,
    Raw,
    Null,
    Loop,
    LinuxSll,
    LinuxSll2,
}

#[derive(Arbitrary, Debug)]
struct Pkt {
    /// Microseconds since the previous packet.
    gap_us: u16,
    from: u8,
    to: u8,
    flags: u8,
    /// Distance from the sender's next sequence number: 0 continues the stream, a negative
    /// value retransmits or overlaps, a positive one leaves a gap.
    seq_delta: i16,
    ack_delta: i16,
    window: u16,
    options: Vec<Opt>,
    payload: Vec<u8>,
    mangle: Mangle,
    /// What the link did to it, in a capture of hosts' links.
    marks: u8,
}

#[derive(Arbitrary, Debug)]
enum Opt {
    Nop,
    Mss(u16),
    WScale(u8),
    SackOk,
    Sack(Vec<(u32, u32)>),
    Timestamp(u32, u32),
    Raw(Vec<u8>),
}

/// What a damaged capture does to a packet.
#[derive(Arbitrary, Debug)]
enum Mangle {
    None,
    /// Keep only this many bytes, as a short snapshot length does.
    Cut(u16),
    /// Declare this IP length instead of the real one.
    IpLen(u16),
    /// Replace this byte of the packet.
    Byte(u16, u8),
}

#[derive(Arbitrary, Debug)]
struct Ev {
    line: u32,
    statement: String,
    outcome: Out,
    at_us: u32,
    elapsed_us: u32,
}

/// [`Outcome`] with stream offsets of a size a run can reach (offsets plus counts fit in u64).
#[derive(Arbitrary, Debug)]
enum Out {
    Ok(Option<String>),
    Sent(u32, u32),
    Received(u32, u32, String, bool),
    Eof,
    Error(String),
    TimedOut(u64),
    Started(String),
    Pending,
    Observed(String),
    Skipped,
    Problem(String),
}

fuzz_target!(|input: Input| {
    let capture = build(&input);
    let mut bytes = Vec::new();
    pcap::write(&mut bytes, &capture).expect("writing to memory");
    let read = pcap::read(&bytes).expect("sockharness reads the pcap it writes");
    assert_eq!(read, capture, "the pcap writer and reader disagree");
    let wire = decode(&read);
    check_decoded(&input, &wire);

    let ip = ip(input.v6);
    let names = |a: SocketAddr| {
        let i = PORTS.iter().position(|&p| p == a.port())?;
        (a.ip() == ip).then(|| input.names[i].clone()).flatten()
    };
    let unnamed = |_: SocketAddr| None::<String>;
    for opts in all_options() {
        let other_run = jitter(&wire, input.jitter, &opts);
        for names in [&names as &dyn Fn(SocketAddr) -> Option<String>, &unnamed] {
            let text = wire.render(names, &opts);
            assert_eq!(
                text,
                wire.render(names, &opts),
                "rendering is not deterministic"
            );
            assert_eq!(
                other_run.render(names, &opts),
                text,
                "a field not asked for changed the rendering ({opts:?})"
            );
        }
    }
    let _ = wire.to_json(&names);
    check_default_view(&wire, input.retransmit, &names);

    check_events(&input.events, input.jitter);
});

fn ip(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
}

/// Every combination of the four rendering options.
fn all_options() -> impl Iterator<Item = RenderOptions> {
    (0..16u8).map(|bits| RenderOptions {
        acks: bits & 1 != 0,
        windows: bits & 2 != 0,
        options: bits & 4 != 0,
        timestamps: bits & 8 != 0,
    })
}

/// The capture the input describes.
fn build(input: &Input) -> Capture {
    let link = match input.link {
        Link::Ethernet => LinkType::Ethernet,
        Link::Raw => LinkType::Raw,
        Link::Null => LinkType::Null,
        Link::Loop => LinkType::Loop,
        Link::LinuxSll => LinkType::LinuxSll,
        Link::LinuxSll2 => LinkType::LinuxSll2,
    };
    let mut next = input.isn;
    let mut ts = Duration::from_secs(1_700_000_000);
    let mut packets = Vec::new();
    for p in &input.packets {
        let from = usize::from(p.from) % PORTS.len();
        let mut to = usize::from(p.to) % PORTS.len();
        if to == from {
            to = (from + 1) % PORTS.len();
        }
        let seq = next[from].wrapping_add(i32::from(p.seq_delta) as u32);
        let ack = next[to].wrapping_add(i32::from(p.ack_delta) as u32);
        let control = u32::from(p.flags & 0x03 != 0); // SYN or FIN
        next[from] = seq
            .wrapping_add(p.payload.len() as u32)
            .wrapping_add(control);
        ts += Duration::from_micros(u64::from(p.gap_us));
        let tcp = tcp(PORTS[from], PORTS[to], seq, ack, p);
        let mut data = link_header(link, input.v6);
        data.extend(ip_packet(input.v6, &tcp, &p.mangle));
        let orig_len = data.len() as u32;
        match p.mangle {
            Mangle::Cut(n) => data.truncate(usize::from(n)),
            Mangle::Byte(at, b) => {
                if let Some(x) = data.get_mut(usize::from(at)) {
                    *x = b;
                }
            }
            Mangle::None | Mangle::IpLen(_) => {}
        }
        let seen = input.hosts.then(|| Seen {
            interface: (from % 2) as u32,
            received: None,
            marks: Marks::from_bits(p.marks & 0x1f),
        });
        packets.push(Packet {
            ts,
            data,
            orig_len,
            seen,
        });
    }
    let interfaces = if input.hosts {
        vec!["a".into(), "b".into()]
    } else {
        Vec::new()
    };
    Capture {
        link,
        packets,
        interfaces,
    }
}

fn link_header(link: LinkType, v6: bool) -> Vec<u8> {
    let ether: u16 = if v6 { 0x86dd } else { 0x0800 };
    // macOS's AF_INET6; the decoder accepts every BSD's.
    let family: u32 = if v6 { 30 } else { 2 };
    match link {
        LinkType::Ethernet => {
            let mut h = vec![0; 12];
            h.extend(ether.to_be_bytes());
            h
        }
        LinkType::Raw => Vec::new(),
        LinkType::Null => family.to_le_bytes().to_vec(),
        LinkType::Loop => family.to_be_bytes().to_vec(),
        LinkType::LinuxSll => {
            // Packet type, ARPHRD_LOOPBACK, address length and address, then the EtherType.
            let mut h = vec![0, 0, 0x03, 0x04, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0];
            h.extend(ether.to_be_bytes());
            h
        }
        LinkType::LinuxSll2 => {
            let mut h = ether.to_be_bytes().to_vec();
            h.extend([0, 0, 0, 0, 0, 1, 0x03, 0x04, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0]);
            h
        }
    }
}

fn ip_packet(v6: bool, tcp: &[u8], mangle: &Mangle) -> Vec<u8> {
    let mut h = if v6 {
        let len = match mangle {
            Mangle::IpLen(n) => *n,
            _ => tcp.len() as u16,
        };
        let mut h = vec![0x60, 0, 0, 0];
        h.extend(len.to_be_bytes());
        h.extend([6, 64]); // next header TCP, hop limit
        h.extend(Ipv6Addr::LOCALHOST.octets());
        h.extend(Ipv6Addr::LOCALHOST.octets());
        h
    } else {
        let len = match mangle {
            Mangle::IpLen(n) => *n,
            _ => (20 + tcp.len()) as u16,
        };
        let mut h = vec![0x45, 0];
        h.extend(len.to_be_bytes());
        h.extend([0, 0, 0x40, 0, 64, 6, 0, 0]); // id, DF, TTL, TCP, no checksum
        h.extend(Ipv4Addr::LOCALHOST.octets());
        h.extend(Ipv4Addr::LOCALHOST.octets());
        h
    };
    h.extend(tcp);
    h
}

fn tcp(src: u16, dst: u16, seq: u32, ack: u32, p: &Pkt) -> Vec<u8> {
    let mut options = Vec::new();
    for o in &p.options {
        match o {
            Opt::Nop => options.push(1),
            Opt::Mss(m) => {
                options.extend([2, 4]);
                options.extend(m.to_be_bytes());
            }
            Opt::WScale(w) => options.extend([3, 3, *w]),
            Opt::SackOk => options.extend([4, 2]),
            Opt::Sack(blocks) => {
                let blocks = &blocks[..blocks.len().min(4)];
                options.extend([5, 2 + 8 * blocks.len() as u8]);
                for (l, r) in blocks {
                    options.extend(l.to_be_bytes());
                    options.extend(r.to_be_bytes());
                }
            }
            Opt::Timestamp(val, ecr) => {
                options.extend([8, 10]);
                options.extend(val.to_be_bytes());
                options.extend(ecr.to_be_bytes());
            }
            Opt::Raw(bytes) => options.extend(bytes),
        }
    }
    // The header holds at most 40 bytes of options, in whole words.
    options.truncate(40);
    options.resize(options.len().div_ceil(4) * 4, 0);
    let offset = (20 + options.len()) / 4;
    let mut h = Vec::with_capacity(offset * 4 + p.payload.len());
    h.extend(src.to_be_bytes());
    h.extend(dst.to_be_bytes());
    h.extend(seq.to_be_bytes());
    h.extend(ack.to_be_bytes());
    h.extend([(offset as u8) << 4, p.flags]);
    h.extend(p.window.to_be_bytes());
    h.extend([0, 0, 0, 0]); // checksum, urgent pointer
    h.extend(options);
    h.extend(&p.payload);
    h
}

/// Intact packets decode to the segments they were built as.
fn check_decoded(input: &Input, wire: &WireTrace) {
    assert_eq!(
        wire.segments.len() + wire.skipped,
        input.packets.len(),
        "every packet is a segment or skipped"
    );
    if !input
        .packets
        .iter()
        .all(|p| matches!(p.mangle, Mangle::None))
    {
        return;
    }
    assert_eq!(wire.skipped, 0, "an intact TCP packet was skipped");
    for (seg, p) in wire.segments.iter().zip(&input.packets) {
        assert_eq!(seg.flags.bits(), p.flags);
        assert_eq!(seg.window, p.window);
        assert_eq!(seg.payload_len as usize, p.payload.len());
        assert_eq!(seg.payload, p.payload[..p.payload.len().min(64)]);
        let marks = if input.hosts { p.marks & 0x1f } else { 0 };
        assert_eq!(seg.marks.bits(), marks, "what the link did is kept");
    }
}

/// The trace with what differs between two runs of the same scenario on different kernels and
/// machines (windows, TCP options, timestamps) replaced, where `opts` does not show it.
fn jitter(wire: &WireTrace, seed: u32, opts: &RenderOptions) -> WireTrace {
    let mut out = wire.clone();
    if !opts.timestamps {
        out.start = out
            .start
            .saturating_add(Duration::from_micros(u64::from(seed)));
    }
    for (i, s) in out.segments.iter_mut().enumerate() {
        let r = seed.wrapping_mul(2_654_435_761).wrapping_add(i as u32);
        if !opts.windows {
            s.window = s.window.wrapping_add(r as u16 | 1);
        }
        if !opts.timestamps {
            s.ts =
                s.ts.saturating_add(Duration::from_micros(u64::from(r % 1000)));
        }
        if !opts.options {
            s.options = if r & 1 == 0 {
                Vec::new()
            } else {
                vec![format!("ts val {r} ecr 0")]
            };
        }
    }
    out
}

/// The default view hides retransmitted data and pure ACKs: adding either leaves it unchanged.
fn check_default_view(wire: &WireTrace, pick: u16, names: &dyn Fn(SocketAddr) -> Option<String>) {
    let opts = RenderOptions::default();
    let text = wire.render(names, &opts);

    let data: Vec<usize> = (0..wire.segments.len())
        .filter(|&i| wire.segments[i].is_data_only())
        .collect();
    if !data.is_empty() {
        let i = data[usize::from(pick) % data.len()];
        let mut again = wire.clone();
        again.segments.insert(i + 1, wire.segments[i].clone());
        assert_eq!(
            again.render(names, &opts),
            text,
            "retransmitting segment {i} changed the default view"
        );
    }

    // A pure ACK right after a segment of its connection: never the connection's first, which
    // says how the block is oriented.
    if !wire.segments.is_empty() {
        let j = usize::from(pick) % wire.segments.len();
        let ack = Segment {
            flags: Flags::from_bits(Flags::ACK),
            payload_len: 0,
            payload: Vec::new(),
            ..wire.segments[j].clone()
        };
        let mut with_ack = wire.clone();
        with_ack.segments.insert(j + 1, ack);
        assert_eq!(
            with_ack.render(names, &opts),
            text,
            "a pure ACK after segment {j} changed the default view"
        );
    }
}

fn check_events(evs: &[Ev], seed: u32) {
    let trace = Trace {
        events: evs.iter().map(event).collect(),
    };
    let text = trace.render();
    assert_eq!(text, trace.render(), "the event trace is not deterministic");
    assert_eq!(text.lines().count(), trace.events.len() + newlines(&trace));
    let mut later = trace.clone();
    for e in &mut later.events {
        e.at_us += Duration::from_micros(u64::from(seed));
        e.elapsed_us += Duration::from_micros(u64::from(seed / 2));
    }
    assert_eq!(later.render(), text, "timings leaked into the event trace");
    let json: serde_json::Value =
        serde_json::from_str(&trace.to_json()).expect("the event trace's JSON parses");
    assert_eq!(json["events"].as_array().map(Vec::len), Some(evs.len()));
}

/// Lines the statements and outcomes add by holding newlines themselves.
fn newlines(trace: &Trace) -> usize {
    trace
        .events
        .iter()
        .map(|e| {
            let line = format!("{}{}", e.statement, e.outcome.render());
            line.matches('\n').count()
        })
        .sum()
}

fn event(e: &Ev) -> Event {
    let outcome = match &e.outcome {
        Out::Ok(detail) => Outcome::Ok {
            detail: detail.clone(),
        },
        Out::Sent(count, start) => Outcome::Sent {
            count: u64::from(*count),
            start: u64::from(*start),
        },
        Out::Received(count, start, preview, eof) => Outcome::Received {
            count: u64::from(*count),
            start: u64::from(*start),
            preview: preview.clone(),
            eof: *eof,
        },
        Out::Eof => Outcome::Eof,
        Out::Error(errno) => Outcome::Error {
            errno: errno.clone(),
        },
        Out::TimedOut(ns) => Outcome::TimedOut {
            after: Duration::from_nanos(*ns),
        },
        Out::Started(handle) => Outcome::Started {
            handle: handle.clone(),
        },
        Out::Pending => Outcome::Pending,
        Out::Observed(value) => Outcome::Observed {
            value: value.clone(),
        },
        Out::Skipped => Outcome::Skipped,
        Out::Problem(message) => Outcome::Problem {
            message: message.clone(),
        },
    };
    Event {
        line: e.line,
        statement: e.statement.clone(),
        outcome,
        at_us: Duration::from_micros(u64::from(e.at_us)),
        elapsed_us: Duration::from_micros(u64::from(e.elapsed_us)),
    }
}
