//! The statements that act on sockets: starting each as a future, and the reads behind
//! `recv`.

use super::*;

impl Exec<'_> {
    /// Runs a statement's synchronous part now and returns the part that may block.
    pub(super) fn start(&mut self, statement: &Statement) -> Result<LocalFuture, Actual> {
        let shared = self.state.clone();
        let failed = |e: io::Error| Actual::Failed(e);
        let done = |r: io::Result<()>| -> Result<LocalFuture, Actual> {
            match r {
                Ok(()) => Ok(Box::pin(async { Actual::Done(None) })),
                Err(e) => Err(Actual::Failed(e)),
            }
        };
        match statement {
            Statement::Listen {
                name,
                on,
                backlog,
                opts,
            } => {
                // On a host: at the host's address, in its namespace.
                let host = match on {
                    Endpoint::Name(n) => self.host(n),
                    Endpoint::Addr(_) => None,
                };
                let addr = match host {
                    Some(h) => {
                        let ip = self.network.as_ref().map(|n| n.borrow().addr(h));
                        SocketAddr::from((ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED), 0))
                    }
                    None => self.endpoint(on).map_err(failed)?,
                };
                let s = self
                    .on_host(host, || sock::listen(addr, *backlog, opts))
                    .map_err(failed)?;
                shared.borrow_mut().register(name, Rc::new(s));
                done(Ok(()))
            }
            Statement::Connect {
                name,
                from,
                to,
                opts,
            } => {
                let addr = self.endpoint(to).map_err(failed)?;
                let host = from.as_deref().and_then(|h| self.host(h));
                let (s, early) = self
                    .on_host(host, || sock::start_connect(addr, opts))
                    .map_err(failed)?;
                let s = Rc::new(s);
                shared.borrow_mut().register(name, s.clone());
                if let Some(e) = early {
                    return Err(Actual::Failed(e));
                }
                let name = name.clone();
                Ok(Box::pin(async move {
                    match sock::finish_connect(&s).await {
                        Ok(()) => {
                            // Registered again: the local address is final only once connected.
                            shared.borrow_mut().register(&name, s);
                            Actual::Done(None)
                        }
                        Err(e) => Actual::Failed(e),
                    }
                }))
            }
            Statement::Accept { listener, name } => {
                let l = shared.borrow().sock(listener).map_err(failed)?;
                let name = name.clone();
                Ok(Box::pin(async move {
                    match sock::accept(&l).await {
                        Ok(s) => {
                            let mut st = shared.borrow_mut();
                            let detail = st.peer_name(&s).map(|p| format!("peer {p}"));
                            st.register(&name, Rc::new(s));
                            Actual::Done(detail)
                        }
                        Err(e) => Actual::Failed(e),
                    }
                }))
            }
            Statement::Send {
                socket,
                data,
                mode,
                call,
            } => {
                let s = shared.borrow().sock(socket).map_err(failed)?;
                let (socket, call, data) = (socket.clone(), *call, data.clone());
                // The offset in the stream is taken at the first byte written, which may come
                // after other background sends on the same socket.
                let offset = |shared: &Shared, socket: &str| {
                    shared
                        .borrow()
                        .sent
                        .get(socket)
                        .map_or(0, |v| v.len() as u64)
                };
                match mode {
                    SendMode::Nowait => {
                        let bytes = data.range(0, ONE_CALL_MAX);
                        let start = offset(&shared, &socket);
                        match sock::write_once(&s, call, &bytes) {
                            Ok(n) => {
                                shared
                                    .borrow_mut()
                                    .sent
                                    .entry(socket)
                                    .or_default()
                                    .extend_from_slice(&bytes[..n]);
                                Err(Actual::Sent {
                                    count: n as u64,
                                    start,
                                })
                            }
                            Err(e) => Err(Actual::Failed(e)),
                        }
                    }
                    SendMode::Blocking { chunk, gap } => {
                        let (chunk, gap) = (*chunk, *gap);
                        Ok(Box::pin(async move {
                            if chunk.is_some() {
                                // Each piece must leave as its own segment, not wait for Nagle.
                                if let Err(e) = s.socket().set_tcp_nodelay(true) {
                                    return Actual::Failed(e);
                                }
                            }
                            // Without chunk=, pieces only bound memory: the data is produced
                            // as it is written, so the deadline can stop a large send.
                            let piece = chunk.unwrap_or(SEND_PIECE).max(1);
                            let mut start = None;
                            let mut written = 0u64;
                            let mut at = 0;
                            while at < data.len() {
                                if at > 0 && chunk.is_some() {
                                    if let Some(g) = gap {
                                        tokio::time::sleep(g).await;
                                    }
                                }
                                let bytes = data.range(at, at.saturating_add(piece));
                                at += bytes.len() as u64;
                                let r = sock::write_all(&s, call, &bytes, |done| {
                                    start.get_or_insert_with(|| offset(&shared, &socket));
                                    written += done.len() as u64;
                                    shared
                                        .borrow_mut()
                                        .sent
                                        .entry(socket.clone())
                                        .or_default()
                                        .extend_from_slice(done);
                                })
                                .await;
                                if let Err(e) = r {
                                    return Actual::Failed(e);
                                }
                            }
                            let start = start.unwrap_or_else(|| offset(&shared, &socket));
                            Actual::Sent {
                                count: written,
                                start,
                            }
                        }))
                    }
                }
            }
            Statement::Recv { socket, mode, call } => {
                let s = shared.borrow().sock(socket).map_err(failed)?;
                let (socket, mode, call) = (socket.clone(), mode.clone(), *call);
                if let RecvMode::Once { size, nowait: true } = mode {
                    let mut buf = vec![0; one_call_buffer(size)];
                    let r = sock::read_once(&s, call, &mut buf, false);
                    return Err(read_result(
                        &shared,
                        &socket,
                        &mode,
                        r.map(|n| {
                            buf.truncate(n);
                            (buf, n == 0)
                        }),
                    ));
                }
                Ok(Box::pin(async move {
                    let r = recv(&s, call, &mode).await;
                    read_result(&shared, &socket, &mode, r)
                }))
            }
            Statement::Shutdown { socket, how } => {
                let s = shared.borrow().sock(socket).map_err(failed)?;
                done(sock::shutdown(&s, *how))
            }
            Statement::Close { socket } => {
                let mut st = shared.borrow_mut();
                st.sock(socket).map_err(failed)?;
                st.remove(socket);
                st.closed.insert(socket.clone());
                done(Ok(()))
            }
            Statement::Abort { socket } => {
                let mut st = shared.borrow_mut();
                let s = st.sock(socket).map_err(failed)?;
                s.socket()
                    .set_linger(Some(Duration::ZERO))
                    .map_err(failed)?;
                drop(s);
                st.remove(socket);
                st.closed.insert(socket.clone());
                done(Ok(()))
            }
            Statement::Set { socket, opts } => {
                let s = shared.borrow().sock(socket).map_err(failed)?;
                done(sock::apply_opts(s.socket(), opts))
            }
            Statement::Sleep { duration } => {
                let d = *duration;
                Ok(Box::pin(async move {
                    tokio::time::sleep(d).await;
                    Actual::Done(None)
                }))
            }
            Statement::Target { name, source, on } => {
                self.start_target(name, source, on.as_deref())
            }
            Statement::Proxy {
                name,
                to,
                faults,
                on,
            } => {
                let upstream = self.endpoint(&Endpoint::Name(to.clone())).map_err(failed)?;
                let host = self.target_host(on.as_deref()).map_err(failed)?;
                let listener = self.task_listener(host).map_err(failed)?;
                let addr = listener.local_addr().map_err(failed)?;
                let faults: crate::proxy::Faults = Rc::new(RefCell::new(faults.clone()));
                // Its connections to the server start from its host too, each named after the
                // proxy and its number (`p/1`) in the traces.
                let network = self.network.clone();
                let (proxy, names) = (name.clone(), self.state.clone());
                let from = self.server_addr(host).ip();
                let socket: crate::proxy::Connector = Rc::new(move |n, upstream| {
                    let socket = on_host(network.as_deref(), host, || {
                        let socket = crate::proxy::socket_for(upstream)?;
                        let ip = match (host, upstream) {
                            (None, SocketAddr::V6(_)) => std::net::Ipv6Addr::LOCALHOST.into(),
                            _ => from,
                        };
                        socket.bind(SocketAddr::new(ip, 0))?;
                        Ok(socket)
                    })?;
                    let local = socket.local_addr()?;
                    names
                        .borrow_mut()
                        .name_of
                        .insert(local, format!("{proxy}/{n}"));
                    Ok(socket)
                });
                let task = tokio::task::spawn_local(crate::proxy::serve_with(
                    listener,
                    upstream,
                    faults.clone(),
                    None,
                    socket,
                ));
                let mut st = shared.borrow_mut();
                st.addr_of.insert(name.clone(), addr);
                st.name_of.insert(addr, name.clone());
                st.targets.insert(
                    name.clone(),
                    Rc::new(RefCell::new(Target::Builtin {
                        task: Some(task),
                        port: addr.port(),
                        host,
                    })),
                );
                st.proxies.insert(name.clone(), faults);
                done(Ok(()))
            }
            Statement::SetFaults { proxy, faults } => {
                let st = shared.borrow();
                let Some(current) = st.proxies.get(proxy) else {
                    return Err(Actual::Broken(format!("`{proxy}` is not a proxy")));
                };
                *current.borrow_mut() = faults.clone();
                done(Ok(()))
            }
            Statement::Stop { target } | Statement::Kill { target } => {
                let signal = if matches!(statement, Statement::Stop { .. }) {
                    libc::SIGTERM
                } else {
                    libc::SIGKILL
                };
                let t = shared.borrow().targets.get(target).cloned();
                let Some(t) = t else {
                    return Err(Actual::Failed(io::Error::from_raw_os_error(libc::EBADF)));
                };
                let process = match &mut *t.borrow_mut() {
                    Target::Process(p) => {
                        p.ended_by_script = true;
                        p.signal(signal);
                        true
                    }
                    Target::Builtin { task, .. } => {
                        if let Some(task) = task.take() {
                            task.abort();
                        }
                        false
                    }
                    Target::At => {
                        return Err(Actual::Broken(format!(
                            "{target} was not started by this scenario, so it cannot be stopped"
                        )))
                    }
                };
                if !process {
                    return done(Ok(()));
                }
                Ok(Box::pin(async move {
                    while t.borrow_mut().is_running() {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Actual::Done(None)
                }))
            }
            Statement::Wait { .. }
            | Statement::ExpectPending { .. }
            | Statement::ExpectProperty { .. }
            | Statement::ExpectWire { .. }
            | Statement::Wire(_)
            | Statement::ExpectTarget { .. } => {
                unreachable!("handled by Exec::step before start() is called")
            }
        }
    }
}

