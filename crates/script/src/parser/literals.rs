//! Literals: data (strings, `pattern(N)`, `random(N, seed=S)`), durations and sizes.

use std::time::Duration;

use super::{LineParser, PResult};
use crate::lexer::Tok;
use crate::model::*;
use crate::validate::NameRef;

impl LineParser<'_> {
    pub(super) fn data(&mut self, names: &mut Vec<NameRef>) -> PResult<Data> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_exactly() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("200us"), Ok(Duration::from_micros(200)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("16"), Ok(16));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("1XB").is_err());
    }
}
