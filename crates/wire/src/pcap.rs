//! Capture files: read classic pcap (either byte order, micro- or nanosecond timestamps) and
//! pcapng; write classic pcap, or pcapng for a capture of hosts' links (an interface per host,
//! and for each packet a comment saying which side it was seen on and what the link did). The `pcap-file` crate parses the containers; this module checks
//! what it leaves to the caller (truncation, link types, pcapng timestamp units) so that a broken
//! file is an error and never a panic.

use std::io::{self, Write};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapParser, PcapWriter, RawPcapPacket};
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::{Block, PcapNgParser, PcapNgWriter};
use pcap_file::{DataLink, Endianness, TsResolution};

use super::wire::Marks;

/// Snapshot length of the files [`write()`] produces: tcpdump's default, above any loopback
/// packet (64 KiB plus headers, even with GSO).
pub const SNAPLEN: u32 = 262_144;

/// The link layer every packet of a capture starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// Ethernet II (DLT 1): what Linux `lo` gives, with zero MAC addresses.
    Ethernet,
    /// BSD loopback (DLT 0): a 4-byte address family in the capturing host's byte order.
    Null,
    /// OpenBSD loopback (DLT 108): a 4-byte address family in network byte order.
    Loop,
    /// Linux cooked capture v1 (DLT 113): a 16-byte header, `tcpdump -i any -y LINUX_SLL`.
    LinuxSll,
    /// Linux cooked capture v2 (DLT 276): a 20-byte header, `tcpdump -i any` since 4.99.
    LinuxSll2,
    /// IPv4 or IPv6 with no link header (DLT 101, and the platform-specific 12 and 14).
    Raw,
}

impl LinkType {
    /// The link type a pcap header's DLT value names, if sockharness decodes it.
    pub fn from_dlt(dlt: u32) -> Option<LinkType> {
        Some(match dlt {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            // 12 and 14 are DLT_RAW on some BSDs; files should say 101, but old ones do not.
            12 | 14 | 101 => LinkType::Raw,
            _ => return None,
        })
    }

    /// The DLT value written to pcap headers.
    pub fn dlt(self) -> u32 {
        match self {
            LinkType::Null => 0,
            LinkType::Ethernet => 1,
            LinkType::Loop => 108,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::Raw => 101,
        }
    }
}

/// One captured packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// When it was captured, since the UNIX epoch.
    pub ts: Duration,
    /// The captured bytes, starting with the link header (possibly cut at the snapshot length).
    pub data: Vec<u8>,
    /// The packet's length on the wire, at least `data.len()`.
    pub orig_len: u32,
    /// Where on a link between hosts it was seen; `None` in a capture of one interface.
    pub seen: Option<Seen>,
}

impl Packet {
    /// Whether this is the copy a host received of a packet another host sent (the sent copy
    /// is the one that counts on the wire).
    pub fn is_received_copy(&self) -> bool {
        self.seen.is_some_and(|s| s.received.is_some())
    }
}

/// Which side of a link between hosts a packet was seen on, and what the link did to it.
/// Written to pcapng as the packet's interface, its direction flag and a comment:
/// `sockharness: sent (dropped)`, `sockharness: received, frame 12 (corrupted)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The host, as an index into [`Capture::interfaces`].
    pub interface: u32,
    /// For a copy the host received, the index in the capture of the packet as it was sent
    /// (which comes earlier); `None` for a packet the host sent.
    pub received: Option<usize>,
    /// What the link did: to the packet as a whole on the sent copy, to this copy on a
    /// received one.
    pub marks: Marks,
}

/// How a pcapng comment says it was written here.
const COMMENT: &str = "sockharness: ";
/// The description of each interface of a capture of hosts' links: what tells such a file from
/// any other pcapng when it has no packets to say so.
const HOST: &str = "sockharness host";

impl Seen {
    /// The pcapng comment that records it.
    fn comment(&self) -> String {
        let mut c = match self.received {
            None => format!("{COMMENT}sent"),
            Some(of) => format!("{COMMENT}received, frame {}", of + 1),
        };
        if !self.marks.is_empty() {
            c = format!("{c} ({})", self.marks);
        }
        c
    }

