//! Namespaces served again: a passing scenario without sysctls, processes or fixed ports hands
//! its namespace back with nothing of its connections left in it, and the next such scenario
//! gets it; a scenario that changed its namespace never hands it back.

mod util;

use std::os::unix::fs::MetadataExt;

use sockharness::run::{dedicate_this_thread, run_with, RunOptions, Status};
use sockharness::sandbox::{self, Isolation};

/// The calling thread's network namespace.
fn netns() -> u64 {
    std::fs::metadata("/proc/thread-self/ns/net")
        .expect("/proc is mounted")
        .ino()
}

/// TCP sockets of every state in the calling thread's namespace, from the kernel's table.
fn tcp_sockets() -> Vec<String> {
    ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"]
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Runs `text` isolated on a thread of its own, which stays in the scenario's namespace after
/// it; then calls `after` there.
fn run_then<T: Send>(text: &str, after: impl FnOnce(Status) -> T + Send) -> Option<T> {
    if !matches!(sandbox::support(), sandbox::Support::Available { .. }) {
        eprintln!("isolation unavailable here: not tested");
        return None;
    }
    let scenario = util::scenario(text);
    std::thread::scope(|s| {
        s.spawn(|| {
            dedicate_this_thread();
            let opts = RunOptions {
                isolation: Isolation::Always,
                capture: true,
                ..RunOptions::default()
            };
            let r = run_with(&scenario, &opts);
            after(r.status)
        })
        .join()
        .ok()
    })
}

#[test]
fn a_namespace_comes_back_empty_and_is_served_again() {
    // The client closes first, so its end stays in TIME_WAIT, and the accepted end is left
    // unread: everything a namespace could keep of a connection.
    let text = "listen srv\nconnect cli to srv\naccept srv as conn\nsend cli \"x\"\n\
                recv conn 1 == \"x\"\nclose cli\nrecv conn 1 == EOF\nconnect other to srv\n";
    let Some((used, left, next)) = run_then(text, |status| {
        assert!(matches!(status, Status::Passed), "{status:?}");
        let used = netns();
        let left = tcp_sockets();
        sandbox::enter_reusable_netns().expect("a namespace to enter");
        (used, left, netns())
    }) else {
        return;
    };
    assert!(left.is_empty(), "left in the namespace: {left:#?}");
    assert_eq!(next, used, "the namespace was not served again");
}

#[test]
fn a_namespace_with_a_sysctl_set_is_never_served_again() {
    let text = "sysctl net.ipv4.tcp_fin_timeout=5\nlisten srv\nconnect cli to srv\n";
    let Some((used, next)) = run_then(text, |status| {
        assert!(matches!(status, Status::Passed), "{status:?}");
        let used = netns();
        sandbox::enter_reusable_netns().expect("a namespace to enter");
        (used, netns())
    }) else {
        return;
    };
    assert_ne!(
        next, used,
        "a namespace with a sysctl changed was served again"
    );
}

#[test]
fn a_namespace_is_never_served_to_another_thread_while_its_thread_is_in_it() {
    let text = "listen srv\nconnect cli to srv\naccept srv as conn\n";
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let held = std::thread::spawn(move || {
        run_then(text, move |status| {
            assert!(matches!(status, Status::Passed), "{status:?}");
            // Still in the namespace it handed back, while another thread takes one.
            tx.send(netns()).unwrap();
            done_rx.recv().unwrap();
        })
    });
    let Ok(used) = rx.recv() else {
        // No isolation here: run_then said so and did not run.
        held.join().unwrap();
        return;
    };
    let other = std::thread::spawn(|| {
        sandbox::enter_reusable_netns().expect("a namespace to enter");
        netns()
    })
    .join()
    .unwrap();
    done_tx.send(()).unwrap();
    held.join().unwrap();
    assert_ne!(other, used, "two threads were given the same namespace");
}
