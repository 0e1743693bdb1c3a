//! Byte diffs: where two byte strings first differ, shown escaped and in hex.

use std::fmt::Write as _;

use crate::escape;

/// Bytes of context shown on each side of the first difference.
const WINDOW: usize = 16;

/// The offset of the first byte where `expected` and `actual` differ, or the length of the
/// shorter where one is a prefix of the other.
pub fn first_difference(expected: &[u8], actual: &[u8]) -> usize {
    expected
        .iter()
        .zip(actual)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(actual.len()))
}

/// Where two byte strings first differ, with an escaped and a hex window around it.
///
/// ```
/// let d = sockharness_script::diff::data_diff(b"hello world", b"hello wOrld");
/// assert!(d.starts_with("first difference at byte 7"));
/// assert!(d.contains("[6f]") && d.contains("[4f]"));
/// ```
pub fn data_diff(expected: &[u8], actual: &[u8]) -> String {
    let at = first_difference(expected, actual);
    let from = at.saturating_sub(WINDOW);
    let mut out = format!(
        "first difference at byte {at} (expected {} bytes, got {})",
        expected.len(),
        actual.len()
    );
    for (label, bytes) in [("expected", expected), ("actual  ", actual)] {
        let to = (at + WINDOW + 1).min(bytes.len());
        let before = escape(&bytes[from.min(bytes.len())..at.min(bytes.len())]);
        let _ = write!(out, "\n  {label} [{from}..{to}): \"{before}");
        match bytes.get(at) {
            Some(b) => {
                let _ = write!(out, "{}", escape(&[*b]));
                let _ = write!(out, "{}\"", escape(&bytes[at + 1..to]));
            }
            None => out.push_str("\" (ends here)"),
        }
        let _ = write!(out, "\n  {label} hex: ");
        for (i, b) in bytes.iter().enumerate().take(to).skip(from) {
            if i == at {
                let _ = write!(out, "[{b:02x}] ");
            } else {
                let _ = write!(out, "{b:02x} ");
            }
        }
        if bytes.len() <= at {
            out.push_str("[end]");
        }
        out.truncate(out.trim_end().len());
    }
    out
}
