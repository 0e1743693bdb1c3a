//! Prints a model back as scenario text that parses to the same model.

use std::fmt::{self, Display, Formatter};
use std::time::Duration;

use super::data::escape;
use super::model::*;

/// Formats a duration exactly, in the largest unit that reads well: `1.5s`, `250ms`, `0.001us`.
pub struct Dur(pub Duration);

impl Display for Dur {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        // The largest unit in which the value is at least 1 and needs at most 3 decimals.
        for (unit, unit_ns) in [("s", 1_000_000_000u128), ("ms", 1_000_000), ("us", 1_000)] {
            if (ns >= unit_ns || unit == "us") && (ns * 1000) % unit_ns == 0 {
                let whole = ns / unit_ns;
                let frac = (ns % unit_ns) * 1000 / unit_ns;
                return if frac == 0 {
                    write!(f, "{whole}{unit}")
                } else {
                    let frac = format!("{frac:03}");
                    write!(f, "{whole}.{}{unit}", frac.trim_end_matches('0'))
                };
            }
        }
        write!(f, "{}.{:03}us", ns / 1_000, ns % 1_000)
    }
}

/// Formats a byte count exactly, in the largest binary unit that divides it: `64KiB`, `1000`.
pub struct Size(pub u64);

impl Display for Size {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n >= size && n % size == 0 {
                return write!(f, "{}{unit}", n / size);
            }
        }
        write!(f, "{n}")
    }
}

impl Display for Scenario {
    /// The whole file: settings first, then one statement per line.
    ///
    /// ```
    /// use sockharness_script::parse;
    /// let text = "timeout 2s\nlisten srv backlog=2\nconnect c to srv &h\nwait h == ok within 1.5s\n";
    /// let model = parse("x", text.as_bytes()).unwrap();
    /// assert_eq!(model.to_string(), text);
    /// assert_eq!(parse("x", model.to_string().as_bytes()).unwrap(), model);
    /// ```
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        if let Some(t) = s.timeout {
            writeln!(f, "timeout {}", Dur(t))?;
        }
        if let Some(t) = s.tolerance {
            writeln!(f, "tolerance {}", Dur(t))?;
        }
        if let Some(n) = s.seed {
            writeln!(f, "seed {n}")?;
        }
        for (k, v) in &s.sysctls {
            writeln!(f, "sysctl {k}={v}")?;
        }
        for program in &s.requires {
            writeln!(f, "require {program}")?;
        }
        for step in &self.steps {
            writeln!(f, "{step}")?;
        }
        Ok(())
    }
}

impl Display for Step {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.statement)?;
        if let Some(h) = &self.background {
            write!(f, " &{h}")?;
        }
        if let Some(e) = &self.expect {
            write!(f, " {e}")?;
        }
        Ok(())
    }
}

impl Display for Expectation {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match (&self.result, self.within) {
            (Some(r), Some(d)) => write!(f, "== {r} within {}", Dur(d)),
            (Some(r), None) => write!(f, "== {r}"),
            (None, Some(d)) => write!(f, "within {}", Dur(d)),
            (None, None) => Ok(()),
        }
    }
}

impl Display for Expected {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Ok => f.write_str("ok"),
            Expected::Eof => f.write_str("EOF"),
            Expected::Errors(e) => f.write_str(&e.join("|")),
            Expected::OkOr(e) => write!(f, "ok|{}", e.join("|")),
            Expected::EofOr(e) => write!(f, "EOF|{}", e.join("|")),
            Expected::Data(d) => write!(f, "{d}"),
            Expected::Size(n) => write!(f, "{}", Size(*n)),
            Expected::Sent(s) => write!(f, "sent({s})"),
            Expected::Matches(re) => write!(f, "matches \"{}\"", super::escape(re.as_bytes())),
        }
    }
}

impl Display for Fault {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let direction = match self.direction {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::Both => "both",
        };
        write!(f, "{direction} ")?;
        match &self.kind {
            FaultKind::Slice { size, gap } => {
                write!(f, "slice {}", Size(*size))?;
                if let Some(g) = gap {
                    write!(f, " gap {}", Dur(*g))?;
                }
            }
            FaultKind::Delay(d) => write!(f, "delay {}", Dur(*d))?,
            FaultKind::Rate(r) => write!(f, "rate {}/s", Size(*r))?,
            FaultKind::StallAfter(n) => write!(f, "stall after {}", Size(*n))?,
            FaultKind::RstAfter(n) => write!(f, "rst after {}", Size(*n))?,
            FaultKind::FinAfter(n) => write!(f, "fin after {}", Size(*n))?,
            FaultKind::Drop => f.write_str("drop")?,
        }
        match self.conn {
            Some(n) => write!(f, " on conn {n}"),
            None => Ok(()),
        }
    }
}

