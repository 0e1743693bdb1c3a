//! The descriptor-leak oracle: a server whose open descriptors keep growing with the inputs,
//! and stay up once its clients are gone, will run out of them and stop accepting. Its
//! reproducer opens and closes a few hundred connections and checks the count comes back.

use sockharness::script::Dur;

use super::case::Plain;

/// Descriptors above the idle count that the fuzzer's own connections in flight, with `jobs`
/// inputs at once, cannot explain.
pub fn margin(jobs: usize) -> u64 {
    64 + 16 * jobs as u64
}
/// Connections the reproducer opens and closes.
pub const CONNECTIONS: u32 = 300;

/// The reproducer, as text: every statement on `CONNECTIONS` clients at once (ranges), then the
/// server's descriptor count checked against its idle count.
pub fn reproducer(command_target: &str, plain: &Plain, idle: u64, header: &str) -> String {
    let mut out = String::from(header);
    out.push_str("timeout 5s\n");
    out.push_str(command_target);
    out.push('\n');
    let range = format!("leakc[1..{CONNECTIONS}]");
    for step in plain.steps("srv", "leakc", 1, None, std::time::Duration::ZERO, false) {
        let line = step.to_string();
        out.push_str(&line.replacen(" leakc1", &format!(" {range}"), 1));
        out.push('\n');
    }
    // The server gets a moment to close what its clients closed.
    out.push_str(&format!(
        "sleep {}\nexpect srv.fds <= {}\n",
        Dur(std::time::Duration::from_millis(500)),
        idle + u64::from(CONNECTIONS) / 3
    ));
    out
}
