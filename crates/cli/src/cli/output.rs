//! What `run` prints: progress, failure reports, the summary, JSON and JUnit.

use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use serde_json::json;
use sockharness::report;
use sockharness::run::{ScenarioRun, Status};
use sockharness::script::Diagnostics;
use sockharness::suite::Source;

use super::artifacts::Saved;

/// A progress bar on a terminal; plain lines elsewhere (CI logs).
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(interactive: bool, total: usize) -> Self {
        let bar = interactive.then(|| {
            let bar = ProgressBar::new(total as u64);
            if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}") {
                bar.set_style(style);
            }
            bar
        });
        Progress { bar }
    }

    pub fn finished(&mut self, source: &Source, run: &ScenarioRun, trace: bool) {
        let ms = run.duration.as_millis();
        let mut text = match &run.status {
            Status::Passed => format!("ok    {} ({ms} ms)", source.name),
            Status::Skipped(why) => format!("skip  {}: {why}", source.name),
            Status::Failed(_) => format!("FAIL  {} ({ms} ms)", source.name),
        };
        if trace && !matches!(run.status, Status::Skipped(_)) {
            text.push('\n');
            text.push_str(run.trace.render().trim_end());
        }
        let text = report::escape_controls(&text);
        match &self.bar {
            Some(bar) => {
                bar.println(text);
                bar.set_message(source.name.clone());
                bar.inc(1);
            }
            None => say!("{text}"),
        }
    }

    pub fn done(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn counts(rows: &[(&Source, &ScenarioRun)]) -> (usize, usize, usize) {
    let mut c = (0, 0, 0);
    for (_, r) in rows {
        match r.status {
            Status::Passed => c.0 += 1,
            Status::Failed(_) => c.1 += 1,
            Status::Skipped(_) => c.2 += 1,
        }
    }
    c
}

pub fn text_summary(rows: &[(&Source, &ScenarioRun)], saved: &[Saved], elapsed: Duration) {
    let failures: Vec<_> = rows
        .iter()
        .zip(saved)
        .filter(|((_, r), _)| matches!(r.status, Status::Failed(_)))
        .collect();
    if !failures.is_empty() {
        say!();
        for ((s, r), saved) in failures {
            say_raw!("{}", report::render(&s.path, r));
            match (&saved.pcap, &r.capture_note) {
                (Some(p), _) => say!("  capture: {}", p.display()),
                (None, Some(note)) => say!("  {note}"),
                (None, None) => {}
            }
            say!();
        }
    }
    for e in saved.iter().filter_map(|s| s.error.as_ref()) {
        eprintln!("warning: {e}");
    }
    let (p, f, s) = counts(rows);
    say!("finished in {:.2}s", elapsed.as_secs_f64());
    say!("{p} passed, {f} failed, {s} skipped");
}

pub fn json(rows: &[(&Source, &ScenarioRun)], saved: &[Saved]) -> String {
    let scenarios: Vec<_> = rows
        .iter()
        .zip(saved)
        .map(|((s, r), saved)| {
            let (status, reason, failure) = match &r.status {
                Status::Passed => ("passed", None, None),
                Status::Skipped(why) => ("skipped", Some(why.clone()), None),
                Status::Failed(f) => (
                    "failed",
                    None,
                    Some(json!({
                        "line": f.line,
                        "statement": f.statement,
                        "expected": f.expected,
                        "actual": f.actual,
                        "detail": f.detail,
                        "kind": f.kind,
                    })),
                ),
            };
            json!({
                "path": s.path,
                "name": s.name,
                "status": status,
                "reason": reason,
                "failure": failure,
                "duration_ms": r.duration.as_secs_f64() * 1000.0,
                "isolated": r.isolated,
                "seed": r.seed,
                "links": r.links,
                "capture": {
                    "pcap": saved.pcap.as_ref().map(|p| p.display().to_string()),
                    "note": r.capture_note,
                },
                "trace": r.trace.events,
            })
        })
        .collect();
    let (p, f, s) = counts(rows);
    let doc = json!({
        "errors": [],
        "scenarios": scenarios,
        "summary": { "passed": p, "failed": f, "skipped": s },
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// The JSON document for input that does not parse: every problem, and nothing run.
pub fn invalid_json(bad: &[Diagnostics]) -> String {
    let errors: Vec<_> = bad
        .iter()
        .flat_map(|d| {
            d.problems.iter().map(move |problem| {
                let at = d.position(problem);
                json!({
                    "path": d.path,
                    "line": at.line,
                    "column": at.column,
                    "message": problem.message,
                    "hint": problem.hint,
                })
            })
        })
        .collect();
    let omitted: usize = bad.iter().map(|d| d.omitted).sum();
    let doc = json!({
        "errors": errors,
        "errors_not_shown": omitted,
        "scenarios": [],
        "summary": { "passed": 0, "failed": 0, "skipped": 0 },
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// The JUnit report for input that does not parse: one errored case per file, its problems in
/// the body as they are printed on a terminal.
pub fn invalid_junit(bad: &[Diagnostics]) -> Result<String> {
    let mut suite = TestSuite::new("scenarios");
    for d in bad {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        let first = d.problems.first().map(|p| {
            let at = d.position(p);
            format!("line {}, column {}: {}", at.line, at.column, p.message)
        });
        status.set_message(report::escape_controls(
            &first.unwrap_or_else(|| "does not parse".into()),
        ));
        status.set_description(report::escape_controls(&d.to_string()));
        let mut case = TestCase::new(d.path.as_str(), status);
        case.set_classname(d.path.as_str());
        suite.add_test_case(case);
    }
    let mut report = Report::new("sockharness");
    report.add_test_suite(suite);
    Ok(report.to_string()?)
}

pub fn junit(rows: &[(&Source, &ScenarioRun)], elapsed: Duration) -> Result<String> {
    let mut suite = TestSuite::new("scenarios");
    for (s, r) in rows {
        let status = match &r.status {
            Status::Passed => TestCaseStatus::success(),
            Status::Skipped(why) => {
                let mut st = TestCaseStatus::skipped();
                st.set_message(report::escape_controls(why));
                st
            }
            Status::Failed(f) => {
                let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
                st.set_message(report::escape_controls(&format!(
                    "line {}: expected {}, got {}",
                    f.line, f.expected, f.actual
                )));
                st.set_description(report::render(&s.path, r));
                st
            }
        };
        let mut case = TestCase::new(s.name.as_str(), status);
        case.set_classname(s.path.as_str());
        case.set_time(r.duration);
        suite.add_test_case(case);
    }
    suite.set_time(elapsed);
    let mut report = Report::new("sockharness");
    report.add_test_suite(suite);
    Ok(report.to_string()?)
}
