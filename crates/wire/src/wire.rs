//! The wire trace: the TCP segments of a capture with Wireshark's relative sequence numbers,
//! and the questions wire expectations ask of it (how many segments, how many bytes).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Payload bytes kept per segment: enough for a preview, not a copy of the stream.
pub const KEPT_PAYLOAD: usize = 64;

/// The flags of a TCP segment (the low byte of the header's flag field).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(u8);

impl Flags {
    /// FIN: no more data from the sender.
    pub const FIN: u8 = 0x01;
    /// SYN: synchronise sequence numbers (opens a connection).
    pub const SYN: u8 = 0x02;
    /// RST: reset the connection.
    pub const RST: u8 = 0x04;
    /// PSH: push buffered data to the receiving application.
    pub const PSH: u8 = 0x08;
    /// ACK: the acknowledgment number is valid.
    pub const ACK: u8 = 0x10;
    /// URG: the urgent pointer is valid.
    pub const URG: u8 = 0x20;
    /// ECE: ECN echo.
    pub const ECE: u8 = 0x40;
    /// CWR: congestion window reduced.
    pub const CWR: u8 = 0x80;

    /// Each flag's letter, in the order letters are written (`SA`, `FA`, `PA`, `RA`).
    const LETTERS: [(u8, char); 8] = [
        (Self::SYN, 'S'),
        (Self::FIN, 'F'),
        (Self::RST, 'R'),
        (Self::PSH, 'P'),
        (Self::ACK, 'A'),
        (Self::URG, 'U'),
        (Self::ECE, 'E'),
        (Self::CWR, 'C'),
    ];

    /// Flags from the header's flag bits.
    pub const fn from_bits(bits: u8) -> Flags {
        Flags(bits)
    }

    /// Flags from letters (`"SA"`), or `None` when a letter is not one of `SFRPAUEC`.
    pub fn from_letters(letters: &str) -> Option<Flags> {
        letters.chars().try_fold(Flags(0), |acc, c| {
            let (bit, _) = Self::LETTERS.iter().find(|(_, l)| *l == c)?;
            Some(Flags(acc.0 | bit))
        })
    }

    /// The flag bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag in `bits` is set.
    pub const fn has(self, bits: u8) -> bool {
        self.0 & bits == bits
    }

    /// The set flags as letters in the order `SFRPAUEC`: `S`, `SA`, `A`, `PA`, `FA`, `R`, `RA`.
    pub fn letters(self) -> String {
        Self::LETTERS
            .iter()
            .filter(|(bit, _)| self.has(*bit))
            .map(|(_, l)| *l)
            .collect()
    }

    /// Whether every letter of `letters` names a set flag; `""` always holds, and a letter
    /// that names no flag never does.
    pub fn contains_all(self, letters: &str) -> bool {
        Flags::from_letters(letters).is_some_and(|f| self.has(f.0))
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.letters())
    }
}

/// What the link between two hosts did to a packet (a scenario with hosts records it with
/// the capture; a capture of loopback has none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Marks(u8);

impl Marks {
    /// Never delivered: lost, on a link that was down, taken by `drop`, or between hosts with
    /// no link.
    pub const DROPPED: u8 = 0x01;
    /// Delivered more than once.
    pub const DUPLICATED: u8 = 0x02;
    /// Held back behind the packet after it.
    pub const REORDERED: u8 = 0x04;
    /// Delivered with a bit flipped.
    pub const CORRUPTED: u8 = 0x08;
    /// Held by `hold` until a `release`.
    pub const HELD: u8 = 0x10;

    /// Each mark's word, in the order they are written.
    const WORDS: [(u8, &'static str); 5] = [
        (Self::DROPPED, "dropped"),
        (Self::HELD, "held"),
        (Self::REORDERED, "reordered"),
        (Self::DUPLICATED, "duplicated"),
        (Self::CORRUPTED, "corrupted"),
    ];

    /// Marks from their bits.
    pub const fn from_bits(bits: u8) -> Marks {
        Marks(bits)
    }

    /// The mark bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether there is no mark.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every mark in `bits` is set.
    pub const fn has(self, bits: u8) -> bool {
        self.0 & bits == bits
    }

    /// The set marks' words: `dropped`, `held`, `reordered`, `duplicated`, `corrupted`.
    pub fn words(self) -> Vec<&'static str> {
        Self::WORDS
            .iter()
            .filter(|(bit, _)| self.has(*bit))
            .map(|(_, w)| *w)
            .collect()
    }

    /// Marks from words separated by commas (`"dropped, held"`), or `None` when one is not a
    /// mark's word.
    pub fn from_words(words: &str) -> Option<Marks> {
        words
            .split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .try_fold(Marks(0), |acc, w| {
                let (bit, _) = Self::WORDS.iter().find(|(_, word)| *word == w)?;
                Some(Marks(acc.0 | bit))
            })
    }
}

impl fmt::Display for Marks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.words().join(", "))
    }
}

