//! Lines taken before the lexer: `require PROGRAM` and `sysctl KEY=VALUE` (free text),
//! and ranges, which expand one line into many.

use crate::diag::Problem;

/// `require PROGRAM`: `None` when the line is something else.
pub(super) fn require_line(line: &str) -> Option<Result<String, String>> {
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
pub(super) fn expand_ranges(line: &str) -> Result<Option<Vec<String>>, String> {
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
pub(super) fn sysctl_line(line: &str, base: usize) -> Option<Result<(String, String), Problem>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_expand_in_step_and_bounds_are_checked() {
        let lines = expand_ranges("connect c[1..3] to web &h[1..3]")
            .expect("valid")
            .expect("has ranges");
        assert_eq!(
            lines,
            [
                "connect c1 to web &h1",
                "connect c2 to web &h2",
                "connect c3 to web &h3"
            ]
        );
        assert_eq!(expand_ranges("listen srv").expect("valid"), None);
        assert!(expand_ranges("connect c[3..1] to s")
            .unwrap_err()
            .contains("backwards"));
        assert!(expand_ranges("connect c[1..3] to s &h[1..4]")
            .unwrap_err()
            .contains("same bounds"));
        assert!(expand_ranges("connect c[1..20000] to s")
            .unwrap_err()
            .contains("more than 10000"));
    }

    #[test]
    fn require_and_sysctl_lines_are_recognised() {
        assert_eq!(
            require_line("require redis-server  # the real one"),
            Some(Ok("redis-server".into()))
        );
        assert_eq!(require_line("requirement"), None);
        assert!(matches!(require_line("require a/b"), Some(Err(_))));
        assert_eq!(
            sysctl_line("sysctl net.ipv4.tcp_rmem=4096 87380 6291456", 0)
                .expect("a sysctl line")
                .expect("valid"),
            ("net.ipv4.tcp_rmem".into(), "4096 87380 6291456".into())
        );
        assert!(sysctl_line("listen srv", 0).is_none());
        assert!(sysctl_line("sysctl net.core.somaxconn=", 0)
            .expect("a sysctl line")
            .is_err());
    }
}
