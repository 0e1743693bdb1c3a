//! The wire trace as text (for people and snapshots) and as JSON (for programs).
//!
//! The default text is meant to be identical from run to run of the same scenario: pure ACKs
//! are left out (delayed-ACK timing decides them), and data is shown by runs of bytes rather
//! than by segment (see `lines`).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::lines::{lines, Line, SHOWN};
use super::wire::{Segment, WireTrace};
use sockharness_script::{escape, preview};

/// What the text rendering shows beyond flags, relative numbers, lengths and payload.
///
/// With all fields false (the default) pure ACKs are hidden, the data a direction sends between
/// two of its own SYN, FIN or RST segments is one line (`seq=1..29 len=28`, flags without PSH,
/// no ack), and data segments that carry no new byte and FINs sent again (retransmissions) are
/// left out. Asking for any per-segment detail shows every segment, except pure ACKs unless `acks` is set, as captured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Show pure ACKs (and so every segment as captured).
    pub acks: bool,
    /// Show each segment's advertised window (unscaled).
    pub windows: bool,
    /// Show TCP options.
    pub options: bool,
    /// Show times relative to the capture's first packet, as `+0.001234s`.
    pub timestamps: bool,
}

impl RenderOptions {
    fn merges(&self) -> bool {
        !(self.acks || self.windows || self.options || self.timestamps)
    }
}

/// An escaped preview of a payload of `total` bytes of which `kept` are known.
fn payload_preview(kept: &[u8], total: u32) -> String {
    let shown = &kept[..kept.len().min(SHOWN)];
    if shown.len() == total as usize {
        preview(shown, SHOWN)
    } else {
        format!("{}...", preview(shown, SHOWN))
    }
}

impl WireTrace {
    /// The trace as text: one block per connection in order of first appearance, endpoints
    /// named by `names` (raw `ip:port` where it has no name), one line per segment or data run.
    pub fn render(
        &self,
        names: &dyn Fn(SocketAddr) -> Option<String>,
        opts: &RenderOptions,
    ) -> String {
        let name = |a: SocketAddr| names(a).unwrap_or_else(|| a.to_string());
        let mut conns: Vec<Vec<&Segment>> = vec![Vec::new(); self.connections()];
        for s in &self.segments {
            conns[s.conn].push(s);
        }
        let mut out = String::new();
        for segs in conns.iter().filter(|c| !c.is_empty()) {
            if !out.is_empty() {
                out.push('\n');
            }
            let (a, b) = (name(segs[0].src), name(segs[0].dst));
            let _ = writeln!(out, "connection {a} <-> {b}");
            let lines = lines(segs, opts.merges(), opts.acks);
            let arrow = |l: &Line| format!("{} -> {}", name(l.seg.src), name(l.seg.dst));
            let width = lines.iter().map(|l| arrow(l).len()).max().unwrap_or(0);
            for l in &lines {
                self.line(&mut out, l, &arrow(l), width, opts);
            }
        }
        if self.segments.is_empty() {
            out.push_str("no TCP segments\n");
        }
        if self.skipped > 0 {
            let s = if self.skipped == 1 { "" } else { "s" };
            let _ = writeln!(out, "({} packet{s} not TCP)", self.skipped);
        }
        out
    }

    fn line(&self, out: &mut String, l: &Line, arrow: &str, width: usize, opts: &RenderOptions) {
        let s = l.seg;
        out.push_str("  ");
        if opts.timestamps {
            let t = s.ts.saturating_sub(self.start);
            let _ = write!(out, "+{}.{:06}s  ", t.as_secs(), t.subsec_micros());
        }
        let mut flags = s.flags.letters();
        if l.run.is_some() {
            flags.retain(|c| c != 'P');
        }
        if flags.is_empty() {
            flags.push('-');
        }
        let _ = write!(out, "{arrow:<width$}  {flags:<5} ");
        let (len, payload) = match &l.run {
            Some(run) => {
                // No ack: where the other direction's data interleaves is timing.
                let _ = write!(out, "seq={}..{} len={}", run.start, run.end, run.len());
                (run.len(), run.bytes.as_slice())
            }
            None => {
                let _ = write!(
                    out,
                    "seq={} ack={} len={}",
                    s.rel_seq, s.rel_ack, s.payload_len
                );
                (s.payload_len, s.payload.as_slice())
            }
        };
        if opts.windows {
            let _ = write!(out, " win={}", s.window);
        }
        if opts.options && !s.options.is_empty() {
            let _ = write!(out, " <{}>", s.options.join(", "));
        }
        if len > 0 {
            let _ = write!(out, " {}", payload_preview(payload, len));
        }
        if l.run.is_none() && !s.marks.is_empty() {
            let _ = write!(out, "  ({})", s.marks);
        }
        out.push('\n');
    }

