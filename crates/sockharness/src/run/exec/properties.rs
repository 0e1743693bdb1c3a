//! Socket and target properties: `expect S.peer == T`, `S.state`, `S.queued`, `T.fds`, ...

use super::*;

impl Exec<'_> {
    pub(super) async fn expect_property(
        &mut self,
        step: &Step,
        subject: &str,
        property: Property,
        op: CompareOp,
        value: &Value,
    ) -> Result<(), Failure> {
        let at = Instant::now();
        // The kernel finishes some work (the last ACK of a handshake, a FIN) just after the call
        // that caused it returns, so a property gets until the tolerance to settle.
        let settle = self.tolerance.slack(Duration::ZERO).min(self.timeout);
        loop {
            let evaluated = {
                let st = self.state.borrow();
                let left = property_value(&st, self.network.as_deref(), subject, property);
                let right = match value {
                    Value::Number(n) => Ok(Prop::Num(*n)),
                    Value::Name(n) if property == Property::State => Ok(Prop::Text(n.clone())),
                    Value::Name(n) => st
                        .addr_of
                        .get(n)
                        .map(|a| Prop::Addr(*a))
                        .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF)),
                    Value::Addr(a) => Ok(Prop::Addr(*a)),
                    Value::Property(n, p) => property_value(&st, self.network.as_deref(), n, *p),
                };
                let peer = match property {
                    Property::Peer => st.sock(subject).ok().and_then(|s| st.peer_name(&s)),
                    _ => None,
                };
                (left, right, st.name_of.clone(), peer)
            };
            let (left, right, names, peer) = evaluated;
            let holds = match (&left, &right) {
                (Ok(l), Ok(r)) => l.compare(op, r),
                _ => false,
            };
            if holds || at.elapsed() >= settle {
                let shown = |v: &io::Result<Prop>| match v {
                    Ok(p) => p.show(&names),
                    Err(e) => errno_of(e),
                };
                let outcome = match &left {
                    // Descriptor numbers depend on what else the process has open.
                    Ok(_) if property == Property::Fd => Outcome::Observed {
                        value: format!("{subject}.fd is fd({subject})"),
                    },
                    Ok(_) => Outcome::Observed {
                        value: format!(
                            "{subject}.{} is {}",
                            property.name(),
                            peer.clone().unwrap_or_else(|| shown(&left))
                        ),
                    },
                    Err(e) => Outcome::Error { errno: errno_of(e) },
                };
                self.record(step, outcome, at, at.elapsed());
                if holds {
                    return Ok(());
                }
                let rhs = match value {
                    Value::Property(..) | Value::Name(_) if property != Property::State => {
                        format!("{value} ({})", shown(&right))
                    }
                    _ => value.to_string(),
                };
                return Err(self.fail(
                    step,
                    Mismatch {
                        kind: FailureKind::Property,
                        expected: format!("{subject}.{} {} {rhs}", property.name(), op.symbol()),
                        actual: format!(
                            "{subject}.{} is {}",
                            property.name(),
                            peer.unwrap_or_else(|| shown(&left))
                        ),
                        detail: None,
                    },
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// A property's value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Prop {
    Num(u64),
    Text(String),
    Addr(SocketAddr),
}

impl Prop {
    fn compare(&self, op: CompareOp, other: &Prop) -> bool {
        match (self, other) {
            (Prop::Num(a), Prop::Num(b)) => op.holds(a, b),
            _ => match op {
                CompareOp::Eq => self == other,
                CompareOp::Ne => self != other,
                _ => false,
            },
        }
    }

    fn show(&self, names: &HashMap<SocketAddr, String>) -> String {
        match self {
            Prop::Num(n) => n.to_string(),
            Prop::Text(t) => t.clone(),
            Prop::Addr(a) => names.get(a).cloned().unwrap_or_else(|| unnamed(*a)),
        }
    }
}

pub(super) fn property_value(
    st: &State,
    network: Option<&RefCell<crate::network::Network>>,
    name: &str,
    p: Property,
) -> io::Result<Prop> {
    if p == Property::Fds {
        return match st.targets.get(name).map(|t| t.borrow().fds(network)) {
            Some(Ok(n)) => Ok(Prop::Num(n)),
            Some(Err(e)) => Err(e),
            None => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
    }
    let s = match st.sock(name) {
        Ok(s) => s,
        Err(_) if p == Property::State && st.closed.contains(name) => {
            return Ok(Prop::Text("CLOSED".into()))
        }
        Err(e) => return Err(e),
    };
    let addr = |a: io::Result<socket2::SockAddr>| -> io::Result<Prop> {
        a?.as_socket()
            .map(Prop::Addr)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EAFNOSUPPORT))
    };
    match p {
        Property::Peer => addr(s.socket().peer_addr()),
        Property::Local => addr(s.socket().local_addr()),
        Property::Fd => Ok(Prop::Num(u64::try_from(s.fd()).unwrap_or(0))),
        Property::State => sock::state(&s).map(|t| Prop::Text(t.into())),
        Property::Queued if s.listener => sock::queued(&s).map(Prop::Num),
        Property::Unread if !s.listener => sock::unread(&s).map(Prop::Num),
        Property::Unsent if !s.listener => sock::unsent(&s).map(Prop::Num),
        Property::Mss if !s.listener => s.socket().tcp_mss().map(|m| Prop::Num(u64::from(m))),
        _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
    }
}
