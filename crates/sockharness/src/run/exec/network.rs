//! Hosts and links: `host`, `link` and `expect link`, and where a host's sockets are made.

use super::*;
use crate::network::End;
use crate::script::WireStatement;

impl Exec<'_> {
    pub(super) async fn wire_statement(
        &mut self,
        step: &Step,
        w: &WireStatement,
    ) -> Result<(), Failure> {
        let at = Instant::now();
        let Some(network) = self.network.clone() else {
            // The run makes the hosts before the first statement wherever it runs any.
            return Err(self.fail(step, no_network()));
        };
        match w {
            WireStatement::Host { name } => {
                let net = network.borrow();
                let addr = net.host(name).map(|i| net.addr(i));
                let detail = addr.map(|a| format!("address {a}"));
                self.conclude(step, &Actual::Done(detail), at, at.elapsed())
            }
            WireStatement::Link {
                from,
                to,
                both,
                impairments,
            } => {
                let actual = match self.hosts_of(from, to) {
                    Some((a, b)) => match network.borrow_mut().link(a, b, *both, impairments) {
                        Ok(()) => Actual::Done(None),
                        Err(e) => Actual::Failed(e),
                    },
                    None => Actual::Internal(format!("no host `{from}` or `{to}`")),
                };
                self.conclude(step, &actual, at, at.elapsed())
            }
            WireStatement::Drop {
                from,
                to,
                flags,
                count,
            } => {
                let actual = match self.ends(from, to) {
                    Ok((a, b)) => {
                        network.borrow_mut().rule(a, b, flags, Some(*count));
                        Actual::Done(None)
                    }
                    Err(e) => Actual::Failed(e),
                };
                self.conclude(step, &actual, at, at.elapsed())
            }
            WireStatement::Hold { from, to, flags } => {
                let actual = match self.ends(from, to) {
                    Ok((a, b)) => {
                        network.borrow_mut().rule(a, b, flags, None);
                        Actual::Done(None)
                    }
                    Err(e) => Actual::Failed(e),
                };
                self.conclude(step, &actual, at, at.elapsed())
            }
            WireStatement::Release { from, to } => {
                let actual = match self.ends(from, to) {
                    Ok((a, b)) => {
                        network.borrow_mut().release(a, b);
                        Actual::Done(None)
                    }
                    Err(e) => Actual::Failed(e),
                };
                self.conclude(step, &actual, at, at.elapsed())
            }
            WireStatement::ExpectLink {
                from,
                to,
                counter,
                op,
                value,
            } => {
                let Some((a, b)) = self.hosts_of(from, to) else {
                    return Err(self.fail(step, no_network()));
                };
                // The forwarder counts as frames come; those already on their way get until
                // the slack, as wire expectations do.
                let settle = self.tolerance.slack(Duration::ZERO).min(self.timeout);
                loop {
                    let counts = network.borrow().counts(a, b);
                    let got = counts.map_or(0, |c| c.get(*counter));
                    let holds = op.holds(&got, value);
                    if holds || at.elapsed() >= settle {
                        let what = counter.name();
                        let observed = match counts {
                            Some(_) => format!("{got} {what} {from} -> {to}"),
                            None => format!("no link {from} -> {to}, so 0 {what}"),
                        };
                        let shown = super::capture::held_as(holds, *op, *value, &observed, || {
                            format!("{what} {from} -> {to}")
                        });
                        self.record(step, Outcome::Observed { value: shown }, at, at.elapsed());
                        if holds {
                            return Ok(());
                        }
                        return Err(self.fail(
                            step,
                            Mismatch {
                                kind: FailureKind::Wire,
                                expected: format!("{what} {from} -> {to} {} {value}", op.symbol()),
                                actual: observed,
                                detail: None,
                            },
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }

    /// What `drop`, `hold` and `release` name: a host for its address, a socket or listener
    /// for its own (which it must have by then).
    fn ends(&self, from: &str, to: &str) -> io::Result<(End, End)> {
        let end = |name: &str| -> io::Result<End> {
            if let (Some(h), Some(net)) = (self.host(name), &self.network) {
                return Ok(End::Host(net.borrow().addr(h)));
            }
            match self.state.borrow().addr_of.get(name) {
                Some(SocketAddr::V4(a)) => Ok(End::Socket(*a)),
                _ => Err(io::Error::from_raw_os_error(libc::EBADF)),
            }
        };
        Ok((end(from)?, end(to)?))
    }

    fn hosts_of(&self, from: &str, to: &str) -> Option<(usize, usize)> {
        let net = self.network.as_ref()?.borrow();
        Some((net.host(from)?, net.host(to)?))
    }

    /// The host `name`, if it is one.
    pub(super) fn host(&self, name: &str) -> Option<usize> {
        self.network.as_ref()?.borrow().host(name)
    }

    /// Runs `f` in host `host`'s namespace, or where the thread is for `None`.
    pub(super) fn on_host<T>(
        &self,
        host: Option<usize>,
        f: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        on_host(self.network.as_deref(), host, f)
    }

    /// Where a server on `host` listens: the host's address, or 127.0.0.1 for `None`; port 0.
    pub(super) fn server_addr(&self, host: Option<usize>) -> SocketAddr {
        let ip = match (host, &self.network) {
            (Some(h), Some(net)) => net.borrow().addr(h),
            _ => std::net::Ipv4Addr::LOCALHOST,
        };
        SocketAddr::from((ip, 0))
    }

    /// The host a target or proxy runs on: `Ok(None)` without one, an error where it names a
    /// host the run did not make.
    pub(super) fn target_host(&self, on: Option<&str>) -> io::Result<Option<usize>> {
        match on {
            None => Ok(None),
            Some(name) => self.host(name).map(Some).ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no host `{name}`"))
            }),
        }
    }
}

/// Runs `f` in host `host`'s namespace of `network`, or where the thread is for `None`.
pub(crate) fn on_host<T>(
    network: Option<&RefCell<crate::network::Network>>,
    host: Option<usize>,
    f: impl FnOnce() -> io::Result<T>,
) -> io::Result<T> {
    match (host, network) {
        (Some(h), Some(net)) => net.borrow().within(h, f),
        _ => f(),
    }
}

fn no_network() -> Mismatch {
    Mismatch {
        kind: FailureKind::Setup,
        expected: "the scenario's hosts".into(),
        actual: "they were not made".into(),
        detail: None,
    }
}

/// Waits until the wire carries nothing: no frame sent by a host and not yet read by the
/// forwarder, none waiting for its time, and none forwarded for [`CLOSE_QUIET`] (so the
/// receiving kernel has had its moment to answer), at most [`CLOSE_SETTLE_MAX`].
pub(super) async fn quiet(net: &RefCell<crate::network::Network>) {
    let began = Instant::now();
    let deadline = began + CLOSE_SETTLE_MAX;
    loop {
        tokio::task::yield_now().await;
        let in_flight = net.borrow_mut().in_flight();
        let (waiting, last) = net.borrow().activity();
        // The close's own frames reach the forwarder a moment after it: quiet counts from then.
        let idle =
            began.elapsed() >= CLOSE_QUIET && last.is_none_or(|t| t.elapsed() >= CLOSE_QUIET);
        if (in_flight == 0 && waiting == 0 && idle) || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(CLOSE_POLL);
    }
}
