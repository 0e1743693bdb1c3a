//! The `sockharness` binary as a user runs it: exit codes, formats, defaults.

mod util;

use std::path::Path;
use std::process::{Command, Output};

fn sockharness(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sockharness"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, body: &str) {
    std::fs::write(dir.join(name), body).expect("temp dir is writable");
}

const GOOD: &str = "listen srv\nconnect cli to srv\naccept srv as conn\nsend cli \"hi\"\nrecv conn exact 2 == \"hi\"\n";
const WRONG: &str = "listen srv\nconnect cli to srv\naccept srv as conn\nsend cli \"hi\"\nrecv conn exact 2 == \"ho\"\n";

#[test]
fn passing_failing_and_invalid_files_give_0_1_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "good.scenario", GOOD);
    let out = sockharness(&["run", "good.scenario"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("1 passed, 0 failed, 0 skipped"));

    write(dir.path(), "wrong.scenario", WRONG);
    let out = sockharness(&["run", "good.scenario", "wrong.scenario"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("FAIL wrong.scenario:5"), "{stdout}");
    assert!(stdout.contains("first difference at byte 1"), "{stdout}");
    assert!(stdout.contains("1 passed, 1 failed, 0 skipped"), "{stdout}");

    write(
        dir.path(),
        "broken.scenario",
        "listen srv\nrecv srv 5\nsend x \"a\" == EBOGUS\n",
    );
    let out = sockharness(&["run", "."], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("./broken.scenario:2:6: error: `srv` is a listener, expected a socket"),
        "{stderr}"
    );
    assert!(
        stderr.contains("./broken.scenario:3:15: error: unknown errno `EBOGUS`"),
        "{stderr}"
    );
    assert!(
        text(&out.stdout).is_empty(),
        "nothing runs when an input is invalid"
    );
}

#[test]
fn check_only_parses() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "wrong.scenario", WRONG);
    let out = sockharness(&["check", "wrong.scenario"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "1 scenario ok\n");
    write(dir.path(), "broken.scenario", "lisen srv\n");
    let out = sockharness(&["check", "broken.scenario"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("did you mean `listen`?"));
}

#[test]
fn bad_usage_and_missing_paths_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    assert_eq!(
        sockharness(&["run", "--jobs", "0"], dir.path())
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        sockharness(&["frobnicate"], dir.path()).status.code(),
        Some(2)
    );
    let out = sockharness(&["run", "nope.scenario"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("nope.scenario: no such file or directory"));
}

#[test]
fn json_output_is_one_document() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "good.scenario", GOOD);
    write(dir.path(), "wrong.scenario", WRONG);
    write(
        dir.path(),
        "isolated.scenario",
        "sysctl net.core.somaxconn=8\nlisten srv\n",
    );
    // Without isolation, the sysctl scenario cannot run and is skipped with its reason.
    let out = sockharness(
        &["run", "--isolate", "never", "--format", "json", "."],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(
        doc["summary"],
        serde_json::json!({"passed": 1, "failed": 1, "skipped": 1})
    );
    let by_name = |n: &str| {
        doc["scenarios"]
            .as_array()
            .expect("scenarios array")
            .iter()
            .find(|s| s["name"] == n)
            .cloned()
            .expect("scenario listed")
    };
    let wrong = by_name("wrong");
    assert_eq!(wrong["status"], "failed");
    assert_eq!(wrong["path"], "./wrong.scenario");
    assert_eq!(wrong["failure"]["line"], 5);
    assert_eq!(wrong["failure"]["statement"], "recv conn exact 2 == \"ho\"");
    assert_eq!(wrong["failure"]["expected"], "\"ho\"");
    assert_eq!(wrong["failure"]["actual"], "2 bytes \"hi\"");
    assert_eq!(
        wrong["failure"]["kind"],
        serde_json::json!({"type": "data", "offset": 1})
    );
    assert!(wrong["duration_ms"].is_number());
    let skipped = by_name("isolated");
    assert_eq!(skipped["status"], "skipped");
    assert!(skipped["reason"]
        .as_str()
        .expect("reason")
        .contains("sysctl net.core.somaxconn=8"));
    assert_eq!(by_name("good")["status"], "passed");
}

