//! The system calls behind the sandbox.

use std::io;
use std::os::unix::fs::MetadataExt;

use super::{host_netns, SandboxError, Support};

fn cvt(r: libc::c_int) -> io::Result<()> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The inode of the calling thread's network namespace.
pub(super) fn current_netns() -> io::Result<u64> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino())
}

/// Runs once, at start-up: as root nothing is needed; otherwise the process becomes root of a new
/// user namespace, mapped to its own uid and gid.
pub(super) fn prepare() -> Support {
    // SAFETY: getuid, geteuid and getgid have no preconditions.
    let (uid, euid, gid) = unsafe { (libc::getuid(), libc::geteuid(), libc::getgid()) };
    if euid == 0 {
        return Support::Available {
            user_namespace: false,
        };
    }
    if std::env::var_os(super::USER_NAMESPACE_VAR).is_some_and(|v| v == "0") {
        return Support::Unavailable(format!(
            "not root, and {}=0 keeps the process out of a user namespace",
            super::USER_NAMESPACE_VAR
        ));
    }
    // SAFETY: unshare has no memory preconditions; it fails (EINVAL) if threads exist.
    if let Err(e) = cvt(unsafe { libc::unshare(libc::CLONE_NEWUSER) }) {
        return Support::Unavailable(format!("cannot create a user namespace: {e}"));
    }
    let maps = std::fs::write("/proc/self/setgroups", "deny")
        .and_then(|()| std::fs::write("/proc/self/uid_map", format!("0 {uid} 1")))
        .and_then(|()| std::fs::write("/proc/self/gid_map", format!("0 {gid} 1")));
    match maps {
        Ok(()) => Support::Available {
            user_namespace: true,
        },
        Err(e) => Support::Unavailable(format!("cannot map ids in the user namespace: {e}")),
    }
}

/// Moves the calling thread into a new network namespace, its loopback up: one made ahead of
/// time where the pool has one, else one made now.
///
/// Only the calling thread moves; run scenarios on a thread of their own.
pub fn enter_private_netns() -> Result<(), SandboxError> {
    enter(false)
}

/// As [`enter_private_netns`], but the namespace may be one a scenario used before and handed
/// back with [`hand_back_netns`]: as new as far as a scenario without sysctls, processes or
/// fixed ports can tell.
pub fn enter_reusable_netns() -> Result<(), SandboxError> {
    enter(true)
}

/// Hands the calling thread's namespace back for [`enter_reusable_netns`] to serve again.
/// Only for a namespace left as new: no sysctl set, no process started in it, and nothing of
/// its connections left (see [`forget_connections`](super::forget_connections)).
pub fn hand_back_netns() {
    super::pool::hand_back();
}

fn enter(reuse: bool) -> Result<(), SandboxError> {
    match super::pool::enter_ready(reuse) {
        Some(Ok(())) => Ok(()),
        Some(Err(source)) => Err(SandboxError::Namespace {
            what: "setns(CLONE_NEWNET)",
            source,
        }),
        None => fresh_netns(),
    }
}

/// Moves the calling thread into a namespace made now, and brings its loopback up.
pub(crate) fn fresh_netns() -> Result<(), SandboxError> {
    // SAFETY: unshare has no memory preconditions and affects only the calling thread.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) }).map_err(|source| {
        SandboxError::Namespace {
            what: "unshare(CLONE_NEWNET)",
            source,
        }
    })?;
    loopback_up().map_err(|source| SandboxError::Namespace {
        what: "bringing up lo",
        source,
    })
}

/// SIOCSIFFLAGS on `lo`: a new namespace's loopback starts down.
fn loopback_up() -> io::Result<()> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    // SAFETY: ifreq is plain old data; the name fits with its NUL, and the ioctls read and write
    // only the struct passed.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        use std::os::fd::AsRawFd;
        let fd = sock.as_raw_fd();
        cvt(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req))?;
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        cvt(libc::ioctl(fd, libc::SIOCSIFFLAGS, &req))?;
    }
    Ok(())
}

/// Writes a network sysctl of the calling thread's namespace (`net.core.somaxconn`).
///
/// Refuses unless the thread is in a namespace other than the one the process started in, so the
/// host's settings are never touched.
pub fn set_sysctl(key: &str, value: &str) -> Result<(), SandboxError> {
    let here = current_netns().map_err(|source| SandboxError::Namespace {
        what: "reading the thread's network namespace",
        source,
    })?;
    match host_netns() {
        Some(host) if host != here => {}
        _ => return Err(SandboxError::HostNamespace(key.to_string())),
    }
    // The parser admits only dotted `net.*` keys made of [A-Za-z0-9_-], so the path cannot
    // leave /proc/sys/net.
    if !key.starts_with("net.") || key.contains("..") || key.contains('/') {
        return Err(SandboxError::Sysctl {
            key: key.to_string(),
            source: io::Error::from(io::ErrorKind::InvalidInput),
        });
    }
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).map_err(|source| SandboxError::Sysctl {
        key: key.to_string(),
        source,
    })
}

/// The sysctl of the calling thread's namespace that `key` is a misspelling of, if `key` does
/// not exist and one close to it does.
pub fn misspelt_sysctl(key: &str) -> Option<String> {
    let path = |k: &str| format!("/proc/sys/{}", k.replace('.', "/"));
    if std::path::Path::new(&path(key)).exists() {
        return None;
    }
    let mut keys = Vec::new();
    collect_sysctls(std::path::Path::new("/proc/sys/net"), "net", &mut keys);
    let known: Vec<&str> = keys.iter().map(String::as_str).collect();
    crate::script::closest(key, &known).map(str::to_string)
}

fn collect_sysctls(dir: &std::path::Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = format!("{prefix}.{}", e.file_name().to_string_lossy());
        match e.file_type() {
            Ok(t) if t.is_dir() => collect_sysctls(&e.path(), &name, out),
            Ok(_) => out.push(name),
            Err(_) => {}
        }
    }
}
