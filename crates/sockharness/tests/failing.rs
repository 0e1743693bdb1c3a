//! Scenarios with deliberately wrong expectations: each must fail, at the line marked
//! `# FAILS HERE`, with a useful report (checked as a snapshot).

mod util;

use sockharness::report;
use sockharness::run::{run, Status};
use sockharness::script::parse;

#[test]
fn every_wrong_expectation_fails_at_its_line() {
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
        let rendered = util::redact_times(&report::render(&shown, &result));
        insta::assert_snapshot!(name, rendered);
    }
}
