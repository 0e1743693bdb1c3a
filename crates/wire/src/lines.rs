//! Which segments the text rendering shows, and which it merges into one line.
//!
//! On loopback, where a stream is cut into segments, how the two directions' segments
//! interleave and whether a segment is sent twice depend on timing (TSO/GSO, window updates,
//! a tail-loss probe when a window fills), while each direction's bytes and their order do not.
//! So the default view shows the data a direction sends between two of its own control
//! segments (SYN, FIN, RST) as one line, by sequence range, where that data starts; the other
//! direction's data does not cut it. The bytes shown are the union of what the segments
//! carried, so a segment that carries no new byte changes nothing, however late it comes. A FIN
//! sent again at the sequence number of one already shown is left out too: whether the first
//! one's ACK came back before the retransmission timer fired is timing, on a loaded machine as
//! on a lossy one; but where the link dropped the one shown, the FIN that made it is shown too.
//! A SYN sent again is kept, because there it is the scenario (a full queue) that decides.
//!
//! Twelve captures of two sockets sending each other 1 MiB at once showed two different
//! interleavings at the level of runs of segments: merging only neighbouring lines is not
//! enough.

use super::wire::{Marks, Segment};

/// Payload bytes shown in a preview.
pub(super) const SHOWN: usize = 32;

/// Consecutive data of one direction, by relative sequence range.
pub(super) struct Run {
    /// Where the run starts.
    pub start: u32,
    /// Just past its last byte.
    pub end: u32,
    /// Its first bytes, up to [`SHOWN`], as far as the capture kept them without a gap.
    pub bytes: Vec<u8>,
}

impl Run {
    fn new(s: &Segment, start: u32) -> Run {
        let mut run = Run {
            start,
            end: start,
            bytes: Vec::new(),
        };
        run.add(s);
        run
    }

    /// Extends the run with a segment that starts at or before its end and ends after it.
    fn add(&mut self, s: &Segment) {
        let have = self.start.wrapping_add(self.bytes.len() as u32);
        let offset = have.wrapping_sub(s.rel_seq) as usize;
        if self.bytes.len() < SHOWN && offset < s.payload.len() {
            let take = (SHOWN - self.bytes.len()).min(s.payload.len() - offset);
            self.bytes
                .extend_from_slice(&s.payload[offset..offset + take]);
        }
        self.end = s.rel_seq.wrapping_add(s.payload_len);
    }

    /// Its length in bytes.
    pub fn len(&self) -> u32 {
        self.end.wrapping_sub(self.start)
    }
}

/// One output line: a segment as captured, or a run of data that starts with `seg`.
pub(super) struct Line<'a> {
    /// The (first) segment: direction, flags, time, window, options.
    pub seg: &'a Segment,
    /// The merged run, in the default view.
    pub run: Option<Run>,
}

/// The lines of one connection, in capture order. `merge` is the default view: each
/// direction's data between two of its own control segments becomes the union of the bytes its
/// segments carried, one line per contiguous range, where that data starts; otherwise every
/// segment is a line of its own. Pure ACKs are lines only when `acks` is set.
///
/// A union, not a running high mark: where a segment never reached the capture (dropped on its
/// way to it) and came again later, the later copy fills the gap however late it came, so that
/// the view still depends only on which bytes were sent.
pub(super) fn lines<'a>(segs: &[&'a Segment], merge: bool, acks: bool) -> Vec<Line<'a>> {
    enum Slot<'a> {
        Line(&'a Segment),
        Block(usize),
    }
    let mut slots = Vec::new();
    // The data segments of each block, and each direction's open block.
    let mut blocks: Vec<Vec<&'a Segment>> = Vec::new();
    let mut open: [Option<usize>; 2] = [None; 2];
    // Per direction: the sequence number of the last bare FIN shown, while it was not dropped.
    let mut fin: [Option<u32>; 2] = [None; 2];
    for &s in segs {
        if s.is_pure_ack() && !acks {
            continue;
        }
        let dir = usize::from(s.src != segs[0].src);
        if !merge {
            slots.push(Slot::Line(s));
            continue;
        }
        if s.is_data_only() {
            let id = *open[dir].get_or_insert_with(|| {
                blocks.push(Vec::new());
                slots.push(Slot::Block(blocks.len() - 1));
                blocks.len() - 1
            });
            blocks[id].push(s);
            continue;
        }
        if s.is_bare_fin() {
            if fin[dir] == Some(s.rel_seq) {
                continue;
            }
            fin[dir] = (!s.marks.has(Marks::DROPPED)).then_some(s.rel_seq);
        }
        slots.push(Slot::Line(s));
        open[dir] = None;
    }
    let mut out = Vec::new();
    for slot in slots {
        match slot {
            Slot::Line(seg) => out.push(Line { seg, run: None }),
            Slot::Block(id) => out.extend(union(&blocks[id])),
        }
    }
    out
}

