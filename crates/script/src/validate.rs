//! Checks that need the whole file: names defined once and before use, of the right kind, and
//! expectations that fit their statements.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use super::diag::{Diagnostics, Problem};
use super::model::{Endpoint, Expected, Scenario, Statement, WireStatement};
use super::parser::ParsedStep;

/// What a name stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Listener,
    Socket,
    Handle,
    Target,
    Host,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Listener => "a listener",
            Kind::Socket => "a socket",
            Kind::Handle => "a background handle",
            Kind::Target => "a target",
            Kind::Host => "a host",
        }
    }
}

/// Whether a statement defines a name or uses one (and which kinds fit).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Role {
    Def(Kind),
    Use(&'static [Kind]),
}

/// One mention of a name in a statement.
#[derive(Debug, Clone)]
pub(crate) struct NameRef {
    name: String,
    span: Range<usize>,
    role: Role,
}

impl NameRef {
    pub(crate) fn def(name: String, span: Range<usize>, kind: Kind) -> Self {
        NameRef {
            name,
            span,
            role: Role::Def(kind),
        }
    }

    pub(crate) fn uses(name: String, span: Range<usize>, kinds: &'static [Kind]) -> Self {
        NameRef {
            name,
            span,
            role: Role::Use(kinds),
        }
    }
}

/// What results a statement can produce, so that `== "data"` on a `listen` is caught early.
#[derive(Debug, Clone, Copy)]
struct Results {
    data: bool,
    size: bool,
}

fn results_of(statement: &Statement) -> Results {
    match statement {
        Statement::Recv { .. } => Results {
            data: true,
            size: true,
        },
        Statement::Send { .. } => Results {
            data: false,
            size: true,
        },
        _ => Results {
            data: false,
            size: false,
        },
    }
}

fn verb(statement: &Statement) -> &'static str {
    match statement {
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
        Statement::ExpectPending { .. }
        | Statement::ExpectProperty { .. }
        | Statement::ExpectWire { .. }
        | Statement::ExpectTarget { .. } => "expect",
        Statement::Target { .. } => "target",
        Statement::Stop { .. } => "stop",
        Statement::Proxy { .. } => "proxy",
        Statement::SetFaults { .. } => "fault",
        Statement::Kill { .. } => "kill",
        Statement::Wire(WireStatement::Host { .. }) => "host",
        Statement::Wire(WireStatement::Link { .. }) => "link",
        Statement::Wire(WireStatement::ExpectLink { .. }) => "expect",
        Statement::Wire(WireStatement::Drop { .. }) => "drop",
        Statement::Wire(WireStatement::Hold { .. }) => "hold",
        Statement::Wire(WireStatement::Release { .. }) => "release",
    }
}

