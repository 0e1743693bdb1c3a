//! The thread that starts every server process, from a descriptor table of its own.
//!
//! Between fork and exec a child holds a copy of its parent's descriptor table, so every socket
//! the process has open stays open until the child has exec'd. Scenarios run side by side in one
//! process: a `close` in one would then send its FIN (or RST) only once another scenario's server
//! had finished starting, milliseconds later under load, and what that scenario's capture saw
//! would change from run to run. This thread unshares its table when it starts, before the
//! process has opened any socket, and keeps in it only its own end of the channel, so the
//! children it forks hold nothing of anyone else's.
//!
//! A request carries the command, its environment additions and the caller's network namespace;
//! the child enters that namespace before it execs. The thread itself never changes namespace, so it can still
//! start servers in the namespace it began in, which an unprivileged process could not re-enter.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use crate::fdpass;

/// Longest command accepted, well inside one datagram.
const MAX_REQUEST: usize = 60 * 1024;

/// A server process started by the spawner thread: a child of this process.
pub(crate) struct Spawned {
    pub(crate) pid: libc::pid_t,
    pub(crate) stdout: OwnedFd,
    pub(crate) stderr: OwnedFd,
}

static CHANNEL: OnceLock<Result<Mutex<UnixDatagram>, String>> = OnceLock::new();

/// Starts the spawner thread if it is not running yet. Called before `main` (see
/// [`crate::sandbox`]), while no socket is open: its table then copies nothing.
pub(crate) fn start() {
    CHANNEL.get_or_init(launch);
}

/// Starts `sh -c script` in the calling thread's network namespace, with the variables of `env`
/// set, in a process group of its own, stdin from /dev/null and its output on two pipes.
pub(crate) fn spawn(script: &str, env: &[(&str, String)]) -> io::Result<Spawned> {
    // The variables, each `NAME=VALUE` and a NUL, then a NUL, then the script (which holds no
    // NUL: no program could be given one).
    let mut request = Vec::new();
    for (name, value) in env {
        if name.contains(['=', '\0']) || value.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot pass the variable {name:?}"),
            ));
        }
        request.extend_from_slice(format!("{name}={value}\0").as_bytes());
    }
    request.push(0);
    request.extend_from_slice(script.as_bytes());
    if request.len() > MAX_REQUEST {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a command of {} bytes is too long", script.len()),
        ));
    }
    let channel = CHANNEL
        .get_or_init(launch)
        .as_ref()
        .map_err(|e| io::Error::other(format!("no process spawner: {e}")))?;
    let netns = std::fs::File::open("/proc/thread-self/ns/net")?;
    // One request and its reply at a time: the lock keeps them paired.
    let channel = channel
        .lock()
        .map_err(|_| io::Error::other("the process spawner failed"))?;
    fdpass::send(channel.as_fd(), &request, &[netns.as_fd()])?;
    let mut reply = [0u8; 1024];
    let (n, fds) = fdpass::recv(channel.as_fd(), &mut reply)?;
    decode_reply(&reply[..n], fds)
}

fn launch() -> Result<Mutex<UnixDatagram>, String> {
    let (ours, theirs) = UnixDatagram::pair().map_err(|e| e.to_string())?;
    let theirs = theirs.into_raw_fd();
    let (ready, started) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("spawner".into())
        .spawn(move || {
            if let Err(e) = own_table(theirs) {
                let _ = ready.send(Err(e.to_string()));
                return;
            }
            let _ = ready.send(Ok(()));
            // SAFETY: `theirs` is open in this thread's table and nothing else there owns it.
            serve(&unsafe { UnixDatagram::from_raw_fd(theirs) });
        });
    let result = match spawned {
        Ok(_) => started
            .recv()
            .unwrap_or_else(|_| Err("the spawner thread ended".into())),
        Err(e) => Err(e.to_string()),
    };
    // The thread's end stays open in the thread's own table; the shared table lets go of it.
    // SAFETY: `theirs` came from into_raw_fd above and nothing in this table owns it any more.
    drop(unsafe { OwnedFd::from_raw_fd(theirs) });
    result.map(|()| Mutex::new(ours))
}

/// Gives the calling thread a descriptor table of its own holding only stdio and `keep`, and
/// blocks every signal in it: signals for the process go to the threads that handle them.
fn own_table(keep: RawFd) -> io::Result<()> {
    // SAFETY: unshare, close_range and pthread_sigmask have no memory preconditions beyond the
    // sigset, which is a local initialised by sigfillset.
    unsafe {
        if libc::unshare(libc::CLONE_FILES) != 0 {
            return Err(io::Error::last_os_error());
        }
        let keep = keep as u32;
        if keep > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, keep - 1, 0u32);
        }
        libc::syscall(libc::SYS_close_range, keep + 1, u32::MAX, 0u32);
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
    Ok(())
}

/// Answers requests until the other end is gone.
fn serve(channel: &UnixDatagram) {
    let here = std::fs::File::open("/proc/thread-self/ns/net")
        .ok()
        .and_then(|f| namespace_id(f.as_fd()));
    let mut request = vec![0u8; MAX_REQUEST + 2];
    loop {
        let (n, mut fds) = match fdpass::recv(channel.as_fd(), &mut request) {
            Ok((0, fds)) if fds.is_empty() => return,
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let reply = match (decode_request(&request[..n]), fds.pop()) {
            (Some((env, script)), Some(netns)) => {
                let enter = (namespace_id(netns.as_fd()) != here).then_some(netns.as_raw_fd());
                start_child(&script, &env, enter)
            }
            _ => Err(io::Error::other("malformed request")),
        };
        let sent = match &reply {
            Ok(s) => fdpass::send(
                channel.as_fd(),
                &encode_ok(s.pid),
                &[s.stdout.as_fd(), s.stderr.as_fd()],
            ),
            Err(e) => fdpass::send(channel.as_fd(), &encode_err(e), &[]),
        };
        if sent.is_err() {
            return;
        }
    }
}

/// The identity of a namespace: the inode of its file.
fn namespace_id(fd: BorrowedFd<'_>) -> Option<u64> {
    // SAFETY: fstat writes into a local stat buffer.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        (libc::fstat(fd.as_raw_fd(), &mut st) == 0).then_some(st.st_ino)
    }
}

