//! `sockharness trace FILE.pcap`: decode a capture into a wire trace.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};

/// Arguments of `trace`.
#[derive(clap::Args)]
pub struct TraceArgs {
    /// The capture file (pcap or pcapng).
    pub file: PathBuf,
}

pub fn trace(args: TraceArgs) -> Result<ExitCode> {
    bail!(
        "decoding {} is not available in this build",
        args.file.display()
    )
}
