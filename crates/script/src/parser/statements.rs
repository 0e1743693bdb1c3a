//! Statements: the first word of a line, and what each statement takes.

use std::net::SocketAddr;

use super::{unknown, Item, LineParser, PResult, ParsedStep, KEYWORDS, OPTIONS};
use crate::diag::Problem;
use crate::lexer::Tok;
use crate::model::*;
use crate::validate::{Kind, NameRef};

/// What `connect ... to NAME` may name.
const TO_KINDS: &[Kind] = &[Kind::Listener, Kind::Socket, Kind::Target];
/// What `listen ... on NAME` may name: a host too, for its address.
const ON_KINDS: &[Kind] = &[Kind::Listener, Kind::Socket, Kind::Target, Kind::Host];

impl LineParser<'_> {
    /// `on HOST` at the end of a target or proxy: the host it runs on.
    fn on_host(&mut self, names: &mut Vec<NameRef>) -> PResult<Option<String>> {
        if !self.eat_ident("on") {
            return Ok(None);
        }
        let (host, span) = self.name("a host name")?;
        names.push(NameRef::uses(host.clone(), span, &[Kind::Host]));
        Ok(Some(host))
    }

    pub(super) fn line_item(&mut self) -> PResult<Item> {
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
            "seed" => {
                let n = self.integer("a seed such as `42`")?;
                self.end()?;
                return Ok(Item::Seed(n, span));
            }
            "host" => self.host(&mut names)?,
            "link" => self.link(&mut names)?,
            "drop" | "hold" | "release" => self.packet_rule(&word, &mut names)?,
            "listen" => {
                let (name, nspan) = self.name("a listener name")?;
                names.push(NameRef::def(name.clone(), nspan, Kind::Listener));
                let mut on = Endpoint::Addr(SocketAddr::from(([127, 0, 0, 1], 0)));
                let mut backlog = None;
                let mut opts = SockOpts::default();
                loop {
                    if self.eat_ident("on") {
                        on = self.endpoint(&mut names, ON_KINDS)?;
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
                let from = if self.eat_ident("from") {
                    let (host, hspan) = self.name("a host")?;
                    names.push(NameRef::uses(host.clone(), hspan, &[Kind::Host]));
                    Some(host)
                } else {
                    None
                };
                self.keyword("to")?;
                let to = self.endpoint(&mut names, TO_KINDS)?;
                names.push(NameRef::def(name.clone(), nspan, Kind::Socket));
                let mut opts = SockOpts::default();
                while self.option(&mut opts, false)? {}
                Statement::Connect {
                    name,
                    from,
                    to,
                    opts,
                }
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
                            if b.contains(&0) {
                                // No program can be given one: C strings end at the first NUL.
                                return Err(Problem::new(
                                    self.prev_span(),
                                    "a command cannot contain a NUL byte (`\\0`)",
                                ));
                            }
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
                    // The bug zoo's names have dashes, which names do not: they are quoted.
                    let (b, bspan) = match self.peek().cloned() {
                        Some(Tok::Str(b)) => {
                            self.pos += 1;
                            (String::from_utf8_lossy(&b).into_owned(), self.prev_span())
                        }
                        _ => self.name("a builtin server: echo, chat or http")?,
                    };
                    if !BUILTINS.contains(&b.as_str()) {
                        return Err(unknown(&b, bspan, &BUILTINS, "builtin server"));
                    }
                    TargetSource::Builtin(b)
                } else {
                    return Err(self.error("`cmd`, `at` or `builtin`"));
                };
                let on = self.on_host(&mut names)?;
                if let (Some(host), TargetSource::At(_)) = (&on, &source) {
                    return Err(Problem::new(
                        self.prev_span(),
                        format!("a target `at` an address cannot run on host `{host}`"),
                    )
                    .hint("it is already running on this machine's loopback, which no host reaches; start it on the host with `cmd` or `builtin`"));
                }
                Statement::Target { name, source, on }
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
                let on = self.on_host(&mut names)?;
                Statement::Proxy {
                    name,
                    to,
                    faults,
                    on,
                }
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

    pub(super) fn socket(&mut self, names: &mut Vec<NameRef>) -> PResult<String> {
        let (s, span) = self.name("a socket name")?;
        names.push(NameRef::uses(s.clone(), span, &[Kind::Socket]));
        Ok(s)
    }

    pub(super) fn endpoint(
        &mut self,
        names: &mut Vec<NameRef>,
        kinds: &'static [Kind],
    ) -> PResult<Endpoint> {
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
                names.push(NameRef::uses(n.clone(), span, kinds));
                Ok(Endpoint::Name(n))
            }
            _ => Err(self.error("an address or a name")),
        }
    }

    /// Parses one socket option if one is next; `Ok(false)` when the next token is not one.
    pub(super) fn option(&mut self, opts: &mut SockOpts, listen: bool) -> PResult<bool> {
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
}
