//! Decoding captures into wire traces: real tcpdump captures committed under `tests/data`
//! (see its README), every link type loopback captures use, broken files, and a
//! packet-by-packet comparison with tshark.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use sockharness_wire::{decode, pcap, svg, Capture, LinkType, Packet, RenderOptions, WireTrace};

/// The committed captures: how they were made is in `tests/data/README.md`.
const CAPTURES: [&str; 8] = [
    "lo-mixed.pcap",
    "lo-midstream.pcap",
    "lo-reset-reuse-ns.pcap",
    "lo-refused.pcapng",
    "lo-snaplen96.pcap",
    "any-sll2-v4.pcap",
    "any-sll-v6.pcap",
    "harness-run.pcap",
];

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

#[track_caller]
fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(data(name)).unwrap_or_else(|e| panic!("cannot read {name}: {e}"))
}

#[track_caller]
fn capture(name: &str) -> Capture {
    pcap::read(&bytes(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn no_names(_: SocketAddr) -> Option<String> {
    None
}

/// Snapshots live next to the captures they render.
macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({ snapshot_path => "data/snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!($name, $value);
        })
    };
}

#[test]
fn committed_captures_render_as_snapshots() {
    for name in CAPTURES {
        let wire = decode(&capture(name));
        assert_eq!(wire.skipped, 0, "{name}: tcpdump was filtered to TCP");
        snapshot!(name, wire.render(&no_names, &RenderOptions::default()));
    }
}

#[test]
fn every_detail_on_shows_every_segment() {
    let wire = decode(&capture("lo-reset-reuse-ns.pcap"));
    let all = RenderOptions {
        acks: true,
        windows: true,
        options: true,
        timestamps: true,
    };
    let text = wire.render(&no_names, &all);
    // One header and one line per segment, for each of the two connections, and a blank line.
    assert_eq!(text.lines().count(), 2 + wire.segments.len() + 1, "{text}");
    snapshot!("lo-reset-reuse-ns-all", text);
}

#[test]
fn names_replace_addresses_and_queries_count() {
    let wire = decode(&capture("lo-refused.pcapng"));
    let client = wire.segments[0].src;
    let server = wire.segments[0].dst;
    let names = |a: SocketAddr| {
        if a == client {
            Some("cli".to_string())
        } else if a == server {
            Some("srv".to_string())
        } else {
            None
        }
    };
    assert_eq!(
        wire.render(&names, &RenderOptions::default()),
        "connection cli <-> srv\n  \
         cli -> srv  S     seq=0 ack=0 len=0\n  \
         srv -> cli  RA    seq=1 ack=1 len=0\n"
    );
    assert_eq!(wire.count(client, server, "S"), 1);
    assert_eq!(wire.count(server, client, "R"), 1);
    assert_eq!(wire.count(server, client, "RA"), 1);
    assert_eq!(wire.count(server, client, "S"), 0);
    assert_eq!(wire.count(server, client, ""), 1);

    let wire = decode(&capture("lo-mixed.pcap"));
    let first = &wire.segments[0];
    assert_eq!(wire.bytes(first.src, first.dst), 28);
    assert_eq!(wire.bytes(first.dst, first.src), 1043);
    assert_eq!(wire.connections(), 5);
}

#[test]
fn snaplen_cut_packets_keep_their_real_length() {
    let wire = decode(&capture("lo-snaplen96.pcap"));
    let big = wire
        .segments
        .iter()
        .find(|s| s.payload_len == 1043)
        .expect("the 1043-byte response is there");
    assert!(big.payload.len() < 64, "only the first bytes were captured");
}

#[test]
fn json_lists_every_segment() {
    let wire = decode(&capture("lo-mixed.pcap"));
    let json: serde_json::Value =
        serde_json::from_str(&wire.to_json(&no_names)).expect("valid JSON");
    let segments = json["segments"].as_array().expect("segments");
    assert_eq!(segments.len(), 46);
    assert_eq!(json["connections"].as_array().map(Vec::len), Some(5));
    assert_eq!(segments[1]["flags"], "SA");
    assert_eq!(segments[1]["seq"], 0);
    assert_eq!(segments[1]["ack"], 1);
}

/// The IP packets of a capture, without their link headers.
fn ip_packets(cap: &Capture) -> Vec<(Packet, bool)> {
    assert_eq!(cap.link, LinkType::Ethernet);
    cap.packets
        .iter()
        .map(|p| {
            let v6 = p.data[12..14] == [0x86, 0xdd];
            let data = p.data[14..].to_vec();
            let orig_len = u32::try_from(data.len()).expect("small");
            (
                Packet {
                    ts: p.ts,
                    data,
                    orig_len,
                    seen: None,
                },
                v6,
            )
        })
        .collect()
}

/// The same packets behind another link header: what BSD, macOS and `tcpdump -i any` write.
fn rewrap(cap: &Capture, link: LinkType, header: impl Fn(bool) -> Vec<u8>) -> Capture {
    let packets = ip_packets(cap)
        .into_iter()
        .map(|(p, v6)| {
            let mut data = header(v6);
            data.extend(&p.data);
            let orig_len = u32::try_from(data.len()).expect("small");
            Packet {
                ts: p.ts,
                data,
                orig_len,
                seen: None,
            }
        })
        .collect();
    Capture {
        link,
        packets,
        interfaces: Vec::new(),
    }
}

fn ether_type(v6: bool) -> [u8; 2] {
    if v6 {
        [0x86, 0xdd]
    } else {
        [0x08, 0x00]
    }
}

/// Every link type, from the IPv4 and IPv6 packets of a real capture.
fn synthesized() -> Vec<(&'static str, Capture)> {
    let real = capture("lo-mixed.pcap");
    let sll = |v6: bool| {
        let mut h = vec![0, 0, 0x03, 0x04, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0];
        h.extend(ether_type(v6));
        h
    };
    let sll2 = |v6: bool| {
        let mut h = ether_type(v6).to_vec();
        h.extend([0, 0, 0, 0, 0, 1, 0x03, 0x04, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0]);
        h
    };
    vec![
        ("raw", rewrap(&real, LinkType::Raw, |_| Vec::new())),
        // Linux/FreeBSD little-endian hosts (AF_INET6 = 28 on FreeBSD).
        (
            "null-le",
            rewrap(&real, LinkType::Null, |v6| {
                (if v6 { 28u32 } else { 2 }).to_le_bytes().to_vec()
            }),
        ),
        // A big-endian host (AF_INET6 = 24 on NetBSD and OpenBSD).
        (
            "null-be",
            rewrap(&real, LinkType::Null, |v6| {
                (if v6 { 24u32 } else { 2 }).to_be_bytes().to_vec()
            }),
        ),
        // macOS: AF_INET6 = 30; LOOP is always network order.
        (
            "loop",
            rewrap(&real, LinkType::Loop, |v6| {
                (if v6 { 30u32 } else { 2 }).to_be_bytes().to_vec()
            }),
        ),
        ("sll", rewrap(&real, LinkType::LinuxSll, sll)),
        ("sll2", rewrap(&real, LinkType::LinuxSll2, sll2)),
    ]
}

#[test]
fn every_link_type_decodes_to_the_same_trace() {
    let want = decode(&capture("lo-mixed.pcap"));
    assert!(want.segments.iter().any(|s| s.src.is_ipv6()));
    for (name, cap) in synthesized() {
        let mut file = Vec::new();
        pcap::write(&mut file, &cap).expect("writing to memory");
        let back = pcap::read(&file).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(back, cap, "{name}: write then read");
        assert_eq!(decode(&back), want, "{name}");
    }
}

#[test]
fn non_tcp_packets_are_counted_not_decoded() {
    let mut cap = capture("lo-refused.pcapng");
    let mut arp = vec![0xff; 12];
    arp.extend([0x08, 0x06]);
    arp.extend([0; 28]);
    cap.packets.insert(
        0,
        Packet {
            ts: cap.packets[0].ts,
            data: arp,
            orig_len: 42,
            seen: None,
        },
    );
    let wire = decode(&cap);
    assert_eq!((wire.segments.len(), wire.skipped), (2, 1));
    assert!(wire
        .render(&no_names, &RenderOptions::default())
        .ends_with("(1 packet not TCP)\n"));
}

/// A small deterministic generator, so that failures reproduce.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

/// Reads, and when that works decodes and renders in every way: must not panic.
fn exercise(bytes: &[u8]) -> Option<WireTrace> {
    let cap = pcap::read(bytes).ok()?;
    let wire = decode(&cap);
    let all = RenderOptions {
        acks: true,
        windows: true,
        options: true,
        timestamps: true,
    };
    let _ = wire.render(&no_names, &RenderOptions::default());
    let _ = wire.render(&no_names, &all);
    let _ = wire.to_json(&no_names);
    let _ = svg::svg(&wire, &no_names);
    Some(wire)
}

#[test]
fn truncated_files_are_errors_at_every_length() {
    for name in [
        "lo-reset-reuse-ns.pcap",
        "lo-refused.pcapng",
        "any-sll2-v4.pcap",
    ] {
        let whole = bytes(name);
        let packets = pcap::read(&whole).expect("whole file").packets.len();
        for cut in 0..whole.len() {
            match pcap::read(&whole[..cut]) {
                Err(e) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains("truncated") || msg.contains("empty"),
                        "{name} cut at {cut}: {msg}"
                    );
                }
                // A cut between two records leaves a shorter, valid file.
                Ok(cap) => assert!(cap.packets.len() < packets, "{name} cut at {cut}"),
            }
        }
    }
}