/// The contiguous ranges the segments of one block cover, in sequence order, each a line with
/// the first segment (in capture order) that carried part of it.
fn union<'a>(segs: &[&'a Segment]) -> Vec<Line<'a>> {
    let Some(first) = segs.first() else {
        return Vec::new();
    };
    // Offsets from the block's first segment, so that sequence numbers may wrap.
    let base = first.rel_seq;
    let offset = |s: &Segment| i64::from(s.rel_seq.wrapping_sub(base) as i32);
    let mut order: Vec<(usize, &'a Segment)> = segs.iter().copied().enumerate().collect();
    order.sort_by_key(|(i, s)| (offset(s), *i));
    let mut out: Vec<(usize, Line<'a>)> = Vec::new();
    let mut end = i64::MIN;
    for (i, s) in order {
        let (from, to) = (offset(s), offset(s) + i64::from(s.payload_len));
        match out.last_mut() {
            Some((first_seen, line)) if from <= end => {
                if to > end {
                    if let Some(run) = line.run.as_mut() {
                        run.add(s);
                    }
                    end = to;
                }
                if i < *first_seen {
                    *first_seen = i;
                    line.seg = s;
                }
            }
            _ => {
                out.push((
                    i,
                    Line {
                        seg: s,
                        run: Some(Run::new(s, s.rel_seq)),
                    },
                ));
                end = to;
            }
        }
    }
    out.into_iter().map(|(_, l)| l).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Flags;
    use std::net::SocketAddr;
    use std::time::Duration;

    fn seg(src: u16, flags: &str, rel_seq: u32, payload: &[u8]) -> Segment {
        let addr = |p| SocketAddr::from(([127, 0, 0, 1], p));
        Segment {
            ts: Duration::ZERO,
            conn: 0,
            src: addr(src),
            dst: addr(if src == 1 { 2 } else { 1 }),
            flags: Flags::from_letters(flags).expect("valid"),
            seq: rel_seq,
            ack: 0,
            rel_seq,
            rel_ack: 1,
            window: 0,
            payload_len: u32::try_from(payload.len()).expect("small"),
            payload: payload.to_vec(),
            options: Vec::new(),
            marks: Default::default(),
            arrived: None,
        }
    }

    /// (start, end, preview bytes) of each run, or the flags of a plain line.
    fn shape(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .map(|l| match &l.run {
                Some(r) => format!(
                    "{}..{} {}",
                    r.start,
                    r.end,
                    String::from_utf8_lossy(&r.bytes)
                ),
                None => l.seg.flags.letters(),
            })
            .collect()
    }

    #[test]
    fn retransmissions_and_overlaps_do_not_change_the_default_view() {
        let segs = [
            seg(1, "S", 0, b""),
            seg(1, "PA", 1, b"abc"),
            seg(1, "PA", 4, b"def"),
            seg(1, "PA", 4, b"def"), // retransmitted whole: left out
            seg(1, "PA", 6, b"fgh"), // overlaps: only "gh" is new
            seg(2, "A", 1, b""),
            seg(2, "PA", 1, b"xy"),
            seg(1, "PA", 1, b"abc"), // old data after another line: left out
            seg(1, "FA", 9, b""),
            seg(2, "FA", 3, b""),
            seg(1, "FA", 9, b""), // FIN retransmitted: left out
        ];
        let refs: Vec<&Segment> = segs.iter().collect();
        assert_eq!(
            shape(&lines(&refs, true, false)),
            ["S", "1..9 abcdefgh", "1..3 xy", "FA", "FA"]
        );
        assert_eq!(lines(&refs, false, false).len(), 10);
        assert_eq!(lines(&refs, false, true).len(), 11);
    }

    #[test]
    fn the_other_directions_data_does_not_cut_a_run() {
        let segs = [
            seg(1, "PA", 1, b"ab"),
            seg(2, "PA", 1, b"xy"),
            seg(1, "PA", 3, b"cd"),
            seg(2, "FA", 3, b""),
            seg(1, "PA", 5, b"ef"),
            seg(1, "FA", 7, b""),
            seg(2, "PA", 3, b"z"), // after its own FIN: odd, but shown
        ];
        let refs: Vec<&Segment> = segs.iter().collect();
        assert_eq!(
            shape(&lines(&refs, true, false)),
            ["1..7 abcdef", "1..3 xy", "FA", "FA", "3..4 z"]
        );
    }

    #[test]
    fn a_gap_filled_late_closes_the_run() {
        // "cd" never reached the capture the first time; its retransmission comes after "ef".
        let segs = [
            seg(1, "A", 1, b"ab"),
            seg(1, "A", 5, b"ef"),
            seg(2, "A", 1, b"x"),
            seg(1, "A", 3, b"cd"),
            seg(1, "FA", 7, b""),
        ];
        let refs: Vec<&Segment> = segs.iter().collect();
        assert_eq!(
            shape(&lines(&refs, true, false)),
            ["1..7 abcdef", "1..2 x", "FA"]
        );
    }

    #[test]
    fn a_fin_the_link_dropped_is_followed_by_the_one_that_made_it() {
        let mut lost = seg(1, "FA", 9, b"");
        lost.marks = Marks::from_bits(Marks::DROPPED);
        let segs = [lost, seg(1, "FA", 9, b""), seg(1, "FA", 9, b"")];
        let refs: Vec<&Segment> = segs.iter().collect();
        assert_eq!(shape(&lines(&refs, true, false)), ["FA", "FA"]);
    }

    #[test]
    fn a_gap_starts_a_new_run() {
        let segs = [seg(1, "A", 1, b"ab"), seg(1, "A", 10, b"cd")];
        let refs: Vec<&Segment> = segs.iter().collect();
        assert_eq!(shape(&lines(&refs, true, false)), ["1..3 ab", "10..12 cd"]);
    }
}