/// The variables and the script of a request, as [`spawn`] wrote them.
fn decode_request(request: &[u8]) -> Option<(Vec<(String, String)>, String)> {
    let mut env = Vec::new();
    let mut rest = request;
    loop {
        let end = rest.iter().position(|&b| b == 0)?;
        let (entry, after) = (&rest[..end], &rest[end + 1..]);
        rest = after;
        if entry.is_empty() {
            break;
        }
        let entry = String::from_utf8_lossy(entry);
        let (name, value) = entry.split_once('=')?;
        env.push((name.to_string(), value.to_string()));
    }
    Some((env, String::from_utf8_lossy(rest).into_owned()))
}

fn start_child(
    script: &str,
    env: &[(String, String)],
    enter: Option<RawFd>,
) -> io::Result<Spawned> {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(script)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: the hook runs in the child between fork and exec and only makes async-signal-safe
    // system calls. The child enters the caller's network namespace first (its descriptor is
    // still open then). Closing every descriptor above stderr keeps the server from inheriting
    // the namespace and the channel, so its `fds` count is its own. The signal mask is cleared
    // because this thread blocks every signal, and a server must hear the SIGTERM that stops
    // it.
    unsafe {
        command.pre_exec(move || {
            if let Some(fd) = enter {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(io::Error::other("the child's output pipes are missing"));
    };
    let pid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
    // The caller waits for it by pid; dropping the handle neither waits nor kills.
    drop(child);
    Ok(Spawned {
        pid,
        stdout: stdout.into(),
        stderr: stderr.into(),
    })
}

fn encode_ok(pid: libc::pid_t) -> Vec<u8> {
    let mut m = vec![0];
    m.extend_from_slice(&pid.to_le_bytes());
    m
}

fn encode_err(e: &io::Error) -> Vec<u8> {
    let mut m = vec![1];
    m.extend_from_slice(&e.raw_os_error().unwrap_or(0).to_le_bytes());
    m.extend_from_slice(e.to_string().as_bytes());
    m
}

fn decode_reply(reply: &[u8], mut fds: Vec<OwnedFd>) -> io::Result<Spawned> {
    match reply {
        [0, pid @ ..] if pid.len() == 4 && fds.len() == 2 => {
            let stderr = fds.pop().expect("two descriptors");
            let stdout = fds.pop().expect("two descriptors");
            Ok(Spawned {
                pid: libc::pid_t::from_le_bytes([pid[0], pid[1], pid[2], pid[3]]),
                stdout,
                stderr,
            })
        }
        [1, a, b, c, d, message @ ..] => {
            let errno = i32::from_le_bytes([*a, *b, *c, *d]);
            let message = String::from_utf8_lossy(message).into_owned();
            Err(if errno != 0 {
                io::Error::from_raw_os_error(errno)
            } else {
                io::Error::other(message)
            })
        }
        _ => Err(io::Error::other(
            "the process spawner gave a malformed reply",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn wait(pid: libc::pid_t) -> i32 {
        let mut status = 0;
        // SAFETY: waitpid writes the status into a local.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        status
    }

    #[test]
    fn a_child_runs_with_its_port_and_output() {
        let s = spawn(
            "echo port=$PORT at=$ADDR; echo oops >&2",
            &[("PORT", "4321".into()), ("ADDR", "10.0.0.1:4321".into())],
        )
        .unwrap();
        let mut out = String::new();
        std::fs::File::from(s.stdout)
            .read_to_string(&mut out)
            .unwrap();
        let mut err = String::new();
        std::fs::File::from(s.stderr)
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(
            (out.as_str(), err.as_str()),
            ("port=4321 at=10.0.0.1:4321\n", "oops\n")
        );
        assert_eq!(wait(s.pid), 0);
    }

    #[test]
    fn the_spawner_table_holds_none_of_the_callers_sockets() {
        start();
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let tid = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .find(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "spawner")
            })
            .expect("a thread named spawner")
            .file_name();
        // What each descriptor in a table refers to (`socket:[INODE]` for a socket).
        let table = |task: &str| -> Vec<std::path::PathBuf> {
            std::fs::read_dir(format!("/proc/self/task/{task}/fd"))
                .unwrap()
                .flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .collect()
        };
        let socket = std::fs::read_link(format!("/proc/self/fd/{}", listener.as_raw_fd())).unwrap();
        // The shared table has the listener; the spawner's own does not (a shared table, or one
        // unshared after the listener was opened and never cleared, would).
        assert!(table(&std::process::id().to_string()).contains(&socket));
        let own = table(&tid.to_string_lossy());
        assert!(!own.contains(&socket), "spawner holds {own:?}");
    }

    #[test]
    fn decode_rejects_what_it_does_not_know() {
        assert!(decode_reply(&[7], Vec::new()).is_err());
        assert!(decode_reply(&[0, 1, 2], Vec::new()).is_err());
        let e = decode_reply(
            &encode_err(&io::Error::from_raw_os_error(libc::ENOENT)),
            Vec::new(),
        );
        assert_eq!(e.err().map(|e| e.kind()), Some(io::ErrorKind::NotFound));
    }
}
