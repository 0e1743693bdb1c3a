//! `sockharness fuzz` as a user runs it, against the bundled servers started as commands: it
//! finds what is broken, writes a reproducer that fails under `sockharness run`, reports nothing
//! against a correct server, and refuses bad usage with status 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sockharness")
}

fn seed(protocol: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-seeds")
        .join(format!("{protocol}.scenario"))
        .display()
        .to_string()
}

/// The bundled server `name` as a command the fuzzer starts.
fn server(name: &str) -> String {
    format!("{} serve {name} --listen 127.0.0.1:{{port}}", bin())
}

fn fuzz(args: &[&str], out: &Path) -> Output {
    Command::new(bin())
        .arg("fuzz")
        .args(args)
        .arg("--out")
        .arg(out)
        .current_dir(out)
        .output()
        .expect("the binary runs")
}

/// `sockharness run FILE` in FILE's directory, so that the captures it keeps land there.
fn run(file: &Path) -> Output {
    Command::new(bin())
        .arg("run")
        .arg(file)
        .current_dir(file.parent().expect("a file in a directory"))
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn reproducers(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|f| f.extension().is_some_and(|e| e == "scenario"));
    files
}

#[track_caller]
fn finds(server_name: &str, protocol: &str, extra: &[&str], oracles: &[&str]) {
    let out = tempfile::tempdir().expect("temp dir");
    let cmd = server(server_name);
    let seed = seed(protocol);
    let mut args = vec![
        "--cmd",
        &cmd,
        "--seed-scenario",
        &seed,
        "--time",
        "60s",
        "--seed",
        "1",
        // The tests of this file run at once; fewer workers each keep the machine's load, and
        // so the timing of what is found, closer to a run of its own.
        "--jobs",
        "2",
    ];
    args.extend_from_slice(extra);
    let r = fuzz(&args, out.path());
    let stdout = text(&r.stdout);
    assert_eq!(r.status.code(), Some(1), "{stdout}\n{}", text(&r.stderr));
    assert!(
        oracles
            .iter()
            .any(|o| stdout.contains(&format!("FAIL {o} "))),
        "expected a failure of kind {oracles:?}:\n{stdout}"
    );
    let files = reproducers(out.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let body = std::fs::read_to_string(&files[0]).expect("reproducer");
    assert!(
        body.contains(&cmd),
        "the reproducer names the server as given:\n{body}"
    );
    // The reproducer alone, as a user would run it, fails while the bug is there. The fuzzer
    // reports one that failed at least three of four runs; under load a run may still pass,
    // so it gets three.
    let runs: Vec<Output> = (0..3).map(|_| run(&files[0])).collect();
    assert!(
        runs.iter().any(|r| r.status.code() == Some(1)),
        "the reproducer passed three runs:\n{body}\n{}",
        text(&runs[0].stdout)
    );
    assert!(runs.iter().all(|r| matches!(r.status.code(), Some(0 | 1))));
    // It says what failed and where it came from, for whoever reads it later.
    assert!(
        body.starts_with("# Found by sockharness fuzz (--seed 1)."),
        "{body}"
    );
    assert!(body.contains("# Failure: "), "{body}");
    assert!(body.contains("# How: seed "), "{body}");
}

#[test]
fn a_server_that_takes_one_read_for_a_message_is_caught_by_transport_invariance() {
    // Cut short, the answer differs from plain delivery's; or the rest of the request meets a
    // closed connection.
    finds("echo-one-read", "echo", &[], &["mismatch", "reset"]);
}

#[test]
fn a_server_that_exits_on_a_reset_is_caught_restarted_and_reproduced() {
    finds(
        "echo-exit-on-reset",
        "echo",
        &["--expect", "echo"],
        &["crash"],
    );
}

#[test]
fn a_server_that_serves_one_client_at_a_time_hangs_behind_a_stalled_client() {
    finds("echo-one-at-a-time", "echo", &[], &["hang"]);
}

#[track_caller]
fn finds_nothing(protocol: &str, runs: &str) {
    let out = tempfile::tempdir().expect("temp dir");
    let cmd = server(protocol);
    let seed = seed(protocol);
    let r = fuzz(
        &[
            "--cmd",
            &cmd,
            "--seed-scenario",
            &seed,
            "--runs",
            runs,
            "--time",
            "60s",
            "--seed",
            "3",
        ],
        out.path(),
    );
    let stdout = text(&r.stdout);
    assert_eq!(r.status.code(), Some(0), "{stdout}\n{}", text(&r.stderr));
    assert!(stdout.contains(&format!("{runs} inputs")), "{stdout}");
    assert!(stdout.contains("0 failures"), "{stdout}");
    assert!(reproducers(out.path()).is_empty());
}

#[test]
fn a_correct_http_server_gives_no_failures() {
    finds_nothing("http", "1500");
}

#[test]
fn a_correct_echo_server_gives_no_failures() {
    finds_nothing("echo", "1500");
}

#[test]
fn a_correct_chat_server_whose_clients_share_a_room_gives_no_failures() {
    // Inputs at once disturb each other here, and a sender gets no answer of its own: the
    // run must notice both and still report nothing.
    finds_nothing("chat", "300");
}

#[test]
fn request_bytes_from_a_corpus_are_compared_with_their_plain_answer() {
    // No scenario at all: the fuzzer learns the answer to plain delivery and holds every
    // transport mutation to it.
    let out = tempfile::tempdir().expect("temp dir");
    let corpus = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        corpus.path().join("get"),
        "GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .expect("writable");
    let corpus = corpus.path().display().to_string();
    let cmd = server("http-one-read");
    let r = fuzz(
        &[
            "--cmd", &cmd, "--corpus", &corpus, "--time", "60s", "--seed", "1",
        ],
        out.path(),
    );
    assert_eq!(r.status.code(), Some(1), "{}", text(&r.stdout));
    let files = reproducers(out.path());
    assert_eq!(files.len(), 1, "{files:?}");
    // Reported because it failed at least three of four runs against a fresh server; under
    // load one run may still pass, so it gets three, as in `finds`.
    let runs: Vec<Output> = (0..3).map(|_| run(&files[0])).collect();
    assert!(
        runs.iter().any(|r| r.status.code() == Some(1)),
        "the reproducer passed three runs:\n{}\n{}",
        text(&r.stdout),
        text(&runs[0].stdout)
    );
}

#[test]
fn bad_usage_is_status_2() {
    let out = tempfile::tempdir().expect("temp dir");
    let cmd = server("echo");
    for args in [
        vec![],
        vec!["--cmd", &cmd, "--expect", "sometimes"],
        vec!["--cmd", &cmd, "--seed-scenario", "/nonexistent.scenario"],
        vec!["--addr", "192.0.2.1:80"],
        vec!["--cmd", &cmd, "--time", "5 parsecs"],
    ] {
        let r = fuzz(&args, out.path());
        assert_eq!(r.status.code(), Some(2), "{args:?}: {}", text(&r.stderr));
        assert!(!r.stderr.is_empty(), "{args:?} says what is wrong");
    }
    // A seed with no target has nothing for the server under test to replace.
    let plain = out.path().join("plain.scenario");
    std::fs::write(&plain, "listen srv\nconnect c to srv\n").expect("writable");
    let r = fuzz(
        &[
            "--cmd",
            &cmd,
            "--seed-scenario",
            &plain.display().to_string(),
        ],
        out.path(),
    );
    assert_eq!(r.status.code(), Some(2));
    assert!(
        text(&r.stderr).contains("no `target` statement"),
        "{}",
        text(&r.stderr)
    );
}

#[test]
fn a_server_that_never_listens_is_reported_not_fuzzed() {
    let out = tempfile::tempdir().expect("temp dir");
    let r = fuzz(
        &["--cmd", "echo not a server; exit 3", "--time", "10s"],
        out.path(),
    );
    let stderr = text(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("exited (exit status: 3) before it listened"),
        "{stderr}"
    );
    assert!(
        stderr.contains("not a server"),
        "its output is shown: {stderr}"
    );
}

#[test]
fn ctrl_c_stops_the_run_and_its_server() {
    let out = tempfile::tempdir().expect("temp dir");
    // A mark in the server's environment tells its processes from every other.
    let mark = format!("SOCKHARNESS_FUZZ_TEST_MARK={}", std::process::id());
    let cmd = format!("{mark} {}", server("echo"));
    let seed = seed("echo");
    let child = Command::new(bin())
        .args([
            "fuzz",
            "--cmd",
            &cmd,
            "--seed-scenario",
            &seed,
            "--time",
            "120s",
        ])
        .arg("--out")
        .arg(out.path())
        .current_dir(out.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // Until the server is up and inputs run.
    let started = std::time::Instant::now();
    while marked(&mark).is_empty() && started.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!marked(&mark).is_empty(), "the server never started");
    std::thread::sleep(std::time::Duration::from_secs(2));
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let r = child.wait_with_output().expect("it exits");
    let stdout = text(&r.stdout);
    // 128 + SIGINT, after the report (or, before any input ran, after saying so).
    let stderr = text(&r.stderr);
    assert_eq!(r.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("interrupted") || stderr.contains("interrupted before anything"),
        "{stdout}\n{stderr}"
    );
    assert!(
        marked(&mark).is_empty(),
        "the server outlived the run: {:?}",
        marked(&mark)
    );
}

/// Processes whose environment holds `mark`.
fn marked(mark: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) {
            if env.split(|&b| b == 0).any(|v| v == mark.as_bytes()) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// An `--out` that cannot take files is refused at the start, before any fuzzing, with the
/// reason: not discovered when the first reproducer is written.
#[test]
fn an_unwritable_out_is_refused_at_the_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").expect("writable");
    // A directory under a regular file cannot be made, for root too. (A read-only directory is
    // no test: without root, sockharness runs as root of its own user namespace, and writes
    // into directories its user owns.)
    let outs = vec![file.join("out")];
    let cmd = server("echo-one-read");
    for out in outs {
        let started = std::time::Instant::now();
        let r = Command::new(bin())
            .args(["fuzz", "--cmd", &cmd, "--time", "30s", "--out"])
            .arg(&out)
            .current_dir(dir.path())
            .output()
            .expect("the binary runs");
        let stderr = text(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{}: {stderr}", out.display());
        assert!(stderr.contains("cannot write"), "{stderr}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{stderr}"
        );
    }
}

/// Ctrl-C once a failure is confirmed, while it is minimised and checked: the failure is
/// reported and its reproducer (the case as found, at least) is on disk and fails.
#[test]
fn a_confirmed_failure_survives_an_interrupt() {
    let out = tempfile::tempdir().expect("temp dir");
    let cmd = server("echo-one-read");
    let seed = seed("echo");
    let child = Command::new(bin())
        .args(["fuzz", "--cmd", &cmd, "--seed-scenario", &seed])
        .args(["--time", "60s", "--seed", "1", "--out"])
        .arg(out.path())
        .current_dir(out.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // The first reproducer is written the moment the failure is confirmed.
    let started = std::time::Instant::now();
    while reproducers(out.path()).is_empty() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no reproducer was written"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let r = child.wait_with_output().expect("it exits");
    let stdout = text(&r.stdout);
    // Interrupted (130), or done just before the signal came (1): found either way.
    assert!(
        matches!(r.status.code(), Some(130 | 1)),
        "{stdout}\n{}",
        text(&r.stderr)
    );
    assert!(stdout.contains("FAIL "), "{stdout}");
    assert!(!stdout.contains("0 failures"), "{stdout}");
    let files = reproducers(out.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let body = std::fs::read_to_string(&files[0]).unwrap_or_default();
    // It is a valid scenario either way.
    let checked = Command::new(bin())
        .arg("check")
        .arg(&files[0])
        .output()
        .expect("the binary runs");
    assert_eq!(checked.status.code(), Some(0), "{body}");
    if r.status.code() == Some(1) {
        // Minimised and checked before the signal came: it fails as the report says.
        let runs: Vec<Output> = (0..3).map(|_| run(&files[0])).collect();
        assert!(
            runs.iter().any(|r| r.status.code() == Some(1)),
            "the reproducer passed three runs:\n{body}"
        );
    } else {
        // The case as found: not yet checked against a fresh server, and said so.
        assert!(stdout.contains("not minimised or checked"), "{stdout}");
    }
}
/// A server so slow to start that calibration takes the whole `--time`: the run says that no
/// input ran and why, exits 2, and keeps to about its time.
#[test]
fn a_run_that_tests_nothing_is_an_error_not_a_success() {
    let out = tempfile::tempdir().expect("temp dir");
    // Each start takes most of the time given: however loaded the machine, no input runs.
    let cmd = format!("sleep 3; exec {}", server("echo"));
    let started = std::time::Instant::now();
    let r = fuzz(&["--cmd", &cmd, "--time", "4s"], out.path());
    let stderr = text(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{}\n{stderr}", text(&r.stdout));
    assert!(stderr.contains("no input ran"), "{stderr}");
    assert!(
        stderr.contains("to start"),
        "the reason is the server's start: {stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
}

/// An `--out` that stops taking files after the start (removed, replaced by a file) does not
/// lose the finding: the reproducer is printed whole, and it is a scenario that parses.
#[test]
fn a_reproducer_that_cannot_be_written_is_printed_whole() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let cmd = server("echo-one-read");
    let seed = seed("echo");
    let mut child = Command::new(bin())
        .args(["fuzz", "--cmd", &cmd, "--seed-scenario", &seed])
        .args(["--time", "60s", "--seed", "1", "--jobs", "2", "--out"])
        .arg(&out)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // `--out` is made and checked before the server starts, and calibrating against it takes
    // far longer than swapping the directory for a file.
    let stderr = child.stderr.take().expect("piped");
    let lines = std::io::BufReader::new(stderr).lines();
    let waited = std::time::Instant::now();
    while !has_children(child.id()) {
        assert!(
            waited.elapsed() < std::time::Duration::from_secs(20),
            "no server started"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    std::fs::remove_dir_all(&out).expect("removable");
    std::fs::write(&out, "").expect("a file in its place");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let r = child.wait_with_output().expect("it exits");
    let stdout = text(&r.stdout);
    assert_eq!(r.status.code(), Some(1), "{stdout}\n{}", rest.join("\n"));
    let (_, printed) = stdout
        .split_once("; here it is (")
        .unwrap_or_else(|| panic!("the reproducer is not printed:\n{stdout}"));
    assert!(stdout.contains("reproducer: cannot write "), "{stdout}");
    let scenario = printed
        .split_once("):\n")
        .map(|(_, s)| s)
        .expect("the text follows");
    let scenario: String = scenario
        .lines()
        .take_while(|l| !l.contains(" inputs in "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        scenario.starts_with("# Found by sockharness fuzz"),
        "{scenario}"
    );
    let copy = dir.path().join("saved.scenario");
    std::fs::write(&copy, &scenario).expect("writable");
    let checked = Command::new(bin())
        .arg("check")
        .arg(&copy)
        .output()
        .expect("the binary runs");
    assert_eq!(checked.status.code(), Some(0), "{scenario}");
}

/// Whether process `pid` has started a child yet (in any of its threads).
fn has_children(pid: u32) -> bool {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    tasks.into_iter().flatten().flatten().any(|task| {
        std::fs::read_to_string(task.path().join("children")).is_ok_and(|c| !c.trim().is_empty())
    })
}

/// Ctrl-C before any input ran (the server still starting, or calibration under way) says so,
/// with the interrupt's status: not "no seeds", not a success.
#[test]
fn ctrl_c_before_fuzzing_says_nothing_was_fuzzed() {
    use std::io::BufRead;
    let out = tempfile::tempdir().expect("temp dir");
    let cmd = format!("sleep 5; exec {}", server("echo"));
    let seed = seed("echo");
    let mut child = Command::new(bin())
        .args([
            "fuzz",
            "--cmd",
            &cmd,
            "--seed-scenario",
            &seed,
            "--time",
            "60s",
        ])
        .arg("--out")
        .arg(out.path())
        .current_dir(out.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let stderr = child.stderr.take().expect("piped");
    let mut lines = std::io::BufReader::new(stderr).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.starts_with("fuzz: "));
    assert!(started, "no start line");
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let r = child.wait_with_output().expect("it exits");
    let rest = format!("{}\n{}", rest.join("\n"), text(&r.stdout));
    assert_eq!(r.status.code(), Some(130), "{rest}");
    assert!(
        rest.contains("interrupted before anything was fuzzed"),
        "{rest}"
    );
    assert!(!rest.contains("no seeds"), "{rest}");
}

/// `--coverage afl` against a server not built with AFL++ is refused before anything is
/// fuzzed, saying why, rather than run blind; so is a dictionary that does not parse.
#[test]
fn coverage_of_a_server_without_instrumentation_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = fuzz(
        &[
            "--cmd",
            &server("echo"),
            "--seed-scenario",
            &seed("echo"),
            "--coverage",
            "afl",
            "--time",
            "20s",
        ],
        dir.path(),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is not instrumented for coverage"), "{err}");
    assert!(err.contains("went on running"), "{err}");
    assert!(
        !text(&out.stdout).contains("inputs in"),
        "nothing was fuzzed"
    );

    let dict = dir.path().join("bad.dict");
    std::fs::write(&dict, "kw=\"ok\"\nno quotes\n").expect("writes");
    let out = fuzz(
        &[
            "--cmd",
            &server("echo"),
            "--dict",
            dict.to_str().expect("utf-8"),
        ],
        dir.path(),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("line 2: expected a value in double quotes"),
        "{err}"
    );
}

/// `--stats` writes the run's progress as CSV in ProFuzzBench's long format, a row per measure
/// and second, ending with the run's totals; `--sync-dir` is refused without coverage, whose
/// queue it shares.
#[test]
fn stats_are_written_as_profuzzbench_csv_and_sync_needs_coverage() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let csv = dir.path().join("stats.csv");
    let out = fuzz(
        &[
            "--cmd",
            &server("echo"),
            "--seed-scenario",
            &seed("echo"),
            "--runs",
            "400",
            "--time",
            "60s",
            "--seed",
            "5",
            "--stats",
            csv.to_str().expect("a UTF-8 path"),
        ],
        dir.path(),
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let rows = std::fs::read_to_string(&csv).expect("the stats file");
    let mut lines = rows.lines();
    assert_eq!(lines.next(), Some("time,subject,fuzzer,run,cov_type,cov"));
    let inputs: Vec<u64> = rows
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 6, "{l}");
            (f[4] == "inputs").then(|| {
                assert_eq!(
                    (f[1], f[2], f[3]),
                    ("sockharness", "sockharness", "5"),
                    "{l}"
                );
                f[5].parse().expect("a count")
            })
        })
        .collect();
    assert_eq!(inputs.last(), Some(&400), "{rows}");
    assert!(inputs.windows(2).all(|w| w[0] <= w[1]), "{rows}");
    assert!(
        !rows.contains("b_abs"),
        "a blind run has no coverage: {rows}"
    );

    let out = fuzz(
        &[
            "--cmd",
            &server("echo"),
            "--sync-dir",
            dir.path().to_str().expect("a UTF-8 path"),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--coverage"),
        "{}",
        text(&out.stderr)
    );
}
