//! The server under test during a fuzz run: started once, reused across inputs, restarted only
//! after it dies.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sockharness::process::{self as target, Process};
use sockharness::script::TargetSource;

use super::coverage::Map;
use super::service::{Instance, Service};
use super::FuzzError;

/// Which server to fuzz.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Server {
    /// A command the fuzzer starts, `{port}` (and `$PORT`) giving it its port.
    Cmd(String),
    /// A server already running on the loopback.
    Addr(SocketAddr),
    /// A Rust service run in this process, on a thread of its own.
    Service(Service),
}

impl Server {
    /// The target statement's source that starts this server afresh in a reproducer.
    pub fn source(&self) -> TargetSource {
        match self {
            Server::Cmd(command) => TargetSource::Cmd {
                command: command.clone(),
                ready: None,
            },
            Server::Addr(a) => TargetSource::At(*a),
            Server::Service(s) => {
                s.replay_source()
                    .cloned()
                    .unwrap_or(TargetSource::At(SocketAddr::from((
                        [127, 0, 0, 1],
                        DEFAULT_PORT,
                    ))))
            }
        }
    }
}

/// The port a reproducer of an in-process service without a way to start it aims at: the
/// user points it at theirs with `sockharness run --target`.
const DEFAULT_PORT: u16 = 8080;

/// Kills the server under test at once (SIGKILL to its process group): for a process about to
/// exit without unwinding, such as on a second Ctrl-C.
pub fn kill_now() {
    sockharness::process::kill_all();
}

/// How long a started server may take to listen.
const READY: Duration = Duration::from_secs(10);

/// The running server.
pub(super) struct Running {
    server: Server,
    process: Option<Process>,
    /// An in-process service's thread.
    service: Option<Instance>,
    addr: SocketAddr,
    /// Times it was started again after dying (not the deliberate fresh starts).
    pub(super) restarts: u32,
    /// Starts (each with the stop before it) and the time they took, for saying why a run
    /// got little done.
    starts: u32,
    starting: Duration,
    /// The coverage map it writes its edges into, for a server built with AFL++.
    map: Option<Arc<Map>>,
    /// Whether nobody was given its address since it started: it is as fresh as a restart
    /// would make it.
    untouched: std::cell::Cell<bool>,
}