/// The buffer for one read call. A socket never holds more than its receive buffer, so past
/// [`ONE_CALL_MAX`] a larger buffer would change nothing but the memory used.
pub(super) fn one_call_buffer(size: u64) -> usize {
    usize::try_from(size.min(ONE_CALL_MAX)).unwrap_or(usize::MAX)
}

/// Reads per `mode`; the flag says whether the stream ended.
pub(super) async fn recv(
    s: &Sock,
    call: crate::script::IoCall,
    mode: &RecvMode,
) -> io::Result<(Vec<u8>, bool)> {
    match mode {
        RecvMode::Once { size, .. } => {
            let mut buf = vec![0; one_call_buffer(*size)];
            let n = sock::read_blocking(s, call, &mut buf, false).await?;
            buf.truncate(n);
            Ok((buf, n == 0))
        }
        RecvMode::Exact(n) => {
            let want = usize::try_from(*n).unwrap_or(usize::MAX);
            let mut out = Vec::with_capacity(want.min(64 << 20));
            let mut buf = vec![0; READ_CHUNK.min(want)];
            while out.len() < want {
                let k = (want - out.len()).min(buf.len());
                let got = sock::read_blocking(s, call, &mut buf[..k], false).await?;
                if got == 0 {
                    return Ok((out, true));
                }
                out.extend_from_slice(&buf[..got]);
            }
            Ok((out, false))
        }
        RecvMode::Until(delim) => read_until(s, call, delim).await,
        RecvMode::All => {
            let mut out = Vec::new();
            let mut buf = vec![0; READ_CHUNK];
            loop {
                let got = sock::read_blocking(s, call, &mut buf, false).await?;
                if got == 0 {
                    return Ok((out, true));
                }
                keep(&mut out, &buf[..got], crate::script::MAX_DATA)?;
            }
        }
    }
}

