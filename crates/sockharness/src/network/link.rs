//! What a link does to each packet of one direction: its impairments, the decisions they make,
//! and the counts `expect link` reads. No sockets here: the forwarder hands in frames and sends
//! out what comes back, so every decision can be tested on made-up packets.
//!
//! Decisions are drawn from the scenario's seed and the packet itself, not from the order of
//! arrival: a packet is known by its connection (the order its flow first appeared on the
//! link), its sequence number relative to the flow's first, its flags, its length and how often
//! that same packet was seen before (a retransmission draws anew). So a pure ACK that timing
//! adds or leaves out changes no other packet's fate, and the same run of the kernel's packets
//! meets the same fates on every run.

use std::collections::HashMap;
use std::time::Duration;

use crate::script::{Impairment, LinkCounter, Percent};

/// How long a packet chosen by `reorder` waits for a later one to pass it before it goes
/// anyway: long enough for a sender's next segment, short of any retransmission timer.
pub(crate) const REORDER_HOLD: Duration = Duration::from_millis(20);

/// The impairments of one direction in force.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Impairments {
    pub(crate) delay: Duration,
    pub(crate) jitter: Duration,
    pub(crate) loss: Percent,
    pub(crate) reorder: Percent,
    pub(crate) duplicate: Percent,
    pub(crate) corrupt: Percent,
    /// Bytes per second; `None` is no limit.
    pub(crate) rate: Option<u64>,
    pub(crate) down: bool,
}

impl Impairments {
    /// Applies one `link` word: each sets its own impairment and leaves the others; `clear`
    /// removes them all. `mtu` is the interfaces', set by the caller.
    pub(crate) fn apply(&mut self, i: &Impairment) {
        match *i {
            Impairment::Delay { delay, jitter } => {
                self.delay = delay;
                self.jitter = jitter.unwrap_or_default();
            }
            Impairment::Loss(p) => self.loss = p,
            Impairment::Reorder(p) => self.reorder = p,
            Impairment::Duplicate(p) => self.duplicate = p,
            Impairment::Corrupt(p) => self.corrupt = p,
            Impairment::Rate(r) => self.rate = Some(r),
            Impairment::Mtu(_) => {}
            Impairment::Down => self.down = true,
            Impairment::Clear => *self = Impairments::default(),
        }
    }
}

/// What a link did so far, per [`LinkCounter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Packets dropped.
    pub dropped: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Packets held back behind a later one.
    pub reordered: u64,
    /// Packets delivered with a bit flipped.
    pub corrupted: u64,
    /// Packets delivered later than they came.
    pub delayed: u64,
    /// Packets delivered, copies included.
    pub delivered: u64,
}

impl Counts {
    /// The count `expect link` asks for.
    pub fn get(&self, c: LinkCounter) -> u64 {
        match c {
            LinkCounter::Dropped => self.dropped,
            LinkCounter::Duplicated => self.duplicated,
            LinkCounter::Reordered => self.reordered,
            LinkCounter::Corrupted => self.corrupted,
            LinkCounter::Delayed => self.delayed,
            LinkCounter::Delivered => self.delivered,
        }
    }
}

/// What happens to one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fate {
    /// Copies to deliver, each after its own wait (from now); none when dropped.
    pub(crate) copies: Vec<Duration>,
    /// Byte and bit to flip in every copy, counted from the start of the frame.
    pub(crate) flip: Option<(usize, u8)>,
    /// Held back until a later packet of the same direction has passed.
    pub(crate) reordered: bool,
}

/// The fields that say which packet a frame is, for the decisions about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PacketId {
    /// The transport's source and destination ports with the protocol (0 for neither).
    pub(crate) flow: (u8, u16, u16),
    /// The TCP sequence number (0 for other protocols).
    pub(crate) seq: u32,
    /// The TCP flags byte.
    pub(crate) flags: u8,
    /// The frame's length.
    pub(crate) len: u32,
    /// Where the transport's header starts in the frame, and where the frame ends: a bit is
    /// flipped there, so that the transport checksum fails and the IP header stays good.
    pub(crate) l4: (usize, usize),
}

/// One direction of a link.
#[derive(Debug)]
pub(crate) struct Direction {
    seed: u64,
    /// Which direction, as two host numbers, so that each has its own draws.
    ends: (u8, u8),
    pub(crate) now: Impairments,
    pub(crate) counts: Counts,
    /// Each flow's number (in order of appearance) and first sequence number.
    flows: HashMap<(u8, u16, u16), (u32, u32)>,
    /// How often each packet (as `PacketId` less its offsets, relative) was seen.
    seen: HashMap<(u32, u32, u8, u32), u32>,
    /// When the link is free again, under `rate`.
    busy_until: Duration,
}