pub(crate) fn validate(steps: &[ParsedStep], maybe_defined: &HashSet<String>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut defined: HashMap<&str, Kind> = HashMap::new();
    // Handle name -> the statement it runs, and whether it was already waited for.
    let mut handles: HashMap<&str, (&Statement, bool)> = HashMap::new();

    let hosts: HashSet<&str> = steps
        .iter()
        .filter_map(|ps| match &ps.step.statement {
            Statement::Wire(WireStatement::Host { name }) => Some(name.as_str()),
            _ => None,
        })
        .collect();

    for ps in steps {
        if !hosts.is_empty() {
            problems.extend(hostless(ps, &hosts));
        }
        for r in &ps.names {
            match r.role {
                Role::Def(kind) => {
                    if let Some(old) = defined.get(r.name.as_str()) {
                        problems.push(
                            Problem::new(
                                r.span.clone(),
                                format!("`{}` is already defined, as {}", r.name, old.describe()),
                            )
                            .hint("every host, listener, socket, target and handle needs its own name"),
                        );
                    } else {
                        defined.insert(&r.name, kind);
                    }
                }
                Role::Use(kinds) => match defined.get(r.name.as_str()) {
                    None if maybe_defined.contains(&r.name) => {}
                    None => {
                        let mut p =
                            Problem::new(r.span.clone(), format!("`{}` is not defined", r.name));
                        let close = defined
                            .iter()
                            .filter(|(_, k)| kinds.contains(k))
                            .map(|(n, _)| (strsim::damerau_levenshtein(n, &r.name), *n))
                            .min();
                        if let Some((d, n)) = close.filter(|(d, _)| *d <= 2) {
                            let _ = d;
                            p = p.hint(format!("did you mean `{n}`?"));
                        } else {
                            p = p.hint(format!("define it first, as {}", kinds[0].describe()));
                        }
                        problems.push(p);
                    }
                    Some(k) if !kinds.contains(k) => {
                        let wanted: Vec<_> = kinds.iter().map(|k| k.describe()).collect();
                        problems.push(Problem::new(
                            r.span.clone(),
                            format!(
                                "`{}` is {}, expected {}",
                                r.name,
                                k.describe(),
                                wanted.join(" or ")
                            ),
                        ));
                    }
                    Some(_) => {}
                },
            }
        }

        let step = &ps.step;
        let espan = ps.expect_span.clone().unwrap_or(0..0);
        let mut statement_for_results = &step.statement;
        if let Statement::Wait { handle } = &step.statement {
            if let Some((started, waited)) = handles.get_mut(handle.as_str()) {
                if std::mem::replace(waited, true) {
                    let span = ps.names.first().map_or(0..0, |r| r.span.clone());
                    problems.push(Problem::new(
                        span,
                        format!("`{handle}` was already waited for"),
                    ));
                }
                statement_for_results = started;
            }
        }
        if let Some(h) = &step.background {
            let span = ps.names.last().map_or(0..0, |r| r.span.clone());
            if !matches!(
                step.statement,
                Statement::Connect { .. }
                    | Statement::Accept { .. }
                    | Statement::Send { .. }
                    | Statement::Recv { .. }
            ) {
                problems.push(
                    Problem::new(
                        span,
                        format!("`{}` cannot run in the background", verb(&step.statement)),
                    )
                    .hint("only connect, accept, send, write, recv and read take `&H`"),
                );
            }
            handles.insert(h, (&step.statement, false));
        }
        if let Some(Some(expected)) = step.expect.as_ref().map(|e| e.result.as_ref()) {
            let results = results_of(statement_for_results);
            let v = verb(statement_for_results);
            let bad = match expected {
                Expected::Data(_)
                | Expected::Sent(_)
                | Expected::Matches(_)
                | Expected::Eof
                | Expected::EofOr(_)
                    if !results.data =>
                {
                    Some(format!(
                        "`{v}` reads no data, so its result cannot be data or EOF"
                    ))
                }
                Expected::Size(_) if !results.size => Some(format!(
                    "`{v}` moves no bytes, so its result cannot be a size"
                )),
                _ => None,
            };
            if let Some(msg) = bad {
                problems.push(
                    Problem::new(espan, msg).hint("expect `ok` or an errno such as `ECONNREFUSED`"),
                );
            }
        }
    }
    problems
}

/// In a scenario with hosts every socket is on one: a listener or client without one would be
/// on no host's network, where nothing could reach it.
fn hostless(ps: &ParsedStep, hosts: &HashSet<&str>) -> Option<Problem> {
    let span = ps.names.first().map_or(0..0, |r| r.span.clone());
    let (name, example) = match &ps.step.statement {
        Statement::Listen { name, on, .. } => match on {
            Endpoint::Name(n) if hosts.contains(n.as_str()) => return None,
            _ => (name, format!("listen {name} on HOST")),
        },
        Statement::Connect { name, from, .. } => match from {
            Some(_) => return None,
            None => (name, format!("connect {name} from HOST to ...")),
        },
        Statement::Target {
            name,
            source: crate::model::TargetSource::At(_),
            ..
        } => {
            return Some(
                Problem::new(span, format!("`{name}` is at an address no host reaches"))
                    .hint("a scenario with hosts starts its servers on them: `target NAME cmd \"...\" on HOST` or `target NAME builtin echo on HOST`"),
            )
        }
        Statement::Target { name, on, .. } | Statement::Proxy { name, on, .. } => match on {
            Some(_) => return None,
            None => {
                let what = verb(&ps.step.statement);
                (name, format!("{what} {name} ... on HOST"))
            }
        },
        _ => return None,
    };
    Some(
        Problem::new(span, format!("`{name}` is on no host")).hint(format!(
            "in a scenario with hosts, say which one: `{example}`"
        )),
    )
}

impl Scenario {
    /// Validates a scenario built in Rust (with [`ScenarioBuilder`](crate::ScenarioBuilder), a
    /// strategy or a fuzzer) as a parsed one is, with the same messages `sockharness check`
    /// gives: its printed text must parse. Positions are in the printed text, which the
    /// diagnostics show.
    ///
    /// ```
    /// use sockharness_script::ScenarioBuilder;
    ///
    /// let ok = ScenarioBuilder::new().listen("srv").connect("cli", "srv").build();
    /// assert!(ok.validate().is_ok());
    /// let bad = ScenarioBuilder::new().connect("cli", "nowhere").build();
    /// let problems = bad.validate().unwrap_err().to_string();
    /// assert!(problems.contains("nowhere"), "{problems}");
    /// ```
    pub fn validate(&self) -> Result<(), Diagnostics> {
        let text = self.to_string();
        crate::parse("<built scenario>", text.as_bytes()).map(|_| ())
    }
}
