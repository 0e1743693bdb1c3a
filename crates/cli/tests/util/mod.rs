//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;

use sockharness::run::{run, ScenarioRun};
use sockharness::script::{parse, Scenario};

/// Parses scenario text, failing the test with the diagnostics if it does not parse.
#[track_caller]
pub fn scenario(text: &str) -> Scenario {
    match parse("test.scenario", text.as_bytes()) {
        Ok(s) => s,
        Err(d) => panic!("scenario does not parse:\n{d}"),
    }
}

/// Parses and runs scenario text.
#[track_caller]
pub fn run_text(text: &str) -> ScenarioRun {
    run(&scenario(text))
}

/// This crate's `tests/` directory.
pub fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// Replaces measured times such as `412.3ms` with `<time>`, so reports can be snapshots.
pub fn redact_times(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("ms") {
        let head = &rest[..i];
        let start = head
            .rfind(|c: char| !(c.is_ascii_digit() || c == '.'))
            .map_or(0, |k| k + 1);
        if head[start..].contains('.') {
            out.push_str(&head[..start]);
            out.push_str("<time>");
        } else {
            out.push_str(head);
            out.push_str("ms");
        }
        rest = &rest[i + 2..];
    }
    out.push_str(rest);
    out
}
