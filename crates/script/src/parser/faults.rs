//! Proxy faults, in scenarios (`proxy P to T FAULT...`) and on the command line.

use super::{unknown, LineParser, PResult};
use crate::diag::Problem;
use crate::lexer::{lex_line, Tok};
use crate::model::*;

impl LineParser<'_> {
    /// `FAULT...`: zero or more `up|down|both KIND [on conn N]`.
    pub(super) fn faults(&mut self) -> PResult<Vec<Fault>> {
        let mut faults = Vec::new();
        loop {
            let direction = if self.eat_ident("up") {
                Direction::Up
            } else if self.eat_ident("down") {
                Direction::Down
            } else if self.eat_ident("both") {
                Direction::Both
            } else {
                return Ok(faults);
            };
            let kind = if self.eat_ident("slice") {
                let size = self.size()?;
                if size == 0 {
                    return Err(Problem::new(
                        self.prev_span(),
                        "a slice must hold at least 1 byte",
                    ));
                }
                let gap = if self.eat_ident("gap") {
                    Some(self.duration()?)
                } else {
                    None
                };
                FaultKind::Slice { size, gap }
            } else if self.eat_ident("delay") {
                FaultKind::Delay(self.duration()?)
            } else if self.eat_ident("rate") {
                let rate = self.size()?;
                self.punct("/")?;
                self.keyword("s")?;
                if rate == 0 {
                    return Err(Problem::new(
                        self.prev_span(),
                        "a rate must be at least 1 byte per second",
                    )
                    .hint("use `drop` to forward nothing"));
                }
                FaultKind::Rate(rate)
            } else if self.eat_ident("stall") {
                self.keyword("after")?;
                FaultKind::StallAfter(self.size()?)
            } else if self.eat_ident("rst") {
                self.keyword("after")?;
                FaultKind::RstAfter(self.size()?)
            } else if self.eat_ident("fin") {
                self.keyword("after")?;
                FaultKind::FinAfter(self.size()?)
            } else if self.eat_ident("drop") {
                FaultKind::Drop
            } else {
                let span = self.span();
                let word = match self.peek() {
                    Some(Tok::Ident(w)) => w.clone(),
                    _ => {
                        return Err(
                            self.error("a fault: slice, delay, rate, stall, rst, fin or drop")
                        )
                    }
                };
                return Err(unknown(
                    &word,
                    span,
                    &["slice", "delay", "rate", "stall", "rst", "fin", "drop"],
                    "fault",
                ));
            };
            let conn =
                // `on conn N`; an `on` before anything else is the proxy's host.
                if self.at_ident("on") && matches!(self.peek_at(1), Some(Tok::Ident(w)) if w == "conn") {
                    self.pos += 1;
                    self.keyword("conn")?;
                    let n = self.integer("a connection number such as `1`")?;
                    if n == 0 {
                        return Err(Problem::new(
                            self.prev_span(),
                            "connections are numbered from 1: `on conn 0` would never match",
                        ));
                    }
                    Some(u32::try_from(n).map_err(|_| {
                        Problem::new(self.prev_span(), "connection number too large")
                    })?)
                } else {
                    None
                };
            faults.push(Fault {
                direction,
                kind,
                conn,
            });
        }
    }
}

/// Parses proxy faults as written after `proxy P to T` (`up slice 1 gap 1ms down delay 50ms`),
/// for the standalone proxy's `--fault` options.
///
/// ```
/// let faults = sockharness_script::parse_faults("up slice 1 gap 1ms both rst after 1KiB on conn 2").unwrap();
/// assert_eq!(faults.len(), 2);
/// assert!(sockharness_script::parse_faults("up sliec 1").unwrap_err().contains("did you mean `slice`?"));
/// ```
pub fn parse_faults(text: &str) -> Result<Vec<Fault>, String> {
    let describe = |p: Problem| match p.hint {
        Some(h) => format!("{} ({h})", p.message),
        None => p.message,
    };
    let tokens = lex_line(text, 0).map_err(describe)?;
    let mut p = LineParser {
        toks: &tokens,
        pos: 0,
        eol: text.trim_end().len(),
    };
    let faults = p.faults().map_err(describe)?;
    p.end().map_err(describe)?;
    Ok(faults)
}
