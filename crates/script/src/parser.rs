//! The parser: scenario text to [`Scenario`], collecting every problem it can find.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use super::diag::{Diagnostics, Problem, MAX_PROBLEMS};
use super::lexer::{lex_line, Tok, Token};
use super::model::*;
use super::validate::{validate, Kind, NameRef};

/// The largest data literal, read buffer or `exact` size.
pub const MAX_DATA: u64 = 1 << 30;

/// Statement and setting keywords, for "did you mean" hints.
const KEYWORDS: &[&str] = &[
    "timeout",
    "tolerance",
    "sysctl",
    "listen",
    "connect",
    "accept",
    "send",
    "write",
    "recv",
    "read",
    "shutdown",
    "close",
    "abort",
    "set",
    "sleep",
    "wait",
    "expect",
    "target",
    "stop",
    "kill",
    "proxy",
    "fault",
    "require",
];

const OPTIONS: &[&str] = &[
    "rcvbuf",
    "sndbuf",
    "nodelay",
    "reuseaddr",
    "reuseport",
    "keepalive",
];

/// A parsed step with what validation needs to know about its names.
pub(crate) struct ParsedStep {
    pub(crate) step: Step,
    pub(crate) names: Vec<NameRef>,
    /// Span of the expectation, for problems with it.
    pub(crate) expect_span: Option<Range<usize>>,
}

/// Parses a scenario file's bytes. `path` is used in diagnostics only.
///
/// ```
/// let s = sockharness_script::parse("demo.scenario", b"listen srv\nconnect cli to srv\n").unwrap();
/// assert_eq!(s.steps.len(), 2);
///
/// let err = sockharness_script::parse("demo.scenario", b"lisen srv\n").unwrap_err();
/// assert!(err.to_string().starts_with("demo.scenario:1:1: error: unknown statement `lisen`"));
/// assert!(err.to_string().contains("did you mean `listen`?"));
/// ```
pub fn parse(path: &str, input: &[u8]) -> Result<Scenario, Diagnostics> {
    let mut source = String::with_capacity(input.len());
    let mut problems = Vec::new();
    let mut scenario = Scenario::default();
    let mut parsed = Vec::new();
    let mut seen_timeout = false;
    let mut statements = 0usize;
    let mut seen_tolerance = false;
    // Names on lines that did not parse: they may define something, so later uses of them are
    // not reported again as undefined.
    let mut maybe_defined = std::collections::HashSet::new();

    for (index, raw) in input.split(|&b| b == b'\n').enumerate() {
        let base = source.len();
        let line = match std::str::from_utf8(raw) {
            Ok(line) => line,
            Err(e) => {
                let good = String::from_utf8_lossy(&raw[..e.valid_up_to()]).len();
                source.push_str(&String::from_utf8_lossy(raw));
                source.push('\n');
                problems.push(
                    Problem::new(base + good..base + good + 1, "invalid UTF-8").hint(
                        "scenario files are UTF-8 text; write bytes as \"\\xHH\" or hex\"..\"",
                    ),
                );
                continue;
            }
        };
        source.push_str(line);
        source.push('\n');
        // A program name may hold characters the lexer does not take (`redis-server`).
        if let Some(program) = require_line(line) {
            match program {
                Ok(name) => scenario.settings.requires.push(name),
                Err(message) => problems.push(
                    Problem::new(base..base + line.len().max(1), message)
                        .hint("for example `require nginx`"),
                ),
            }
            continue;
        }
        // A sysctl's value is free text ("4096 87380 6291456"), so the line is not lexed.
        if let Some(setting) = sysctl_line(line, base) {
            match setting {
                Ok(kv) => scenario.settings.sysctls.push(kv),
                Err(p) => problems.push(p),
            }
            continue;
        }
        // `c[1..3]` expands the line into one statement per index.
        let variants = match expand_ranges(line) {
            Ok(None) => vec![line.to_string()],
            Ok(Some(v)) => v,
            Err(message) => {
                problems.push(Problem::new(base..base + line.len().max(1), message));
                continue;
            }
        };
        statements += variants.len();
        if statements > MAX_STATEMENTS {
            // Nothing after this line is parsed: a small file must not take unbounded time and
            // memory to reject.
            problems.push(
                Problem::new(
                    base..base + line.len().max(1),
                    format!("the file expands to more than {MAX_STATEMENTS} statements here"),
                )
                .hint("ranges multiply lines: use fewer or smaller ranges"),
            );
            break;
        }
        for line in variants.iter().map(String::as_str) {
            let tokens = match lex_line(line, base) {
                Ok(t) => t,
                Err(p) => {
                    problems.push(p);
                    continue;
                }
            };
            if tokens.is_empty() {
                continue;
            }
            let mut p = LineParser {
                toks: &tokens,
                pos: 0,
                eol: base + line.trim_end().len(),
            };
            let lineno = u32::try_from(index + 1).unwrap_or(u32::MAX);
            match p.line_item() {
                Ok(Item::Timeout(d, span)) => {
                    if std::mem::replace(&mut seen_timeout, true) {
                        problems.push(Problem::new(span, "`timeout` is set twice"));
                    }
                    scenario.settings.timeout = Some(d);
                }
                Ok(Item::Tolerance(d, span)) => {
                    if std::mem::replace(&mut seen_tolerance, true) {
                        problems.push(Problem::new(span, "`tolerance` is set twice"));
                    }
                    scenario.settings.tolerance = Some(d);
                }
                Ok(Item::Step(mut ps)) => {
                    let first = tokens[0].span.start - base;
                    let last = tokens[tokens.len() - 1].span.end - base;
                    let text = line[first..last].to_string();
                    ps.step.origin = Some(Origin { line: lineno, text });
                    parsed.push(*ps);
                }
                Err(p) => {
                    problems.push(p);
                    maybe_defined.extend(tokens.iter().skip(1).filter_map(|t| match &t.tok {
                        Tok::Ident(s) => Some(s.clone()),
                        _ => None,
                    }));
                }
            }
        }
    }

    problems.extend(validate(&parsed, &maybe_defined));
    scenario.steps = parsed.into_iter().map(|p| p.step).collect();
    if problems.is_empty() {
        return Ok(scenario);
    }
    problems.sort_by_key(|p| p.span.start);
    let omitted = problems.len().saturating_sub(MAX_PROBLEMS);
    problems.truncate(MAX_PROBLEMS);
    Err(Diagnostics {
        path: path.to_string(),
        source,
        problems,
        omitted,
    })
}