#[test]
fn corrupted_files_never_panic() {
    let mut rng = Lcg(7);
    for name in CAPTURES {
        let whole = bytes(name);
        for _ in 0..300 {
            let mut b = whole.clone();
            for _ in 0..=rng.next() % 8 {
                let i = (rng.next() as usize) % b.len();
                b[i] = rng.next() as u8;
            }
            let _ = exercise(&b);
        }
    }
    for len in [1, 4, 24, 100, 1000] {
        let random: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        assert!(pcap::read(&random).is_err(), "{len} random bytes");
    }
}

#[test]
fn ladder_diagram_snapshot() {
    let wire = decode(&capture("lo-refused.pcapng"));
    let names = |a: SocketAddr| (a == wire.segments[0].src).then(|| "cli".to_string());
    snapshot!("lo-refused-svg", svg::svg(&wire, &names));
}

/// One tshark row: flags, relative seq, relative ack, payload length.
type Row = (u32, u32, u32, u32);

/// What tshark says of every TCP packet, or `None` where tshark is not installed.
fn tshark(path: &Path) -> Option<Vec<Row>> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        // Explicit, so that a user's preferences cannot turn relative numbers off.
        .args(["-o", "tcp.analyze_sequence_numbers:TRUE"])
        .args(["-o", "tcp.relative_sequence_numbers:TRUE"])
        .args(["-T", "fields", "-E", "separator=/t"])
        .args([
            "-e",
            "tcp.flags",
            "-e",
            "tcp.seq",
            "-e",
            "tcp.ack",
            "-e",
            "tcp.len",
        ])
        .args(["-Y", "tcp"])
        .output()
        .ok()?;
    assert!(out.status.success(), "tshark failed: {}", text(&out.stderr));
    let rows = text(&out.stdout)
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 4, "tshark row {line:?}");
            let num = |s: &str| s.parse::<u32>().unwrap_or_else(|_| panic!("{line:?}"));
            let flags = u32::from_str_radix(f[0].trim_start_matches("0x"), 16)
                .unwrap_or_else(|_| panic!("{line:?}"));
            (flags, num(f[1]), num(f[2]), num(f[3]))
        })
        .collect();
    Some(rows)
}