impl Running {
    /// Starts it, writing its coverage into `map` where there is one.
    pub(super) fn start(server: &Server, map: Option<Arc<Map>>) -> Result<Running, FuzzError> {
        let mut r = Running {
            server: server.clone(),
            process: None,
            service: None,
            addr: match server {
                Server::Addr(a) => *a,
                Server::Cmd(_) | Server::Service(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
            },
            restarts: 0,
            starts: 0,
            starting: Duration::ZERO,
            map,
            untouched: std::cell::Cell::new(false),
        };
        r.launch(true)?;
        Ok(r)
    }

    /// How long a start (with the stop before it) takes, on average so far.
    pub(super) fn mean_start(&self) -> Duration {
        self.starting / self.starts.max(1)
    }

    /// Starts the server; `first`: the run's first start, which an interrupt may cut short (a
    /// later one, to check a finding on a fresh server, must finish for the finding to be kept).
    fn launch(&mut self, first: bool) -> Result<(), FuzzError> {
        let began = Instant::now();
        let r = self.launch_now(first);
        self.starts += 1;
        self.starting += began.elapsed();
        r
    }

    fn launch_now(&mut self, first: bool) -> Result<(), FuzzError> {
        let command = match &self.server {
            Server::Cmd(command) => command,
            Server::Addr(_) => {
                return TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
                    .map(drop)
                    .map_err(|e| {
                        FuzzError::Server(format!("nothing answers at {}: {e}", self.addr))
                    })
            }
            Server::Service(s) => {
                let instance = s.spawn().map_err(|e| {
                    FuzzError::Server(format!("cannot start the service {}: {e}", s.name()))
                })?;
                self.addr = instance.addr;
                self.service = Some(instance);
                self.untouched.set(true);
                return Ok(());
            }
        };
        let port = target::free_port().map_err(|e| FuzzError::Server(e.to_string()))?;
        // AFL++'s runtime attaches the map it finds in __AFL_SHM_ID at start.
        let env: Vec<(&str, String)> = self.map.as_ref().map_or_else(Vec::new, |m| {
            vec![
                ("__AFL_SHM_ID", m.id().to_string()),
                ("AFL_MAP_SIZE", m.len().to_string()),
            ]
        });
        let mut p = Process::spawn_with(command, target::cmd_addr(port), false, &env)
            .map_err(|e| FuzzError::Server(format!("cannot start `{command}`: {e}")))?;
        let started = Instant::now();
        while !target::listening(port) {
            if first && super::interrupted() {
                p.terminate(target::TERM_GRACE);
                return Err(FuzzError::Interrupted);
            }
            if let Some(status) = p.exited() {
                return Err(FuzzError::Server(format!(
                    "`{command}` exited ({status}) before it listened on port {port}{}",
                    tail(&p)
                )));
            }
            if started.elapsed() > READY {
                p.terminate(target::TERM_GRACE);
                return Err(FuzzError::Server(format!(
                    "`{command}` did not listen on port {port} within {}s (does it take its port from {{port}} or $PORT?){}",
                    READY.as_secs(),
                    tail(&p)
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.addr = target::cmd_addr(port);
        self.process = Some(p);
        self.untouched.set(true);
        Ok(())
    }

    /// Where it listens now. Whoever asks may connect: the server is no longer untouched.
    pub(super) fn addr(&self) -> SocketAddr {
        self.untouched.set(false);
        self.addr
    }

    /// Whether it started and nobody has been given its address since.
    pub(super) fn untouched(&self) -> bool {
        self.untouched.get()
    }

    /// Its coverage map, if it has one.
    pub(super) fn map(&self) -> Option<&Arc<Map>> {
        self.map.as_ref()
    }

    /// How it exited, if it did (`None` while it runs, and always for a server at an address,
    /// whose process is not ours to watch).
    pub(super) fn exited(&mut self) -> Option<String> {
        if let Some(s) = &self.service {
            return s
                .exited()
                .then(|| "the service's future returned or panicked".to_string());
        }
        let p = self.process.as_mut()?;
        p.exited().map(|s| format!("{s}{}", tail(p)))
    }

    /// Its process (group leader), where it is a process of ours.
    pub(super) fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::id)
    }

    /// Whether it still answers: its process lives, or (at an address) it accepts a connection.
    pub(super) fn alive(&mut self) -> bool {
        match &self.server {
            Server::Cmd(_) | Server::Service(_) => self.exited().is_none(),
            Server::Addr(a) => TcpStream::connect_timeout(a, Duration::from_secs(1)).is_ok(),
        }
    }

    /// Starts it again (`died`: because it had died); a server at an address cannot be, and is
    /// given a few seconds to answer again (a supervisor may restart it).
    pub(super) fn restart(&mut self, died: bool) -> Result<(), FuzzError> {
        if let Server::Addr(a) = self.server {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            return Err(FuzzError::Gone(format!(
                "the server at {a} stopped answering, and a server given by --addr cannot be restarted to find the input that broke it: run it with --cmd for a reproducer"
            )));
        }
        let began = Instant::now();
        self.stop();
        self.restarts += u32::from(died);
        self.starting += began.elapsed();
        // A server that died and cannot start again ends the run with what broke it.
        self.launch(false).map_err(|e| match (died, e) {
            (true, FuzzError::Server(why)) => FuzzError::Gone(format!(
                "the server died and could not be started again: {why}"
            )),
            (_, e) => e,
        })
    }

    /// Stops it for good.
    pub(super) fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.terminate(target::TERM_GRACE);
        }
        if let Some(mut s) = self.service.take() {
            s.stop();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tail(p: &Process) -> String {
    let t = p.output_tail(10);
    if t.is_empty() {
        String::new()
    } else {
        format!("; its last output:\n{t}")
    }
}
