//! Printing a parsed scenario gives text that parses to the same model.

use std::path::{Path, PathBuf};

use sockharness_script::parse;

/// Every `*.scenario` under `dir`.
fn scenario_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("the scenario library is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            scenario_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "scenario") {
            out.push(path);
        }
    }
}

#[test]
fn every_library_scenario_prints_and_reparses_to_the_same_model() {
    let mut files = Vec::new();
    scenario_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios"),
        &mut files,
    );
    assert!(
        files.len() >= 30,
        "the library has {} scenarios",
        files.len()
    );
    for file in files {
        let bytes = std::fs::read(&file).expect("a scenario is readable");
        let path = file.display().to_string();
        let path = path.as_str();
        let model = parse(path, &bytes).unwrap_or_else(|d| panic!("{d}"));
        let printed = model.to_string();
        let again = parse(path, printed.as_bytes())
            .unwrap_or_else(|d| panic!("{path} printed as:\n{printed}\n{d}"));
        assert_eq!(again, model, "{path} printed as:\n{printed}");
        assert_eq!(again.to_string(), printed, "printing is stable for {path}");
    }
}

#[test]
fn every_construct_round_trips() {
    let text = "timeout 2s\ntolerance 20ms\nsysctl net.core.somaxconn=8\nrequire redis-server\n\
        listen srv on [::1]:0 backlog=4 rcvbuf=8KiB sndbuf=1000 nodelay reuseaddr reuseport keepalive\n\
        listen other on srv reuseport == EADDRINUSE|EINVAL\n\
        connect cli to srv nodelay &h\nwait h == ok within 1.5s\naccept srv as conn within 100ms\n\
        send cli \"a\\n\\r\\t\\0\\\\\\\"\\xff\" chunk=3 gap=250us\nwrite cli pattern(1MiB)\nsend cli random(10, seed=3) nowait == 10\n\
        recv conn 16 nowait == EAGAIN\nread conn exact 4KiB == sent(cli)\nrecv conn until \"\\r\\n\" == EOF\nrecv conn all == pattern(3)\n\
        shutdown cli write\nshutdown cli read\nshutdown cli both\nset cli rcvbuf=4KiB nodelay\nsleep 0.5ms\n\
        expect h pending\nexpect h pending for 1s\nexpect srv.queued >= 2\nexpect conn.peer == cli\nexpect conn.local == srv.local\n\
        expect conn.local != 127.0.0.1:80\nexpect conn.state == CLOSE_WAIT\nexpect conn.unread < 64KiB\nexpect conn.fd != srv.fd\n\
        abort cli\nclose conn\n";
    let model = parse("all.scenario", text.as_bytes()).unwrap_or_else(|d| panic!("{d}"));
    let printed = model.to_string();
    assert_eq!(
        parse("again", printed.as_bytes()).unwrap_or_else(|d| panic!("{printed}\n{d}")),
        model
    );
}