#[test]
fn decoding_matches_tshark_packet_by_packet() {
    if Command::new("tshark").arg("--version").output().is_err() {
        println!("SKIP: tshark is not on PATH; install it to compare decodes with Wireshark's");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files: Vec<(String, PathBuf)> =
        CAPTURES.iter().map(|n| (n.to_string(), data(n))).collect();
    for (name, cap) in synthesized() {
        let path = dir.path().join(format!("{name}.pcap"));
        let file = std::fs::File::create(&path).expect("temp dir is writable");
        pcap::write(file, &cap).expect("written");
        files.push((format!("synthesized {name}"), path));
    }
    for (name, path) in files {
        let theirs = tshark(&path).expect("tshark runs");
        let cap = pcap::read(&std::fs::read(&path).expect("readable")).expect("reads");
        let ours: Vec<Row> = decode(&cap)
            .segments
            .iter()
            .map(|s| {
                (
                    u32::from(s.flags.bits()),
                    s.rel_seq,
                    s.rel_ack,
                    s.payload_len,
                )
            })
            .collect();
        assert_eq!(ours.len(), theirs.len(), "{name}: TCP packet count");
        for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
            // tshark's flags have 12 bits; the 4 above the classic 8 are never set here.
            assert_eq!(o, t, "{name}: packet {} (flags, seq, ack, len)", i + 1);
        }
        println!("{name}: {} TCP packets identical to tshark", ours.len());
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
