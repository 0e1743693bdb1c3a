//! Targets: starting them, noticing one that exits, and `expect T running|exited`.

use super::*;

impl Exec<'_> {
    /// Fails at `step` if a target process exited without the script stopping it.
    pub(super) fn check_targets(&self, step: &Step) -> Result<(), Failure> {
        let st = self.state.borrow();
        let mut names: Vec<_> = st.targets.keys().cloned().collect();
        names.sort();
        for name in names {
            let Some(t) = st.targets.get(&name) else {
                continue;
            };
            let mut t = t.borrow_mut();
            let p = match &mut *t {
                Target::Process(p) => p,
                Target::Builtin {
                    task: Some(task), ..
                } if task.is_finished() => {
                    return Err(self.fail(
                        step,
                        Mismatch {
                            kind: FailureKind::Target {
                                code: None,
                                signal: None,
                            },
                            expected: format!("target {name} running"),
                            actual: format!(
                                "{name} exited (its server's task ended) during this statement"
                            ),
                            detail: None,
                        },
                    ));
                }
                _ => continue,
            };
            if p.ended_by_script {
                continue;
            }
            if let Some(status) = p.exited() {
                let tail = p.output_tail(20);
                return Err(self.fail(
                    step,
                    Mismatch {
                        kind: FailureKind::target_exited(status),
                        expected: format!("target {name} running"),
                        actual: format!("{name} exited ({status}) during this statement"),
                        detail: (!tail.is_empty())
                            .then(|| format!("output of {name} (last lines):\n{tail}")),
                    },
                ));
            }
        }
        Ok(())
    }

    pub(super) async fn expect_target(
        &mut self,
        step: &Step,
        name: &str,
        running: bool,
    ) -> Result<(), Failure> {
        let at = Instant::now();
        let settle = self.tolerance.slack(Duration::ZERO).min(self.timeout);
        loop {
            let state = self
                .state
                .borrow()
                .targets
                .get(name)
                .map(|t| t.borrow_mut().is_running());
            let now_running = state.unwrap_or(false);
            if now_running == running || at.elapsed() >= settle {
                let value = format!(
                    "{name} is {}",
                    if now_running { "running" } else { "exited" }
                );
                self.record(
                    step,
                    Outcome::Observed {
                        value: value.clone(),
                    },
                    at,
                    at.elapsed(),
                );
                if now_running == running {
                    // The script has seen it exit: that exit is expected from now on.
                    if let Some(t) = self.state.borrow().targets.get(name) {
                        if let Target::Process(p) = &mut *t.borrow_mut() {
                            p.ended_by_script |= !running;
                        }
                    }
                    return Ok(());
                }
                return Err(self.fail(
                    step,
                    Mismatch {
                        kind: FailureKind::Target {
                            code: None,
                            signal: None,
                        },
                        expected: format!("{name} {}", if running { "running" } else { "exited" }),
                        actual: value,
                        detail: None,
                    },
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// A listener for a server running as tasks: on `host` at its address, or on 127.0.0.1.
    pub(super) fn task_listener(&self, host: Option<usize>) -> io::Result<tokio::net::TcpListener> {
        let addr = self.server_addr(host);
        let listener = self.on_host(host, || std::net::TcpListener::bind(addr))?;
        listener.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(listener)
    }

    /// Starts a target (on host `on`, if any); the part that may block waits for it to listen.
    pub(super) fn start_target(
        &mut self,
        name: &str,
        source: &TargetSource,
        on: Option<&str>,
    ) -> Result<LocalFuture, Actual> {
        let host = self.target_host(on).map_err(Actual::Failed)?;
        let shared = self.state.clone();
        let register = |addr: SocketAddr, t: Target| {
            let mut st = shared.borrow_mut();
            st.addr_of.insert(name.to_string(), addr);
            st.name_of.insert(addr, name.to_string());
            let t = Rc::new(RefCell::new(t));
            st.targets.insert(name.to_string(), t.clone());
            t
        };
        if let Some(service) = self.services.get(name).cloned() {
            let listener = self.task_listener(host).map_err(Actual::Failed)?;
            let addr = listener.local_addr().map_err(Actual::Failed)?;
            let task = tokio::task::spawn_local(async move {
                let mut connections = tokio::task::JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    connections.spawn_local(service(stream));
                    while connections.try_join_next().is_some() {}
                }
            });
            register(
                addr,
                Target::Builtin {
                    task: Some(task),
                    port: addr.port(),
                    host,
                },
            );
            return Ok(Box::pin(async {
                Actual::Done(Some("in-process service".into()))
            }));
        }
        match source {
            TargetSource::At(addr) => {
                if let Some(on) = on {
                    return Err(Actual::Broken(format!(
                        "{name} is at {addr}, on this machine's loopback, which host {on} cannot reach"
                    )));
                }
                register(*addr, Target::At);
                Ok(Box::pin(async { Actual::Done(None) }))
            }
            TargetSource::Builtin(server) => {
                if !crate::servers::is_bundled(server) {
                    let e = crate::servers::UnknownServer(server.clone());
                    return Err(Actual::Broken(e.to_string()));
                }
                let listener = self.task_listener(host).map_err(Actual::Failed)?;
                let addr = listener.local_addr().map_err(Actual::Failed)?;
                let server = server.clone();
                let task = tokio::task::spawn_local(async move {
                    // Checked above: the name is bundled, so this never fails.
                    let _ = crate::servers::serve(&server, listener).await;
                });
                register(
                    addr,
                    Target::Builtin {
                        task: Some(task),
                        port: addr.port(),
                        host,
                    },
                );
                Ok(Box::pin(async { Actual::Done(None) }))
            }
            TargetSource::Cmd { command, ready } => {
                let ip = self.server_addr(host).ip();
                let process = self
                    .on_host(host, || {
                        let addr = SocketAddr::new(ip, target::free_port_on(ip)?);
                        Process::spawn_at(command, addr, host.is_some()).map(|p| (addr, p))
                    })
                    .map_err(Actual::Failed)?;
                let (addr, process) = process;
                let t = register(addr, Target::Process(process));
                let ready = ready.unwrap_or(target::DEFAULT_READY);
                let name = name.to_string();
                let network = self.network.clone();
                Ok(Box::pin(async move {
                    let start = Instant::now();
                    loop {
                        let listens = on_host(network.as_deref(), host, || {
                            Ok(target::reachable_listener(addr.port()))
                        });
                        match listens.ok().flatten() {
                            // Without hosts, loopback is where every client is.
                            Some(reachable) if reachable || host.is_none() => {
                                return Actual::Done(Some("listening".into()))
                            }
                            // On a host, a server on loopback alone is out of every other
                            // host's reach: say so, rather than let each connect time out.
                            Some(_) if start.elapsed() >= Duration::from_millis(200) => {
                                return Actual::Broken(format!(
                                    "{name} listens only on loopback, where no other host reaches it: \
                                     listen on {{addr}} ({addr}) or 0.0.0.0:{{port}}"
                                ));
                            }
                            _ => {}
                        }
                        if let Target::Process(p) = &mut *t.borrow_mut() {
                            if let Some(status) = p.exited() {
                                p.ended_by_script = true;
                                return Actual::Exited(
                                    format!(
                                        "{name} exited ({status}) before it listened on its port"
                                    ),
                                    status,
                                );
                            }
                        }
                        if start.elapsed() >= ready {
                            return Actual::Broken(format!(
                                "{name} did not listen on its port within {}",
                                Dur(ready)
                            ));
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }))
            }
        }
    }
}
