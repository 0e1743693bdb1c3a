//! Network namespaces made ahead of time. Creating one costs about a millisecond of kernel
//! work (and destroying it half as much again); a thread of its own makes the next few while
//! scenarios run, and a scenario's thread only has to enter one (`setns`, microseconds).
//!
//! A namespace a scenario left as it found it (no sysctl, no process, nothing of its
//! connections left: see `run`) is handed back and served again first, so that a run of many
//! small scenarios pays for few namespaces.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Mutex, OnceLock};

use super::netns;

/// Namespaces kept ready: enough for the parallel workers to take one each without waiting,
/// few enough that an idle process holds little.
const READY: usize = 4;

/// Namespaces handed back, kept at most: one per parallel worker is enough to never make one.
const RECYCLED: usize = 16;

/// The ready namespaces, or `None` where the maker thread could not start.
static POOL: OnceLock<Option<Mutex<Receiver<File>>>> = OnceLock::new();
/// Namespaces handed back clean, served before new ones.
static BACK: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// Moves the calling thread into a namespace made ahead of time (or, with `reuse`, one handed
/// back), with its loopback up. `None` when none can be had (the maker failed, or could not
/// start): the caller makes its own.
pub(super) fn enter_ready(reuse: bool) -> Option<std::io::Result<()>> {
    let own = HANDED_BACK.with(|h| h.0.borrow_mut().take());
    if reuse && own.is_some() {
        // The thread is in a namespace it handed back itself: it stays, at no cost.
        return Some(Ok(()));
    }
    let back = reuse
        .then(|| BACK.lock().ok().and_then(|mut b| b.pop()))
        .flatten();
    let ns = match back {
        Some(ns) => ns,
        None => POOL.get_or_init(start).as_ref()?.lock().ok()?.recv().ok()?,
    };
    // SAFETY: setns has no memory preconditions; it moves only the calling thread, into a
    // namespace the descriptor keeps alive for the call.
    let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        return Some(Err(std::io::Error::last_os_error()));
    }
    // Only now that the thread has left it may another thread have it.
    if let Some(own) = own {
        serve_again(own);
    }
    Some(Ok(()))
}

fn start() -> Option<Mutex<Receiver<File>>> {
    let (tx, rx) = mpsc::sync_channel(READY);
    std::thread::Builder::new()
        .name("netns-maker".into())
        .spawn(move || make(&tx))
        .ok()?;
    Some(Mutex::new(rx))
}

/// Makes namespaces until the receiving side is gone or making one fails; a failure ends the
/// pool, so callers make their own and see the error themselves.
fn make(tx: &SyncSender<File>) {
    loop {
        let made = netns::fresh_netns().and_then(|()| {
            File::open("/proc/thread-self/ns/net").map_err(|source| {
                super::SandboxError::Namespace {
                    what: "opening the new namespace",
                    source,
                }
            })
        });
        let Ok(ns) = made else { return };
        if tx.send(ns).is_err() {
            return;
        }
    }
}

/// Hands the calling thread's namespace back to be served again. The caller vouches that it is
/// as new: the same settings, no process in it, no socket left. The thread is still in it, so
/// it is served to another thread only once this one has moved on (its next namespace, or its
/// exit); until then it serves this thread's next reusable scenario, which needs no move at all.
pub(super) fn hand_back() {
    if let Ok(ns) = File::open("/proc/thread-self/ns/net") {
        HANDED_BACK.with(|h| *h.0.borrow_mut() = Some(ns));
    }
}

/// A namespace the calling thread handed back while still in it.
struct HandedBack(std::cell::RefCell<Option<File>>);

impl Drop for HandedBack {
    /// At the thread's exit, the namespace is free for others.
    fn drop(&mut self) {
        if let Some(ns) = self.0.get_mut().take() {
            serve_again(ns);
        }
    }
}

thread_local! {
    static HANDED_BACK: HandedBack = const { HandedBack(std::cell::RefCell::new(None)) };
}

fn serve_again(ns: File) {
    if let Ok(mut back) = BACK.lock() {
        if back.len() < RECYCLED {
            back.push(ns);
        }
    }
}