impl Display for WireStatement {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            WireStatement::Host { name } => write!(f, "host {name}"),
            WireStatement::Link {
                from,
                to,
                both,
                impairments,
            } => {
                let arrow = if *both { " " } else { " -> " };
                write!(f, "link {from}{arrow}{to}")?;
                impairments.iter().try_for_each(|i| write!(f, " {i}"))
            }
            WireStatement::Drop {
                from,
                to,
                flags,
                count,
            } => {
                write!(f, "drop {from} -> {to}")?;
                if !flags.is_empty() {
                    write!(f, " {flags}")?;
                }
                if *count != 1 {
                    write!(f, " count {count}")?;
                }
                Ok(())
            }
            WireStatement::Hold { from, to, flags } => {
                write!(f, "hold {from} -> {to}")?;
                if !flags.is_empty() {
                    write!(f, " {flags}")?;
                }
                Ok(())
            }
            WireStatement::Release { from, to } => write!(f, "release {from} -> {to}"),
            WireStatement::ExpectLink {
                from,
                to,
                counter,
                op,
                value,
            } => write!(
                f,
                "expect link {from} -> {to} {} {} {value}",
                counter.name(),
                op.symbol()
            ),
        }
    }
}

impl Display for Impairment {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Impairment::Delay { delay, jitter } => {
                write!(f, "delay {}", Dur(*delay))?;
                match jitter {
                    Some(j) => write!(f, " jitter {}", Dur(*j)),
                    None => Ok(()),
                }
            }
            Impairment::Loss(p) => write!(f, "loss {p}"),
            Impairment::Reorder(p) => write!(f, "reorder {p}"),
            Impairment::Duplicate(p) => write!(f, "duplicate {p}"),
            Impairment::Corrupt(p) => write!(f, "corrupt {p}"),
            Impairment::Rate(n) => write!(f, "rate {}/s", Size(*n)),
            Impairment::Mtu(n) => write!(f, "mtu {n}"),
            Impairment::Down => f.write_str("down"),
            Impairment::Clear => f.write_str("clear"),
        }
    }
}

impl Display for Percent {
    /// `12.5%`: the shortest exact decimal.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.0 / 10_000, self.0 % 10_000);
        if frac == 0 {
            write!(f, "{whole}%")
        } else {
            let frac = format!("{frac:04}");
            write!(f, "{whole}.{}%", frac.trim_end_matches('0'))
        }
    }
}

impl Display for Data {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Data::Bytes(b) => write!(f, "\"{}\"", escape(b)),
            Data::Pattern(n) => write!(f, "pattern({})", Size(*n)),
            Data::Random { size, seed } => write!(f, "random({}, seed={seed})", Size(*size)),
        }
    }
}

impl Display for Endpoint {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Addr(a) => write!(f, "{a}"),
            Endpoint::Name(n) => f.write_str(n),
        }
    }
}

impl Display for SockOpts {
    /// The options, each preceded by a space.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.rcvbuf {
            write!(f, " rcvbuf={}", Size(n))?;
        }
        if let Some(n) = self.sndbuf {
            write!(f, " sndbuf={}", Size(n))?;
        }
        for (on, name) in [
            (self.nodelay, "nodelay"),
            (self.reuseaddr, "reuseaddr"),
            (self.reuseport, "reuseport"),
            (self.keepalive, "keepalive"),
        ] {
            if on {
                write!(f, " {name}")?;
            }
        }
        Ok(())
    }
}

impl Display for Value {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Value::Number(n) => write!(f, "{}", Size(*n)),
            Value::Name(n) => f.write_str(n),
            Value::Property(n, p) => write!(f, "{n}.{}", p.name()),
            Value::Addr(a) => write!(f, "{a}"),
        }
    }
}

