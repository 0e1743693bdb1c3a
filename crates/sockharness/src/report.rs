//! Human-readable failure reports.

use std::fmt::Write as _;

use crate::run::{ScenarioRun, Status};
pub use crate::script::diff::data_diff;

/// Lines of the trace a failure report shows: the last ones, which led to the failure.
pub const TRACE_TAIL: usize = 60;

/// A failure report: where, what was expected, what happened, and the trace up to the failure.
/// Passed and skipped runs give a one-line summary. Control characters (from a server's output,
/// say) are escaped, so that the report is the same text on a terminal, in a file and in XML.
pub fn render(path: &str, run: &ScenarioRun) -> String {
    escape_controls(&render_raw(path, run))
}

/// Escapes every control character but newline and tab as `\xNN` (`\u{NNNN}` past ASCII): a
/// terminal would act on it (`ESC ]` starts a title sequence that swallows what follows), and
/// XML cannot hold most of them.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            c if (c as u32) < 0x80 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn render_raw(path: &str, run: &ScenarioRun) -> String {
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
            if let Some(seed) = run.seed {
                let _ = writeln!(
                    out,
                    "  seed:      {seed} (`run --seed {seed}` repeats the links' decisions)"
                );
            }
            let trace = run.trace.render();
            let lines: Vec<&str> = trace.lines().collect();
            if lines.is_empty() {
                return out;
            }
            // What led to the failure is at the end; a long run's beginning would bury it.
            let cut = lines.len().saturating_sub(TRACE_TAIL);
            out.push_str("  trace up to the failure:\n");
            if cut > 0 {
                let _ = writeln!(
                    out,
                    "  ... {cut} earlier lines not shown (`run --trace` shows them all)"
                );
            }
            for line in &lines[cut..] {
                let _ = writeln!(out, "  {line}");
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn control_characters_are_escaped_and_text_kept() {
        let printed = "title \u{1b}]0;gotcha\u{7} after\r\n\tnext \u{9b}31m é";
        assert_eq!(
            escape_controls(printed),
            "title \\x1b]0;gotcha\\x07 after\\x0d\n\tnext \\u{009b}31m é"
        );
    }
}