/// One captured TCP segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// When it was captured, since the UNIX epoch.
    pub ts: Duration,
    /// The connection it belongs to: 0 for the first seen in the capture, then 1, 2...
    pub conn: usize,
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// Flags.
    pub flags: Flags,
    /// Sequence number as sent.
    pub seq: u32,
    /// Acknowledgment number as sent.
    pub ack: u32,
    /// Sequence number relative to this direction's initial one, as Wireshark computes it:
    /// 0 on the SYN; when the SYN was not captured, the first segment seen counts as 1.
    pub rel_seq: u32,
    /// Acknowledgment number relative to the other direction's initial sequence number
    /// (1 on the SYN-ACK). Without the ACK flag the field means nothing and is kept as sent,
    /// as Wireshark shows it.
    pub rel_ack: u32,
    /// Advertised window, unscaled.
    pub window: u16,
    /// Payload length, from the IP header (so even when the capture cut the packet short).
    pub payload_len: u32,
    /// The first bytes of the payload, at most [`KEPT_PAYLOAD`].
    pub payload: Vec<u8>,
    /// TCP options in tcpdump's words: `mss 65495`, `sackOK`, `ts val 1 ecr 0`, `wscale 7`,
    /// `sack 1-5` (raw sequence numbers); no-ops left out.
    pub options: Vec<String>,
    /// What the link between hosts did to it; none on loopback.
    pub marks: Marks,
    /// When its first copy reached the receiving host, where the capture recorded both sides
    /// of a link (and it arrived at all).
    pub arrived: Option<Duration>,
}

impl Segment {
    /// A segment that only acknowledges: no payload, and no flag but ACK (ECN flags aside).
    pub fn is_pure_ack(&self) -> bool {
        let others = !(Flags::ACK | Flags::ECE | Flags::CWR);
        self.payload_len == 0 && self.flags.has(Flags::ACK) && self.flags.bits() & others == 0
    }

    /// A segment that only carries data: payload, and no flags but ACK and PSH.
    pub fn is_data_only(&self) -> bool {
        self.payload_len > 0 && self.flags.bits() & !(Flags::ACK | Flags::PSH) == 0
    }

    /// A FIN without data, SYN or RST (its ACK and PSH aside).
    pub fn is_bare_fin(&self) -> bool {
        self.payload_len == 0
            && self.flags.has(Flags::FIN)
            && self.flags.bits() & !(Flags::FIN | Flags::ACK | Flags::PSH) == 0
    }

    /// The relative sequence number just past this segment (SYN and FIN count one).
    pub fn rel_end(&self) -> u32 {
        let control = u32::from(self.flags.bits() & (Flags::SYN | Flags::FIN) != 0);
        self.rel_seq
            .wrapping_add(self.payload_len)
            .wrapping_add(control)
    }
}

/// Every TCP segment of a capture, in capture order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WireTrace {
    /// The segments.
    pub segments: Vec<Segment>,
    /// Packets that were not TCP over IPv4 or IPv6, or could not be decoded.
    pub skipped: usize,
    /// When the capture's first packet (TCP or not) was captured; rendered times count from it.
    pub start: Duration,
}

impl WireTrace {
    /// How many segments went from `src` to `dst` with every flag named in `flags` (letters
    /// `S` SYN, `F` FIN, `R` RST, `P` PSH, `A` ACK; also `U`, `E`, `C`). `""` counts them all.
    pub fn count(&self, src: SocketAddr, dst: SocketAddr, flags: &str) -> u64 {
        let Some(want) = Flags::from_letters(flags) else {
            return 0;
        };
        let n = self
            .segments
            .iter()
            .filter(|s| s.src == src && s.dst == dst && s.flags.has(want.bits()))
            .count();
        n as u64
    }

    /// Payload bytes from `src` to `dst`, retransmissions included.
    pub fn bytes(&self, src: SocketAddr, dst: SocketAddr) -> u64 {
        self.segments
            .iter()
            .filter(|s| s.src == src && s.dst == dst)
            .map(|s| u64::from(s.payload_len))
            .sum()
    }

    /// The number of connections (see [`Segment::conn`]).
    pub fn connections(&self) -> usize {
        self.segments.iter().map(|s| s.conn + 1).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_round_trip() {
        for l in ["", "S", "SA", "A", "PA", "FA", "FPA", "R", "RA", "SAEC"] {
            assert_eq!(Flags::from_letters(l).expect("valid").letters(), l);
        }
        assert_eq!(Flags::from_letters("AS"), Flags::from_letters("SA"));
        assert_eq!(Flags::from_letters("X"), None);
    }

    #[test]
    fn contains_all_is_a_subset_test() {
        let sa = Flags::from_bits(Flags::SYN | Flags::ACK);
        assert!(sa.contains_all(""));
        assert!(sa.contains_all("S"));
        assert!(sa.contains_all("AS"));
        assert!(!sa.contains_all("SF"));
        assert!(!sa.contains_all("Q"));
        assert_eq!(sa.to_string(), "SA");
    }

    #[test]
    fn marks_round_trip_through_words() {
        let m = Marks::from_bits(Marks::HELD | Marks::CORRUPTED);
        assert_eq!(m.to_string(), "held, corrupted");
        assert_eq!(Marks::from_words("held, corrupted"), Some(m));
        assert_eq!(Marks::from_words(""), Some(Marks::default()));
        assert_eq!(Marks::from_words("dropped, lost"), None);
    }
}
