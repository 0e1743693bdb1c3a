//! A scenario's targets: the servers under test and how to tell whether they still run.

use std::io;
use std::time::Duration;

use std::cell::RefCell;

use tokio::task::JoinHandle;

use crate::network::Network;

pub(crate) use crate::process::{reachable_listener, Process, TERM_GRACE};
/// How long a `cmd` target may take to listen when the scenario does not say (`ready=`).
pub(crate) const DEFAULT_READY: Duration = Duration::from_secs(5);

/// A target of the scenario.
pub(crate) enum Target {
    /// A process started by `target T cmd`.
    Process(Process),
    /// A bundled server, a proxy or an in-process service, running as tasks of the scenario's
    /// runtime, listening on `port` of `host` (`task` is `None` once the script stopped it).
    Builtin {
        task: Option<JoinHandle<()>>,
        port: u16,
        host: Option<usize>,
    },
    /// A server already running somewhere on the loopback.
    At,
}

impl Target {
    /// Whether the server is still there (a server `at` an address is assumed to be).
    pub(crate) fn is_running(&mut self) -> bool {
        match self {
            Target::Process(p) => p.exited().is_none(),
            Target::Builtin { task, .. } => task.as_ref().is_some_and(|t| !t.is_finished()),
            Target::At => true,
        }
    }

    /// Open descriptors of a process target's group; for a server running as tasks, the
    /// sockets it holds open on its port (its listener and the connections it accepted), in
    /// its host's namespace of `network`.
    pub(crate) fn fds(&self, network: Option<&RefCell<Network>>) -> io::Result<u64> {
        match self {
            Target::Process(p) => p.fds(),
            Target::Builtin { port, host, .. } => {
                super::exec::on_host(network, *host, || held_sockets(*port))
            }
            Target::At => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        }
    }
}

/// Sockets of the calling thread's namespace on local port `port` that a process still holds:
/// one closed by its owner but still in the kernel (FIN_WAIT, TIME_WAIT) is not counted.
fn held_sockets(port: u16) -> io::Result<u64> {
    let held = crate::procnet::tcp_sockets()?
        .iter()
        .filter(|s| s.port == port && s.inode != 0)
        .count();
    Ok(held as u64)
}

/// A port free on `ip` now, for a target to use.
pub(crate) fn free_port_on(ip: std::net::IpAddr) -> io::Result<u16> {
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
}
