//! Data literals turned into bytes, and bytes turned back into readable previews.

use super::model::Data;

/// `pattern(SIZE)` repeats over this many byte values; 251 is prime, so a lost, repeated or
/// reordered chunk of any power-of-two size shows up at its offset.
const PATTERN_PERIOD: u64 = 251;

impl Data {
    /// The literal's length in bytes, without producing it.
    pub fn len(&self) -> u64 {
        match self {
            Data::Bytes(b) => b.len() as u64,
            Data::Pattern(n) | Data::Random { size: n, .. } => *n,
        }
    }

    /// True when the literal has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The literal's bytes.
    ///
    /// ```
    /// use sockharness_script::Data;
    /// assert_eq!(Data::Pattern(3).bytes(), vec![0, 1, 2]);
    /// assert_eq!(Data::Pattern(253).bytes()[251..], [0, 1]);
    /// let a = Data::Random { size: 16, seed: 7 }.bytes();
    /// assert_eq!(a, Data::Random { size: 16, seed: 7 }.bytes());
    /// assert_ne!(a, Data::Random { size: 16, seed: 8 }.bytes());
    /// // The first bytes of random(.., seed=0): SplitMix64's first output, little-endian.
    /// assert_eq!(Data::Random { size: 8, seed: 0 }.bytes(), 0xe220a8397b1dcdafu64.to_le_bytes());
    /// ```
    pub fn bytes(&self) -> Vec<u8> {
        self.range(0, self.len())
    }

    /// Bytes `start..end` of the literal (clamped to its length), without producing the rest:
    /// a large literal can be sent piece by piece.
    ///
    /// ```
    /// use sockharness_script::Data;
    /// let r = Data::Random { size: 100, seed: 9 };
    /// assert_eq!(r.range(13, 77), r.bytes()[13..77]);
    /// assert_eq!(Data::Pattern(300).range(250, 253), [250, 0, 1]);
    /// ```
    pub fn range(&self, start: u64, end: u64) -> Vec<u8> {
        let end = end.min(self.len());
        let start = start.min(end);
        match self {
            Data::Bytes(b) => b[start as usize..end as usize].to_vec(),
            Data::Pattern(_) => {
                // A period at a time: megabytes of pattern are sent and compared per input
                // when fuzzing, and a division per byte showed as a fifth of a run's time.
                let period: [u8; PATTERN_PERIOD as usize] = std::array::from_fn(|i| i as u8);
                let len = (end - start) as usize;
                let mut out = Vec::with_capacity(len);
                let mut at = (start % PATTERN_PERIOD) as usize;
                while out.len() < len {
                    let take = (period.len() - at).min(len - out.len());
                    out.extend_from_slice(&period[at..at + take]);
                    at = 0;
                }
                out
            }
            Data::Random { seed, .. } => {
                let mut out = Vec::with_capacity((end - start) as usize);
                let mut i = start;
                while i < end {
                    let block = splitmix(*seed, i / 8).to_le_bytes();
                    let from = (i % 8) as usize;
                    let take = (8 - from).min((end - i) as usize);
                    out.extend_from_slice(&block[from..from + take]);
                    i += take as u64;
                }
                out
            }
        }
    }
}

impl From<&str> for Data {
    fn from(s: &str) -> Self {
        Data::Bytes(s.as_bytes().to_vec())
    }
}

impl From<&[u8]> for Data {
    fn from(b: &[u8]) -> Self {
        Data::Bytes(b.to_vec())
    }
}

impl From<Vec<u8>> for Data {
    fn from(b: Vec<u8>) -> Self {
        Data::Bytes(b)
    }
}

/// `random(SIZE, seed=N)`: SplitMix64 seeded with N, each output taken as 8 little-endian bytes.
///
/// This definition is part of the language contract ("the same on every machine and every
/// version"), so it is spelled out here instead of borrowed from a crate whose stream may change.
pub fn random_bytes(size: u64, seed: u64) -> Vec<u8> {
    Data::Random { size, seed }.bytes()
}

/// Output `k` (from 0) of SplitMix64 seeded with `seed`. The generator's state after k+1 steps
/// is `seed + (k+1)·γ`, so any output can be computed directly.
fn splitmix(seed: u64, k: u64) -> u64 {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut z = seed.wrapping_add(k.wrapping_add(1).wrapping_mul(GAMMA));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Escapes bytes the way the language writes them inside `"..."`.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            b'\0' => s.push_str("\\0"),
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            0x20..=0x7e => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s
}

/// A quoted, escaped preview of at most `max` bytes, with the total length when it is cut.
///
/// ```
/// use sockharness_script::preview;
/// assert_eq!(preview(b"hi\n", 16), "\"hi\\n\"");
/// assert_eq!(preview(b"abcdefgh", 4), "\"abcd\"... (8 bytes)");
/// ```
pub fn preview(bytes: &[u8], max: usize) -> String {
    if bytes.len() <= max {
        format!("\"{}\"", escape(bytes))
    } else {
        format!("\"{}\"... ({} bytes)", escape(&bytes[..max]), bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_range_is_the_byte_index_modulo_the_period_wherever_it_starts() {
        let p = Data::Pattern(10_000);
        for (start, end) in [(0, 0), (0, 251), (250, 503), (1, 9_999), (5_000, 20_000)] {
            let want: Vec<u8> = (start..end.min(10_000))
                .map(|i| (i % PATTERN_PERIOD) as u8)
                .collect();
            assert_eq!(p.range(start, end), want, "{start}..{end}");
        }
    }
}
