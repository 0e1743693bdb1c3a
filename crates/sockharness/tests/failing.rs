//! Scenarios with deliberately wrong expectations: each must fail, at the line marked
//! `# FAILS HERE`, with a useful report (checked as a snapshot).

mod util;

use sockharness::report;
use sockharness::run::{run, Status};
use sockharness::script::parse;

/// The kind each scenario's failure must have (`FailureKind::name`).
const KINDS: [(&str, &str); 19] = [
    ("accept-forever", "timed_out"),
    ("background-expectation", "data"),
    ("blocks-forever", "timed_out"),
    ("data-not-eof", "eof"),
    ("exact-cut-short", "eof"),
    ("forgotten-background", "background"),
    ("not-pending", "timing"),
    ("pending-after-wait", "timing"),
    ("refused-is-not-pending", "timing"),
    ("too-slow", "timing"),
    ("unexpected-error", "errno"),
    ("wrong-data", "data"),
    ("wrong-errno", "errno"),
    ("wrong-peer", "property"),
    ("wrong-queue", "property"),
    ("wrong-size", "size"),
    ("wrong-state", "property"),
    ("wrong-stream", "data"),
    ("wrong-wire", "wire"),
];

#[test]
fn every_wrong_expectation_fails_at_its_line_with_its_kind() {
    let dir = util::tests_dir().join("failing");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/failing exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "scenario"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected the failing scenarios, found {}",
        files.len()
    );
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable scenario");
        let marked = text
            .lines()
            .position(|l| l.contains("# FAILS HERE"))
            .map(|i| i as u32 + 1)
            .unwrap_or_else(|| panic!("{} has no `# FAILS HERE` line", path.display()));
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("utf-8 name")
            .to_string();
        let shown = format!("failing/{name}.scenario");
        let scenario = parse(&shown, text.as_bytes()).unwrap_or_else(|d| panic!("{d}"));
        let result = run(&scenario);
        let Status::Failed(failure) = &result.status else {
            panic!("{shown} should fail but ended {:?}", result.status);
        };
        assert_eq!(
            failure.line, marked,
            "{shown} failed at the wrong line: {failure:?}"
        );
        let kind = KINDS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| *k)
            .unwrap_or_else(|| panic!("{shown}: add the kind of its failure to KINDS"));
        assert_eq!(
            failure.kind.name(),
            kind,
            "{shown} failed with the wrong kind: {failure:?}"
        );
        let rendered = util::redact_times(&report::render(&shown, &result));
        insta::assert_snapshot!(name, rendered);
    }
}
