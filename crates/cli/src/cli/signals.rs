//! SIGINT, SIGTERM and SIGHUP (Ctrl-C, a CI timeout, a closed terminal): the first stops the
//! work cleanly, so that what was found so far is reported and every server started is stopped;
//! the second kills the servers and exits at once. Either way the exit status is 128 plus the
//! first signal's number (130 for SIGINT, 143 for SIGTERM).

use std::sync::atomic::{AtomicI32, Ordering};

/// The first signal taken, or 0.
static FIRST: AtomicI32 = AtomicI32::new(0);

/// Takes the signals on a thread of its own: at the first, says `what` and calls `stop`. Call it
/// before other threads start, so that every thread inherits the blocked mask and the signals
/// reach only the waiting thread (threads the library starts earlier block them themselves).
pub(super) fn on_interrupt(stop: fn(), what: &'static str) {
    // SAFETY: plain libc calls on a local signal set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::spawn(move || loop {
        let mut sig = 0;
        // SAFETY: `set` is a valid, initialised signal set.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            return;
        }
        if FIRST
            .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            // Nothing unwinds on exit: the servers, in process groups of their own, are
            // killed here or not at all.
            sockharness::process::kill_all();
            std::process::exit(exit_code(FIRST.load(Ordering::SeqCst)).into());
        }
        eprintln!(
            "\ninterrupted ({}): {what} (again to quit at once)",
            name(sig)
        );
        stop();
    });
}

/// The exit status an interrupted run ends with, once a signal was taken.
pub(super) fn interrupted() -> Option<u8> {
    match FIRST.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(exit_code(sig)),
    }
}

fn exit_code(sig: i32) -> u8 {
    u8::try_from(128 + sig).unwrap_or(255)
}

fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}
