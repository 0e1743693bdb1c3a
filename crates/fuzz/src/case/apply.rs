//! Turning a case into the scenario that runs: the edits applied to the seed's statements,
//! intruding clients added, the server's health checked after, and every target aimed at the
//! server under test.

use std::time::Duration;

use sockharness::script::{
    Data, Endpoint, Expectation, Expected, IoCall, RecvMode, Scenario, SendMode, ShutdownHow,
    SockOpts, Statement, Step, TargetSource,
};

use super::*;

pub(super) fn crowd(e: &Edit) -> Option<(u32, u64, Duration)> {
    match e {
        Edit::Crowd {
            clients,
            chunk,
            gap,
        } => Some((*clients, *chunk, *gap)),
        _ => None,
    }
}

/// Points every target of `sc` at `source`.
pub fn retarget(sc: &mut Scenario, source: &TargetSource) {
    for step in &mut sc.steps {
        if let Statement::Target { source: s, .. } = &mut step.statement {
            *s = source.clone();
        }
    }
}

/// The name of the scenario's first target (`srv` if it has none).
pub fn first_target(sc: &Scenario) -> String {
    crate::seed::target_names(sc)
        .into_iter()
        .next()
        .unwrap_or_else(|| "srv".into())
}

pub(super) fn statement(statement: Statement) -> Step {
    Step {
        statement,
        background: None,
        expect: None,
        origin: None,
    }
}

/// `== ok|ERRNO|...`: success, or one of these errors.
pub(super) fn ok_or(errors: &[&str]) -> Expectation {
    result(Expected::OkOr(
        errors.iter().map(|e| e.to_string()).collect(),
    ))
}

pub(super) fn result(r: Expected) -> Expectation {
    Expectation {
        result: Some(r),
        within: None,
    }
}

pub(super) fn send(socket: &str, bytes: Vec<u8>) -> Statement {
    Statement::Send {
        socket: socket.to_string(),
        data: Data::Bytes(bytes),
        mode: SendMode::Blocking {
            chunk: None,
            gap: None,
        },
        call: IoCall::Socket,
    }
}

/// A name no statement of `sc` uses, starting with `base`.
pub(super) fn fresh_name(sc: &Scenario, base: &str) -> String {
    let text = sc.to_string();
    let used = |n: &str| {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|w| w == n)
    };
    (1..)
        .map(|i| format!("{base}{i}"))
        .find(|n| !used(n))
        .unwrap_or_else(|| base.to_string())
}

/// The seed's steps with the edits made.
pub(super) fn apply(seed: &Scenario, edits: &[Edit], settle: Option<Duration>) -> Scenario {
    let mut before: Vec<Vec<Step>> = vec![Vec::new(); seed.steps.len() + 1];
    let mut after: Vec<Vec<Step>> = vec![Vec::new(); seed.steps.len() + 1];
    let mut steps: Vec<Step> = seed.steps.clone();
    for step in &mut steps {
        // Reports show the statement as it ran, not as the seed wrote it.
        step.origin = None;
        // Edits change timing on purpose: the seed's timing checks are not the oracle.
        if let Some(e) = &mut step.expect {
            e.within = None;
            if e.result.is_none() {
                step.expect = None;
            }
        }
    }
    let target = first_target(seed);
    let after_targets = seed
        .steps
        .iter()
        .rposition(|s| matches!(s.statement, Statement::Target { .. }))
        .map_or(0, |i| i + 1);
    let mut used = seed.clone();
    for edit in edits {
        match edit {
            Edit::Chunk { step, chunk, gap } => {
                if let Some(Statement::Send { mode, .. }) =
                    steps.get_mut(*step).map(|s| &mut s.statement)
                {
                    if matches!(mode, SendMode::Blocking { .. }) {
                        *mode = SendMode::Blocking {
                            chunk: Some((*chunk).max(1)),
                            gap: (!gap.is_zero()).then_some(*gap),
                        };
                    }
                }
            }
            Edit::Pause { step, pause } => {
                if *step < steps.len() {
                    before[*step].push(statement(Statement::Sleep { duration: *pause }));
                }
            }
            Edit::RcvBuf { step, size } => {
                if let Some(Statement::Connect { opts, .. }) =
                    steps.get_mut(*step).map(|s| &mut s.statement)
                {
                    opts.rcvbuf = Some(*size);
                }
            }
            Edit::HalfClose { step } => {
                if let Some(Statement::Send { socket, .. }) = steps.get(*step).map(|s| &s.statement)
                {
                    let socket = socket.clone();
                    // A server that had closed (or reset) already has nothing left to answer.
                    let mut shut = statement(Statement::Shutdown {
                        socket: socket.clone(),
                        how: ShutdownHow::Write,
                    });
                    shut.expect = Some(ok_or(&["ENOTCONN", "ECONNRESET", "EPIPE"]));
                    after[*step].push(shut);
                    // Once the client has said it is done, the server may close too where it
                    // would have kept the connection open: "nothing more" then reads EOF.
                    for later in &mut steps[*step + 1..] {
                        let reads_it = matches!(&later.statement, Statement::Recv { socket: s, .. } if *s == socket);
                        if let (true, Some(e)) = (reads_it, &mut later.expect) {
                            if let Some(Expected::Errors(errs)) = &e.result {
                                if errs.iter().any(|x| x == "EAGAIN") {
                                    e.result = Some(Expected::EofOr(errs.clone()));
                                }
                            }
                        }
                    }
                }
            }
            Edit::Intruder(i) => {
                let name = fresh_name(&used, "fz");
                let steps = intruder_steps(&name, &target, i);
                used.steps.extend(steps.iter().cloned());
                // A client that stalls does so while the seed runs. One that sends and leaves
                // does so after it: what it sends may change the server's state (a key set, a
                // counter counted), and the seed's answers must not depend on that; whether the
                // server survived it, the next input and the health exchange tell.
                if i.leave == Leave::Stall {
                    let at = after_targets.min(seed.steps.len());
                    before[at].extend(steps);
                    if let Some(duration) = settle {
                        before[at].push(statement(Statement::Sleep { duration }));
                    }
                } else {
                    before[seed.steps.len()].extend(steps);
                }
            }
            Edit::Crowd { .. } => {}
        }
    }
    let mut out = Vec::with_capacity(steps.len() + 8);
    for (i, step) in steps.into_iter().enumerate() {
        out.append(&mut before[i]);
        out.push(step);
        out.append(&mut after[i]);
    }
    out.append(&mut before[seed.steps.len()]);
    Scenario {
        settings: seed.settings.clone(),
        steps: out,
    }
}

