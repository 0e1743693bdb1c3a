//! Nothing hangs: a statement that would block forever fails with "timed out" at its deadline,
//! in the foreground and in the background.

mod util;

use sockharness::run::Status;

#[track_caller]
fn timed_out(text: &str, line: u32) {
    let r = util::run_text(text);
    let Status::Failed(f) = &r.status else {
        panic!("expected a failure, got {:?}", r.status)
    };
    assert_eq!(f.line, line, "{f:?}");
    assert!(f.actual.starts_with("timed out after 200ms"), "{f:?}");
}

#[test]
fn a_recv_nobody_answers_times_out() {
    timed_out(
        "timeout 200ms\nlisten l\nconnect c to l\naccept l as a\nrecv a exact 10\n",
        5,
    );
}

#[test]
fn an_accept_nobody_connects_to_times_out() {
    timed_out("timeout 200ms\nlisten l\naccept l as a\n", 3);
}

#[test]
fn a_send_into_a_reader_that_never_reads_times_out() {
    timed_out(
        "timeout 200ms\nlisten l rcvbuf=4KiB\nconnect c to l sndbuf=4KiB\naccept l as a\nsend c pattern(64MiB)\n",
        5,
    );
}

#[test]
fn a_background_statement_times_out_when_waited_for() {
    timed_out(
        "timeout 200ms\nlisten l\nconnect c to l\naccept l as a\nrecv a 1 &h\nwait h\n",
        6,
    );
}
