//! Human-readable failure reports.

use std::fmt::Write as _;

use crate::run::{ScenarioRun, Status};
pub use crate::script::diff::data_diff;

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
