//! The scriptable wire: `host`, `link` with its impairments, and `expect link`.

use super::{unknown, LineParser, PResult};
use crate::diag::Problem;
use crate::lexer::Tok;
use crate::model::*;
use crate::validate::{Kind, NameRef};

/// Impairment keywords, for "did you mean" hints.
const IMPAIRMENTS: &[&str] = &[
    "delay",
    "loss",
    "reorder",
    "duplicate",
    "corrupt",
    "rate",
    "mtu",
    "down",
    "clear",
];

/// What `drop`, `hold` and `release` may name as the ends of the packets they match.
const RULE_KINDS: &[Kind] = &[Kind::Host, Kind::Socket, Kind::Listener];

/// The smallest and largest `mtu`: IPv4's minimum, and the largest a link carries.
pub(crate) const MTU_RANGE: std::ops::RangeInclusive<u64> = 68..=65535;

impl LineParser<'_> {
    /// `host NAME`, after `host`.
    pub(super) fn host(&mut self, names: &mut Vec<NameRef>) -> PResult<Statement> {
        let (name, span) = self.name("a host name")?;
        names.push(NameRef::def(name.clone(), span, Kind::Host));
        Ok(Statement::Wire(WireStatement::Host { name }))
    }

    /// `A B [IMPAIRMENT...]` or `A -> B IMPAIRMENT...`, after `link`.
    pub(super) fn link(&mut self, names: &mut Vec<NameRef>) -> PResult<Statement> {
        let (from, fspan) = self.host_name(names, "a host")?;
        let both = !self.eat_punct("->");
        let (to, tspan) = self.host_name(names, "the other host")?;
        if from == to {
            return Err(Problem::new(
                fspan.start..tspan.end,
                "a link joins two different hosts",
            ));
        }
        let mut impairments = Vec::new();
        while self.peek().is_some() {
            impairments.push(self.impairment()?);
        }
        if !both && impairments.is_empty() {
            return Err(self
                .error("an impairment for the one direction: delay, loss, ... or down")
                .hint("`link A B` joins both directions; `link A -> B` changes one"));
        }
        Ok(Statement::Wire(WireStatement::Link {
            from,
            to,
            both,
            impairments,
        }))
    }

    /// `X -> Y [FLAGS] [count N]` after `drop`, `X -> Y [FLAGS]` after `hold`, `X -> Y`
    /// after `release`.
    pub(super) fn packet_rule(
        &mut self,
        verb: &str,
        names: &mut Vec<NameRef>,
    ) -> PResult<Statement> {
        let mut end = |p: &mut Self, what| -> PResult<String> {
            let (n, span) = p.name(what)?;
            names.push(NameRef::uses(n.clone(), span, RULE_KINDS));
            Ok(n)
        };
        let from = end(
            self,
            "where the packets come from: a host, socket or listener",
        )?;
        self.punct("->")?;
        let to = end(self, "where they go: a host, socket or listener")?;
        if verb == "release" {
            return Ok(Statement::Wire(WireStatement::Release { from, to }));
        }
        let flags = match self.peek() {
            Some(Tok::Ident(w)) if w != "count" => self.tcp_flags()?,
            _ => String::new(),
        };
        if verb == "hold" {
            return Ok(Statement::Wire(WireStatement::Hold { from, to, flags }));
        }
        let count = if self.eat_ident("count") {
            let n = self.integer("how many packets, such as `2`")?;
            if n == 0 {
                return Err(Problem::new(self.prev_span(), "`count 0` drops nothing"));
            }
            n
        } else {
            1
        };
        Ok(Statement::Wire(WireStatement::Drop {
            from,
            to,
            flags,
            count,
        }))
    }

    /// `A -> B COUNTER OP N`, after `expect link`.
    pub(super) fn expect_link(&mut self, names: &mut Vec<NameRef>) -> PResult<Statement> {
        let (from, _) = self.host_name(names, "the sending host")?;
        self.punct("->")?;
        let (to, _) = self.host_name(names, "the receiving host")?;
        let (word, span) = self.name("what to count: dropped, duplicated, reordered, ...")?;
        let counter = LinkCounter::ALL
            .into_iter()
            .find(|c| c.name() == word)
            .ok_or_else(|| {
                unknown(
                    &word,
                    span,
                    &LinkCounter::ALL.map(LinkCounter::name),
                    "counter",
                )
            })?;
        let op = self.compare_op()?;
        let value = self.integer("a count such as `3`")?;
        Ok(Statement::Wire(WireStatement::ExpectLink {
            from,
            to,
            counter,
            op,
            value,
        }))
    }

    fn host_name(
        &mut self,
        names: &mut Vec<NameRef>,
        what: &str,
    ) -> PResult<(String, std::ops::Range<usize>)> {
        let (name, span) = self.name(what)?;
        names.push(NameRef::uses(name.clone(), span.clone(), &[Kind::Host]));
        Ok((name, span))
    }

    fn impairment(&mut self) -> PResult<Impairment> {
        let (word, span) = match self.peek() {
            Some(Tok::Ident(_)) => self.name("")?,
            _ => return Err(self.error("an impairment: delay, loss, reorder, ... or clear")),
        };
        Ok(match word.as_str() {
            "delay" => {
                let delay = self.duration()?;
                let jitter = if self.eat_ident("jitter") {
                    let j = self.duration()?;
                    if j > delay {
                        return Err(Problem::new(
                            self.prev_span(),
                            "the jitter is larger than the delay",
                        )
                        .hint(
                            "a delay of D with jitter J varies from D-J to D+J: J is at most D",
                        ));
                    }
                    Some(j)
                } else {
                    None
                };
                Impairment::Delay { delay, jitter }
            }
            "loss" => Impairment::Loss(self.percent()?),
            "reorder" => Impairment::Reorder(self.percent()?),
            "duplicate" => Impairment::Duplicate(self.percent()?),
            "corrupt" => Impairment::Corrupt(self.percent()?),
            "rate" => {
                let bytes = self.size()?;
                let at = self.prev_span();
                self.punct("/")?;
                self.keyword("s")?;
                if bytes == 0 {
                    return Err(Problem::new(at, "a rate of 0 passes nothing")
                        .hint("`down` drops every packet"));
                }
                Impairment::Rate(bytes)
            }
            "mtu" => {
                let n = self.integer("an MTU such as `1280`")?;
                if !MTU_RANGE.contains(&n) {
                    return Err(Problem::new(
                        self.prev_span(),
                        format!(
                            "an MTU is from {} to {} bytes",
                            MTU_RANGE.start(),
                            MTU_RANGE.end()
                        ),
                    ));
                }
                Impairment::Mtu(n as u32)
            }
            "down" => Impairment::Down,
            "clear" => Impairment::Clear,
            _ => return Err(unknown(&word, span, IMPAIRMENTS, "impairment")),
        })
    }

    /// `P%`, from 0 to 100 with up to four decimals.
    fn percent(&mut self) -> PResult<Percent> {
        let (text, span) = self.number_text("a percentage such as `5%`")?;
        let bad = |m: &str| Problem::new(span.clone(), m.to_string());
        let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
        if whole.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(
                bad(&format!("`{text}` is not a percentage")).hint("for example `5%` or `0.5%`")
            );
        }
        if frac.len() > 4 {
            return Err(bad("a percentage has at most four decimals"));
        }
        let whole: u64 = whole.parse().map_err(|_| bad("percentage out of range"))?;
        let frac: u64 = format!("{frac:0<4}").parse().unwrap_or(0);
        let millionths = whole.saturating_mul(10_000).saturating_add(frac);
        self.punct("%")?;
        if millionths > u64::from(Percent::ALL.0) {
            return Err(bad(&format!("{text}% is more than 100%")));
        }
        Ok(Percent(millionths as u32))
    }
}