    /// Reads what [`Seen::comment`] wrote; `None` for any other comment.
    fn from_comment(interface: u32, comment: &str) -> Option<Seen> {
        let rest = comment.strip_prefix(COMMENT)?;
        let (side, marks) = match rest.split_once(" (") {
            Some((side, marks)) => (side, Marks::from_words(marks.strip_suffix(')')?)?),
            None => (rest, Marks::default()),
        };
        let received = match side {
            "sent" => None,
            _ => {
                let frame: usize = side.strip_prefix("received, frame ")?.parse().ok()?;
                Some(frame.checked_sub(1)?)
            }
        };
        Some(Seen {
            interface,
            received,
            marks,
        })
    }
}

/// A whole capture: its link type and its packets in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capture {
    /// The link layer of every packet.
    pub link: LinkType,
    /// The packets, in the order they were captured.
    pub packets: Vec<Packet>,
    /// The interfaces the packets were seen on, by name, where there are several: a scenario's
    /// hosts. Empty for a capture of one interface (written as classic pcap).
    pub interfaces: Vec<String>,
}

/// Why bytes could not be read as a capture.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// There were no bytes at all.
    #[error("empty file, not a capture")]
    Empty,
    /// The bytes start with neither a pcap nor a pcapng magic number.
    #[error("not a pcap or pcapng file (it starts with {0})")]
    NotPcap(String),
    /// The file ends in the middle of its header, a packet record or a block.
    #[error("truncated capture: it ends inside {what} at byte {offset} of {len}")]
    Truncated {
        /// What was cut: the file header, a packet (numbered from 1) or a block.
        what: String,
        /// Where the cut record starts.
        offset: usize,
        /// The length of the file.
        len: usize,
    },
    /// A header, record or block holds an impossible value.
    #[error("invalid capture at byte {offset}: {reason}")]
    Invalid {
        /// Where the bad record starts.
        offset: usize,
        /// What is wrong, in the parser's words.
        reason: String,
    },
    /// The link type is not one of [`LinkType`].
    #[error("unsupported link type {0} (sockharness decodes Ethernet, BSD NULL/LOOP, Linux SLL/SLL2 and raw IP)")]
    UnsupportedLink(u32),
    /// A pcapng file whose packets come from interfaces with different link types.
    #[error(
        "pcapng file mixes link types {0} and {1}; sockharness decodes one link type per file"
    )]
    MixedLinks(u32, u32),
}

/// Reads a pcap or pcapng file held in memory.
pub fn read(bytes: &[u8]) -> Result<Capture, PcapError> {
    if bytes.is_empty() {
        return Err(PcapError::Empty);
    }
    if bytes.len() < 4 {
        return Err(truncated("the file header", 0, bytes));
    }
    match u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) {
        0xA1B2_C3D4 | 0xA1B2_3C4D | 0xD4C3_B2A1 | 0x4D3C_B2A1 => read_pcap(bytes),
        0x0A0D_0D0A => read_pcapng(bytes),
        _ => Err(PcapError::NotPcap(describe_start(bytes))),
    }
}

