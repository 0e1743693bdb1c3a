//! Network namespaces made ahead of time. Creating one costs about a millisecond of kernel
//! work; a thread of its own makes the next few while scenarios run, and a scenario's thread
//! only has to enter one (`setns`, microseconds).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Mutex, OnceLock};

use super::netns;

/// Namespaces kept ready: enough for the parallel workers to take one each without waiting,
/// few enough that an idle process holds little.
const READY: usize = 4;

/// The ready namespaces, or `None` where the maker thread could not start.
static POOL: OnceLock<Option<Mutex<Receiver<File>>>> = OnceLock::new();

/// Moves the calling thread into a namespace made ahead of time, with its loopback up. `None`
/// when none can be had (the maker failed, or could not start): the caller makes its own.
pub(super) fn enter_ready() -> Option<std::io::Result<()>> {
    let pool = POOL.get_or_init(start).as_ref()?;
    let ns = pool.lock().ok()?.recv().ok()?;
    // SAFETY: setns has no memory preconditions; it moves only the calling thread, into a
    // namespace the descriptor keeps alive for the call.
    let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    Some(if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    })
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
