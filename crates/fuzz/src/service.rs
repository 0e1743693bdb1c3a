//! A Rust service fuzzed in the fuzzer's own process: its accept loop runs on a thread of its
//! own, on a current-thread tokio runtime, listening on a fresh 127.0.0.1 port for every start.
//! The fuzzer starts, restarts and watches it as it does a server process: a service whose
//! future returns (or panics) has exited, and a fresh start is a new thread, runtime and port.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use sockharness::script::TargetSource;
use sockharness::servers::{self, UnknownServer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

type Start = dyn Fn(TcpListener) -> Pin<Box<dyn Future<Output = ()>>> + Send + Sync;

/// A service to fuzz in-process: what serves a listener, and how a reproducer starts it.
#[derive(Clone)]
pub struct Service {
    name: String,
    start: Arc<Start>,
    replay: Option<TargetSource>,
}

impl Service {
    /// A service that `start` runs on a listener: it accepts and serves connections until its
    /// future is dropped. The future runs on a current-thread runtime inside a
    /// [`LocalSet`](tokio::task::LocalSet), so it may `spawn_local` its connections' tasks.
    pub fn new<F, Fut>(name: &str, start: F) -> Service
    where
        F: Fn(TcpListener) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        Service {
            name: name.to_string(),
            start: Arc::new(move |l| Box::pin(start(l))),
            replay: None,
        }
    }

    /// One of the servers bundled with sockharness (with its `zoo` feature, the bug zoo's
    /// too), which reproducers start with `target T builtin NAME`.
    pub fn builtin(name: &str) -> Result<Service, UnknownServer> {
        if !servers::is_bundled(name) {
            return Err(UnknownServer(name.to_string()));
        }
        let owned = name.to_string();
        let service = Service::new(name, move |listener| {
            let name = owned.clone();
            async move {
                // Known to be bundled: it serves until dropped.
                let _ = servers::serve(&name, listener).await;
            }
        });
        Ok(service.replay(TargetSource::Builtin(name.to_string())))
    }

    /// How a reproducer's target starts the service outside this process: a command
    /// (`TargetSource::Cmd`, `{port}` giving its port) or a bundled server. Without it, a
    /// reproducer aims at the address it ran against, and says to give the address with
    /// `sockharness run --target`.
    pub fn replay(mut self, source: TargetSource) -> Service {
        self.replay = Some(source);
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How a reproducer starts it, if it was said.
    pub fn replay_source(&self) -> Option<&TargetSource> {
        self.replay.as_ref()
    }

    /// Starts it on a fresh 127.0.0.1 port.
    pub(crate) fn spawn(&self) -> std::io::Result<Instance> {
        // Bound and listening before the thread runs: the address can be connected to at once.
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let done = Arc::new(AtomicBool::new(false));
        let start = self.start.clone();
        let flag = done.clone();
        let thread = std::thread::Builder::new()
            .name(format!("service {}", self.name))
            .spawn(move || {
                // Set however the service ends, a panic included.
                let _done = SetOnDrop(flag);
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    let Ok(listener) = TcpListener::from_std(std_listener) else {
                        return;
                    };
                    tokio::select! {
                        () = start(listener) => {}
                        _ = stopped => {}
                    }
                });
            })?;
        Ok(Instance {
            addr,
            done,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Service {
    fn eq(&self, other: &Service) -> bool {
        Arc::ptr_eq(&self.start, &other.start)
    }
}

impl Eq for Service {}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A started service.
pub(crate) struct Instance {
    pub(crate) addr: SocketAddr,
    done: Arc<AtomicBool>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Instance {
    /// Whether its future returned or panicked.
    pub(crate) fn exited(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    /// Stops it: its future and every task it spawned are dropped, its sockets closed.
    pub(crate) fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop();
    }
}
