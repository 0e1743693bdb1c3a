//! Expectations: `== RESULT` after a statement, and the `expect` statements.

use super::{unknown, LineParser, PResult};
use crate::diag::Problem;
use crate::lexer::Tok;
use crate::model::*;
use crate::validate::{Kind, NameRef};

impl LineParser<'_> {
    pub(super) fn expectation(&mut self, names: &mut Vec<NameRef>) -> PResult<Option<Expectation>> {
        let result = if self.eat_punct("==") {
            Some(self.result(names)?)
        } else {
            None
        };
        let within = if self.eat_ident("within") {
            Some(self.duration()?)
        } else {
            None
        };
        if result.is_none() && within.is_none() {
            if let Some(Tok::Punct(p)) = self.peek() {
                if matches!(*p, "!=" | "<" | "<=" | ">" | ">=" | "=") {
                    return Err(Problem::new(
                        self.span(),
                        format!("a statement's result is checked with `==`, not `{p}`"),
                    ));
                }
            }
            return Ok(None);
        }
        Ok(Some(Expectation { result, within }))
    }

    pub(super) fn result(&mut self, names: &mut Vec<NameRef>) -> PResult<Expected> {
        match self.peek().cloned() {
            Some(Tok::Ident(w)) if w == "ok" => {
                self.pos += 1;
                if !self.eat_punct("|") {
                    return Ok(Expected::Ok);
                }
                match self.result(names)? {
                    Expected::Errors(errors) => Ok(Expected::OkOr(errors)),
                    _ => Err(self.error("an errno name after `ok|`")),
                }
            }
            Some(Tok::Ident(w)) if w == "EOF" => {
                self.pos += 1;
                if !self.eat_punct("|") {
                    return Ok(Expected::Eof);
                }
                match self.result(names)? {
                    Expected::Errors(errors) => Ok(Expected::EofOr(errors)),
                    _ => Err(self.error("an errno name after `EOF|`")),
                }
            }
            Some(Tok::Ident(w)) if w == "sent" && self.peek_at(1) == Some(&Tok::Punct("(")) => {
                self.pos += 2;
                let (s, span) = self.name("a socket name")?;
                names.push(NameRef::uses(s.clone(), span, &[Kind::Socket]));
                self.punct(")")?;
                Ok(Expected::Sent(s))
            }
            Some(Tok::Ident(w)) if w == "pattern" || w == "random" => {
                Ok(Expected::Data(self.data(names)?))
            }
            Some(Tok::Ident(w)) if w == "matches" => {
                self.pos += 1;
                let Some(Tok::Str(b)) = self.peek().cloned() else {
                    return Err(
                        self.error("a regular expression as a string: matches \"^HTTP/1\\.1 200\"")
                    );
                };
                self.pos += 1;
                let re = String::from_utf8(b).map_err(|_| {
                    Problem::new(self.prev_span(), "the regular expression is not UTF-8")
                })?;
                if let Err(e) = regex::bytes::Regex::new(&re) {
                    let first = e.to_string().lines().last().unwrap_or_default().to_string();
                    return Err(Problem::new(
                        self.prev_span(),
                        format!("not a regular expression: {first}"),
                    ));
                }
                Ok(Expected::Matches(re))
            }
            Some(Tok::Ident(_)) => {
                let mut errors = Vec::new();
                loop {
                    let (e, span) = self.name("an errno name")?;
                    if crate::errno::number(&e).is_none() {
                        let mut p = unknown(
                            &e,
                            span,
                            &crate::errno::names().collect::<Vec<_>>(),
                            "errno",
                        );
                        if e.eq_ignore_ascii_case("ok") || e.eq_ignore_ascii_case("eof") {
                            p = p.hint(format!(
                                "write `{}`",
                                if e.eq_ignore_ascii_case("ok") {
                                    "ok"
                                } else {
                                    "EOF"
                                }
                            ));
                        }
                        return Err(p);
                    }
                    errors.push(e);
                    if !self.eat_punct("|") {
                        break;
                    }
                }
                Ok(Expected::Errors(errors))
            }
            Some(Tok::Number(_)) => Ok(Expected::Size(self.size()?)),
            Some(Tok::Str(_)) | Some(Tok::Hex(_)) => Ok(Expected::Data(self.data(names)?)),
            _ => {
                Err(self
                    .error("a result: ok, EOF, an errno, data, a size, sent(S) or matches \"RE\""))
            }
        }
    }

    pub(super) fn expect_statement(&mut self, names: &mut Vec<NameRef>) -> PResult<Statement> {
        if self.at_ident("wire") && matches!(self.peek_at(1), Some(Tok::Ident(_))) {
            self.pos += 1;
            return self.expect_wire(names);
        }
        if self.at_ident("link") && matches!(self.peek_at(1), Some(Tok::Ident(_))) {
            self.pos += 1;
            return self.expect_link(names);
        }
        let (subject, span) = self.name("a handle, socket or listener")?;
        if self.at_ident("running") || self.at_ident("exited") {
            let running = self.eat_ident("running");
            if !running {
                self.pos += 1;
            }
            names.push(NameRef::uses(subject.clone(), span, &[Kind::Target]));
            return Ok(Statement::ExpectTarget {
                target: subject,
                running,
            });
        }
        if self.eat_ident("pending") {
            names.push(NameRef::uses(subject.clone(), span, &[Kind::Handle]));
            let duration = if self.eat_ident("for") {
                Some(self.duration()?)
            } else {
                None
            };
            return Ok(Statement::ExpectPending {
                handle: subject,
                duration,
            });
        }
        if !self.eat_punct(".") {
            return Err(self.error("`.PROPERTY` or `pending`"));
        }
        let property = self.property()?;
        let prop_span = self.prev_span();
        let kinds: &'static [Kind] = match property {
            Property::Queued => &[Kind::Listener],
            Property::Peer | Property::Unread | Property::Unsent => &[Kind::Socket],
            Property::Fds => &[Kind::Target],
            _ => &[Kind::Socket, Kind::Listener],
        };
        names.push(NameRef::uses(subject.clone(), span, kinds));
        let op_span = self.span();
        let op = self.compare_op()?;
        if !property.is_numeric() && !matches!(op, CompareOp::Eq | CompareOp::Ne) {
            return Err(Problem::new(
                op_span,
                format!(
                    "`{}` compares numbers; `{}` is not a number",
                    op.symbol(),
                    property.name()
                ),
            )
            .hint("use `==` or `!=`"));
        }
        let value = match self.peek().cloned() {
            Some(Tok::Number(_)) if property.is_numeric() => Value::Number(self.size()?),
            Some(Tok::Addr(text)) if matches!(property, Property::Peer | Property::Local) => {
                self.pos += 1;
                Value::Addr(text.parse().map_err(|_| {
                    Problem::new(self.prev_span(), format!("`{text}` is not an address"))
                })?)
            }
            Some(Tok::Ident(n)) if property == Property::State => {
                self.pos += 1;
                if !TCP_STATES.contains(&n.as_str()) {
                    return Err(unknown(&n, self.prev_span(), &TCP_STATES, "TCP state"));
                }
                Value::Name(n)
            }
            Some(Tok::Ident(n)) => {
                self.pos += 1;
                let nspan = self.prev_span();
                if self.eat_punct(".") {
                    let other = self.property()?;
                    if other.is_numeric() != property.is_numeric()
                        || (other == Property::State) != (property == Property::State)
                    {
                        return Err(Problem::new(
                            nspan.start..self.prev_span().end,
                            format!(
                                "`{}` cannot be compared with `{}`",
                                property.name(),
                                other.name()
                            ),
                        ));
                    }
                    names.push(NameRef::uses(
                        n.clone(),
                        nspan,
                        &[Kind::Socket, Kind::Listener],
                    ));
                    Value::Property(n, other)
                } else if matches!(property, Property::Peer | Property::Local) {
                    names.push(NameRef::uses(
                        n.clone(),
                        nspan,
                        &[Kind::Socket, Kind::Listener],
                    ));
                    Value::Name(n)
                } else {
                    return Err(
                        Problem::new(nspan, format!("expected a number, found `{n}`")).hint(
                            format!(
                                "`{}` is a number; compare it with a number or another property",
                                property.name()
                            ),
                        ),
                    );
                }
            }
            _ => {
                return Err(self.error(match property {
                    Property::State => "a TCP state such as `ESTABLISHED`",
                    Property::Peer | Property::Local => "a name or an address",
                    _ => "a number",
                }))
            }
        };
        let _ = prop_span;
        Ok(Statement::ExpectProperty {
            subject,
            property,
            op,
            value,
        })
    }

    pub(super) fn compare_op(&mut self) -> PResult<CompareOp> {
        let op = match self.peek() {
            Some(Tok::Punct("==")) => CompareOp::Eq,
            Some(Tok::Punct("!=")) => CompareOp::Ne,
            Some(Tok::Punct("<")) => CompareOp::Lt,
            Some(Tok::Punct("<=")) => CompareOp::Le,
            Some(Tok::Punct(">")) => CompareOp::Gt,
            Some(Tok::Punct(">=")) => CompareOp::Ge,
            _ => return Err(self.error("a comparison (`==`, `!=`, `<`, `<=`, `>`, `>=`)")),
        };
        self.pos += 1;
        Ok(op)
    }

    /// `A -> B count FLAGS OP N` or `A -> B bytes OP N`, after `expect wire`.
    pub(super) fn expect_wire(&mut self, names: &mut Vec<NameRef>) -> PResult<Statement> {
        let mut endpoint = |p: &mut Self, what| -> PResult<String> {
            let (n, span) = p.name(what)?;
            names.push(NameRef::uses(
                n.clone(),
                span,
                &[Kind::Socket, Kind::Listener],
            ));
            Ok(n)
        };
        let from = endpoint(self, "the sending socket or listener")?;
        self.punct("->")?;
        let to = endpoint(self, "the receiving socket or listener")?;
        let measure = if self.eat_ident("bytes") {
            WireMeasure::Bytes
        } else if self.eat_ident("count") {
            match self.peek() {
                Some(Tok::Ident(_)) => WireMeasure::Count(self.tcp_flags()?),
                _ => WireMeasure::Count(String::new()),
            }
        } else {
            return Err(self.error("`count` or `bytes`"));
        };
        let op = self.compare_op()?;
        let value = self.size()?;
        Ok(Statement::ExpectWire {
            from,
            to,
            measure,
            op,
            value,
        })
    }

    /// TCP flag letters, such as `SA`.
    pub(super) fn tcp_flags(&mut self) -> PResult<String> {
        let Some(Tok::Ident(flags)) = self.peek().cloned() else {
            return Err(self.error("TCP flags such as `SA`"));
        };
        if let Some(bad) = flags.chars().find(|c| !"SFRPAUEC".contains(*c)) {
            return Err(
                Problem::new(self.span(), format!("`{bad}` is not a TCP flag"))
                    .hint("flags are S (SYN), F (FIN), R (RST), P (PSH), A (ACK), U, E, C"),
            );
        }
        self.pos += 1;
        Ok(flags)
    }

    pub(super) fn property(&mut self) -> PResult<Property> {
        let (p, span) = self.name("a property")?;
        Property::ALL
            .into_iter()
            .find(|q| q.name() == p)
            .ok_or_else(|| unknown(&p, span, &Property::ALL.map(Property::name), "property"))
    }
}
