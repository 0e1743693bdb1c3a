//! Executor semantics that are easy to get subtly wrong, checked through `run()`.

mod util;

use sockharness::run::Status;

#[track_caller]
fn passes(text: &str) -> sockharness::run::ScenarioRun {
    let r = util::run_text(text);
    assert_eq!(r.status, Status::Passed, "{}", r.trace.render());
    r
}

#[test]
fn a_background_statement_that_finishes_at_once_keeps_its_handle() {
    passes("listen l\nconnect c to l\naccept l as a\nrecv a 5 nowait &r\nwait r == EAGAIN\n");
    passes("listen l\nconnect c to l\naccept l as a\nclose c\nsend c \"x\" &h\nwait h == EBADF\n");
}

#[test]
fn a_refused_background_connect_reports_its_error() {
    let r = passes("listen l\nclose l\nconnect c to l &h\nwait h == ECONNREFUSED within 1s\n");
    assert!(r.trace.render().contains("ECONNREFUSED"));
}

#[test]
fn concurrent_sends_report_where_their_bytes_went() {
    let r = passes(
        "listen l\nconnect c to l\naccept l as a\nsend c \"a\" &h1\nsend c \"b\" &h2\nwait h1\nwait h2\nrecv a exact 2 == sent(c)\n",
    );
    let trace = r.trace.render();
    let line = |h: &str| {
        trace
            .lines()
            .find(|l| l.contains(&format!("wait {h} ")))
            .unwrap_or_default()
    };
    assert!(line("h1").ends_with("sent 1 byte [0..1)"), "{trace}");
    assert!(line("h2").ends_with("sent 1 byte [1..2)"), "{trace}");
}

#[test]
fn sleep_is_not_bound_by_the_timeout() {
    passes("timeout 50ms\nsleep 120ms\n");
}

#[test]
fn within_counts_from_the_start_of_a_background_statement() {
    // The send takes the script past 300ms before the wait; the recv started before it.
    let r = util::run_text(
        "listen l\nconnect c to l\naccept l as a\nrecv a 5 &r\nsleep 300ms\nsend c \"hello\"\nwait r within 100ms\n",
    );
    let Status::Failed(f) = &r.status else {
        panic!("expected a failure: {:?}", r.status)
    };
    assert_eq!(f.line, 7);
}

#[test]
fn a_large_literal_is_produced_as_it_is_sent() {
    // 512 MiB into a reader that never reads: the deadline ends it long before the data could
    // have been produced in one piece.
    let r = util::run_text("timeout 300ms\nlisten l rcvbuf=4KiB\nconnect c to l sndbuf=4KiB\naccept l as a\nsend c random(512MiB, seed=1)\n");
    let Status::Failed(f) = &r.status else {
        panic!("expected a failure: {:?}", r.status)
    };
    assert!(f.actual.starts_with("timed out after 300ms"), "{f:?}");
    assert!(r.duration.as_secs() < 5, "took {:?}", r.duration);
}