enum Item {
    Timeout(Duration, Range<usize>),
    Tolerance(Duration, Range<usize>),
    Step(Box<ParsedStep>),
}

struct LineParser<'a> {
    toks: &'a [Token],
    pos: usize,
    /// Offset of the end of the line's text, where "expected ..." at end of line points.
    eol: usize,
}

type PResult<T> = Result<T, Problem>;

impl LineParser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn peek_at(&self, k: usize) -> Option<&Tok> {
        self.toks.get(self.pos + k).map(|t| &t.tok)
    }

    fn span(&self) -> Range<usize> {
        self.toks
            .get(self.pos)
            .map_or(self.eol..self.eol + 1, |t| t.span.clone())
    }

    fn prev_span(&self) -> Range<usize> {
        self.toks[self.pos.saturating_sub(1)].span.clone()
    }

    fn found(&self) -> String {
        self.peek()
            .map_or_else(|| "end of line".to_string(), Tok::describe)
    }

    fn error(&self, expected: &str) -> Problem {
        Problem::new(
            self.span(),
            format!("expected {expected}, found {}", self.found()),
        )
    }

    fn at_ident(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s == word)
    }

    fn at_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Some(Tok::Punct(q)) if *q == p)
    }

    fn eat_ident(&mut self, word: &str) -> bool {
        let at = self.at_ident(word);
        if at {
            self.pos += 1;
        }
        at
    }

    fn eat_punct(&mut self, p: &str) -> bool {
        let at = self.at_punct(p);
        if at {
            self.pos += 1;
        }
        at
    }

    fn keyword(&mut self, word: &str) -> PResult<()> {
        if self.eat_ident(word) {
            Ok(())
        } else {
            Err(self.error(&format!("`{word}`")))
        }
    }

    fn punct(&mut self, p: &str) -> PResult<()> {
        if self.eat_punct(p) {
            Ok(())
        } else {
            Err(self.error(&format!("`{p}`")))
        }
    }

    fn name(&mut self, what: &str) -> PResult<(String, Range<usize>)> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok((s, self.prev_span()))
            }
            _ => Err(self.error(what)),
        }
    }

    fn number_text(&mut self, what: &str) -> PResult<(String, Range<usize>)> {
        match self.peek() {
            Some(Tok::Number(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok((s, self.prev_span()))
            }
            _ => Err(self.error(what)),
        }
    }

    fn duration(&mut self) -> PResult<Duration> {
        let (text, span) = self.number_text("a duration such as `250ms`")?;
        parse_duration(&text).map_err(|m| {
            Problem::new(span, m).hint("durations are a number and `us`, `ms` or `s`: `1.5s`")
        })
    }

    fn size(&mut self) -> PResult<u64> {
        let (text, span) = self.number_text("a size such as `64KiB`")?;
        parse_size(&text).map_err(|m| {
            Problem::new(span, m)
                .hint("sizes are an integer with an optional `B`, `KiB`, `MiB` or `GiB`")
        })
    }

    /// A size that becomes a buffer or a data literal: at most [`MAX_DATA`], so that a typo
    /// cannot ask for more memory than the machine has.
    fn data_size(&mut self) -> PResult<u64> {
        let size = self.size()?;
        if size > MAX_DATA {
            return Err(Problem::new(
                self.prev_span(),
                "data and buffers are limited to 1GiB",
            ));
        }
        Ok(size)
    }

    fn integer(&mut self, what: &str) -> PResult<u64> {
        let (text, span) = self.number_text(what)?;
        text.parse::<u64>()
            .map_err(|_| Problem::new(span, format!("`{text}` is not a whole number")))
    }

    fn end(&self) -> PResult<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(Problem::new(
                self.span(),
                format!("unexpected {} at the end of the statement", self.found()),
            )),
        }
    }

    fn line_item(&mut self) -> PResult<Item> {
        let (word, span) = match self.peek() {
            Some(Tok::Ident(_)) => self.name("a statement")?,
            _ => return Err(self.error("a statement")),
        };
        let mut names = Vec::new();
        let statement = match word.as_str() {
            "timeout" => {
                let d = self.duration()?;
                self.end()?;
                return Ok(Item::Timeout(d, span));
            }
            "tolerance" => {
                let d = self.duration()?;
                self.end()?;
                return Ok(Item::Tolerance(d, span));
            }
            "listen" => {
                let (name, nspan) = self.name("a listener name")?;
                names.push(NameRef::def(name.clone(), nspan, Kind::Listener));
                let mut on = Endpoint::Addr(SocketAddr::from(([127, 0, 0, 1], 0)));
                let mut backlog = None;
                let mut opts = SockOpts::default();
                loop {
                    if self.eat_ident("on") {
                        on = self.endpoint(&mut names)?;
                    } else if self.eat_ident("backlog") {
                        self.punct("=")?;
                        let n = self.integer("a backlog such as `8`")?;
                        backlog =
                            Some(u32::try_from(n).map_err(|_| {
                                Problem::new(self.prev_span(), "backlog is too large")
                            })?);
                    } else if !self.option(&mut opts, true)? {
                        break;
                    }
                }
                Statement::Listen {
                    name,
                    on,
                    backlog,
                    opts,
                }
            }
            "connect" => {
                let (name, nspan) = self.name("a socket name")?;
                self.keyword("to")?;
                let to = self.endpoint(&mut names)?;
                names.push(NameRef::def(name.clone(), nspan, Kind::Socket));
                let mut opts = SockOpts::default();
                while self.option(&mut opts, false)? {}
                Statement::Connect { name, to, opts }
            }
            "accept" => {
                let (listener, lspan) = self.name("a listener name")?;
                names.push(NameRef::uses(listener.clone(), lspan, &[Kind::Listener]));
                self.keyword("as")?;
                let (name, nspan) = self.name("a name for the accepted socket")?;
                names.push(NameRef::def(name.clone(), nspan, Kind::Socket));
                Statement::Accept { listener, name }
            }
            "send" | "write" => {
                let socket = self.socket(&mut names)?;
                let data = self.data(&mut names)?;
                let mode = if self.eat_ident("nowait") {
                    SendMode::Nowait
                } else {
                    let mut chunk = None;
                    let mut gap = None;
                    loop {
                        if self.eat_ident("chunk") {
                            self.punct("=")?;
                            let (size, span) = (self.size()?, self.prev_span());
                            if size == 0 {
                                return Err(Problem::new(span, "`chunk` must be at least 1 byte"));
                            }
                            chunk = Some(size);
                        } else if self.eat_ident("gap") {
                            self.punct("=")?;
                            gap = Some(self.duration()?);
                        } else {
                            break;
                        }
                    }
                    SendMode::Blocking { chunk, gap }
                };
                let call = if word == "send" {
                    IoCall::Socket
                } else {
                    IoCall::File
                };
                Statement::Send {
                    socket,
                    data,
                    mode,
                    call,
                }
            }
            "recv" | "read" => {
                let socket = self.socket(&mut names)?;
                let mode = if self.eat_ident("exact") {
                    RecvMode::Exact(self.data_size()?)
                } else if self.eat_ident("until") {
                    let data = self.data(&mut names)?;
                    if data.is_empty() {
                        return Err(Problem::new(
                            self.prev_span(),
                            "`until` needs at least one byte",
                        ));
                    }
                    RecvMode::Until(data)
                } else if self.eat_ident("all") {
                    RecvMode::All
                } else if matches!(self.peek(), Some(Tok::Number(_))) {
                    let size = self.data_size()?;
                    if size == 0 {
                        return Err(Problem::new(
                            self.prev_span(),
                            "a read buffer must hold at least 1 byte",
                        ));
                    }
                    RecvMode::Once {
                        size,
                        nowait: self.eat_ident("nowait"),
                    }
                } else {
                    return Err(self.error("a buffer size, `exact`, `until` or `all`"));
                };
                let call = if word == "recv" {
                    IoCall::Socket
                } else {
                    IoCall::File
                };
                Statement::Recv { socket, mode, call }
            }
            "shutdown" => {
                let socket = self.socket(&mut names)?;
                let how = if self.eat_ident("read") {
                    ShutdownHow::Read
                } else if self.eat_ident("write") {
                    ShutdownHow::Write
                } else if self.eat_ident("both") {
                    ShutdownHow::Both
                } else {
                    return Err(self.error("`read`, `write` or `both`"));
                };
                Statement::Shutdown { socket, how }
            }
            "close" => {
                let (socket, s) = self.name("a socket or listener name")?;
                names.push(NameRef::uses(
                    socket.clone(),
                    s,
                    &[Kind::Socket, Kind::Listener],
                ));
                Statement::Close { socket }
            }
            "abort" => Statement::Abort {
                socket: self.socket(&mut names)?,
            },
            "set" => {
                let (socket, s) = self.name("a socket or listener name")?;
                names.push(NameRef::uses(
                    socket.clone(),
                    s,
                    &[Kind::Socket, Kind::Listener],
                ));
                let mut opts = SockOpts::default();
                if !self.option(&mut opts, false)? {
                    return Err(self.error("an option such as `nodelay` or `rcvbuf=4KiB`"));
                }
                while self.option(&mut opts, false)? {}
                Statement::Set { socket, opts }
            }
            "sleep" => Statement::Sleep {
                duration: self.duration()?,
            },
            "wait" => {
                let (handle, s) = self.name("a background handle")?;
                names.push(NameRef::uses(handle.clone(), s, &[Kind::Handle]));
                Statement::Wait { handle }
            }
            "target" => {
                let (name, nspan) = self.name("a target name")?;
                names.push(NameRef::def(name.clone(), nspan, Kind::Target));
                let source = if self.eat_ident("cmd") {
                    let command = match self.peek().cloned() {
                        Some(Tok::Str(b)) => {
                            self.pos += 1;
                            String::from_utf8(b).map_err(|_| {
                                Problem::new(self.prev_span(), "the command is not UTF-8")
                            })?
                        }
                        _ => {
                            return Err(self
                                .error("the command as a string: cmd \"./server --port {port}\""))
                        }
                    };
                    let ready = if self.eat_ident("ready") {
                        self.punct("=")?;
                        Some(self.duration()?)
                    } else {
                        None
                    };
                    TargetSource::Cmd { command, ready }
                } else if self.eat_ident("at") {
                    let Some(Tok::Addr(text)) = self.peek().cloned() else {
                        return Err(self.error("an address such as `127.0.0.1:8080`"));
                    };
                    self.pos += 1;
                    let addr: SocketAddr = text.parse().map_err(|_| {
                        Problem::new(self.prev_span(), format!("`{text}` is not an address"))
                    })?;
                    if !addr.ip().is_loopback() {
                        return Err(Problem::new(
                            self.prev_span(),
                            "targets must be on the loopback",
                        )
                        .hint("sockharness sends traffic only to loopback addresses"));
                    }
                    TargetSource::At(addr)
                } else if self.eat_ident("builtin") {
                    let (b, bspan) = self.name("a builtin server: echo, chat or http")?;
                    if !BUILTINS.contains(&b.as_str()) {
                        return Err(unknown(&b, bspan, &BUILTINS, "builtin server"));
                    }
                    TargetSource::Builtin(b)
                } else {
                    return Err(self.error("`cmd`, `at` or `builtin`"));
                };
                Statement::Target { name, source }
            }
            "proxy" => {
                let (name, nspan) = self.name("a proxy name")?;
                names.push(NameRef::def(name.clone(), nspan, Kind::Target));
                self.keyword("to")?;
                let (to, tspan) = self.name("the target or listener to forward to")?;
                names.push(NameRef::uses(
                    to.clone(),
                    tspan,
                    &[Kind::Target, Kind::Listener],
                ));
                let faults = self.faults()?;
                Statement::Proxy { name, to, faults }
            }
            "fault" => {
                let (proxy, pspan) = self.name("a proxy name")?;
                names.push(NameRef::uses(proxy.clone(), pspan, &[Kind::Target]));
                let faults = self.faults()?;
                Statement::SetFaults { proxy, faults }
            }
            "stop" | "kill" => {
                let (target, tspan) = self.name("a target name")?;
                names.push(NameRef::uses(target.clone(), tspan, &[Kind::Target]));
                if word == "stop" {
                    Statement::Stop { target }
                } else {
                    Statement::Kill { target }
                }
            }
            "expect" => {
                let statement = self.expect_statement(&mut names)?;
                self.end()?;
                return Ok(Item::Step(Box::new(ParsedStep {
                    step: Step {
                        statement,
                        background: None,
                        expect: None,
                        origin: None,
                    },
                    names,
                    expect_span: None,
                })));
            }
            _ => return Err(unknown(&word, span, KEYWORDS, "statement")),
        };

        let mut background = None;
        if self.eat_punct("&") {
            let (h, s) = self.name("a handle name after `&`")?;
            names.push(NameRef::def(h.clone(), s, Kind::Handle));
            background = Some(h);
        }
        let start = self.span().start;
        let expect = self.expectation(&mut names)?;
        let expect_span = expect.as_ref().map(|_| start..self.prev_span().end);
        self.end()?;
        Ok(Item::Step(Box::new(ParsedStep {
            step: Step {
                statement,
                background,
                expect,
                origin: None,
            },
            names,
            expect_span,
        })))
    }

    fn socket(&mut self, names: &mut Vec<NameRef>) -> PResult<String> {
        let (s, span) = self.name("a socket name")?;
        names.push(NameRef::uses(s.clone(), span, &[Kind::Socket]));
        Ok(s)
    }

    fn endpoint(&mut self, names: &mut Vec<NameRef>) -> PResult<Endpoint> {
        match self.peek() {
            Some(Tok::Addr(text)) => {
                let text = text.clone();
                self.pos += 1;
                text.parse::<SocketAddr>().map(Endpoint::Addr).map_err(|_| {
                    Problem::new(self.prev_span(), format!("`{text}` is not an address"))
                        .hint("addresses are `127.0.0.1:8080` or `[::1]:8080`")
                })
            }
            Some(Tok::Ident(_)) => {
                let (n, span) = self.name("")?;
                names.push(NameRef::uses(
                    n.clone(),
                    span,
                    &[Kind::Listener, Kind::Socket, Kind::Target],
                ));
                Ok(Endpoint::Name(n))
            }
            _ => Err(self.error("an address or a name")),
        }
    }

    /// Parses one socket option if one is next; `Ok(false)` when the next token is not one.
    fn option(&mut self, opts: &mut SockOpts, listen: bool) -> PResult<bool> {
        let Some(Tok::Ident(word)) = self.peek() else {
            return Ok(false);
        };
        let word = word.clone();
        let span = self.span();
        match word.as_str() {
            "rcvbuf" | "sndbuf" => {
                self.pos += 1;
                self.punct("=")?;
                let size = self.size()?;
                let slot = if word == "rcvbuf" {
                    &mut opts.rcvbuf
                } else {
                    &mut opts.sndbuf
                };
                *slot = Some(size);
            }
            "nodelay" => opts.nodelay = true,
            "reuseaddr" => opts.reuseaddr = true,
            "reuseport" => opts.reuseport = true,
            "keepalive" => opts.keepalive = true,
            "within" => return Ok(false),
            _ => {
                let mut known = OPTIONS.to_vec();
                if listen {
                    known.extend(["backlog", "on"]);
                }
                return Err(unknown(&word, span, &known, "option"));
            }
        }
        if !matches!(word.as_str(), "rcvbuf" | "sndbuf") {
            self.pos += 1;
        }
        Ok(true)
    }

    fn data(&mut self, names: &mut Vec<NameRef>) -> PResult<Data> {
        let _ = names;
        match self.peek().cloned() {
            Some(Tok::Str(b)) | Some(Tok::Hex(b)) => {
                self.pos += 1;
                Ok(Data::Bytes(b))
            }
            Some(Tok::Ident(w)) if w == "pattern" => {
                self.pos += 1;
                self.punct("(")?;
                let size = self.data_size()?;
                self.punct(")")?;
                Ok(Data::Pattern(size))
            }
            Some(Tok::Ident(w)) if w == "random" => {
                self.pos += 1;
                self.punct("(")?;
                let size = self.data_size()?;
                self.punct(",")?;
                self.keyword("seed")?;
                self.punct("=")?;
                let seed = self.integer("a seed such as `1`")?;
                self.punct(")")?;
                Ok(Data::Random { size, seed })
            }
            _ => {
                Err(self.error("data: \"text\", hex\"..\", pattern(SIZE) or random(SIZE, seed=N)"))
            }
        }
    }

    fn expectation(&mut self, names: &mut Vec<NameRef>) -> PResult<Option<Expectation>> {
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

    fn result(&mut self, names: &mut Vec<NameRef>) -> PResult<Expected> {
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
                    if super::errno::number(&e).is_none() {
                        let mut p = unknown(
                            &e,
                            span,
                            &super::errno::names().collect::<Vec<_>>(),
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

    fn expect_statement(&mut self, names: &mut Vec<NameRef>) -> PResult<Statement> {
        if self.at_ident("wire") && matches!(self.peek_at(1), Some(Tok::Ident(_))) {
            self.pos += 1;
            return self.expect_wire(names);
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

    /// `FAULT...`: zero or more `up|down|both KIND [on conn N]`.
    fn faults(&mut self) -> PResult<Vec<Fault>> {
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
                if self.eat_ident("on") {
                    self.keyword("conn")?;
                    let n = self.integer("a connection number such as `1`")?;
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

    fn compare_op(&mut self) -> PResult<CompareOp> {
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
    fn expect_wire(&mut self, names: &mut Vec<NameRef>) -> PResult<Statement> {
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
            match self.peek().cloned() {
                Some(Tok::Ident(flags)) => {
                    if let Some(bad) = flags.chars().find(|c| !"SFRPAUEC".contains(*c)) {
                        return Err(Problem::new(
                            self.span(),
                            format!("`{bad}` is not a TCP flag"),
                        )
                        .hint("flags are S (SYN), F (FIN), R (RST), P (PSH), A (ACK), U, E, C"));
                    }
                    self.pos += 1;
                    WireMeasure::Count(flags)
                }
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

    fn property(&mut self) -> PResult<Property> {
        let (p, span) = self.name("a property")?;
        Property::ALL
            .into_iter()
            .find(|q| q.name() == p)
            .ok_or_else(|| unknown(&p, span, &Property::ALL.map(Property::name), "property"))
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

/// `require PROGRAM`: `None` when the line is something else.
fn require_line(line: &str) -> Option<Result<String, String>> {
    let rest = line.trim_start().strip_prefix("require")?;
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let name = rest.split('#').next().unwrap_or("").trim();
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c));
    Some(if ok {
        Ok(name.to_string())
    } else {
        Err(format!("`{name}` is not a program name"))
    })
}

/// The most statements one range may expand to.
const MAX_RANGE: u64 = 10_000;
/// The most statements a file may hold once its ranges are expanded.
pub const MAX_STATEMENTS: usize = 100_000;

/// Expands `NAME[a..b]` (and `NAME[i]`) into one line per index, every range on the line taking
/// the same index: `connect c[1..3] to web &h[1..3]` becomes `connect c1 to web &h1`, ... `None`
/// when the line has no range.
fn expand_ranges(line: &str) -> Result<Option<Vec<String>>, String> {
    // Pieces of the line: literal text, and ranges (name kept in the text before them).
    let mut pieces: Vec<(String, Option<(u64, u64)>)> = vec![(String::new(), None)];
    let bytes = line.as_bytes();
    let (mut i, mut in_string, mut found) = (0, false, false);
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            if c == b'\\' {
                // The escaped character, whatever its width, cannot end the string.
                let escaped: String = line[i..].chars().take(2).collect();
                if let Some(p) = pieces.last_mut() {
                    p.0.push_str(&escaped);
                }
                i += escaped.len();
                continue;
            }
            in_string = c != b'"';
        } else if c == b'"' {
            in_string = true;
        } else if c == b'#' {
            if let Some(p) = pieces.last_mut() {
                p.0.push_str(&line[i..]);
            }
            break;
        } else if c == b'['
            && i > 0
            && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')
        {
            if let Some(close) = line[i..].find(']') {
                let inner = &line[i + 1..i + close];
                let number = |s: &str| s.trim().parse::<u64>().ok();
                let range = match inner.split_once("..") {
                    Some((a, b)) => number(a).zip(number(b)),
                    None => number(inner).map(|n| (n, n)),
                };
                if let Some((a, b)) = range {
                    if b < a {
                        return Err(format!("range `[{inner}]` runs backwards"));
                    }
                    if b - a >= MAX_RANGE {
                        return Err(format!(
                            "range `[{inner}]` has more than {MAX_RANGE} indexes"
                        ));
                    }
                    pieces.push((String::new(), Some((a, b))));
                    pieces.push((String::new(), None));
                    found = true;
                    i += close + 1;
                    continue;
                }
            }
        }
        let ch = line[i..].chars().next().unwrap_or(' ');
        if let Some(p) = pieces.last_mut() {
            p.0.push(ch);
        }
        i += ch.len_utf8();
    }
    if !found {
        return Ok(None);
    }
    let spans: Vec<(u64, u64)> = pieces
        .iter()
        .filter_map(|p| p.1)
        .filter(|(a, b)| a != b)
        .collect();
    let (a, b) = match spans.first() {
        Some(first) => {
            if spans.iter().any(|s| s != first) {
                return Err("every range on a line must have the same bounds".into());
            }
            *first
        }
        None => (0, 0),
    };
    Ok(Some(
        (a..=b)
            .map(|k| {
                pieces
                    .iter()
                    .map(|(text, range)| match range {
                        Some((x, y)) if x == y => x.to_string(),
                        Some(_) => k.to_string(),
                        None => text.clone(),
                    })
                    .collect()
            })
            .collect(),
    ))
}

/// `sysctl KEY=VALUE`: `None` when the line is something else. The value runs to the end of the
/// line or to a `#` comment.
fn sysctl_line(line: &str, base: usize) -> Option<Result<(String, String), Problem>> {
    let indent = line.len() - line.trim_start().len();
    let rest = line[indent..].strip_prefix("sysctl")?;
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let at = |i: usize| base + i;
    let body_start = indent + "sysctl".len();
    let body = rest.split('#').next().unwrap_or("");
    let Some((key, value)) = body.split_once('=') else {
        return Some(Err(Problem::new(
            at(indent)..at(body_start),
            "expected `sysctl KEY=VALUE`",
        )
        .hint("for example `sysctl net.core.somaxconn=8`")));
    };
    let key_start = body_start + (key.len() - key.trim_start().len());
    let key_span = at(key_start)..at(key_start + key.trim().len().max(1));
    let key = key.trim();
    let key_ok = key.split('.').all(|part| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    });
    if !key_ok {
        return Some(Err(Problem::new(
            key_span,
            format!("`{key}` is not a sysctl key"),
        )
        .hint("keys are dotted names such as `net.core.somaxconn`")));
    }
    if !key.starts_with("net.") {
        return Some(Err(Problem::new(
            key_span,
            "only network sysctls (`net.*`) can be set",
        )
        .hint(
            "they live in the scenario's private network namespace; others would change the host",
        )));
    }
    let value = value.trim();
    if value.is_empty() {
        let eq = body_start + body.find('=').unwrap_or(0);
        return Some(Err(Problem::new(
            at(eq)..at(eq + 1),
            "missing sysctl value",
        )));
    }
    Some(Ok((key.to_string(), value.to_string())))
}

/// "unknown X `word`", with a "did you mean" hint when a known word is close.
fn unknown(word: &str, span: Range<usize>, known: &[&str], what: &str) -> Problem {
    let p = Problem::new(span, format!("unknown {what} `{word}`"));
    let best = known
        .iter()
        .map(|k| {
            (
                strsim::damerau_levenshtein(&word.to_ascii_lowercase(), &k.to_ascii_lowercase()),
                *k,
            )
        })
        .min();
    match best {
        Some((d, k)) if d <= 2 || (d <= 3 && word.len() > 6) => {
            p.hint(format!("did you mean `{k}`?"))
        }
        _ => p.hint(format!("expected one of: {}", known.join(", "))),
    }
}

/// Parses `250ms`, `1.5s`, `200us` exactly (no floating point, so printing round-trips).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let unit_ns: u128 = match unit {
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "" => return Err(format!("`{text}` needs a unit")),
        _ => return Err(format!("unknown duration unit `{unit}`")),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (num.contains('.') && frac.is_empty())
    {
        return Err(format!("`{text}` is not a duration"));
    }
    let int: u128 = int.parse().map_err(|_| format!("`{text}` is too long"))?;
    let mut nanos = int
        .checked_mul(unit_ns)
        .ok_or_else(|| format!("`{text}` is too long"))?;
    let mut scale = unit_ns;
    for d in frac.bytes() {
        scale /= 10;
        if scale == 0 {
            if d != b'0' {
                return Err(format!("`{text}` is finer than a nanosecond"));
            }
            continue;
        }
        nanos += u128::from(d - b'0') * scale;
    }
    let nanos = u64::try_from(nanos).map_err(|_| format!("`{text}` is too long"))?;
    Ok(Duration::from_nanos(nanos))
}

/// Parses `1000`, `64KiB`, `4MiB`.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let mult: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(format!("unknown size unit `{unit}`")),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{text}` is not a size"));
    }
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("`{text}` is too large"))
}
