//! Stopping every scenario of the process early, as a Ctrl-C or a CI timeout asks: the
//! statements running now end at once, what follows does not run, and each scenario still
//! closes its sockets and stops its servers on the way out.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static WAKE: Notify = Notify::const_new();

/// Interrupts every scenario running in this process, and every one started after: they end
/// skipped, "interrupted", with their targets stopped. Safe to call from any thread (not from a
/// signal handler: take the signal on a thread of its own, with `sigwait`).
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
    WAKE.notify_waiters();
}

/// Whether [`interrupt`] was called.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Resolves once [`interrupt`] has been called.
pub(crate) async fn wait() {
    loop {
        let woken = WAKE.notified();
        tokio::pin!(woken);
        // Registered before the flag is read, so a call in between is not missed.
        woken.as_mut().enable();
        if interrupted() {
            return;
        }
        woken.await;
    }
}