/// Adds what `recv all` read to what it keeps, which is held to `limit` (the limit every buffer
/// and literal has): it is kept to be compared.
fn keep(out: &mut Vec<u8>, got: &[u8], limit: u64) -> io::Result<()> {
    if (out.len() + got.len()) as u64 > limit {
        return Err(io::Error::other(format!(
            "more than {limit} bytes came before the end of the stream, more than `recv all` keeps (read a long stream in parts with `recv S exact N`)"
        )));
    }
    out.extend_from_slice(got);
    Ok(())
}

/// Reads up to and including `delim`, never past it: it peeks first and then takes only what
/// belongs to this statement, so the next statement finds the rest.
pub(super) async fn read_until(
    s: &Sock,
    call: crate::script::IoCall,
    delim: &Data,
) -> io::Result<(Vec<u8>, bool)> {
    let delim = delim.bytes();
    let mut out: Vec<u8> = Vec::new();
    let mut buf = vec![0; READ_CHUNK];
    loop {
        let peeked = sock::read_blocking(s, call, &mut buf, true).await?;
        if peeked == 0 {
            return Ok((out, true));
        }
        let from = out.len().saturating_sub(delim.len() - 1);
        let mut joined = out[from..].to_vec();
        joined.extend_from_slice(&buf[..peeked]);
        let take = match joined
            .windows(delim.len())
            .position(|w| w == delim.as_slice())
        {
            Some(i) => from + i + delim.len() - out.len(),
            None => peeked,
        };
        let got = sock::read_once(s, call, &mut buf[..take], false)?;
        out.extend_from_slice(&buf[..got]);
        if out.ends_with(&delim) && got == take {
            return Ok((out, false));
        }
    }
}