    /// The trace as a JSON document: `connections` (endpoints named and raw), every segment
    /// as captured (nothing hidden or merged), and the count of `skipped` packets.
    pub fn to_json(&self, names: &dyn Fn(SocketAddr) -> Option<String>) -> String {
        let name = |a: SocketAddr| names(a).unwrap_or_else(|| a.to_string());
        let mut connections: Vec<JsonConn> = Vec::new();
        for s in &self.segments {
            if s.conn == connections.len() {
                connections.push(JsonConn {
                    id: s.conn,
                    a: name(s.src),
                    b: name(s.dst),
                    a_addr: s.src.to_string(),
                    b_addr: s.dst.to_string(),
                });
            }
        }
        let segments = self.segments.iter().map(|s| JsonSegment {
            conn: s.conn,
            time_us: micros(s.ts.saturating_sub(self.start)),
            src: name(s.src),
            dst: name(s.dst),
            flags: s.flags.letters(),
            seq: s.rel_seq,
            ack: s.rel_ack,
            len: s.payload_len,
            window: s.window,
            raw_seq: s.seq,
            raw_ack: s.ack,
            options: &s.options,
            payload: escape(&s.payload),
            marks: s.marks.words(),
            arrived_us: s.arrived.map(|t| micros(t.saturating_sub(self.start))),
        });
        let doc = JsonTrace {
            connections,
            segments: segments.collect(),
            skipped: self.skipped,
        };
        // Plain structs of strings and numbers always serialise.
        serde_json::to_string_pretty(&doc).expect("the wire trace serialises")
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[derive(Serialize)]
struct JsonTrace<'a> {
    connections: Vec<JsonConn>,
    segments: Vec<JsonSegment<'a>>,
    skipped: usize,
}

#[derive(Serialize)]
struct JsonConn {
    id: usize,
    a: String,
    b: String,
    a_addr: String,
    b_addr: String,
}

#[derive(Serialize)]
struct JsonSegment<'a> {
    conn: usize,
    time_us: u64,
    src: String,
    dst: String,
    flags: String,
    seq: u32,
    ack: u32,
    len: u32,
    window: u16,
    raw_seq: u32,
    raw_ack: u32,
    options: &'a [String],
    /// The first bytes, escaped as the scenario language writes data.
    payload: String,
    /// What the link between hosts did to it.
    marks: Vec<&'static str>,
    /// When it reached the other host, where both sides of a link were captured.
    #[serde(skip_serializing_if = "Option::is_none")]
    arrived_us: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Flags;

    fn seg(src: u16, flags: &str, rel_seq: u32, rel_ack: u32, payload: &[u8]) -> Segment {
        let addr = |p| SocketAddr::from(([127, 0, 0, 1], p));
        let dst = if src == 1000 { 80 } else { 1000 };
        Segment {
            ts: Duration::from_micros(u64::from(rel_seq) * 10),
            conn: 0,
            src: addr(src),
            dst: addr(dst),
            flags: Flags::from_letters(flags).expect("valid letters"),
            seq: rel_seq + 100,
            ack: rel_ack + 200,
            rel_seq,
            rel_ack,
            window: 512,
            payload_len: u32::try_from(payload.len()).expect("small"),
            payload: payload.to_vec(),
            options: Vec::new(),
            marks: Default::default(),
            arrived: None,
        }
    }