/// The first bytes in hex, or as text when they are printable (someone passed a text file).
fn describe_start(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(8)];
    if head.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("{:?}", String::from_utf8_lossy(head))
    } else {
        head.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn truncated(what: &str, offset: usize, bytes: &[u8]) -> PcapError {
    PcapError::Truncated {
        what: what.to_string(),
        offset,
        len: bytes.len(),
    }
}

/// Maps a `pcap-file` error for the record that starts at `offset`.
fn parse_error(e: pcap_file::PcapError, what: &str, offset: usize, bytes: &[u8]) -> PcapError {
    match e {
        pcap_file::PcapError::IncompleteBuffer => truncated(what, offset, bytes),
        other => PcapError::Invalid {
            offset,
            reason: other.to_string(),
        },
    }
}

fn read_pcap(bytes: &[u8]) -> Result<Capture, PcapError> {
    let (mut rest, parser) =
        PcapParser::new(bytes).map_err(|e| parse_error(e, "the file header", 0, bytes))?;
    let header = parser.header();
    let dlt = u32::from(header.datalink);
    let link = LinkType::from_dlt(dlt).ok_or(PcapError::UnsupportedLink(dlt))?;
    let mut packets = Vec::new();
    while !rest.is_empty() {
        let offset = bytes.len() - rest.len();
        let what = format!("packet {}", packets.len() + 1);
        // Raw records, not `next_packet`: that one rejects packets whose original length
        // exceeds the snapshot length, which is exactly what `tcpdump -s 96` writes.
        let (next, raw) = parser
            .next_raw_packet(rest)
            .map_err(|e| parse_error(e, &what, offset, bytes))?;
        packets.push(raw_packet(raw, header.ts_resolution, offset)?);
        rest = next;
    }
    Ok(Capture {
        link,
        packets,
        interfaces: Vec::new(),
    })
}

fn raw_packet(raw: RawPcapPacket, res: TsResolution, offset: usize) -> Result<Packet, PcapError> {
    let nanos = match res {
        TsResolution::MicroSecond => u64::from(raw.ts_frac) * 1_000,
        TsResolution::NanoSecond => u64::from(raw.ts_frac),
    };
    if nanos >= 1_000_000_000 {
        return Err(PcapError::Invalid {
            offset,
            reason: format!("timestamp fraction {} is a second or more", raw.ts_frac),
        });
    }
    let data = raw.data.into_owned();
    Ok(Packet {
        ts: Duration::from_secs(u64::from(raw.ts_sec)) + Duration::from_nanos(nanos),
        // Some writers leave the original length at 0; it is never less than what was kept.
        orig_len: raw.orig_len.max(raw.incl_len),
        data,
        seen: None,
    })
}

/// What pcapng needs per interface: its link type and how to turn a raw timestamp into time.
struct Interface {
    dlt: u32,
    resol: u8,
    offset_secs: u64,
    name: Option<String>,
    /// Whether it is a scenario's host, as [`HOST`] says.
    host: bool,
}

impl Interface {
    fn new(idb: &InterfaceDescriptionBlock) -> Interface {
        let mut resol = 6; // pcapng's default: microseconds.
        let mut offset_secs = 0;
        let mut name = None;
        let mut host = false;
        for opt in &idb.options {
            match opt {
                InterfaceDescriptionOption::IfTsResol(r) => resol = *r,
                InterfaceDescriptionOption::IfTsOffset(o) => offset_secs = *o,
                InterfaceDescriptionOption::IfName(n) => name = Some(n.to_string()),
                InterfaceDescriptionOption::IfDescription(d) => host |= d == HOST,
                _ => {}
            }
        }
        Interface {
            dlt: u32::from(idb.linktype),
            resol,
            offset_secs,
            name,
            host,
        }
    }

    /// `raw` counts units of 10^-resol seconds (or 2^-resol when the high bit is set).
    fn time(&self, raw: u64) -> Duration {
        let raw = u128::from(raw);
        let nanos = if self.resol & 0x80 != 0 {
            let shift = u32::from(self.resol & 0x7f);
            (raw * 1_000_000_000).checked_shr(shift).unwrap_or(0)
        } else if self.resol <= 9 {
            raw * 10u128.pow(9 - u32::from(self.resol))
        } else {
            10u128
                .checked_pow(u32::from(self.resol) - 9)
                .map_or(0, |d| raw / d)
        };
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        Duration::from_nanos(nanos).saturating_add(Duration::from_secs(self.offset_secs))
    }
}

fn read_pcapng(bytes: &[u8]) -> Result<Capture, PcapError> {
    let (mut rest, mut parser) =
        PcapNgParser::new(bytes).map_err(|e| parse_error(e, "the section header", 0, bytes))?;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut link: Option<u32> = None;
    let mut packets = Vec::new();
    while !rest.is_empty() {
        let offset = bytes.len() - rest.len();
        let (next, block) = parser
            .next_block(rest)
            .map_err(|e| parse_error(e, "a block", offset, bytes))?;
        rest = next;
        // (interface, raw timestamp, original length, data, comment)
        let (iface, raw_ts, orig_len, data, comment) = match block {
            Block::SectionHeader(_) => {
                // A new section starts its own interface numbering.
                interfaces.clear();
                continue;
            }
            Block::InterfaceDescription(idb) => {
                interfaces.push(Interface::new(&idb));
                continue;
            }
            Block::EnhancedPacket(epb) => {
                // The crate stores the raw 64-bit count as nanoseconds; undo that and apply
                // the interface's real unit below.
                let raw = u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX);
                let comment = epb.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                    _ => None,
                });
                (epb.interface_id, raw, epb.original_len, epb.data, comment)
            }
            Block::Packet(pb) => (
                u32::from(pb.interface_id),
                pb.timestamp,
                pb.original_len,
                pb.data,
                None,
            ),
            Block::SimplePacket(spb) => (0, 0, spb.original_len, spb.data, None),
            _ => continue,
        };
        let Some(interface) = interfaces.get(iface as usize) else {
            return Err(PcapError::Invalid {
                offset,
                reason: format!("packet from undeclared interface {iface}"),
            });
        };
        match link {
            None => link = Some(interface.dlt),
            Some(l) if l != interface.dlt => return Err(PcapError::MixedLinks(l, interface.dlt)),
            Some(_) => {}
        }
        let data = data.into_owned();
        let seen = comment
            .and_then(|c| Seen::from_comment(iface, &c))
            .filter(|s| s.received.is_none_or(|of| of < packets.len()));
        packets.push(Packet {
            ts: interface.time(raw_ts),
            orig_len: orig_len.max(u32::try_from(data.len()).unwrap_or(u32::MAX)),
            data,
            seen,
        });
    }
    // A capture without packets still needs a link type: take the first interface's.
    let dlt = link
        .or_else(|| interfaces.first().map(|i| i.dlt))
        .unwrap_or(1);
    let link = LinkType::from_dlt(dlt).ok_or(PcapError::UnsupportedLink(dlt))?;
    // Names matter in a capture of hosts' links.
    let hosts = interfaces.iter().any(|i| i.host) || packets.iter().any(|p| p.seen.is_some());
    let interfaces = if hosts {
        let n = interfaces.len();
        (0..n)
            .map(|i| {
                interfaces[i]
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("if{i}"))
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(Capture {
        link,
        packets,
        interfaces,
    })
}

/// Writes a capture one packet at a time, for captures written as they happen: classic pcap,
/// or pcapng where the packets were seen at several interfaces.
pub struct Writer<W: Write> {
    inner: Inner<W>,
}

enum Inner<W: Write> {
    Pcap(PcapWriter<W>),
    PcapNg(PcapNgWriter<W>),
}

impl<W: Write> Writer<W> {
    /// Writes a classic pcap file header: native byte order, microsecond timestamps,
    /// [`SNAPLEN`].
    pub fn new(w: W, link: LinkType) -> io::Result<Writer<W>> {
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: SNAPLEN,
            datalink: DataLink::from(link.dlt()),
            ts_resolution: TsResolution::MicroSecond,
            endianness: Endianness::native(),
        };
        let inner = PcapWriter::with_header(w, header).map_err(io_error)?;
        Ok(Writer {
            inner: Inner::Pcap(inner),
        })
    }

    /// Writes the header a capture with these `interfaces` needs: classic pcap for none, else
    /// pcapng with one interface per name (nanosecond timestamps, [`SNAPLEN`]).
    pub fn with_interfaces(w: W, link: LinkType, interfaces: &[String]) -> io::Result<Writer<W>> {
        if interfaces.is_empty() {
            return Self::new(w, link);
        }
        let mut ng = PcapNgWriter::with_endianness(w, Endianness::native()).map_err(io_error)?;
        for name in interfaces {
            let idb = InterfaceDescriptionBlock {
                linktype: DataLink::from(link.dlt()),
                snaplen: SNAPLEN,
                options: vec![
                    InterfaceDescriptionOption::IfName(name.clone().into()),
                    InterfaceDescriptionOption::IfDescription(HOST.into()),
                    InterfaceDescriptionOption::IfTsResol(9),
                ],
            };
            ng.write_pcapng_block(idb).map_err(io_error)?;
        }
        Ok(Writer {
            inner: Inner::PcapNg(ng),
        })
    }

    /// Writes one packet, cut at [`SNAPLEN`] bytes.
    pub fn packet(&mut self, p: &Packet) -> io::Result<()> {
        let kept = &p.data[..p.data.len().min(SNAPLEN as usize)];
        // The original length is never less than the bytes we have, cut or not.
        let orig_len = p.orig_len.max(p.data.len().try_into().unwrap_or(u32::MAX));
        match &mut self.inner {
            Inner::Pcap(w) => {
                let packet = PcapPacket::new(p.ts, orig_len, kept);
                w.write_packet(&packet).map(drop).map_err(io_error)
            }
            Inner::PcapNg(w) => {
                let mut options = Vec::new();
                if let Some(seen) = p.seen {
                    // The direction bits of epb_flags: 1 inbound, 2 outbound.
                    let direction = if seen.received.is_some() { 1 } else { 2 };
                    options.push(EnhancedPacketOption::Flags(direction));
                    options.push(EnhancedPacketOption::Comment(seen.comment().into()));
                }
                let epb = EnhancedPacketBlock {
                    interface_id: p.seen.map_or(0, |s| s.interface),
                    timestamp: p.ts,
                    original_len: orig_len,
                    data: kept.into(),
                    options,
                };
                w.write_pcapng_block(epb).map(drop).map_err(io_error)
            }
        }
    }

    /// Returns the underlying writer.
    pub fn into_inner(self) -> W {
        match self.inner {
            Inner::Pcap(w) => w.into_writer(),
            Inner::PcapNg(w) => w.into_inner(),
        }
    }
}

