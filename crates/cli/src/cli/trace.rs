//! `sockharness trace FILE`: decode a capture (pcap or pcapng, tcpdump's included) into a wire
//! trace, as text or JSON, and optionally draw it as an SVG ladder diagram.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use clap::ValueEnum;
use sockharness::capture::{decode, pcap, svg, RenderOptions};

use super::EXIT_OK;

/// The largest capture `trace` reads: decoding holds it in memory several times over.
const MAX_CAPTURE_FILE: u64 = 1 << 30;

/// Arguments of `trace`.
#[derive(clap::Args)]
pub struct TraceArgs {
    /// The capture file (pcap or pcapng).
    pub file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = TraceFormat::Text)]
    pub format: TraceFormat,
    /// Also draw a ladder diagram (one column per endpoint, one arrow per segment) into this
    /// SVG file.
    #[arg(long, value_name = "OUT.svg")]
    pub svg: Option<PathBuf>,
    /// Show pure ACKs, and every data segment on its own line.
    #[arg(long)]
    pub acks: bool,
    /// Show advertised windows.
    #[arg(long)]
    pub windows: bool,
    /// Show TCP options.
    #[arg(long)]
    pub options: bool,
    /// Show times relative to the first packet.
    #[arg(long)]
    pub timestamps: bool,
}

/// Output formats of `trace`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TraceFormat {
    /// One block per connection, one line per segment or run of data.
    Text,
    /// Every segment, as one JSON document.
    Json,
}

/// Runs `trace`: exit 0 when the file decodes; a missing, truncated or non-pcap file is an
/// error (exit 2).
pub fn trace(args: TraceArgs) -> Result<ExitCode> {
    let path = args.file.display();
    if let Some(out) = &args.svg {
        if same_file(&args.file, out) {
            anyhow::bail!("--svg {}: that is the capture being read", out.display());
        }
    }
    let bytes = sockharness::suite::read_file(&args.file, MAX_CAPTURE_FILE)?;
    let capture = pcap::read(&bytes).map_err(|e| anyhow!("{path}: {e}"))?;
    let wire = decode(&capture);
    // A capture file has no socket names: endpoints are shown as addresses.
    let names = |_| None;
    let text = match args.format {
        TraceFormat::Text => {
            let opts = RenderOptions {
                acks: args.acks,
                windows: args.windows,
                options: args.options,
                timestamps: args.timestamps,
            };
            wire.render(&names, &opts)
        }
        TraceFormat::Json => wire.to_json(&names) + "\n",
    };
    if let Some(out) = &args.svg {
        std::fs::write(out, svg::svg(&wire, &names))
            .map_err(|e| anyhow!("cannot write {}: {e}", out.display()))?;
    }
    match io::stdout().lock().write_all(text.as_bytes()) {
        // A reader that stopped early (`| head`) is not an error.
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(anyhow!("cannot write: {e}")),
        _ => Ok(ExitCode::from(EXIT_OK)),
    }
}

/// `a` and `b` name one existing file (through links or `.` and `..` as well).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
