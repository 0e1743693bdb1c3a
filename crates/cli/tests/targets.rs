//! Servers under test: builtin servers, processes started by `target T cmd`, their crashes and
//! their cleanup, and ranges of statements.

mod util;

use std::path::Path;

use sockharness::run::{FailureKind, Status};
use sockharness::script::{Statement, TargetSource};

const BIN: &str = env!("CARGO_BIN_EXE_sockharness");

#[track_caller]
fn passes(text: &str) -> sockharness::run::ScenarioRun {
    let r = util::run_text(text);
    assert_eq!(r.status, Status::Passed, "{}", r.trace.render());
    r
}

#[track_caller]
fn fails_at(text: &str, line: u32) -> sockharness::run::Failure {
    let r = util::run_text(text);
    let Status::Failed(f) = r.status else {
        panic!("expected a failure:\n{}", r.trace.render())
    };
    assert_eq!(f.line, line, "{f:?}");
    f
}

#[test]
fn builtin_servers_serve_many_clients() {
    passes(
        "target web builtin echo\nconnect c[1..20] to web &h[1..20]\nwait h[1..20] == ok within 2s\n\
         send c[1..20] pattern(10KiB) chunk=999\nrecv c[1..20] exact 10KiB == sent(c[1..20])\n",
    );
    passes(
        "target room builtin chat\nconnect a to room\nconnect b to room\nconnect c to room\nsleep 20ms\n\
         send a \"hel\"\nsend a \"lo\\n\" \nrecv b until \"\\n\" == \"hello\\n\"\nrecv c until \"\\n\" == \"hello\\n\"\n\
         recv a 16 nowait == EAGAIN\n",
    );
    passes(
        "target web builtin http\nconnect c to web\n\
         send c \"POST /a HTTP/1.1\\r\\nContent-Length: 3\\r\\n\\r\\nabcGET /b HTTP/1.1\\r\\n\\r\\nGET /c HTTP/1.1\\r\\nConnection: close\\r\\n\\r\\n\" chunk=1\n\
         recv c all\n",
    );
}

#[test]
fn a_command_target_is_started_checked_and_stopped() {
    passes(&format!(
        "target web cmd \"exec {BIN} serve echo --listen 127.0.0.1:{{port}}\"\nconnect c to web\nsend c \"ping\"\n\
         recv c exact 4 == \"ping\"\nexpect web running\nexpect web.fds <= 20\nstop web\nexpect web exited\n"
    ));
}

#[test]
fn a_target_that_never_listens_fails_with_its_output() {
    let f = fails_at(
        "target t cmd \"echo about to listen; sleep 30\" ready=300ms\n",
        1,
    );
    assert!(
        f.actual.contains("did not listen on its port within 300ms"),
        "{f:?}"
    );
    assert_eq!(f.kind, FailureKind::Setup);
    assert!(f.detail.unwrap_or_default().contains("about to listen"));
}

#[test]
fn a_crash_is_reported_at_the_statement_that_notices_it() {
    let f = fails_at(
        &format!(
            "target web cmd \"{BIN} serve echo --listen 127.0.0.1:{{port}} & p=$!; sleep 0.3; echo crashing; kill $p; exit 7\"\n\
             connect c to web\nsleep 600ms\nsend c \"x\"\n"
        ),
        3,
    );
    assert!(f.actual.contains("web exited (exit status: 7)"), "{f:?}");
    assert_eq!(
        f.kind,
        FailureKind::Target {
            code: Some(7),
            signal: None
        }
    );
    assert!(f.detail.unwrap_or_default().contains("crashing"));
}

#[test]
fn no_server_outlives_its_scenario() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pidfile = dir.path().join("pid");
    // The server ignores SIGTERM, so the end of the scenario has to escalate to SIGKILL.
    let text = format!(
        "target web cmd \"echo $$ > {}; trap '' TERM; exec {BIN} serve echo --listen 127.0.0.1:{{port}}\"\nconnect c to web\n",
        pidfile.display()
    );
    passes(&text);
    let pid = std::fs::read_to_string(&pidfile).expect("the pid was written");
    assert!(
        !Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "process {pid} is still there"
    );
}

#[test]
fn a_builtin_whose_server_ends_is_reported_like_an_exited_process() {
    // echo-exit-on-reset (the bug zoo): a client's reset ends the whole server.
    let mut scenario = util::scenario(
        "target t builtin echo\nconnect a to t\nsend a \"x\"\nrecv a exact 1\nabort a\n\
         sleep 200ms\nconnect b to t\n",
    );
    let Statement::Target { source, .. } = &mut scenario.steps[0].statement else {
        panic!("the first statement is the target");
    };
    *source = TargetSource::Builtin("echo-exit-on-reset".into());
    let r = sockharness::run::run(&scenario);
    let Status::Failed(f) = r.status else {
        panic!("expected a failure: {:?}", r.status);
    };
    assert_eq!(
        f.kind,
        FailureKind::Target {
            code: None,
            signal: None
        },
        "{f:?}"
    );
    assert!(
        f.actual.contains("t exited (its server's task ended)"),
        "{f:?}"
    );
}

#[test]
fn a_target_that_exits_before_it_listens_fails_with_its_status() {
    let f = fails_at(
        "target web cmd \"echo no config; exit 3\"\nconnect c to web\n",
        1,
    );
    assert!(
        f.actual
            .contains("exited (exit status: 3) before it listened"),
        "{f:?}"
    );
    assert_eq!(
        f.kind,
        FailureKind::Target {
            code: Some(3),
            signal: None
        }
    );
}

