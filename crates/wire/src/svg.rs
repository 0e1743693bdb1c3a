//! Ladder diagrams: one column per endpoint, one arrow per segment in capture order, drawn as
//! plain SVG text that any browser opens. A segment a link between hosts dropped stops half-way
//! at a cross; one it held, reordered, duplicated or corrupted says so in its label.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::wire::{Flags, Marks, Segment, WireTrace};
use sockharness_script::escape;

/// Space left of the first column, for times.
const GUTTER: usize = 100;
/// Height of one segment's row.
const ROW: usize = 30;
/// Where the first row starts.
const TOP: usize = 70;
/// How far an arrow drops: time passes while a segment crosses.
const DROP: usize = 8;
/// Approximate width of a character of the 12px monospace font.
const CHAR: usize = 8;

/// How a kind of segment is drawn: the legend's rows, most prominent first.
struct Style {
    name: &'static str,
    colour: &'static str,
    width: f32,
    dash: &'static str,
}

const STYLES: [Style; 5] = [
    Style {
        name: "RST",
        colour: "#cf222e",
        width: 3.0,
        dash: "",
    },
    Style {
        name: "SYN",
        colour: "#1a7f37",
        width: 2.5,
        dash: "",
    },
    Style {
        name: "FIN",
        colour: "#0550ae",
        width: 2.5,
        dash: "",
    },
    Style {
        name: "data",
        colour: "#24292f",
        width: 1.5,
        dash: "",
    },
    Style {
        name: "ACK",
        colour: "#8c959f",
        width: 1.0,
        dash: " stroke-dasharray=\"5 3\"",
    },
];

fn style(s: &Segment) -> &'static Style {
    let i = if s.flags.has(Flags::RST) {
        0
    } else if s.flags.has(Flags::SYN) {
        1
    } else if s.flags.has(Flags::FIN) {
        2
    } else if s.payload_len > 0 {
        3
    } else {
        4
    };
    &STYLES[i]
}

/// Escapes text for XML content and attribute values. Control characters are not allowed in
/// XML 1.0 at all, so they become U+FFFD.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && !matches!(c, '\n' | '\t') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn label(s: &Segment) -> String {
    let mut l = format!("{} seq={}", s.flags.letters(), s.rel_seq);
    if s.flags.has(Flags::ACK) {
        let _ = write!(l, " ack={}", s.rel_ack);
    }
    let _ = write!(l, " len={}", s.payload_len);
    if !s.marks.is_empty() {
        let _ = write!(l, " ({})", s.marks);
    }
    l
}