impl Display for Statement {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Statement::Listen {
                name,
                on,
                backlog,
                opts,
            } => {
                write!(f, "listen {name}")?;
                if *on != Endpoint::Addr(([127, 0, 0, 1], 0).into()) {
                    write!(f, " on {on}")?;
                }
                if let Some(b) = backlog {
                    write!(f, " backlog={b}")?;
                }
                write!(f, "{opts}")
            }
            Statement::Connect {
                name,
                from,
                to,
                opts,
            } => {
                write!(f, "connect {name}")?;
                if let Some(host) = from {
                    write!(f, " from {host}")?;
                }
                write!(f, " to {to}{opts}")
            }
            Statement::Wire(w) => write!(f, "{w}"),
            Statement::Accept { listener, name } => write!(f, "accept {listener} as {name}"),
            Statement::Send {
                socket,
                data,
                mode,
                call,
            } => {
                let verb = if *call == IoCall::Socket {
                    "send"
                } else {
                    "write"
                };
                write!(f, "{verb} {socket} {data}")?;
                match mode {
                    SendMode::Nowait => f.write_str(" nowait"),
                    SendMode::Blocking { chunk, gap } => {
                        if let Some(c) = chunk {
                            write!(f, " chunk={}", Size(*c))?;
                        }
                        if let Some(g) = gap {
                            write!(f, " gap={}", Dur(*g))?;
                        }
                        Ok(())
                    }
                }
            }
            Statement::Recv { socket, mode, call } => {
                let verb = if *call == IoCall::Socket {
                    "recv"
                } else {
                    "read"
                };
                write!(f, "{verb} {socket} ")?;
                match mode {
                    RecvMode::Once { size, nowait } => {
                        write!(f, "{}{}", Size(*size), if *nowait { " nowait" } else { "" })
                    }
                    RecvMode::Exact(n) => write!(f, "exact {}", Size(*n)),
                    RecvMode::Until(d) => write!(f, "until {d}"),
                    RecvMode::All => f.write_str("all"),
                }
            }
            Statement::Shutdown { socket, how } => {
                let how = match how {
                    ShutdownHow::Read => "read",
                    ShutdownHow::Write => "write",
                    ShutdownHow::Both => "both",
                };
                write!(f, "shutdown {socket} {how}")
            }
            Statement::Close { socket } => write!(f, "close {socket}"),
            Statement::Abort { socket } => write!(f, "abort {socket}"),
            Statement::Set { socket, opts } => write!(f, "set {socket}{opts}"),
            Statement::Sleep { duration } => write!(f, "sleep {}", Dur(*duration)),
            Statement::Wait { handle } => write!(f, "wait {handle}"),
            Statement::ExpectPending { handle, duration } => {
                write!(f, "expect {handle} pending")?;
                match duration {
                    Some(d) => write!(f, " for {}", Dur(*d)),
                    None => Ok(()),
                }
            }
            Statement::Target { name, source, on } => {
                match source {
                    TargetSource::Cmd { command, ready } => {
                        write!(f, "target {name} cmd \"{}\"", escape(command.as_bytes()))?;
                        if let Some(d) = ready {
                            write!(f, " ready={}", Dur(*d))?;
                        }
                    }
                    TargetSource::At(addr) => write!(f, "target {name} at {addr}")?,
                    TargetSource::Builtin(b) if b.contains('-') => {
                        write!(f, "target {name} builtin \"{b}\"")?
                    }
                    TargetSource::Builtin(b) => write!(f, "target {name} builtin {b}")?,
                }
                match on {
                    Some(host) => write!(f, " on {host}"),
                    None => Ok(()),
                }
            }
            Statement::ExpectTarget { target, running } => {
                write!(
                    f,
                    "expect {target} {}",
                    if *running { "running" } else { "exited" }
                )
            }
            Statement::Proxy {
                name,
                to,
                faults,
                on,
            } => {
                write!(f, "proxy {name} to {to}")?;
                faults.iter().try_for_each(|x| write!(f, " {x}"))?;
                match on {
                    Some(host) => write!(f, " on {host}"),
                    None => Ok(()),
                }
            }
            Statement::SetFaults { proxy, faults } => {
                write!(f, "fault {proxy}")?;
                faults.iter().try_for_each(|x| write!(f, " {x}"))
            }
            Statement::Stop { target } => write!(f, "stop {target}"),
            Statement::Kill { target } => write!(f, "kill {target}"),
            Statement::ExpectWire {
                from,
                to,
                measure,
                op,
                value,
            } => {
                let measure = match measure {
                    WireMeasure::Count(flags) if flags.is_empty() => "count".to_string(),
                    WireMeasure::Count(flags) => format!("count {flags}"),
                    WireMeasure::Bytes => "bytes".to_string(),
                };
                write!(
                    f,
                    "expect wire {from} -> {to} {measure} {} {}",
                    op.symbol(),
                    Size(*value)
                )
            }
            Statement::ExpectProperty {
                subject,
                property,
                op,
                value,
            } => {
                write!(
                    f,
                    "expect {subject}.{} {} {value}",
                    property.name(),
                    op.symbol()
                )
            }
        }
    }
}