/// SIGTERM (a CI timeout) or SIGINT (Ctrl-C) to `run`: the scenario running stops at once, its
/// server is stopped, the summary is printed, and the exit status says which signal it was; a
/// second signal exits at once.
#[test]
fn an_interrupted_run_stops_its_servers_reports_and_exits_with_the_signal() {
    for (signal, status, twice) in [(libc::SIGTERM, 143, false), (libc::SIGINT, 130, true)] {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let path = dir.path().join("slow.scenario");
        std::fs::write(
            &path,
            format!(
                "target t cmd \"echo $$ > {}; exec {BIN} serve echo --listen 127.0.0.1:{{port}}\"\n\
                 connect c to t\nsleep 30s\n",
                pidfile.display()
            ),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let child = std::process::Command::new(BIN)
            .args(["run", "--format", "text"])
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Once the server is up, the scenario is in its sleep.
        let deadline = started + std::time::Duration::from_secs(20);
        let server: i32 = loop {
            if let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|p| p.trim().parse().ok())
            {
                break pid;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        std::thread::sleep(std::time::Duration::from_millis(300));
        let pid = child.id() as i32;
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(pid, signal) };
        if twice {
            std::thread::sleep(std::time::Duration::from_millis(20));
            // SAFETY: as above.
            unsafe { libc::kill(pid, signal) };
        }
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{text}");
        // Well before the scenario's 30 s sleep would have ended.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{text}"
        );
        if !twice {
            assert!(text.contains("0 passed, 0 failed, 1 skipped"), "{text}");
            assert!(text.contains("interrupted at line 3"), "{text}");
        }
        // The server is gone (a zombie would be reaped by now: its parent has exited).
        let gone = (0..100).any(|_| {
            let alive = Path::new(&format!("/proc/{server}")).exists();
            if alive {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            !alive
        });
        assert!(gone, "server {server} outlived the run:\n{text}");
    }
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

/// A server that starts a daemon of its own (`setsid`, out of its process group): stopping the
/// server stops the daemon too, in the scenario's namespace and on the host's network alike.
#[test]
fn a_servers_daemon_does_not_outlive_it() {
    for isolate in ["always", "never"] {
        let mark = format!("SOCKHARNESS_DAEMON_TEST={isolate}-{}", std::process::id());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.scenario");
        std::fs::write(
            &path,
            format!(
                "target t cmd \"env {mark} setsid sleep 1234 & env {mark} setsid sh -c 'sleep 1235 & sleep 1236' & exec {BIN} serve echo --listen 127.0.0.1:{{port}}\"\n\
                 connect c to t\nsend c \"x\"\nrecv c 1 == \"x\"\n"
            ),
        )
        .unwrap();
        let out = std::process::Command::new(BIN)
            .args(["run", "--isolate", isolate])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{isolate}: {text}");
        let left = marked(&mark);
        assert!(left.is_empty(), "{isolate}: left running: {left:?}\n{text}");
    }
}

/// A `cmd` target on a host starts in the host's namespace and is given the host's address:
/// clients on another host reach it over their link, and the capture shows them doing so.
#[test]
fn a_command_target_on_a_host_listens_at_the_hosts_address() {
    let r = passes(&format!(
        "host a\nhost b\nlink a b loss 5% delay 1ms\n\
         target web cmd \"echo at $ADDR; exec {BIN} serve echo --listen {{addr}}\" on b\n\
         connect c from a to web\nsend c pattern(64KiB)\n\
         recv c exact 64KiB == pattern(64KiB) within 10s\nexpect web.fds <= 20\n\
         stop web\nexpect web exited\n"
    ));
    let addr = |name: &str| {
        r.names
            .iter()
            .find(|(_, n)| n.as_str() == name)
            .map(|(a, _)| *a)
            .unwrap_or_else(|| panic!("{name} has an address"))
    };
    let web = addr("web");
    assert_eq!(web.ip(), std::net::IpAddr::from([10, 0, 0, 2]));
    // The echo crossed the link, both ways.
    let wire = r.wire().expect("captured");
    for (from, to) in [(addr("c"), web), (web, addr("c"))] {
        assert!(wire.bytes(from, to) >= 64 << 10, "{from} -> {to}");
    }
}

/// A server on a host that listens only on its loopback is out of every other host's reach:
/// its start fails with that reason, at its line, not with each connect timing out.
#[test]
fn a_command_target_on_a_hosts_loopback_alone_is_named() {
    let f = fails_at(
        &format!(
            "host a\nhost b\nlink a b\n\
             target web cmd \"exec {BIN} serve echo --listen 127.0.0.1:{{port}}\" on b\n\
             connect c from a to web\n"
        ),
        4,
    );
    assert!(
        f.actual
            .contains("listens only on loopback, where no other host reaches it"),
        "{f:?}"
    );
    assert!(f.actual.contains("listen on {addr} (10.0.0.2:"), "{f:?}");
}

/// `serve` listens off loopback only inside the host namespace sockharness started it in: the
/// variable that says so, copied anywhere else, names another namespace and is refused.
#[test]
fn serve_stays_on_loopback_outside_a_scenarios_host() {
    for marker in [None, Some("1")] {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["serve", "echo", "--listen", "10.0.0.2:7"]);
        if let Some(m) = marker {
            cmd.env("SOCKHARNESS_HOST_NETNS", m);
        }
        let out = cmd.output().expect("runs");
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("is not a loopback address"), "{stderr}");
    }
}