#[test]
fn junit_output_names_each_scenario() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "good.scenario", GOOD);
    write(dir.path(), "wrong.scenario", WRONG);
    let out = sockharness(&["run", "--format", "junit", "."], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let xml = text(&out.stdout);
    assert!(
        xml.contains("<testsuite name=\"scenarios\" tests=\"2\""),
        "{xml}"
    );
    assert!(
        xml.contains("<failure message=\"line 5: expected &quot;ho&quot;"),
        "{xml}"
    );
}

/// A program that asked for a document gets one when nothing runs: the parse errors, by place.
#[test]
fn invalid_input_is_a_document_in_json_and_junit() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "good.scenario", GOOD);
    write(dir.path(), "bad.scenario", "listen srv\nconnekt c to srv\n");
    let out = sockharness(&["run", "--format", "json", "."], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(
        doc["errors"],
        serde_json::json!([{
            "path": "./bad.scenario", "line": 2, "column": 1,
            "message": "unknown statement `connekt`", "hint": "did you mean `connect`?",
        }])
    );
    assert_eq!(doc["scenarios"], serde_json::json!([]));
    assert!(text(&out.stderr).contains("bad.scenario:2:1: error"));

    let out = sockharness(&["run", "--format", "junit", "."], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let xml = text(&out.stdout);
    assert!(
        xml.contains("<error message=\"line 2, column 1: unknown statement `connekt`\">"),
        "{xml}"
    );
    assert!(xml.contains("did you mean `connect`?"), "{xml}");
}

#[test]
fn filter_and_trace() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "good.scenario", GOOD);
    write(dir.path(), "wrong.scenario", WRONG);
    let out = sockharness(&["run", "--filter", "goo", "--trace", "."], dir.path());
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("received 2 bytes [0..2) \"hi\""),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 0 failed, 0 skipped"), "{stdout}");
}

