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
        self.statement(Statement::Listen {
            name: name.into(),
            on: Endpoint::Addr(([127, 0, 0, 1], 0).into()),
            backlog: None,
            opts: SockOpts::default(),
        })
    }

    /// `connect NAME to TARGET` where TARGET is a listener's name.
    pub fn connect(self, name: &str, to: &str) -> Self {
        self.statement(Statement::Connect {
            name: name.into(),
            to: Endpoint::Name(to.into()),
            opts: SockOpts::default(),
        })
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
        self.statement(Statement::Send {
            socket: socket.into(),
            data: data.into(),
            mode: SendMode::Blocking {
                chunk: None,
                gap: None,
            },
            call: IoCall::Socket,
        })
    }

    /// `recv SOCKET SIZE`: one read call.
    pub fn recv(self, socket: &str, size: u64) -> Self {
        self.statement(Statement::Recv {
            socket: socket.into(),
            mode: RecvMode::Once {
                size,
                nowait: false,
            },
            call: IoCall::Socket,
        })
    }

    /// `close SOCKET`.
    pub fn close(self, socket: &str) -> Self {
        self.statement(Statement::Close {
            socket: socket.into(),
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
