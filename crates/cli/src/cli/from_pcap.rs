//! `sockharness scenario-from-pcap FILE`: a seed scenario from a capture of a real client and
//! server, with the server's answers as expectations.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use sockharness::capture::pcap;
use sockharness_fuzz::from_capture;

use super::EXIT_OK;

/// The largest capture read.
const MAX_CAPTURE_FILE: u64 = 1 << 30;

/// Arguments of `scenario-from-pcap`.
#[derive(clap::Args)]
pub struct FromPcapArgs {
    /// The capture (pcap or pcapng, tcpdump's included).
    pub file: PathBuf,
    /// The server's port, where the capture has several servers (default: the one most
    /// connections went to).
    #[arg(long)]
    pub port: Option<u16>,
    /// Write the scenario here instead of to standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Runs `scenario-from-pcap`: exit 0 with the scenario written; a file that is no capture, or
/// one without a TCP connection that carried data, is an error (exit 2).
pub fn from_pcap(args: FromPcapArgs) -> Result<ExitCode> {
    let path = args.file.display();
    let bytes = sockharness::suite::read_file(&args.file, MAX_CAPTURE_FILE)?;
    let capture = pcap::read(&bytes).map_err(|e| anyhow!("{path}: {e}"))?;
    let name = args
        .file
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned());
    let text =
        from_capture::scenario(&capture, &name, args.port).map_err(|e| anyhow!("{path}: {e}"))?;
    // What was written must be a scenario that parses, or the capture found a gap here.
    sockharness::script::parse(&name, text.as_bytes())
        .map_err(|e| anyhow!("{path}: the scenario made from it does not parse:\n{e}"))?;
    match &args.output {
        Some(out) => std::fs::write(out, &text)
            .map_err(|e| anyhow!("cannot write {}: {e}", out.display()))?,
        None => match io::stdout().lock().write_all(text.as_bytes()) {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                return Err(anyhow!("cannot write: {e}"))
            }
            _ => {}
        },
    }
    Ok(ExitCode::from(EXIT_OK))
}