    fn names(a: SocketAddr) -> Option<String> {
        match a.port() {
            1000 => Some("cli".into()),
            80 => Some("srv".into()),
            _ => None,
        }
    }

    fn trace() -> WireTrace {
        WireTrace {
            segments: vec![
                seg(1000, "S", 0, 0, b""),
                seg(80, "SA", 0, 1, b""),
                seg(1000, "A", 1, 1, b""),
                seg(1000, "PA", 1, 1, b"GET "),
                seg(80, "A", 1, 5, b""),
                seg(1000, "PA", 5, 1, b"/ HTTP/1.0\r\n"),
                seg(80, "PA", 1, 17, b"ok"),
                seg(1000, "FA", 17, 3, b""),
            ],
            skipped: 1,
            start: Duration::ZERO,
        }
    }

    #[test]
    fn default_view_hides_acks_and_merges_data_runs() {
        let text = trace().render(&names, &RenderOptions::default());
        assert_eq!(
            text,
            "connection cli <-> srv\n\
             \x20 cli -> srv  S     seq=0 ack=0 len=0\n\
             \x20 srv -> cli  SA    seq=0 ack=1 len=0\n\
             \x20 cli -> srv  A     seq=1..17 len=16 \"GET / HTTP/1.0\\r\\n\"\n\
             \x20 srv -> cli  A     seq=1..3 len=2 \"ok\"\n\
             \x20 cli -> srv  FA    seq=17 ack=3 len=0\n\
             (1 packet not TCP)\n"
        );
    }

    #[test]
    fn acks_view_shows_every_segment() {
        let opts = RenderOptions {
            acks: true,
            timestamps: true,
            windows: true,
            ..RenderOptions::default()
        };
        let text = trace().render(&|_| None, &opts);
        assert_eq!(text.lines().count(), 1 + 8 + 1, "{text}");
        assert!(
            text.contains("  +0.000050s  127.0.0.1:1000 -> 127.0.0.1:80  PA    seq=5 ack=1 len=12 win=512 \"/ HTTP/1.0\\r\\n\""),
            "{text}"
        );
    }

    #[test]
    fn what_the_link_did_shows_on_control_lines_and_in_json() {
        let mut t = trace();
        t.segments[0].marks = crate::Marks::from_bits(crate::Marks::DROPPED);
        t.segments[3].marks = crate::Marks::from_bits(crate::Marks::DUPLICATED);
        t.segments[1].arrived = Some(Duration::from_micros(1500));
        let text = t.render(&names, &RenderOptions::default());
        assert!(
            text.contains("  cli -> srv  S     seq=0 ack=0 len=0  (dropped)\n"),
            "{text}"
        );
        // A run of data is the bytes sent, however the link treated its segments.
        assert!(!text.contains("duplicated"), "{text}");
        let opts = RenderOptions {
            acks: true,
            ..RenderOptions::default()
        };
        let text = t.render(&names, &opts);
        assert!(text.contains("len=4 \"GET \"  (duplicated)\n"), "{text}");
        let json = t.to_json(&names);
        assert!(json.contains("\"dropped\""), "{json}");
        assert!(json.contains("\"arrived_us\": 1500"), "{json}");
    }

    #[test]
    fn long_and_cut_payloads_are_marked() {
        assert_eq!(payload_preview(b"abc", 3), "\"abc\"");
        assert_eq!(payload_preview(b"abc", 300), "\"abc\"...");
        let long = [b'x'; 40];
        assert_eq!(
            payload_preview(&long, 40),
            format!("\"{}\"...", "x".repeat(32))
        );
    }

    #[test]
    fn json_has_every_segment() {
        let json: serde_json::Value =
            serde_json::from_str(&trace().to_json(&names)).expect("valid JSON");
        assert_eq!(json["segments"].as_array().map(Vec::len), Some(8));
        assert_eq!(json["connections"][0]["a"], "cli");
        assert_eq!(json["segments"][1]["flags"], "SA");
        assert_eq!(json["segments"][1]["ack"], 1);
        assert_eq!(json["skipped"], 1);
    }
}
