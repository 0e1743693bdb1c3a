//! The `sockharness` command line: run and check scenario files.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            ExitCode::from(cli::EXIT_INVALID)
        }
    }
}

/// The error and its causes, each once: the library's errors already name their cause
/// ("cannot read x: Permission denied"), context added here does not.
fn message(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}