fn io_error(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidInput, other.to_string()),
    }
}

/// Writes a whole capture (see [`Writer`]).
pub fn write(w: impl Write, cap: &Capture) -> io::Result<()> {
    let mut writer = Writer::with_interfaces(w, cap.link, &cap.interfaces)?;
    for p in &cap.packets {
        writer.packet(p)?;
    }
    writer.into_inner().flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Capture {
        Capture {
            link: LinkType::Raw,
            packets: vec![
                Packet {
                    ts: Duration::new(1_700_000_000, 123_456_000),
                    data: vec![0x45, 0, 0, 20],
                    orig_len: 4,
                    seen: None,
                },
                Packet {
                    ts: Duration::new(1_700_000_001, 0),
                    data: vec![1, 2, 3],
                    orig_len: 1500,
                    seen: None,
                },
            ],
            interfaces: Vec::new(),
        }
    }

    fn written(cap: &Capture) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut out, cap).expect("writing to a Vec");
        out
    }

    #[test]
    fn write_then_read_is_identity() {
        let cap = sample();
        let bytes = written(&cap);
        assert_eq!(bytes.len(), 24 + 16 + 4 + 16 + 3);
        assert_eq!(read(&bytes).expect("own output reads"), cap);
    }

    #[test]
    fn big_endian_and_nanosecond_files_read() {
        // Re-encode the sample by hand as a big-endian nanosecond file.
        let cap = sample();
        let mut be = 0xA1B2_3C4Du32.to_be_bytes().to_vec();
        be.extend(2u16.to_be_bytes());
        be.extend(4u16.to_be_bytes());
        for v in [0u32, 0, SNAPLEN, 101] {
            be.extend(v.to_be_bytes());
        }
        for p in &cap.packets {
            let secs = u32::try_from(p.ts.as_secs()).expect("fits");
            let len = u32::try_from(p.data.len()).expect("fits");
            for v in [secs, p.ts.subsec_nanos(), len, p.orig_len] {
                be.extend(v.to_be_bytes());
            }
            be.extend(&p.data);
        }
        assert_eq!(read(&be).expect("big-endian reads"), cap);
    }

    #[test]
    fn pcapng_units_follow_if_tsresol() {
        let ms = Interface {
            dlt: 1,
            resol: 3,
            offset_secs: 0,
            name: None,
            host: false,
        };
        assert_eq!(ms.time(1_500), Duration::from_millis(1_500));
        let bin = Interface {
            dlt: 1,
            resol: 0x80 | 10,
            offset_secs: 5,
            name: None,
            host: false,
        };
        assert_eq!(bin.time(1024), Duration::from_secs(6));
        let absurd = Interface {
            dlt: 1,
            resol: 127,
            offset_secs: 0,
            name: None,
            host: false,
        };
        assert_eq!(absurd.time(u64::MAX), Duration::ZERO);
    }

    #[test]
    fn every_truncation_inside_a_record_is_an_error() {
        let bytes = written(&sample());
        // Cuts between records (after the header, after the first packet) leave valid files.
        let boundaries = [24, 24 + 16 + 4];
        for cut in 0..bytes.len() {
            match read(&bytes[..cut]) {
                Ok(cap) => assert!(boundaries.contains(&cut), "cut at {cut}: {cap:?}"),
                Err(e) => assert!(
                    matches!(e, PcapError::Truncated { .. } | PcapError::Empty),
                    "cut at {cut}: {e}"
                ),
            }
        }
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(matches!(read(b""), Err(PcapError::Empty)));
        let err = read(b"hello world\n").expect_err("text is not a capture");
        assert_eq!(
            err.to_string(),
            "not a pcap or pcapng file (it starts with \"hello wo\")"
        );
        let mut bytes = written(&sample());
        bytes[20] = 0xEE; // link type 0xEE..: unknown
        assert!(matches!(read(&bytes), Err(PcapError::UnsupportedLink(_))));
    }

    #[test]
    fn oversized_packets_are_cut_at_the_snaplen() {
        let cap = Capture {
            link: LinkType::Ethernet,
            packets: vec![Packet {
                ts: Duration::ZERO,
                data: vec![7; SNAPLEN as usize + 10],
                orig_len: 0,
                seen: None,
            }],
            interfaces: Vec::new(),
        };
        let back = read(&written(&cap)).expect("reads");
        assert_eq!(back.packets[0].data.len(), SNAPLEN as usize);
        assert_eq!(back.packets[0].orig_len, SNAPLEN + 10);
    }

    #[test]
    fn hosts_captures_round_trip_through_pcapng() {
        let packet = |ts: u64, interface: u32, received: Option<usize>, marks: u8| Packet {
            ts: Duration::new(1_700_000_000, 123_456_789) + Duration::from_millis(ts),
            data: vec![0xAB; 60],
            orig_len: 60,
            seen: Some(Seen {
                interface,
                received,
                marks: Marks::from_bits(marks),
            }),
        };
        let cap = Capture {
            link: LinkType::Ethernet,
            packets: vec![
                packet(0, 0, None, Marks::DUPLICATED | Marks::CORRUPTED),
                packet(1, 1, Some(0), Marks::CORRUPTED),
                packet(2, 1, Some(0), Marks::DUPLICATED | Marks::CORRUPTED),
                packet(3, 1, None, Marks::DROPPED),
            ],
            interfaces: vec!["client".into(), "server".into()],
        };
        let bytes = written(&cap);
        assert_eq!(&bytes[..4], &0x0A0D_0D0Au32.to_be_bytes());
        assert_eq!(read(&bytes).expect("own output reads"), cap);
        let comment = |i: usize| cap.packets[i].seen.expect("seen").comment();
        assert_eq!(comment(0), "sockharness: sent (duplicated, corrupted)");
        assert_eq!(
            comment(2),
            "sockharness: received, frame 1 (duplicated, corrupted)"
        );
        assert_eq!(comment(3), "sockharness: sent (dropped)");
        // With no packet to say so, the interfaces still do.
        let empty = Capture {
            packets: Vec::new(),
            ..cap
        };
        assert_eq!(read(&written(&empty)).expect("reads"), empty);
    }

    #[test]
    fn other_comments_are_only_comments() {
        for c in [
            "a note",
            "sockharness: lost",
            "sockharness: sent (eaten)",
            "sockharness: received, frame 0",
            "sockharness: received, frame x",
        ] {
            assert_eq!(Seen::from_comment(0, c), None, "{c}");
        }
    }
}
