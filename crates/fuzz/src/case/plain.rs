//! The plain exchange of a seed: a request, the answer to its plain delivery, and the scenario
//! that sends it from several clients at once.

use std::time::Duration;

use sockharness::script::{
    Data, Endpoint, Expected, IoCall, RecvMode, Scenario, SockOpts, Statement, Step, TargetSource,
};

use super::apply::{ok_or, result, send, statement};
use super::*;

/// A request and the answer to its plain delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Plain {
    /// The request bytes.
    pub request: Vec<u8>,
    /// The answer, and whether its bytes (or only its length) repeat.
    pub baseline: Baseline,
    /// Whether clients connected at the same time get the same answers as one alone: only then
    /// may interleaved clients be compared against the plain answer.
    pub independent: bool,
}

impl Plain {
    /// The scenario in which `clients` clients each send the request, in pieces of `chunk`
    /// bytes taking turns, and each read the plain answer.
    pub fn scenario(
        &self,
        target: &str,
        clients: u32,
        chunk: Option<u64>,
        gap: Duration,
    ) -> Scenario {
        let mut steps = vec![statement(Statement::Target {
            name: target.to_string(),
            source: TargetSource::Builtin("echo".into()),
            on: None,
        })];
        steps.extend(self.steps(target, "c", clients, chunk, gap, true));
        let mut sc = Scenario {
            steps,
            ..Scenario::default()
        };
        sc.settings.timeout = Some(CASE_TIMEOUT);
        sc
    }

    /// The statements of [`Plain::scenario`] without its target, clients named `PREFIX1`...
    pub fn steps(
        &self,
        target: &str,
        prefix: &str,
        clients: u32,
        chunk: Option<u64>,
        gap: Duration,
        // With the checks past the answer (end of stream, nothing more); without them only
        // the answer itself, as a health check that holds for the correct server too.
        strict: bool,
    ) -> Vec<Step> {
        let mut steps = Vec::new();
        let closes = self.baseline.exchange().is_none_or(|e| e.end != End::Open);
        let names: Vec<String> = (1..=clients.max(1))
            .map(|i| format!("{prefix}{i}"))
            .collect();
        for n in &names {
            steps.push(statement(Statement::Connect {
                from: None,
                name: n.clone(),
                to: Endpoint::Name(target.to_string()),
                opts: SockOpts {
                    nodelay: true,
                    ..SockOpts::default()
                },
            }));
        }
        let len = self.request.len();
        let piece = chunk.map_or(len.max(1), |c| usize::try_from(c).unwrap_or(len).max(1));
        let mut at = 0;
        while at < len {
            let end = (at + piece).min(len);
            if at > 0 && !gap.is_zero() {
                steps.push(statement(Statement::Sleep { duration: gap }));
            }
            for n in &names {
                let mut s = statement(send(n, self.request[at..end].to_vec()));
                if closes {
                    // A server that answers and closes may do so before the last piece: writing
                    // on then fails, and only the answer tells right from wrong.
                    s.expect = Some(ok_or(&["EPIPE", "ECONNRESET"]));
                }
                steps.push(s);
            }
            at = end;
        }
        if let Some(ex) = self.baseline.exchange() {
            for n in &names {
                if !ex.response.is_empty() {
                    let mut s = statement(Statement::Recv {
                        socket: n.clone(),
                        mode: RecvMode::Exact(ex.response.len() as u64),
                        call: IoCall::Socket,
                    });
                    if matches!(self.baseline, Baseline::Exact(_)) {
                        s.expect = Some(result(Expected::Data(Data::Bytes(ex.response.clone()))));
                    }
                    steps.push(s);
                }
                if strict && ex.end == End::Open && matches!(self.baseline, Baseline::Exact(_)) {
                    // Nothing more than the plain answer: a server that answers a request twice,
                    // or answers pipelined requests only when they arrive apart, shows here.
                    if n == &names[0] {
                        steps.push(statement(Statement::Sleep {
                            duration: EXTRA_WAIT,
                        }));
                    }
                    let mut s = statement(Statement::Recv {
                        socket: n.clone(),
                        mode: RecvMode::Once {
                            size: 64 * 1024,
                            nowait: true,
                        },
                        call: IoCall::Socket,
                    });
                    s.expect = Some(result(Expected::Errors(vec!["EAGAIN".into()])));
                    steps.push(s);
                }
                if strict && ex.end == End::Closed {
                    let mut s = statement(Statement::Recv {
                        socket: n.clone(),
                        mode: RecvMode::Once {
                            size: 1,
                            nowait: false,
                        },
                        call: IoCall::Socket,
                    });
                    // After a write the server did not read (it had answered and closed), its kernel
                    // answers with RST.
                    s.expect = Some(result(Expected::EofOr(vec!["ECONNRESET".into()])));
                    steps.push(s);
                }
            }
        }
        for n in &names {
            steps.push(statement(Statement::Close { socket: n.clone() }));
        }
        steps
    }
}
