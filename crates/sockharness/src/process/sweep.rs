//! What a server leaves running when it is stopped: processes that left its process group
//! (`setsid`, a daemon's double fork) are found by the network namespace they run in, which is
//! the scenario's own, or, on the host's network, as orphans this process adopted (see
//! [`adopt_orphans`]); they are killed too.

use std::io;

/// Makes this process the reaper of its orphaned descendants: a server's daemon whose parent
/// exits is then this process's child, not init's, so that stopping the server can find it even
/// on the host's network. The command line does this at start; a library caller may.
pub fn adopt_orphans() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The network namespace of the calling thread, by inode.
pub(super) fn current_netns() -> Option<u64> {
    netns_of("thread-self")
}

/// Kills what servers started in namespace `netns` left behind: in a private namespace every
/// process in it, on the host's (`private` false) the orphans in it this process adopted;
/// either way not the servers still running (the process groups `running`) nor what they
/// started. Rounds repeat while they find any: killing one may orphan its own children.
/// Bounded, so that a fork bomb cannot hold the caller.
pub(super) fn sweep(netns: u64, private: bool, running: &[libc::pid_t]) {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    for _ in 0..50 {
        let mut found = false;
        let all = processes();
        // A process of a server still running, or started by one.
        let serving = |mut pid: libc::pid_t| {
            for _ in 0..64 {
                match all.iter().find(|p| p.0 == pid) {
                    Some(&(_, _, group)) if running.contains(&group) => return true,
                    Some(&(_, ppid, _)) if ppid > 1 && ppid != me => pid = ppid,
                    _ => return false,
                }
            }
            false
        };
        for &(pid, ppid, _) in &all {
            let adopted = ppid == me;
            if pid == me
                || !(private || adopted)
                || serving(pid)
                || netns_of(&pid.to_string()) != Some(netns)
            {
                continue;
            }
            found = true;
            // SAFETY: kill and waitpid have no memory preconditions beyond the local status.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                if ppid == me {
                    let mut status = 0;
                    libc::waitpid(pid, &mut status, 0);
                }
            }
        }
        if !found {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Every process's id, parent's id and process group, from `/proc`.
fn processes() -> Vec<(libc::pid_t, libc::pid_t, libc::pid_t)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: libc::pid_t = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The fields after the command name, which is in parentheses and may hold anything.
            let rest = &stat[stat.rfind(')')? + 1..];
            let mut fields = rest.split_whitespace().skip(1);
            let ppid = fields.next()?.parse().ok()?;
            let group = fields.next()?.parse().ok()?;
            Some((pid, ppid, group))
        })
        .collect()
}

/// The network namespace of `/proc/WHO`, by inode; `None` where it cannot be read (another
/// user's process).
fn netns_of(who: &str) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{who}/ns/net")).ok()?;
    link.to_str()?
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}
