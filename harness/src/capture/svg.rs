//! Ladder diagrams: one column per endpoint, one arrow per segment, in time order.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::wire::{Flags, WireTrace};

const COLUMN: usize = 220;
const ROW: usize = 28;
const TOP: usize = 70;
const LEFT: usize = 120;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Draws `trace` as an SVG ladder diagram. SYN, FIN and RST segments stand out by colour.
pub fn svg(trace: &WireTrace, names: &dyn Fn(SocketAddr) -> Option<String>) -> String {
    let mut columns: Vec<SocketAddr> = Vec::new();
    for s in &trace.segments {
        for a in [s.src, s.dst] {
            if !columns.contains(&a) {
                columns.push(a);
            }
        }
    }
    let x = |a: SocketAddr| LEFT + COLUMN * columns.iter().position(|c| *c == a).unwrap_or(0);
    let width = LEFT * 2 + COLUMN * columns.len().saturating_sub(1);
    let height = TOP + ROW * (trace.segments.len() + 1) + 60;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"monospace\" font-size=\"12\">\n\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"context-stroke\"/></marker></defs>\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for &c in &columns {
        let label = escape(&names(c).unwrap_or_else(|| c.to_string()));
        let cx = x(c);
        let _ = writeln!(
            out,
            "<text x=\"{cx}\" y=\"30\" text-anchor=\"middle\" font-weight=\"bold\">{label}</text>"
        );
        let _ = writeln!(out, "<line x1=\"{cx}\" y1=\"40\" x2=\"{cx}\" y2=\"{}\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>", height - 50);
    }
    for (i, s) in trace.segments.iter().enumerate() {
        let y = TOP + ROW * i;
        let (x1, x2) = (x(s.src), x(s.dst));
        let (colour, weight) = if s.flags.has(Flags::RST) {
            ("#d62728", 2.5)
        } else if s.flags.has(Flags::SYN) {
            ("#2ca02c", 2.5)
        } else if s.flags.has(Flags::FIN) {
            ("#1f77b4", 2.5)
        } else {
            ("#444", 1.0)
        };
        let _ = writeln!(
            out,
            "<line x1=\"{x1}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{}\" stroke=\"{colour}\" stroke-width=\"{weight}\" marker-end=\"url(#arrow)\"/>",
            y + ROW / 2
        );
        let label = format!(
            "{} seq={} len={}",
            s.flags.letters(),
            s.rel_seq,
            s.payload_len
        );
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{colour}\">{}</text>",
            (x1 + x2) / 2,
            y + 4,
            escape(&label)
        );
    }
    let ly = height - 25;
    for (i, (colour, what)) in [
        ("#2ca02c", "SYN"),
        ("#1f77b4", "FIN"),
        ("#d62728", "RST"),
        ("#444", "other"),
    ]
    .iter()
    .enumerate()
    {
        let lx = 20 + i * 90;
        let _ = writeln!(out, "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{colour}\" stroke-width=\"2.5\"/><text x=\"{}\" y=\"{}\">{what}</text>", lx + 25, lx + 30, ly + 4);
    }
    out.push_str("</svg>\n");
    out
}