/// Draws `trace` as an SVG ladder diagram, endpoints named by `names` (raw `ip:port` where it
/// has no name; endpoints with the same name share a column). SYN, FIN and RST stand out by
/// colour and weight, pure ACKs are dashed, and hovering over an arrow shows the segment's
/// details.
pub fn svg(trace: &WireTrace, names: &dyn Fn(SocketAddr) -> Option<String>) -> String {
    let name = |a: SocketAddr| names(a).unwrap_or_else(|| a.to_string());
    let mut columns: Vec<String> = Vec::new();
    for s in &trace.segments {
        for n in [name(s.src), name(s.dst)] {
            if !columns.contains(&n) {
                columns.push(n);
            }
        }
    }
    // Wide enough for the longest label or name between two neighbouring columns.
    let widest = trace
        .segments
        .iter()
        .map(|s| label(s).len())
        .max()
        .unwrap_or(0);
    let widest = columns.iter().map(String::len).fold(widest, usize::max);
    let spacing = (widest * CHAR + 40).max(200);
    let x =
        |n: &str| GUTTER + spacing / 2 + spacing * columns.iter().position(|c| c == n).unwrap_or(0);
    let rows = trace.segments.len().max(1);
    let legend_y = TOP + ROW * rows + 20;
    let width = GUTTER + spacing * columns.len().max(1);
    let width = width.max(GUTTER + STYLES.len() * 90);
    let height = legend_y + 40;

    let mut out = String::new();
    let _ = writeln!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"monospace\" font-size=\"12\">"
    );
    out.push_str("<defs>\n");
    for (i, st) in STYLES.iter().enumerate() {
        let _ = writeln!(
            out,
            "  <marker id=\"head{i}\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" \
             markerUnits=\"userSpaceOnUse\" markerWidth=\"10\" markerHeight=\"10\" orient=\"auto\">\
             <path d=\"M0,0 L10,5 L0,10 z\" fill=\"{}\"/></marker>",
            st.colour
        );
    }
    out.push_str("</defs>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");

    let bottom = TOP + ROW * rows;
    for c in &columns {
        let cx = x(c);
        let _ = writeln!(
            out,
            "<text x=\"{cx}\" y=\"30\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>\n\
             <line x1=\"{cx}\" y1=\"40\" x2=\"{cx}\" y2=\"{bottom}\" stroke=\"#d0d7de\" stroke-width=\"2\"/>",
            xml(c)
        );
    }
    if trace.segments.is_empty() {
        let _ = writeln!(
            out,
            "<text x=\"{GUTTER}\" y=\"{TOP}\">no TCP segments</text>"
        );
    }
    for (i, s) in trace.segments.iter().enumerate() {
        let ends = (x(&name(s.src)), x(&name(s.dst)));
        arrow(&mut out, trace, s, TOP + ROW * i, ends);
    }

    // The legend: a short sample line for each style.
    for (i, st) in STYLES.iter().enumerate() {
        let lx = GUTTER + i * 90;
        let _ = writeln!(
            out,
            "<line x1=\"{lx}\" y1=\"{legend_y}\" x2=\"{}\" y2=\"{legend_y}\" stroke=\"{}\" \
             stroke-width=\"{}\"{} marker-end=\"url(#head{i})\"/>\
             <text x=\"{}\" y=\"{}\">{}</text>",
            lx + 30,
            st.colour,
            st.width,
            st.dash,
            lx + 36,
            legend_y + 4,
            st.name
        );
    }
    out.push_str("</svg>\n");
    out
}

