//! Human-readable failure reports.

use std::fmt::Write as _;

use crate::run::{ScenarioRun, Status};
use crate::script::escape;

/// Bytes of context shown on each side of the first difference.
const WINDOW: usize = 16;

/// Where two byte strings first differ, with an escaped and a hex window around it.
///
/// ```
/// let d = sockharness::report::data_diff(b"hello world", b"hello wOrld");
/// assert!(d.starts_with("first difference at byte 7"));
/// assert!(d.contains("[6f]") && d.contains("[4f]"));
/// ```
pub fn data_diff(expected: &[u8], actual: &[u8]) -> String {
    let at = expected
        .iter()
        .zip(actual)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(actual.len()));
    let from = at.saturating_sub(WINDOW);
    let mut out = format!(
        "first difference at byte {at} (expected {} bytes, got {})",
        expected.len(),
        actual.len()
    );
    for (label, bytes) in [("expected", expected), ("actual  ", actual)] {
        let to = (at + WINDOW + 1).min(bytes.len());
        let before = escape(&bytes[from.min(bytes.len())..at.min(bytes.len())]);
        let _ = write!(out, "\n  {label} [{from}..{to}): \"{before}");
        match bytes.get(at) {
            Some(b) => {
                let _ = write!(out, "{}", escape(&[*b]));
                let _ = write!(out, "{}\"", escape(&bytes[at + 1..to]));
            }
            None => out.push_str("\" (ends here)"),
        }
        let _ = write!(out, "\n  {label} hex: ");
        for (i, b) in bytes.iter().enumerate().take(to).skip(from) {
            if i == at {
                let _ = write!(out, "[{b:02x}] ");
            } else {
                let _ = write!(out, "{b:02x} ");
            }
        }
        if bytes.len() <= at {
            out.push_str("[end]");
        }
        out.truncate(out.trim_end().len());
    }
    out
}

/// A failure report: where, what was expected, what happened, and the trace up to the failure.
/// Passed and skipped runs give a one-line summary.
pub fn render(path: &str, run: &ScenarioRun) -> String {
    match &run.status {
        Status::Passed => format!("PASS {path}\n"),
        Status::Skipped(reason) => format!("SKIP {path}: {reason}\n"),
        Status::Failed(f) => {
            let mut out = format!("FAIL {path}:{}\n", f.line);
            let _ = writeln!(out, "  statement: {}", f.statement);
            let _ = writeln!(out, "  expected:  {}", f.expected);
            let _ = writeln!(out, "  actual:    {}", f.actual);
            if let Some(d) = &f.detail {
                for line in d.lines() {
                    let _ = writeln!(out, "  {line}");
                }
            }
            out.push_str("  trace up to the failure:\n");
            for line in run.trace.render().lines() {
                let _ = writeln!(out, "  {line}");
            }
            out
        }
    }
}
