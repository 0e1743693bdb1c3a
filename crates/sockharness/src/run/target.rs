//! A scenario's targets: the servers under test and how to tell whether they still run.

use std::io;
use std::time::Duration;

use tokio::task::JoinHandle;

pub(crate) use crate::process::{cmd_addr, free_port, listening, Process, TERM_GRACE};
/// How long a `cmd` target may take to listen when the scenario does not say (`ready=`).
pub(crate) const DEFAULT_READY: Duration = Duration::from_secs(5);

/// A target of the scenario.
pub(crate) enum Target {
    /// A process started by `target T cmd`.
    Process(Process),
    /// A bundled server running as tasks of the scenario's runtime.
    Builtin(Option<JoinHandle<()>>),
    /// A server already running somewhere on the loopback.
    At,
}

impl Target {
    /// Whether the server is still there (a server `at` an address is assumed to be).
    pub(crate) fn is_running(&mut self) -> bool {
        match self {
            Target::Process(p) => p.exited().is_none(),
            Target::Builtin(task) => task.as_ref().is_some_and(|t| !t.is_finished()),
            Target::At => true,
        }
    }

    /// Open descriptors of a process target.
    pub(crate) fn fds(&self) -> io::Result<u64> {
        match self {
            Target::Process(p) => p.fds(),
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }
}
