//! Capture files: read classic pcap (either byte order, micro- or nanosecond timestamps) and
//! pcapng; write classic pcap. The `pcap-file` crate parses the containers; this module checks
//! what it leaves to the caller (truncation, link types, pcapng timestamp units) so that a broken
//! file is an error and never a panic.

use std::io::{self, Write};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapParser, PcapWriter, RawPcapPacket};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{DataLink, Endianness, TsResolution};

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
}

/// A whole capture: its link type and its packets in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capture {
    /// The link layer of every packet.
    pub link: LinkType,
    /// The packets, in the order they were captured.
    pub packets: Vec<Packet>,
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
    Ok(Capture { link, packets })
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
    })
}

/// What pcapng needs per interface: its link type and how to turn a raw timestamp into time.
struct Interface {
    dlt: u32,
    resol: u8,
    offset_secs: u64,
}

impl Interface {
    fn new(idb: &InterfaceDescriptionBlock) -> Interface {
        let mut resol = 6; // pcapng's default: microseconds.
        let mut offset_secs = 0;
        for opt in &idb.options {
            match opt {
                InterfaceDescriptionOption::IfTsResol(r) => resol = *r,
                InterfaceDescriptionOption::IfTsOffset(o) => offset_secs = *o,
                _ => {}
            }
        }
        Interface {
            dlt: u32::from(idb.linktype),
            resol,
            offset_secs,
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
        // (interface, raw timestamp, original length, data)
        let (iface, raw_ts, orig_len, data) = match block {
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
                (epb.interface_id, raw, epb.original_len, epb.data)
            }
            Block::Packet(pb) => (
                u32::from(pb.interface_id),
                pb.timestamp,
                pb.original_len,
                pb.data,
            ),
            Block::SimplePacket(spb) => (0, 0, spb.original_len, spb.data),
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
        packets.push(Packet {
            ts: interface.time(raw_ts),
            orig_len: orig_len.max(u32::try_from(data.len()).unwrap_or(u32::MAX)),
            data,
        });
    }
    // A capture without packets still needs a link type: take the first interface's.
    let dlt = link
        .or_else(|| interfaces.first().map(|i| i.dlt))
        .unwrap_or(1);
    let link = LinkType::from_dlt(dlt).ok_or(PcapError::UnsupportedLink(dlt))?;
    Ok(Capture { link, packets })
}

/// Writes classic pcap, one packet at a time: for captures that are written as they happen.
pub struct Writer<W: Write> {
    inner: PcapWriter<W>,
}

impl<W: Write> Writer<W> {
    /// Writes the file header: native byte order, microsecond timestamps, [`SNAPLEN`].
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
        Ok(Writer { inner })
    }

    /// Writes one packet, cut at [`SNAPLEN`] bytes.
    pub fn packet(&mut self, p: &Packet) -> io::Result<()> {
        let kept = &p.data[..p.data.len().min(SNAPLEN as usize)];
        // The original length is never less than the bytes we have, cut or not.
        let orig_len = p.orig_len.max(p.data.len().try_into().unwrap_or(u32::MAX));
        let packet = PcapPacket::new(p.ts, orig_len, kept);
        self.inner.write_packet(&packet).map(drop).map_err(io_error)
    }

    /// Returns the underlying writer.
    pub fn into_inner(self) -> W {
        self.inner.into_writer()
    }
}

fn io_error(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidInput, other.to_string()),
    }
}

/// Writes a whole capture as classic pcap (see [`Writer`]).
pub fn write(w: impl Write, cap: &Capture) -> io::Result<()> {
    let mut writer = Writer::new(w, cap.link)?;
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
                },
                Packet {
                    ts: Duration::new(1_700_000_001, 0),
                    data: vec![1, 2, 3],
                    orig_len: 1500,
                },
            ],
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
        };
        assert_eq!(ms.time(1_500), Duration::from_millis(1_500));
        let bin = Interface {
            dlt: 1,
            resol: 0x80 | 10,
            offset_secs: 5,
        };
        assert_eq!(bin.time(1024), Duration::from_secs(6));
        let absurd = Interface {
            dlt: 1,
            resol: 127,
            offset_secs: 0,
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
            }],
        };
        let back = read(&written(&cap)).expect("reads");
        assert_eq!(back.packets[0].data.len(), SNAPLEN as usize);
        assert_eq!(back.packets[0].orig_len, SNAPLEN + 10);
    }
}