#[test]
fn without_paths_it_runs_the_embedded_library() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = sockharness(&["check"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    let count: usize = text(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count");
    let library =
        sockharness::suite::load(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")])
            .expect("the scenario library loads");
    assert_eq!(count, library.len());
    assert!(count >= 30, "the library has {count} scenarios");
}

#[test]
fn captures_are_written_and_read_back() {
    if !matches!(
        sockharness::sandbox::support(),
        sockharness::sandbox::Support::Available { .. }
    ) {
        eprintln!("SKIP: this test process cannot create network namespaces");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "good.scenario", GOOD);
    let out = sockharness(
        &[
            "run",
            "--pcap-dir",
            "pcaps",
            "--svg-dir",
            "svgs",
            "--format",
            "json",
            "good.scenario",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(doc["scenarios"][0]["isolated"], true);
    assert_eq!(doc["scenarios"][0]["capture"]["pcap"], "pcaps/good.pcap");
    let bytes = std::fs::read(dir.path().join("pcaps/good.pcap")).expect("the pcap exists");
    let capture = sockharness::capture::pcap::read(&bytes).expect("a valid pcap");
    let wire = sockharness::capture::decode(&capture);
    // Handshake, the 2 bytes, and the closing FINs are all there.
    assert!(wire.segments.iter().any(|s| s.flags.letters() == "S"));
    assert!(wire.segments.iter().any(|s| s.payload_len == 2));
    assert!(
        wire.segments
            .iter()
            .filter(|s| s.flags.contains_all("F"))
            .count()
            >= 2
    );
    let svg = std::fs::read_to_string(dir.path().join("svgs/good.svg")).expect("the svg exists");
    assert!(
        svg.contains("<svg") && svg.contains(">cli<") && svg.contains(">srv<"),
        "{svg}"
    );
}

#[test]
fn wire_expectations_are_skipped_without_isolation() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        "wire.scenario",
        "listen srv\nconnect cli to srv\nexpect wire cli -> srv count S == 1\n",
    );
    let out = sockharness(&["run", "--isolate", "never", "wire.scenario"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("skip  wire: `expect wire`"), "{stdout}");
    assert!(stdout.contains("0 passed, 0 failed, 1 skipped"), "{stdout}");
}

/// Runs the binary, killing it (and failing the test) if it has not ended within 20 s.
fn sockharness_bounded(args: &[&str], dir: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sockharness"))
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let started = std::time::Instant::now();
    while child.try_wait().expect("waitable").is_none() {
        if started.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            panic!("`sockharness {}` hung", args.join(" "));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("it ended")
}

#[test]
fn a_fifo_is_skipped_when_scanned_and_refused_when_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "good.scenario", GOOD);
    let fifo = dir.path().join("pipe.scenario");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: the path is NUL-terminated.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let d = dir.path().to_str().unwrap();
    for cmd in ["run", "check"] {
        let r = sockharness_bounded(&[cmd, d], dir.path());
        assert_eq!(r.status.code(), Some(0), "{cmd} {d}: {}", text(&r.stderr));
    }
    let f = fifo.to_str().unwrap();
    for args in [&["run", f][..], &["check", f], &["trace", f]] {
        let r = sockharness_bounded(args, dir.path());
        let stderr = text(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("not a regular file"), "{args:?}: {stderr}");
    }
}

/// Mistakes that must not pass for success: nothing to run, an override that matches no
/// target, a misspelt sysctl (a key this kernel merely lacks is a skip, not a failure).
#[test]
fn mistakes_are_errors_not_silent_successes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("writable");
    let r = sockharness(&["run", empty.to_str().unwrap()], dir.path());
    assert_eq!(r.status.code(), Some(2), "{}", text(&r.stderr));
    assert!(
        text(&r.stderr).contains("no scenarios"),
        "{}",
        text(&r.stderr)
    );

    write(dir.path(), "good.scenario", GOOD);
    let r = sockharness(
        &["run", "good.scenario", "--target", "nosuch=true"],
        dir.path(),
    );
    assert_eq!(r.status.code(), Some(2), "{}", text(&r.stderr));
    assert!(text(&r.stderr).contains("no scenario has a target `nosuch`"));

    // The cause of an unreadable path is said once.
    let r = sockharness(&["run", "good.scenario/x.scenario"], dir.path());
    assert_eq!(r.status.code(), Some(2));
    assert_eq!(
        text(&r.stderr),
        "error: cannot read good.scenario/x.scenario: Not a directory (os error 20)\n"
    );

    // A failing override is reported as the command that ran, not the file's.
    write(
        dir.path(),
        "target.scenario",
        "target t cmd \"exec sleep 100\"\nconnect c to t\n",
    );
    let r = sockharness(
        &["run", "target.scenario", "--target", "t=exit 3"],
        dir.path(),
    );
    let stdout = text(&r.stdout);
    assert_eq!(r.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("statement: target t cmd \"exit 3\"  (from --target)"),
        "{stdout}"
    );
    assert!(!stdout.contains("sleep 100"), "{stdout}");

    write(
        dir.path(),
        "typo.scenario",
        "sysctl net.ipv4.tcp_fin_timeot=5\nlisten srv\n",
    );
    write(
        dir.path(),
        "lacks.scenario",
        "sysctl net.ipv4.no_such_knob_at_all=5\nlisten srv\n",
    );
    let r = sockharness(&["run", "typo.scenario", "lacks.scenario"], dir.path());
    let stdout = text(&r.stdout);
    if stdout.contains("needs a private network namespace") {
        return; // No isolation here: neither can be tried.
    }
    assert_eq!(r.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("did you mean `net.ipv4.tcp_fin_timeout`?"),
        "{stdout}"
    );
    assert!(stdout.contains("skip  lacks"), "{stdout}");
}

/// A server's output with terminal escapes (`ESC ]` opens a title sequence that swallows what
/// follows) reaches no terminal raw, and every word of it is in the JUnit report.
#[test]
fn reports_keep_a_servers_control_bytes_as_escaped_text() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        "noisy.scenario",
        // `\0` in a scenario string is a NUL byte, so the backslashes are doubled for the
        // shell to get printf's `\033`.
        "target t cmd \"printf 'before \\\\033]0;title\\\\007 after-the-escape\\\\n'; exit 3\"\nconnect c to t\n",
    );
    let r = sockharness(&["run", "noisy.scenario"], dir.path());
    let stdout = text(&r.stdout);
    assert_eq!(r.status.code(), Some(1), "{stdout}");
    assert!(
        !stdout.contains('\u{1b}') && !stdout.contains('\u{7}'),
        "{stdout:?}"
    );
    assert!(
        stdout.contains("\\x1b]0;title\\x07 after-the-escape"),
        "{stdout}"
    );
    let r = sockharness(&["run", "--format", "junit", "noisy.scenario"], dir.path());
    let xml = text(&r.stdout);
    assert!(xml.contains("after-the-escape"), "{xml}");
    assert!(!xml.contains('\u{1b}'), "{xml:?}");
}