/// The result of a read. `all` ends at EOF by design; `exact` and `until` ended by EOF were cut
/// short, and their result is `EOF` (with what came before it).
pub(super) fn read_result(
    shared: &Shared,
    socket: &str,
    mode: &RecvMode,
    r: io::Result<(Vec<u8>, bool)>,
) -> Actual {
    match r {
        Ok((data, eof)) => {
            let mut st = shared.borrow_mut();
            let offset = st.received.entry(socket.to_string()).or_default();
            let start = *offset;
            *offset += data.len() as u64;
            match mode {
                _ if eof && data.is_empty() => Actual::Eof { data, start },
                RecvMode::All => Actual::Read { data, start, eof },
                _ if eof => Actual::Eof { data, start },
                _ => Actual::Read {
                    data,
                    start,
                    eof: false,
                },
            }
        }
        Err(e) => Actual::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn recv_all_keeps_up_to_its_limit_and_fails_past_it() {
        let mut out = Vec::new();
        super::keep(&mut out, b"12345", 8).unwrap();
        super::keep(&mut out, b"678", 8).unwrap();
        let e = super::keep(&mut out, b"9", 8).unwrap_err();
        assert_eq!(out, b"12345678");
        assert!(e.to_string().contains("more than 8 bytes"), "{e}");
    }
}
