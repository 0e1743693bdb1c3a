//! The parser: scenario text to [`Scenario`], collecting every problem it can find.
//!
//! This module drives it line by line and holds the token cursor ([`LineParser`]); the
//! grammar is in [`statements`], [`expectations`], [`faults`] and [`literals`], and the lines
//! the lexer does not take, with range expansion, in [`lines`].

mod expectations;
mod faults;
mod lines;
mod literals;
mod statements;
mod wire;

use std::ops::Range;
use std::time::Duration;

use crate::diag::{Diagnostics, Problem, MAX_PROBLEMS};
use crate::lexer::{lex_line, Tok, Token};
use crate::model::*;
use crate::validate::{validate, NameRef};

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
    "host",
    "link",
    "seed",
    "drop",
    "hold",
    "release",
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
                Ok(kv) => {
                    scenario.settings.sysctls.push(kv);
                    let line = u32::try_from(index + 1).unwrap_or(u32::MAX);
                    scenario.settings.sysctl_lines.push(line);
                }
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
        // Blank and comment lines are no statements.
        let code = line.split('#').next().is_some_and(|c| !c.trim().is_empty());
        statements += if code { variants.len() } else { 0 };
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
                Ok(Item::Seed(n, span)) => {
                    if scenario.settings.seed.replace(n).is_some() {
                        problems.push(Problem::new(span, "`seed` is set twice"));
                    }
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
    Seed(u64, Range<usize>),
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
}

/// "unknown X `word`", with a "did you mean" hint when a known word is close.
fn unknown(word: &str, span: Range<usize>, known: &[&str], what: &str) -> Problem {
    let p = Problem::new(span, format!("unknown {what} `{word}`"));
    match closest(word, known) {
        Some(k) => p.hint(format!("did you mean `{k}`?")),
        None => p.hint(format!("expected one of: {}", known.join(", "))),
    }
}

/// The word of `known` that `word` is most likely a misspelling of, if one is close enough:
/// two edits (three for a long word), ignoring case.
///
/// ```
/// use sockharness_script::closest;
/// let keys = ["net.core.somaxconn", "net.ipv4.tcp_fin_timeout"];
/// assert_eq!(closest("net.ipv4.tcp_fin_timeot", &keys), Some("net.ipv4.tcp_fin_timeout"));
/// assert_eq!(closest("net.ipv4.something_else", &keys), None);
/// ```
pub fn closest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    let (d, k) = known
        .iter()
        .map(|k| {
            (
                strsim::damerau_levenshtein(&word, &k.to_ascii_lowercase()),
                *k,
            )
        })
        .min()?;
    (d <= 2 || (d <= 3 && word.len() > 6)).then_some(k)
}

pub use faults::parse_faults;
pub use lines::MAX_STATEMENTS;
use lines::{expand_ranges, require_line, sysctl_line};
pub(crate) use literals::{parse_duration, parse_size};