impl Direction {
    pub(crate) fn new(seed: u64, from: u8, to: u8) -> Direction {
        Direction {
            seed,
            ends: (from, to),
            now: Impairments::default(),
            counts: Counts::default(),
            flows: HashMap::new(),
            seen: HashMap::new(),
            busy_until: Duration::ZERO,
        }
    }

    /// Decides the fate of a packet that came at `at` (time since the link started).
    pub(crate) fn decide(&mut self, id: &PacketId, at: Duration) -> Fate {
        let mut draws = Draws(self.key(id));
        let im = self.now;
        // Every draw is made whatever the impairments, so that changing one does not move the
        // others' decisions.
        let lost = draws.unit() < im.loss.fraction();
        let corrupt = draws.unit() < im.corrupt.fraction();
        let duplicate = draws.unit() < im.duplicate.fraction();
        let reorder = draws.unit() < im.reorder.fraction();
        let jitter = draws.unit() * 2.0 - 1.0;
        let bit = draws.next();
        if im.down || lost {
            self.counts.dropped += 1;
            return Fate {
                copies: Vec::new(),
                flip: None,
                reordered: false,
            };
        }
        let mut wait = im.delay;
        if !im.jitter.is_zero() {
            wait = Duration::from_secs_f64(
                (im.delay.as_secs_f64() + jitter * im.jitter.as_secs_f64()).max(0.0),
            );
        }
        if let Some(rate) = im.rate {
            let start = self.busy_until.max(at);
            self.busy_until = start + Duration::from_secs_f64(f64::from(id.len) / rate as f64);
            wait += self.busy_until - at;
        }
        let flip = (corrupt && id.l4.1 > id.l4.0).then(|| {
            let bits = (id.l4.1 - id.l4.0) as u64 * 8;
            let b = bit % bits;
            (id.l4.0 + (b / 8) as usize, 1u8 << (b % 8))
        });
        let mut copies = vec![wait];
        if duplicate {
            copies.push(wait);
            self.counts.duplicated += 1;
        }
        self.counts.delivered += copies.len() as u64;
        if flip.is_some() {
            self.counts.corrupted += 1;
        }
        if reorder {
            self.counts.reordered += 1;
        }
        if !wait.is_zero() {
            self.counts.delayed += 1;
        }
        Fate {
            copies,
            flip,
            reordered: reorder,
        }
    }

    /// The packet's key: the seed, the direction, and the packet as it is from run to run.
    fn key(&mut self, id: &PacketId) -> u64 {
        let next = self.flows.len() as u32;
        let (number, first) = *self.flows.entry(id.flow).or_insert((next, id.seq));
        let rel = id.seq.wrapping_sub(first);
        let seen = self
            .seen
            .entry((number, rel, id.flags, id.len))
            .or_insert(0);
        let nth = *seen;
        *seen += 1;
        let mut h = mix(self.seed);
        for v in [
            u64::from(self.ends.0) << 8 | u64::from(self.ends.1),
            u64::from(number),
            u64::from(rel),
            u64::from(id.flags),
            u64::from(id.len),
            u64::from(nth),
        ] {
            h = mix(h ^ v);
        }
        h
    }
}

