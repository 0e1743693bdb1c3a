//! `sockharness scenario-from-pcap`: from a capture of a client and a server to a seed scenario
//! that replays the client and expects the server's answers, run against a live server.

use std::path::Path;
use std::process::{Command, Output};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sockharness")
}

fn sockharness(args: &[&str], dir: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A session with the bundled http server is captured, made into a scenario, and that
/// scenario passes against a fresh http server and fails, at the first answer, against echo.
#[test]
fn a_captured_session_becomes_a_scenario_that_checks_the_server_answers_the_same() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(
        dir.path().join("session.scenario"),
        "timeout 3s\ntarget srv builtin http\nconnect c to srv\n\
         send c \"GET /one HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n\"\nrecv c until \"/one 0\\n\"\n\
         send c \"POST /two HTTP/1.1\\r\\nContent-Length: 3\\r\\nConnection: close\\r\\n\\r\\nabc\"\n\
         recv c until \"/two 3\\n\"\nrecv c 16 == EOF\nclose c\n",
    )
    .expect("writes");
    let run = sockharness(
        &["run", "session.scenario", "--pcap-dir", "pcaps"],
        dir.path(),
    );
    assert!(run.status.success(), "{}", text(&run.stdout));
    let pcap = dir.path().join("pcaps/session.pcap");
    if !pcap.exists() {
        // No private namespace here, so no capture of the scenario's own traffic.
        assert!(
            text(&run.stdout).contains("not isolated") || text(&run.stderr).contains("isolat"),
            "no capture, and no word why: {}{}",
            text(&run.stdout),
            text(&run.stderr)
        );
        return;
    }
    let made = sockharness(
        &[
            "scenario-from-pcap",
            "pcaps/session.pcap",
            "-o",
            "seed.scenario",
        ],
        dir.path(),
    );
    assert!(made.status.success(), "{}", text(&made.stderr));
    let seed = std::fs::read_to_string(dir.path().join("seed.scenario")).expect("written");
    for line in [
        "target srv at 127.0.0.1:",
        "send c1 \"GET /one HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n\"\n",
        "recv c1 exact 100 == \"HTTP/1.1 200 OK\\r\\nContent-Length: 11\\r\\n",
        "recv c1 16 == EOF\n",
    ] {
        assert!(seed.contains(line), "{line:?} is missing from:\n{seed}");
    }
    let against = |server: &str| {
        let target = format!("srv={} serve {server} --listen 127.0.0.1:{{port}}", bin());
        sockharness(&["run", "seed.scenario", "--target", &target], dir.path())
    };
    let http = against("http");
    assert!(http.status.success(), "{}", text(&http.stdout));
    let echo = against("echo");
    assert_eq!(echo.status.code(), Some(1), "{}", text(&echo.stdout));
    let report = text(&echo.stdout);
    let first_recv = 1 + seed
        .lines()
        .position(|l| l.starts_with("recv c1 exact 100"))
        .expect("the first answer");
    assert!(
        report.contains(&format!("seed.scenario:{first_recv}")),
        "{report}"
    );

    // Not a capture, and a port no connection went to: errors that say so.
    std::fs::write(dir.path().join("not.pcap"), "hello").expect("writes");
    let bad = sockharness(&["scenario-from-pcap", "not.pcap"], dir.path());
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(
        text(&bad.stderr).contains("not.pcap"),
        "{}",
        text(&bad.stderr)
    );
    let bad = sockharness(
        &["scenario-from-pcap", "pcaps/session.pcap", "--port", "9"],
        dir.path(),
    );
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(
        text(&bad.stderr).contains("no captured connection went to port 9"),
        "{}",
        text(&bad.stderr)
    );
}
