//! Isolation: a private network namespace per scenario, with its own loopback and sysctls.
//!
//! As root, each scenario thread enters a new network namespace (made ahead of time by the
//! `pool`'s thread, entered with `setns`). Without root, the process first
//! becomes root of a user namespace of its own ([`init`], which must run while the process has a
//! single thread), and then each scenario thread does the same. The user namespace shares the
//! host's network, but in it the process's uid is 0. Every program linked with this
//! crate calls [`init`] before `main` (so that libtest's threads, which start before any test,
//! do not stand in the way), unless `SOCKHARNESS_USER_NAMESPACE=0` is set. The host's network namespace and
//! its sysctls are never changed: [`set_sysctl`] refuses to write unless the calling thread is in
//! a namespace other than the one the process started in.

mod forget;
mod netns;
mod pool;

use std::io;
use std::sync::OnceLock;

use thiserror::Error;

pub use forget::forget_connections;
pub(crate) use netns::fresh_netns;
pub use netns::{
    enter_private_netns, enter_reusable_netns, hand_back_netns, misspelt_sysctl, set_sysctl,
};

/// Whether scenarios run in private network namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Isolate where possible; otherwise run on the host loopback and skip what needs isolation.
    #[default]
    Auto,
    /// Isolate, or fail.
    Always,
    /// Run on the host loopback.
    Never,
}

/// How isolation is available to this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// The process may create network namespaces (root, or root of its own user namespace).
    Available {
        /// True when that took a user namespace (the process is not root on the host).
        user_namespace: bool,
    },
    /// It may not, for this reason.
    Unavailable(String),
}

/// Errors of the sandbox.
#[derive(Debug, Error)]
pub enum SandboxError {
    /// A namespace could not be created or configured.
    #[error("{what}: {source}")]
    Namespace {
        /// The step that failed.
        what: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// A sysctl write was refused because the thread is not in a private namespace.
    #[error("refusing to write sysctl {0}: this thread is in the host's network namespace")]
    HostNamespace(String),
    /// A sysctl does not exist or cannot be written in a namespace of this kind.
    #[error("cannot set sysctl {key}: {source}")]
    Sysctl {
        /// The key.
        key: String,
        /// The cause.
        source: io::Error,
    },
}

impl SandboxError {
    /// True when the error means "not possible here" (no such sysctl in this kernel, or not
    /// writable from this namespace) rather than a wrong value.
    pub fn is_unavailable(&self) -> bool {
        match self {
            SandboxError::Sysctl { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
            ),
            _ => true,
        }
    }
}

/// Set to `0` to keep a program linked with this crate out of a user namespace at start-up: it
/// then isolates only as root.
pub const USER_NAMESPACE_VAR: &str = "SOCKHARNESS_USER_NAMESPACE";

/// Called by the C runtime before `main`, while the process has one thread: the only moment a
/// process may create a user namespace. A test binary's libtest starts its threads in `main`,
/// before the first test could call [`init`] itself.
#[used]
#[link_section = ".init_array"]
static AT_START: extern "C" fn() = at_start;

extern "C" fn at_start() {
    init();
    // After the user namespace exists (the spawner's children belong to it) and before any
    // socket is open (see the spawner's docs).
    crate::process::spawner::start();
}

static SUPPORT: OnceLock<Support> = OnceLock::new();
static HOST_NETNS: OnceLock<Option<u64>> = OnceLock::new();

/// Prepares isolation for this process and says whether it is available.
///
/// It runs by itself before `main` (see the module's docs); calling it again first thing in
/// `main` is harmless. Without root it creates the process's user namespace, which the kernel
/// allows only in a single-threaded process. Later calls return the first answer.
pub fn init() -> &'static Support {
    host_netns();
    SUPPORT.get_or_init(netns::prepare)
}

/// Whether isolation is available (see [`init`]).
pub fn support() -> &'static Support {
    host_netns();
    SUPPORT.get_or_init(|| {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            Support::Available {
                user_namespace: false,
            }
        } else {
            Support::Unavailable(format!(
                "not root, and no user namespace was created at start-up \
                 ({USER_NAMESPACE_VAR}=0, or the process had threads already)"
            ))
        }
    })
}

/// The inode of the network namespace the process started in.
pub(crate) fn host_netns() -> Option<u64> {
    *HOST_NETNS.get_or_init(|| netns::current_netns().ok())
}
