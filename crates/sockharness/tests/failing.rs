//! Scenarios with deliberately wrong expectations: each must fail, at the line marked
//! `# FAILS HERE`, with a useful report (checked as a snapshot).

mod util;

use sockharness::report;
use sockharness::run::{run, Status};
use sockharness::script::parse;

/// The kind each scenario's failure must have (`FailureKind::name`).
const KINDS: [(&str, &str); 22] = [
    ("accept-forever", "timed_out"),
    ("background-expectation", "data"),
    ("blocks-forever", "timed_out"),
    ("data-not-eof", "eof"),
    ("exact-cut-short", "eof"),
    ("forgotten-background", "background"),
    ("link-delay-too-slow", "timing"),
    ("link-down-delivers-nothing", "wire"),
    ("not-pending", "timing"),
    ("pending-after-wait", "timing"),
    ("refused-is-not-pending", "timing"),
    ("too-slow", "timing"),
    ("unexpected-error", "errno"),
    ("target-on-a-host-wrong-answer", "data"),
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

/// A failure after thousands of statements shows the statements that led to it, and says how
/// many earlier ones it left out.
#[test]
fn a_long_trace_is_cut_to_its_tail_and_says_how_much() {
    let mut text = String::from("listen srv\n");
    text.push_str(&"sleep 0ms\n".repeat(4000));
    text.push_str("connect c to srv\naccept srv as a\nsend c \"x\"\nrecv a 1 == \"y\"\n");
    let r = util::run_text(&text);
    assert!(matches!(r.status, Status::Failed(_)), "{:?}", r.status);
    let shown = report::render("long.scenario", &r);
    let total = r.trace.render().lines().count();
    assert!(total > 4000, "{total}");
    let cut = total - report::TRACE_TAIL;
    assert!(
        shown.contains(&format!("... {cut} earlier lines not shown")),
        "{shown}"
    );
    assert!(shown.contains("recv a 1"), "{shown}");
    assert!(shown.lines().count() < report::TRACE_TAIL + 20, "{shown}");
}

/// A failure before the first statement (a sysctl the kernel refuses) names the sysctl's line
/// and shows no empty trace.
#[test]
fn a_refused_sysctl_fails_at_its_own_line() {
    let r = util::run_text(
        "# a value the kernel refuses\nsysctl net.core.somaxconn=lots\nlisten srv\n",
    );
    match &r.status {
        Status::Failed(f) => {
            assert_eq!(f.line, 2, "{f:?}");
            let shown = report::render("bad.scenario", &r);
            assert!(shown.starts_with("FAIL bad.scenario:2\n"), "{shown}");
            assert!(!shown.contains("trace up to the failure"), "{shown}");
        }
        Status::Skipped(why) => eprintln!("not tested: {why}"),
        Status::Passed => panic!("a sysctl of `lots` was accepted"),
    }
}

/// A background statement that has finished fails `expect pending` at once, however long the
/// check was to watch it: an hour-long check does not make a finished run wait an hour.
#[test]
fn a_finished_statement_fails_a_long_pending_check_at_once() {
    let r = util::run_text(
        "listen srv\nconnect cli to srv\naccept srv as conn\nclose conn\n\
         recv cli 10 &h\nexpect h pending for 120s\n",
    );
    match &r.status {
        Status::Failed(f) => {
            assert_eq!(f.line, 6, "{f:?}");
            assert!(f.actual.contains("EOF"), "{f:?}");
        }
        other => panic!("a finished recv was taken for pending: {other:?}"),
    }
    // Generous: the check itself must not wait out its 120 s.
    assert!(
        r.duration < std::time::Duration::from_secs(60),
        "{:?}",
        r.duration
    );
}
