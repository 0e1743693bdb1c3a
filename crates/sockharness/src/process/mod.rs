//! Servers under test started as processes: in a process group of their own, their output
//! kept, stopped with everything they started.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) mod spawner;
mod sweep;

pub use sweep::adopt_orphans;

/// Output kept per process: the tail is what a failure report needs.
const KEEP_OUTPUT: usize = 64 * 1024;
/// How long a server gets between SIGTERM and SIGKILL when it is stopped.
pub const TERM_GRACE: Duration = Duration::from_secs(1);

/// A server process and what it printed. Dropping it kills its whole process group.
pub struct Process {
    /// The shell's pid, which leads the process group.
    pid: libc::pid_t,
    /// The network namespace it runs in, by inode.
    netns: Option<u64>,
    output: Arc<Mutex<Vec<u8>>>,
    status: Option<ExitStatus>,
    /// True once the script stopped or killed it: its exit is then expected.
    pub ended_by_script: bool,
}

/// Process groups of the servers running now, for [`kill_all`].
static RUNNING: Mutex<Vec<libc::pid_t>> = Mutex::new(Vec::new());

/// Kills every server process this process started and has not stopped yet (SIGKILL to each
/// process group): for a program about to exit without unwinding, such as on a second Ctrl-C.
pub fn kill_all() {
    let groups = RUNNING.lock().map(|r| r.clone()).unwrap_or_default();
    for group in groups {
        // SAFETY: kill has no memory preconditions; a negative pid names the group.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
}

/// A port on 127.0.0.1 nobody listens on now, for a target to use.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// The variable that tells a process started on a scenario's host which network namespace
/// that is (by inode), so that `sockharness serve` there may listen on the host's address.
pub const HOST_NETNS_VAR: &str = "SOCKHARNESS_HOST_NETNS";

/// Whether the calling thread is in the namespace of a scenario's host that sockharness made
/// and started this process in: there, and only there, an address off loopback is the
/// host's own, on a wire that leads only to the scenario's other hosts.
pub fn on_scenario_host() -> bool {
    let given = std::env::var(HOST_NETNS_VAR)
        .ok()
        .and_then(|v| v.parse().ok());
    given.is_some() && given == sweep::current_netns()
}

impl Process {
    /// Starts `command` through `sh -c` with `{port}` and `{addr}` replaced and `PORT` and
    /// `ADDR` set for 127.0.0.1:`port`, in its own process group (so that stopping it stops
    /// what it started), output collected.
    pub fn spawn(command: &str, port: u16) -> io::Result<Process> {
        Self::spawn_at(command, cmd_addr(port), false)
    }

    /// As [`Process::spawn`], for `addr`; with `on_host`, the calling thread is in a scenario's
    /// host, and the process is told so (see [`on_scenario_host`]).
    pub fn spawn_at(command: &str, addr: SocketAddr, on_host: bool) -> io::Result<Process> {
        Self::spawn_with(command, addr, on_host, &[])
    }

    /// As [`Process::spawn_at`], with the variables of `extra` set too.
    pub fn spawn_with(
        command: &str,
        addr: SocketAddr,
        on_host: bool,
        extra: &[(&str, String)],
    ) -> io::Result<Process> {
        let port = addr.port().to_string();
        let script = command
            .replace("{port}", &port)
            .replace("{addr}", &addr.to_string());
        let mut env = vec![("PORT", port), ("ADDR", addr.to_string())];
        env.extend(extra.iter().cloned());
        if let (true, Some(netns)) = (on_host, sweep::current_netns()) {
            env.push((HOST_NETNS_VAR, netns.to_string()));
        }
        let child = spawner::spawn(&script, &env)?;
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [child.stdout, child.stderr] {
            let stream = std::fs::File::from(stream);
            let output = output.clone();
            // The readers end when the process (and anything holding its pipes) is gone.
            std::thread::spawn(move || collect(stream, &output));
        }
        if let Ok(mut running) = RUNNING.lock() {
            running.push(child.pid);
        }
        Ok(Process {
            pid: child.pid,
            netns: sweep::current_netns(),
            output,
            status: None,
            ended_by_script: false,
        })
    }

    /// The exit status, once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.wait(libc::WNOHANG);
        }
        self.status
    }

    /// waitpid with `flags`: the status once it has exited. The spawner started it from this
    /// process, so it is this process's child.
    fn wait(&self, flags: libc::c_int) -> Option<ExitStatus> {
        let mut status = 0;
        loop {
            // SAFETY: waitpid writes the status into a local.
            let r = unsafe { libc::waitpid(self.pid, &mut status, flags) };
            if r == self.pid {
                return Some(ExitStatus::from_raw(status));
            }
            if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return None;
        }
    }

    /// Signals the whole process group, even once the shell that leads it has exited: what it
    /// started may still run (the group's id stays reserved while any member lives).
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill has no memory preconditions; a negative pid names the group.
        unsafe { libc::kill(-self.pid, signal) };
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL; waits until it is gone.
    pub fn terminate(&mut self, grace: Duration) {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while self.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        // The rest of the group goes too, whether or not its leader went when asked.
        self.signal(libc::SIGKILL);
        if self.exited().is_none() {
            self.status = self.wait(0);
        }
        self.sweep();
    }

    /// Kills what left the process group: see [`sweep`](sweep::sweep).
    fn sweep(&self) {
        let Some(netns) = self.netns else { return };
        let mut running = RUNNING.lock().map(|r| r.clone()).unwrap_or_default();
        running.retain(|&group| group != self.pid);
        let private = crate::sandbox::host_netns() != Some(netns);
        sweep::sweep(netns, private, &running);
    }

    /// Open file descriptors (Linux `/proc`).
    pub fn fds(&self) -> io::Result<u64> {
        group_fds(self.id())
    }

    /// The process id (of the shell that runs the command, the leader of its group).
    pub fn id(&self) -> u32 {
        self.pid.unsigned_abs()
    }

    /// The last `lines` lines it printed.
    pub fn output_tail(&self, lines: usize) -> String {
        let out = self
            .output
            .lock()
            .map(|o| String::from_utf8_lossy(&o).into_owned())
            .unwrap_or_default();
        let all: Vec<&str> = out.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // No server outlives its scenario, whatever path the scenario ended by.
        self.signal(libc::SIGKILL);
        if self.exited().is_none() {
            self.wait(0);
        }
        if let Ok(mut running) = RUNNING.lock() {
            running.retain(|&p| p != self.pid);
        }
        self.sweep();
    }
}