/// A packet's draws: splitmix64 from its key. The same on every build and platform, which is
/// what a seed needs, and each draw well spread whatever the key.
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// A number in [0, 1), from the draw's top 53 bits.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// splitmix64's finaliser: a fixed, well-spread mix, the same on every build.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u32, len: u32) -> PacketId {
        PacketId {
            flow: (6, 40000, 80),
            seq,
            flags: 0x10,
            len,
            l4: (34, len as usize),
        }
    }

    fn with(words: &[Impairment]) -> Direction {
        let mut d = Direction::new(7, 1, 2);
        for w in words {
            d.now.apply(w);
        }
        d
    }

    fn pct(p: u32) -> Percent {
        Percent(p * 10_000)
    }

    #[test]
    fn the_same_packets_meet_the_same_fates_whatever_comes_between() {
        let mut a = with(&[Impairment::Loss(pct(30)), Impairment::Duplicate(pct(20))]);
        let mut b = with(&[Impairment::Loss(pct(30)), Impairment::Duplicate(pct(20))]);
        let mut fates_a = Vec::new();
        let mut fates_b = Vec::new();
        for i in 0..200u32 {
            fates_a.push(a.decide(&id(1000 + i * 1448, 1514), Duration::ZERO));
            // The second run's flow starts elsewhere (relative numbers make it the same
            // packets), and a later flow's packets come in between: no fate changes.
            fates_b.push(b.decide(&id(5000 + i * 1448, 1514), Duration::ZERO));
            let mut other = id(i, 66);
            other.flow = (6, 50000, 80);
            b.decide(&other, Duration::ZERO);
        }
        assert!(fates_a == fates_b, "the fates differ");
        // Another seed decides otherwise.
        let mut c = Direction::new(8, 1, 2);
        c.now = a.now;
        let fates_c: Vec<_> = (0..200u32)
            .map(|i| c.decide(&id(1000 + i * 1448, 1514), Duration::ZERO))
            .collect();
        assert!(fates_a != fates_c, "another seed decided the same");
    }

    #[test]
    fn probabilities_hold_over_many_packets() {
        let mut d = with(&[
            Impairment::Loss(pct(10)),
            Impairment::Duplicate(pct(5)),
            Impairment::Corrupt(pct(2)),
            Impairment::Reorder(pct(20)),
        ]);
        let n = 20_000u32;
        for i in 0..n {
            d.decide(&id(i * 100, 154), Duration::ZERO);
        }
        let c = d.counts;
        let near = |got: u64, p: f64| {
            let want = f64::from(n) * p;
            (got as f64 - want).abs() < want * 0.15 + 10.0
        };
        assert!(near(c.dropped, 0.10), "{c:?}");
        assert!(near(c.duplicated, 0.9 * 0.05), "{c:?}");
        assert!(near(c.corrupted, 0.9 * 0.02), "{c:?}");
        assert!(near(c.reordered, 0.9 * 0.20), "{c:?}");
        assert_eq!(c.delivered, u64::from(n) - c.dropped + c.duplicated);
    }

    #[test]
    fn a_retransmission_draws_anew() {
        let mut d = with(&[Impairment::Loss(pct(50))]);
        let fates: Vec<bool> = (0..64)
            .map(|_| d.decide(&id(1, 1514), Duration::ZERO).copies.is_empty())
            .collect();
        assert!(fates.contains(&true) && fates.contains(&false), "{fates:?}");
    }

    #[test]
    fn down_drops_everything_and_clear_lifts_it() {
        let mut d = with(&[Impairment::Delay {
            delay: Duration::from_millis(5),
            jitter: None,
        }]);
        d.now.apply(&Impairment::Down);
        assert!(d.decide(&id(1, 60), Duration::ZERO).copies.is_empty());
        d.now.apply(&Impairment::Clear);
        assert_eq!(d.now, Impairments::default());
        assert_eq!(
            d.decide(&id(2, 60), Duration::ZERO).copies,
            [Duration::ZERO]
        );
        assert_eq!(d.counts.dropped, 1);
    }

    #[test]
    fn a_corrupted_packet_has_one_bit_flipped_inside_its_transport_segment() {
        let mut d = with(&[Impairment::Corrupt(Percent::ALL)]);
        for i in 0..100 {
            let (byte, bit) = d.decide(&id(i, 100), Duration::ZERO).flip.expect("flipped");
            assert!((34..100).contains(&byte), "{byte}");
            assert_eq!(bit.count_ones(), 1);
        }
    }

    #[test]
    fn rate_queues_packets_behind_each_other() {
        // 1000 bytes per second: a 100-byte packet takes 100 ms on the wire.
        let mut d = with(&[Impairment::Rate(1000)]);
        let waits: Vec<Duration> = (0..3)
            .map(|i| d.decide(&id(i, 100), Duration::ZERO).copies[0])
            .collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(waits, [ms(100), ms(200), ms(300)]);
        // Once the queue has drained, the next packet waits only for itself.
        assert_eq!(d.decide(&id(9, 100), ms(1000)).copies, [ms(100)]);
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let mut d = with(&[Impairment::Delay {
            delay: Duration::from_millis(10),
            jitter: Some(Duration::from_millis(4)),
        }]);
        let waits: Vec<Duration> = (0..500)
            .map(|i| d.decide(&id(i, 60), Duration::ZERO).copies[0])
            .collect();
        let (lo, hi) = (Duration::from_millis(6), Duration::from_millis(14));
        assert!(waits.iter().all(|w| (lo..=hi).contains(w)), "{waits:?}");
        assert!(waits.iter().any(|w| *w < Duration::from_millis(8)));
        assert!(waits.iter().any(|w| *w > Duration::from_millis(12)));
    }
}
