//! A thousand scenario runs in one process leave the open file count where it started: every
//! socket, runtime and timer is released when a scenario ends, passed or failed.
//!
//! This file holds one test so that no other test opens files in parallel with it.

mod util;

use sockharness::run::{run, Status};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc is mounted")
        .count()
}

#[test]
fn a_thousand_runs_leave_no_descriptor_behind() {
    let passing = util::scenario(
        "listen srv\nconnect cli to srv\naccept srv as conn\nsend cli \"x\"\nrecv conn 1 &r\nwait r == \"x\"\n",
    );
    // Fails with a background statement still running and sockets open.
    let failing = util::scenario(
        "listen srv\nconnect cli to srv\naccept srv as conn\nrecv conn 1 &r\nconnect c2 to srv == ECONNREFUSED\n",
    );
    // Warm up once so lazily created process-wide state is not counted as a leak.
    run(&passing);
    run(&failing);
    sockharness::capture::live::wait_for_closes(std::time::Duration::from_secs(10));
    let before = open_fds();
    for i in 0..1000 {
        let r = if i % 2 == 0 {
            run(&passing)
        } else {
            run(&failing)
        };
        let expected_pass = i % 2 == 0;
        assert_eq!(
            matches!(r.status, Status::Passed),
            expected_pass,
            "run {i}: {:?}",
            r.status
        );
    }
    // Capture sockets are closed on helper threads (each close waits for an RCU grace period).
    sockharness::capture::live::wait_for_closes(std::time::Duration::from_secs(10));
    assert_eq!(open_fds(), before);
}