fn collect(mut stream: impl Read, output: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        if let Ok(mut out) = output.lock() {
            out.extend_from_slice(&buf[..n]);
            if out.len() > KEEP_OUTPUT {
                let cut = out.len() - KEEP_OUTPUT;
                out.drain(..cut);
            }
        }
    }
}

/// Whether something listens on `port` in the calling thread's network namespace, read from
/// `/proc/thread-self/net/tcp{,6}`: no probe connection, so the server sees nothing.
pub fn listening(port: u16) -> bool {
    crate::procnet::tcp_sockets()
        .is_ok_and(|sockets| sockets.iter().any(|s| s.port == port && s.listens()))
}

/// Whether something listens on `port` where other hosts reach it (`Some(true)`: on an address
/// other than loopback, or on every address), only on loopback (`Some(false)`), or not at all.
pub fn reachable_listener(port: u16) -> Option<bool> {
    let sockets = crate::procnet::tcp_sockets().ok()?;
    let mut on = sockets.iter().filter(|s| s.port == port && s.listens());
    let first = on.next()?;
    Some(!first.loopback || on.any(|s| !s.loopback))
}

/// The address a `cmd` target listens on.
pub fn cmd_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The process group of `pid`, from `/proc/PID/stat` (the fifth field, after the command name
/// in parentheses, which may itself hold spaces and parentheses).
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Open descriptors of every process in the group `leader` leads. A command runs under
/// `sh -c`, which may or may not exec it, so the shell's few are counted with the server's.
pub fn group_fds(leader: u32) -> io::Result<u64> {
    let mut total = std::fs::read_dir(format!("/proc/{leader}/fd"))?.count() as u64;
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != leader && process_group(pid) == Some(leader) {
            if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
                total += fds.count() as u64;
            }
        }
    }
    Ok(total)
}
