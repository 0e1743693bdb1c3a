//! Builds a [`Scenario`] in Rust, without text.

use std::time::Duration;

use super::model::*;

/// Builds a scenario statement by statement. Modifiers (`background`, `expect`, `within`) apply
/// to the statement added last.
///
/// ```
/// use sockharness_script::{parse, Expected, ScenarioBuilder};
///
/// let built = ScenarioBuilder::new()
///     .listen("srv")
///     .connect("cli", "srv")
///     .accept("srv", "conn")
///     .recv("conn", 5).background("r")
///     .expect_pending("r", Some(std::time::Duration::from_millis(100)))
///     .send("cli", "hello")
///     .wait("r").expect(Expected::Data("hello".into()))
///     .build();
/// let text = built.to_string();
/// assert!(text.contains("wait r == \"hello\""));
/// assert_eq!(parse("built", text.as_bytes()).unwrap(), built);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ScenarioBuilder {
    scenario: Scenario,
}

impl ScenarioBuilder {
    /// An empty scenario.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `timeout`.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.scenario.settings.timeout = Some(d);
        self
    }

    /// Sets `tolerance`.
    pub fn tolerance(mut self, d: Duration) -> Self {
        self.scenario.settings.tolerance = Some(d);
        self
    }

    /// Adds a `sysctl KEY=VALUE` setting.
    pub fn sysctl(mut self, key: &str, value: &str) -> Self {
        self.scenario
            .settings
            .sysctls
            .push((key.into(), value.into()));
        self
    }

    /// Adds any statement.
    pub fn statement(mut self, statement: Statement) -> Self {
        self.scenario.steps.push(Step {
            statement,
            background: None,
            expect: None,
            origin: None,
        });
        self
    }

    /// `listen NAME` on `127.0.0.1:0` with the default backlog.
    pub fn listen(self, name: &str) -> Self {
        self.listen_on(
            name,
            Endpoint::Addr(([127, 0, 0, 1], 0).into()),
            None,
            SockOpts::default(),
        )
    }

    /// `listen NAME on ADDR|NAME [backlog=N] [OPTS]`.
    pub fn listen_on(self, name: &str, on: Endpoint, backlog: Option<u32>, opts: SockOpts) -> Self {
        self.statement(Statement::Listen {
            name: name.into(),
            on,
            backlog,
            opts,
        })
    }

    /// `connect NAME to TARGET` where TARGET is a listener's name.
    pub fn connect(self, name: &str, to: &str) -> Self {
        self.connect_to(name, Endpoint::Name(to.into()), SockOpts::default())
    }

    /// `connect NAME to NAME|ADDR [OPTS]`.
    pub fn connect_to(self, name: &str, to: Endpoint, opts: SockOpts) -> Self {
        self.statement(Statement::Connect {
            name: name.into(),
            from: None,
            to,
            opts,
        })
    }

    /// `connect NAME from HOST to NAME|ADDR [OPTS]`: a client on a host.
    pub fn connect_from(self, name: &str, host: &str, to: Endpoint, opts: SockOpts) -> Self {
        self.statement(Statement::Connect {
            name: name.into(),
            from: Some(host.into()),
            to,
            opts,
        })
    }

    /// `host NAME`.
    pub fn host(self, name: &str) -> Self {
        self.statement(Statement::Wire(WireStatement::Host { name: name.into() }))
    }

    /// `link FROM TO IMPAIRMENT...` (`both`) or `link FROM -> TO IMPAIRMENT...`.
    pub fn link(self, from: &str, to: &str, both: bool, impairments: Vec<Impairment>) -> Self {
        self.statement(Statement::Wire(WireStatement::Link {
            from: from.into(),
            to: to.into(),
            both,
            impairments,
        }))
    }

    /// `expect link FROM -> TO COUNTER OP VALUE`.
    pub fn expect_link(
        self,
        from: &str,
        to: &str,
        counter: LinkCounter,
        op: CompareOp,
        value: u64,
    ) -> Self {
        self.statement(Statement::Wire(WireStatement::ExpectLink {
            from: from.into(),
            to: to.into(),
            counter,
            op,
            value,
        }))
    }

    /// `accept LISTENER as NAME`.
    pub fn accept(self, listener: &str, name: &str) -> Self {
        self.statement(Statement::Accept {
            listener: listener.into(),
            name: name.into(),
        })
    }

    /// `send SOCKET DATA`.
    pub fn send(self, socket: &str, data: impl Into<Data>) -> Self {
        let mode = SendMode::Blocking {
            chunk: None,
            gap: None,
        };
        self.send_with(socket, data, mode, IoCall::Socket)
    }

    /// `send|write SOCKET DATA [chunk=SIZE [gap=DUR]] [nowait]`.
    pub fn send_with(
        self,
        socket: &str,
        data: impl Into<Data>,
        mode: SendMode,
        call: IoCall,
    ) -> Self {
        self.statement(Statement::Send {
            socket: socket.into(),
            data: data.into(),
            mode,
            call,
        })
    }

    /// `recv SOCKET SIZE`: one read call.
    pub fn recv(self, socket: &str, size: u64) -> Self {
        let mode = RecvMode::Once {
            size,
            nowait: false,
        };
        self.recv_with(socket, mode, IoCall::Socket)
    }

    /// `recv|read SOCKET SIZE|exact N|until DATA|all [nowait]`.
    pub fn recv_with(self, socket: &str, mode: RecvMode, call: IoCall) -> Self {
        self.statement(Statement::Recv {
            socket: socket.into(),
            mode,
            call,
        })
    }

    /// `shutdown SOCKET read|write|both`.
    pub fn shutdown(self, socket: &str, how: ShutdownHow) -> Self {
        self.statement(Statement::Shutdown {
            socket: socket.into(),
            how,
        })
    }

    /// `close SOCKET`.
    pub fn close(self, socket: &str) -> Self {
        self.statement(Statement::Close {
            socket: socket.into(),
        })
    }

    /// `abort SOCKET`: close so that the peer gets RST.
    pub fn abort(self, socket: &str) -> Self {
        self.statement(Statement::Abort {
            socket: socket.into(),
        })
    }

    /// `set SOCKET OPT...`.
    pub fn set(self, socket: &str, opts: SockOpts) -> Self {
        self.statement(Statement::Set {
            socket: socket.into(),
            opts,
        })
    }

    /// `sleep DUR`.
    pub fn sleep(self, duration: Duration) -> Self {
        self.statement(Statement::Sleep { duration })
    }

    /// `expect SUBJECT.PROPERTY OP VALUE`.
    pub fn expect_property(
        self,
        subject: &str,
        property: Property,
        op: CompareOp,
        value: Value,
    ) -> Self {
        self.statement(Statement::ExpectProperty {
            subject: subject.into(),
            property,
            op,
            value,
        })
    }

    /// `target NAME cmd "COMMAND" [ready=DUR]`, `target NAME at ADDR` or `target NAME builtin
    /// SERVER`.
    pub fn target(self, name: &str, source: TargetSource) -> Self {
        self.statement(Statement::Target {
            name: name.into(),
            source,
            on: None,
        })
    }

    /// `target NAME ... on HOST`: a target that runs on a host.
    pub fn target_on(self, name: &str, source: TargetSource, host: &str) -> Self {
        self.statement(Statement::Target {
            name: name.into(),
            source,
            on: Some(host.into()),
        })
    }

    /// `expect TARGET running` (`true`) or `expect TARGET exited` (`false`).
    pub fn expect_target(self, target: &str, running: bool) -> Self {
        self.statement(Statement::ExpectTarget {
            target: target.into(),
            running,
        })
    }

    /// `proxy NAME to TARGET [FAULT...]`.
    pub fn proxy(self, name: &str, to: &str, faults: Vec<Fault>) -> Self {
        self.statement(Statement::Proxy {
            name: name.into(),
            to: to.into(),
            faults,
            on: None,
        })
    }

    /// `fault PROXY FAULT...`: replaces the proxy's faults (none: forward faithfully).
    pub fn faults(self, proxy: &str, faults: Vec<Fault>) -> Self {
        self.statement(Statement::SetFaults {
            proxy: proxy.into(),
            faults,
        })
    }

    /// `stop TARGET`: SIGTERM, then wait for it to exit.
    pub fn stop(self, target: &str) -> Self {
        self.statement(Statement::Stop {
            target: target.into(),
        })
    }

    /// `kill TARGET`: SIGKILL.
    pub fn kill(self, target: &str) -> Self {
        self.statement(Statement::Kill {
            target: target.into(),
        })
    }

    /// `expect wire FROM -> TO count FLAGS|bytes OP VALUE`.
    pub fn expect_wire(
        self,
        from: &str,
        to: &str,
        measure: WireMeasure,
        op: CompareOp,
        value: u64,
    ) -> Self {
        self.statement(Statement::ExpectWire {
            from: from.into(),
            to: to.into(),
            measure,
            op,
            value,
        })
    }

    /// `wait HANDLE`.
    pub fn wait(self, handle: &str) -> Self {
        self.statement(Statement::Wait {
            handle: handle.into(),
        })
    }

    /// `expect HANDLE pending [for DUR]`.
    pub fn expect_pending(self, handle: &str, duration: Option<Duration>) -> Self {
        self.statement(Statement::ExpectPending {
            handle: handle.into(),
            duration,
        })
    }

    /// Runs the last statement in the background as `&HANDLE`.
    pub fn background(mut self, handle: &str) -> Self {
        if let Some(step) = self.scenario.steps.last_mut() {
            step.background = Some(handle.into());
        }
        self
    }

    /// Adds `== RESULT` to the last statement.
    pub fn expect(mut self, result: Expected) -> Self {
        if let Some(step) = self.scenario.steps.last_mut() {
            step.expect
                .get_or_insert(Expectation {
                    result: None,
                    within: None,
                })
                .result = Some(result);
        }
        self
    }

    /// Adds `within DUR` to the last statement.
    pub fn within(mut self, d: Duration) -> Self {
        if let Some(step) = self.scenario.steps.last_mut() {
            step.expect
                .get_or_insert(Expectation {
                    result: None,
                    within: None,
                })
                .within = Some(d);
        }
        self
    }

    /// The finished scenario.
    pub fn build(self) -> Scenario {
        self.scenario
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    /// The statement's kind, by an exhaustive match: a new statement fails to compile here
    /// until the builder has a method for it and the test below uses it.
    fn kind(s: &Statement) -> &'static str {
        match s {
            Statement::Listen { .. } => "listen",
            Statement::Connect { .. } => "connect",
            Statement::Accept { .. } => "accept",
            Statement::Send { .. } => "send",
            Statement::Recv { .. } => "recv",
            Statement::Shutdown { .. } => "shutdown",
            Statement::Close { .. } => "close",
            Statement::Abort { .. } => "abort",
            Statement::Set { .. } => "set",
            Statement::Sleep { .. } => "sleep",
            Statement::Wait { .. } => "wait",
            Statement::ExpectPending { .. } => "expect-pending",
            Statement::ExpectProperty { .. } => "expect-property",
            Statement::Target { .. } => "target",
            Statement::ExpectTarget { .. } => "expect-target",
            Statement::Proxy { .. } => "proxy",
            Statement::SetFaults { .. } => "fault",
            Statement::Stop { .. } => "stop",
            Statement::Kill { .. } => "kill",
            Statement::ExpectWire { .. } => "expect-wire",
            Statement::Wire(WireStatement::Host { .. }) => "host",
            Statement::Wire(WireStatement::Link { .. }) => "link",
            Statement::Wire(WireStatement::ExpectLink { .. }) => "expect-link",
            Statement::Wire(WireStatement::Drop { .. }) => "drop",
            Statement::Wire(WireStatement::Hold { .. }) => "hold",
            Statement::Wire(WireStatement::Release { .. }) => "release",
        }
    }

    #[test]
    fn hosts_and_links_build_print_and_parse_back() {
        let built = ScenarioBuilder::new()
            .host("a")
            .host("b")
            .link(
                "a",
                "b",
                true,
                vec![
                    Impairment::Delay {
                        delay: Duration::from_millis(10),
                        jitter: Some(Duration::from_micros(1500)),
                    },
                    Impairment::Loss(Percent(125_000)),
                    Impairment::Rate(1 << 20),
                    Impairment::Mtu(1280),
                ],
            )
            .link("a", "b", false, vec![Impairment::Down, Impairment::Clear])
            .listen_on("srv", Endpoint::Name("b".into()), None, SockOpts::default())
            .connect_from(
                "cli",
                "a",
                Endpoint::Name("srv".into()),
                SockOpts::default(),
            )
            .expect_link("a", "b", LinkCounter::Dropped, CompareOp::Ge, 0)
            .statement(Statement::Wire(WireStatement::Drop {
                from: "cli".into(),
                to: "b".into(),
                flags: "SA".into(),
                count: 2,
            }))
            .statement(Statement::Wire(WireStatement::Hold {
                from: "a".into(),
                to: "srv".into(),
                flags: "A".into(),
            }))
            .statement(Statement::Wire(WireStatement::Release {
                from: "a".into(),
                to: "srv".into(),
            }))
            .build();
        let kinds: Vec<&str> = built.steps.iter().map(|s| kind(&s.statement)).collect();
        assert!(kinds.contains(&"host") && kinds.contains(&"link"));
        assert!(kinds.contains(&"expect-link"));
        let text = built.to_string();
        assert!(
            text.contains("link a b delay 10ms jitter 1.5ms loss 12.5% rate 1MiB/s mtu 1280\n"),
            "{text}"
        );
        assert!(text.contains("link a -> b down clear\n"), "{text}");
        assert!(text.contains("connect cli from a to srv\n"), "{text}");
        assert!(
            text.contains("drop cli -> b SA count 2\nhold a -> srv A\nrelease a -> srv\n"),
            "{text}"
        );
        assert_eq!(
            parse("built", text.as_bytes()).unwrap(),
            built,
            "printed as:\n{text}"
        );
        built.validate().unwrap();
    }

    #[test]
    fn every_statement_builds_prints_and_parses_back() {
        let ms = Duration::from_millis;
        let nodelay = SockOpts {
            nodelay: true,
            ..SockOpts::default()
        };
        let slice = Fault {
            direction: Direction::Up,
            kind: FaultKind::Slice {
                size: 1,
                gap: Some(ms(1)),
            },
            conn: None,
        };
        let built = ScenarioBuilder::new()
            .timeout(Duration::from_secs(5))
            .target("app", TargetSource::Builtin("echo".into()))
            .expect_target("app", true)
            .proxy("p", "app", vec![slice.clone()])
            .faults("p", vec![])
            .listen_on(
                "srv",
                Endpoint::Addr(([127, 0, 0, 1], 0).into()),
                Some(4),
                nodelay.clone(),
            )
            .connect_to("cli", Endpoint::Name("srv".into()), SockOpts::default())
            .accept("srv", "conn")
            .set("conn", nodelay)
            .send_with(
                "cli",
                "ab",
                SendMode::Blocking {
                    chunk: Some(1),
                    gap: Some(ms(1)),
                },
                IoCall::File,
            )
            .recv_with("conn", RecvMode::Exact(2), IoCall::Socket)
            .expect(Expected::Data("ab".into()))
            .recv("conn", 1)
            .background("r")
            .expect_pending("r", None)
            .expect_property("cli", Property::Unsent, CompareOp::Eq, Value::Number(0))
            .sleep(ms(1))
            .shutdown("cli", ShutdownHow::Write)
            .wait("r")
            .expect(Expected::Eof)
            .within(ms(500))
            .expect_wire(
                "cli",
                "conn",
                WireMeasure::Count("F".into()),
                CompareOp::Eq,
                1,
            )
            .connect("c2", "p")
            .abort("c2")
            .close("cli")
            .stop("app")
            .target("other", TargetSource::Builtin("echo".into()))
            .kill("other")
            .build();
        let mut kinds: Vec<&str> = built.steps.iter().map(|s| kind(&s.statement)).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), 20, "statements not built: {kinds:?}");
        let text = built.to_string();
        assert_eq!(
            parse("built", text.as_bytes()).unwrap(),
            built,
            "printed as:\n{text}"
        );
        built.validate().unwrap();
    }

    #[test]
    fn a_built_scenario_that_is_wrong_fails_validation_with_the_parser_message() {
        let built = ScenarioBuilder::new().accept("nowhere", "conn").build();
        let problems = built.validate().unwrap_err().to_string();
        assert!(problems.contains("nowhere"), "{problems}");
    }
}