pub(super) fn intruder_steps(name: &str, target: &str, i: &Intruder) -> Vec<Step> {
    let mut steps = vec![statement(Statement::Connect {
        from: None,
        name: name.to_string(),
        to: Endpoint::Name(target.to_string()),
        opts: SockOpts {
            nodelay: true,
            rcvbuf: i.rcvbuf,
            ..SockOpts::default()
        },
    })];
    let writer = format!("{name}_w");
    let echoed = i.echo && !i.data.is_empty() && matches!(i.leave, Leave::Close | Leave::HalfClose);
    // A server may answer bytes it does not like by closing or resetting: writing on, the
    // client then sees EPIPE or ECONNRESET, which says nothing against the server.
    if !i.data.is_empty() {
        let mut s = statement(Statement::Send {
            socket: name.to_string(),
            data: literal(&i.data),
            mode: SendMode::Blocking {
                chunk: i.chunk,
                gap: None,
            },
            call: IoCall::Socket,
        });
        if echoed {
            s.background = Some(writer.clone());
        } else if !i.echo {
            s.expect = Some(ok_or(&["EPIPE", "ECONNRESET"]));
        }
        steps.push(s);
    }
    if echoed {
        let mut s = statement(Statement::Recv {
            socket: name.to_string(),
            mode: RecvMode::Exact(i.data.len() as u64),
            call: IoCall::Socket,
        });
        s.expect = Some(result(Expected::Sent(name.to_string())));
        steps.push(s);
        steps.push(statement(Statement::Wait { handle: writer }));
    }
    if i.leave == Leave::HalfClose {
        let mut s = statement(Statement::Shutdown {
            socket: name.to_string(),
            how: ShutdownHow::Write,
        });
        if !i.echo {
            s.expect = Some(ok_or(&["ENOTCONN", "ECONNRESET", "EPIPE"]));
        }
        steps.push(s);
    }
    match i.leave {
        Leave::Close | Leave::HalfClose => steps.push(statement(Statement::Close {
            socket: name.to_string(),
        })),
        Leave::Abort => steps.push(statement(Statement::Abort {
            socket: name.to_string(),
        })),
        Leave::Stall => {}
    }
    steps
}

/// Ends `sc` with a check that its targets are still running, a moment after the last
/// statement: a crash the last bytes caused shows there.
pub fn append_crash_check(sc: &mut Scenario) {
    sc.steps.push(statement(Statement::Sleep {
        duration: Duration::from_millis(100),
    }));
    for name in crate::seed::target_names(sc) {
        sc.steps.push(statement(Statement::ExpectTarget {
            target: name,
            running: true,
        }));
    }
}

/// Ends `sc` with a plain request on a new connection, which must get an answer (at least a
/// byte): the server still accepts and answers after the case, whatever the case did to it.
/// Only that it answers: what it answers may rightly depend on what the case changed.
pub fn append_health(sc: &mut Scenario, plain: &Plain) {
    let target = first_target(sc);
    let name = format!("{}_c1", fresh_name(sc, "health"));
    sc.steps.push(statement(Statement::Connect {
        from: None,
        name: name.clone(),
        to: Endpoint::Name(target),
        opts: SockOpts {
            nodelay: true,
            ..SockOpts::default()
        },
    }));
    sc.steps.push(statement(send(&name, plain.request.clone())));
    sc.steps.push(statement(Statement::Recv {
        socket: name.clone(),
        mode: RecvMode::Exact(1),
        call: IoCall::Socket,
    }));
    sc.steps.push(statement(Statement::Close { socket: name }));
}

/// `bytes` as a data literal: `pattern(SIZE)` where they are that pattern, so a big reproducer
/// stays small.
pub(super) fn literal(bytes: &[u8]) -> Data {
    let pattern = Data::Pattern(bytes.len() as u64);
    if bytes.len() > 64 && pattern.bytes() == bytes {
        pattern
    } else {
        Data::Bytes(bytes.to_vec())
    }
}

/// Holds every read with an expected answer in `sc` to the regular expression `re` instead of to
/// its bytes (`--expect regex:RE`).
pub fn expect_matches(sc: &mut Scenario, re: &str) {
    for step in &mut sc.steps {
        if let (
            Statement::Recv {
                mode: RecvMode::Exact(_),
                ..
            },
            Some(e),
        ) = (&step.statement, &mut step.expect)
        {
            if matches!(e.result, Some(Expected::Data(_)) | None) {
                e.result = Some(Expected::Matches(re.to_string()));
            }
        }
        if let (
            Statement::Recv {
                mode: RecvMode::Exact(_),
                ..
            },
            None,
        ) = (&step.statement, &step.expect)
        {
            step.expect = Some(result(Expected::Matches(re.to_string())));
        }
    }
}