/// One segment: its time in the gutter, its arrow, its label, and a tooltip with the details.
fn arrow(out: &mut String, trace: &WireTrace, s: &Segment, y: usize, (x1, x2): (usize, usize)) {
    let st = style(s);
    let idx = STYLES.iter().position(|t| t.name == st.name).unwrap_or(0);
    let t = s.ts.saturating_sub(trace.start);
    let _ = writeln!(
        out,
        "<text x=\"8\" y=\"{}\" fill=\"#57606a\" font-size=\"10\">+{}.{:06}s</text>",
        y + DROP,
        t.as_secs(),
        t.subsec_micros()
    );
    let mut title = format!(
        "{} -> {} (connection {}) {} seq={} ack={} len={} win={}",
        s.src,
        s.dst,
        s.conn + 1,
        s.flags.letters(),
        s.seq,
        s.ack,
        s.payload_len,
        s.window
    );
    if !s.payload.is_empty() {
        let _ = write!(title, " \"{}\"", escape(&s.payload));
    }
    if !s.options.is_empty() {
        let _ = write!(title, " <{}>", s.options.join(", "));
    }
    if let Some(at) = s.arrived {
        let took = at.saturating_sub(s.ts);
        let _ = write!(title, "; arrived {} µs later", took.as_micros());
    }
    if !s.marks.is_empty() {
        let _ = write!(title, "; {}", s.marks);
    }
    let dropped = s.marks.has(Marks::DROPPED);
    // A dropped segment has no head: it never got there.
    let head = if dropped {
        String::new()
    } else {
        format!(" marker-end=\"url(#head{idx})\"")
    };
    let common = format!(
        "stroke=\"{}\" stroke-width=\"{}\"{} fill=\"none\"{head}",
        st.colour, st.width, st.dash
    );
    let (lx, anchor) = if x1 == x2 {
        // Both ends share a column (one name for two addresses): a small loop to the right.
        let _ = writeln!(
            out,
            "<g><title>{}</title><path d=\"M{x1},{y} h40 v{DROP} h-40\" {common}/></g>",
            xml(&title)
        );
        (x1 + 46, "start")
    } else if dropped {
        // Half-way across, then a cross where it was lost.
        let mid = (x1 + x2) / 2;
        let (ym, c) = (y + DROP / 2, 4);
        let _ = writeln!(
            out,
            "<g><title>{}</title><line x1=\"{x1}\" y1=\"{y}\" x2=\"{mid}\" y2=\"{ym}\" {common}/>\
             <path d=\"M{},{} l{},{} M{},{} l{},-{}\" stroke=\"{}\" stroke-width=\"2\"/></g>",
            xml(&title),
            mid - c,
            ym - c,
            2 * c,
            2 * c,
            mid - c,
            ym + c,
            2 * c,
            2 * c,
            st.colour
        );
        (mid, "middle")
    } else {
        let _ = writeln!(
            out,
            "<g><title>{}</title><line x1=\"{x1}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{}\" {common}/></g>",
            xml(&title),
            y + DROP
        );
        ((x1 + x2) / 2, "middle")
    };
    let _ = writeln!(
        out,
        "<text x=\"{lx}\" y=\"{}\" text-anchor=\"{anchor}\" fill=\"{}\">{}</text>",
        y - 3,
        st.colour,
        xml(&label(s))
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn seg(src: u16, dst: u16, flags: &str, len: u32) -> Segment {
        Segment {
            ts: Duration::from_millis(u64::from(src)),
            conn: 0,
            src: SocketAddr::from(([127, 0, 0, 1], src)),
            dst: SocketAddr::from(([127, 0, 0, 1], dst)),
            flags: Flags::from_letters(flags).expect("valid"),
            seq: 1,
            ack: 2,
            rel_seq: 0,
            rel_ack: 1,
            window: 10,
            payload_len: len,
            payload: b"<&\x01>".to_vec(),
            options: vec!["mss 1460".into()],
            marks: Default::default(),
            arrived: None,
        }
    }

    #[test]
    fn names_and_labels_are_escaped_and_styles_differ() {
        let trace = WireTrace {
            segments: vec![seg(1, 2, "S", 0), seg(2, 1, "RA", 0), seg(1, 2, "PA", 4)],
            skipped: 0,
            start: Duration::ZERO,
        };
        let names = |a: SocketAddr| (a.port() == 1).then(|| "a<b & \"c\"\u{1}".to_string());
        let drawing = svg(&trace, &names);
        assert!(drawing.contains(">a&lt;b &amp; &quot;c&quot;\u{fffd}</text>"));
        assert!(drawing.contains("&quot;&lt;&amp;\\x01&gt;&quot;"));
        assert!(!drawing.contains("\u{1}"));
        for st in &STYLES {
            assert!(drawing.contains(st.colour));
        }
        assert_eq!(drawing.matches("<title>").count(), 3);
    }

    #[test]
    fn a_dropped_segment_stops_at_a_cross_and_marks_are_labelled() {
        let mut lost = seg(1, 2, "S", 0);
        lost.marks = Marks::from_bits(Marks::DROPPED);
        let mut late = seg(2, 1, "SA", 0);
        late.marks = Marks::from_bits(Marks::HELD);
        late.arrived = Some(late.ts + std::time::Duration::from_millis(5));
        let trace = WireTrace {
            segments: vec![lost, late],
            skipped: 0,
            start: Duration::ZERO,
        };
        let drawing = svg(&trace, &|_| None);
        assert_eq!(drawing.matches("marker-end=").count(), 1 + STYLES.len());
        assert!(drawing.contains("len=0 (dropped)</text>"));
        assert!(drawing.contains("len=0 (held)</text>"));
        assert!(drawing.contains("; arrived 5000 µs later; held</title>"));
        assert!(drawing.contains("<path d=\"M"));
    }

    #[test]
    fn an_empty_trace_still_draws() {
        let drawing = svg(&WireTrace::default(), &|_| None);
        assert!(drawing.contains("no TCP segments"));
        assert!(drawing.ends_with("</svg>\n"));
    }
}
