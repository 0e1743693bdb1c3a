//! Splits one line of a scenario into tokens.
//!
//! The language is line-oriented, so the lexer works a line at a time and a broken line never
//! hides the problems of the next one.

use std::ops::Range;

use super::diag::Problem;

/// A token's kind and payload.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A name or keyword.
    Ident(String),
    /// A number with an optional unit suffix, as written: `250ms`, `1.5s`, `64KiB`, `3`.
    Number(String),
    /// An address literal: `127.0.0.1:0`, `[::1]:8080`.
    Addr(String),
    /// A `"..."` literal, unescaped.
    Str(Vec<u8>),
    /// A `hex"..."` literal, decoded.
    Hex(Vec<u8>),
    /// Punctuation: `== != <= >= -> < > & | ( ) , = . / %`
    Punct(&'static str),
}

impl Tok {
    /// How the token is described in messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Number(s) => format!("number `{s}`"),
            Tok::Addr(s) => format!("address `{s}`"),
            Tok::Str(_) => "a string".to_string(),
            Tok::Hex(_) => "a hex string".to_string(),
            Tok::Punct(p) => format!("`{p}`"),
        }
    }
}

/// A token and where it is, as byte offsets into the whole file.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) span: Range<usize>,
}

const PUNCT: [&str; 16] = [
    "==", "!=", "<=", ">=", "->", "<", ">", "&", "|", "(", ")", ",", "=", ".", "/", "%",
];

/// Tokenizes `line`, which starts at byte `base` of the file. Comments are dropped.
pub(crate) fn lex_line(line: &str, base: usize) -> Result<Vec<Token>, Problem> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\r' => i += 1,
            b'#' => break,
            b'"' => {
                let (value, end) = lex_string(line, i + 1, base)?;
                i = end;
                out.push(Token {
                    tok: Tok::Str(value),
                    span: base + start..base + i,
                });
            }
            b'h' if line[i..].starts_with("hex\"") => {
                let (value, end) = lex_hex(line, i + 4, base)?;
                i = end;
                out.push(Token {
                    tok: Tok::Hex(value),
                    span: base + start..base + i,
                });
            }
            b'[' => {
                // `[` only opens an IPv6 address literal: `[::1]:0`.
                let end = line[i..]
                    .find(']')
                    .map(|e| i + e + 1)
                    .ok_or_else(|| Problem::new(base + i..base + i + 1, "unclosed `[`"))?;
                let mut j = end;
                if bytes.get(j) == Some(&b':') {
                    j += 1;
                    while j < bytes.len() && bytes[j].is_ascii_digit() {
                        j += 1;
                    }
                }
                i = j;
                out.push(Token {
                    tok: Tok::Addr(line[start..i].to_string()),
                    span: base + start..base + i,
                });
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Ident(line[start..i].to_string()),
                    span: base + start..base + i,
                });
            }
            c if c.is_ascii_digit() => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.' || bytes[i] == b':')
                {
                    i += 1;
                }
                let text = &line[start..i];
                let is_addr = text.contains(':') || text.matches('.').count() > 1;
                out.push(Token {
                    tok: if is_addr {
                        Tok::Addr(text.to_string())
                    } else {
                        Tok::Number(text.to_string())
                    },
                    span: base + start..base + i,
                });
            }
            _ => {
                let Some(p) = PUNCT.iter().find(|p| line[i..].starts_with(**p)) else {
                    let ch = line[i..].chars().next().unwrap_or('?');
                    return Err(Problem::new(
                        base + i..base + i + ch.len_utf8(),
                        format!("unexpected character {}", describe_char(ch)),
                    ));
                };
                i += p.len();
                out.push(Token {
                    tok: Tok::Punct(p),
                    span: base + start..base + i,
                });
            }
        }
    }
    Ok(out)
}

fn describe_char(ch: char) -> String {
    if ch.is_control() || ch == '\u{fffd}' {
        format!("U+{:04X}", ch as u32)
    } else {
        format!("`{ch}`")
    }
}

/// Reads a `"..."` body starting after the opening quote; returns the bytes and the offset after
/// the closing quote.
fn lex_string(line: &str, mut i: usize, base: usize) -> Result<(Vec<u8>, usize), Problem> {
    let open = i - 1;
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Ok((out, i + 1)),
            b'\\' => {
                let esc = bytes.get(i + 1).copied();
                let value = match esc {
                    Some(b'n') => b'\n',
                    Some(b'r') => b'\r',
                    Some(b't') => b'\t',
                    Some(b'0') => b'\0',
                    Some(b'\\') => b'\\',
                    Some(b'"') => b'"',
                    Some(b'x') => {
                        // from_str_radix alone would accept a sign: `\x+1`.
                        let hex = line
                            .get(i + 2..i + 4)
                            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                            .and_then(|h| u8::from_str_radix(h, 16).ok());
                        match hex {
                            Some(v) => {
                                out.push(v);
                                i += 4;
                                continue;
                            }
                            None => {
                                return Err(Problem::new(
                                    base + i..base + (i + 4).min(bytes.len()),
                                    "`\\x` needs two hex digits",
                                )
                                .hint("write a byte as `\\x0a`"))
                            }
                        }
                    }
                    _ => {
                        let end = line[i + 1..]
                            .chars()
                            .next()
                            .map_or(i + 1, |c| i + 1 + c.len_utf8());
                        return Err(Problem::new(base + i..base + end, "unknown escape")
                            .hint("escapes are \\n \\r \\t \\0 \\\\ \\\" and \\xHH"));
                    }
                };
                out.push(value);
                i += 2;
            }
            _ => {
                let ch = line[i..].chars().next().unwrap_or(' ');
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i += ch.len_utf8();
            }
        }
    }
    Err(
        Problem::new(base + open..base + bytes.len(), "unterminated string")
            .hint("close it with `\"` on the same line"),
    )
}

/// Reads a `hex"..."` body starting after the opening quote.
fn lex_hex(line: &str, start: usize, base: usize) -> Result<(Vec<u8>, usize), Problem> {
    let Some(len) = line[start..].find('"') else {
        return Err(Problem::new(
            base + start - 4..base + line.len(),
            "unterminated hex string",
        ));
    };
    let body = &line[start..start + len];
    let mut out = Vec::new();
    let mut pending: Option<(usize, u8)> = None;
    for (k, ch) in body.char_indices() {
        if ch.is_whitespace() {
            if let Some((at, _)) = pending {
                return Err(Problem::new(
                    base + start + at..base + start + k,
                    "hex byte cut in half",
                )
                .hint("write bytes as pairs of hex digits: hex\"48 65 6c\""));
            }
            continue;
        }
        let Some(digit) = ch.to_digit(16) else {
            return Err(Problem::new(
                base + start + k..base + start + k + ch.len_utf8(),
                format!("{} is not a hex digit", describe_char(ch)),
            ));
        };
        match pending.take() {
            None => pending = Some((k, digit as u8)),
            Some((_, high)) => out.push(high << 4 | digit as u8),
        }
    }
    if let Some((at, _)) = pending {
        return Err(Problem::new(
            base + start + at..base + start + len,
            "odd number of hex digits",
        )
        .hint("write bytes as pairs of hex digits: hex\"48 65 6c\""));
    }
    Ok((out, start + len + 1))
}
