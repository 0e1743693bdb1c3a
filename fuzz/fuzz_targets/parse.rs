//! The scenario parser never panics, and the printer is its inverse: whatever parses prints as
//! text that parses back to the same model.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sockharness::script::parse;

/// Statements the ranges of an input may expand to before it is left out.
///
/// `c[1..N]` expands to N statements on every line, and the parser bounds each range but not
/// their total: a few kilobytes of ranges parse into millions of statements and gigabytes.
/// Past this budget an input tells nothing new about parsing, only about memory.
const EXPANSION_BUDGET: u64 = 20_000;

fuzz_target!(|data: &[u8]| {
    if expansion(data) > EXPANSION_BUDGET {
        return;
    }
    let Ok(scenario) = parse("fuzz.scenario", data) else {
        return;
    };
    let printed = format!("{scenario}");
    let reparsed = match parse("printed.scenario", printed.as_bytes()) {
        Ok(s) => s,
        Err(diags) => panic!(
            "the printed scenario does not parse: {diags:?}\n--- input\n{}\n--- printed\n{printed}",
            String::from_utf8_lossy(data)
        ),
    };
    // Step equality ignores where a statement was written, so this compares meaning only.
    assert_eq!(
        reparsed,
        scenario,
        "printing changed the model\n--- input\n{}\n--- printed\n{printed}",
        String::from_utf8_lossy(data)
    );
    // Printing is canonical: the printed form prints as itself.
    assert_eq!(format!("{reparsed}"), printed, "printing is not canonical");
});

/// An upper bound on the statements `data` expands to: per line, its widest `[a..b]`.
fn expansion(data: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(data);
    text.lines()
        .map(|line| {
            let mut widest = 1u64;
            let mut rest = line;
            while let Some(open) = rest.find('[') {
                rest = &rest[open + 1..];
                let Some(close) = rest.find(']') else { break };
                if let Some((a, b)) = rest[..close].split_once("..") {
                    if let (Ok(a), Ok(b)) = (a.trim().parse::<u64>(), b.trim().parse::<u64>()) {
                        widest = widest.max(b.saturating_sub(a).saturating_add(1));
                    }
                }
            }
            widest
        })
        .fold(0u64, u64::saturating_add)
}
