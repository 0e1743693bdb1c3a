//! What the fuzzer starts from: seed scenarios, and request streams taken from them, from corpus
//! files and from the client side of pcap captures.

use std::path::{Path, PathBuf};

use thiserror::Error;

use sockharness::capture::{pcap, streams};
use sockharness::script::{self, Endpoint, Scenario, SendMode, Statement};

pub use sockharness::capture::streams::MAX_STREAM;

/// A seed scenario, its targets about to be replaced by the server under test.
#[derive(Debug, Clone)]
pub struct SeedScenario {
    /// Where it came from.
    pub label: String,
    /// The parsed scenario, with what cannot run against a shared server removed: sysctls and
    /// wire expectations (they need a private namespace of the scenario's own), `stop`, `kill`,
    /// `expect T running|exited` and `T.fds` checks (they need a process of its own).
    pub scenario: Scenario,
}

/// The bytes one client sends to the server: replayed as they are, split, cut short, mutated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// Where it came from (`FILE` or `FILE#client`).
    pub label: String,
    /// The request bytes.
    pub bytes: Vec<u8>,
}

/// Everything the fuzzer was given.
#[derive(Debug, Clone, Default)]
pub struct Seeds {
    /// Seed scenarios.
    pub scenarios: Vec<SeedScenario>,
    /// Request streams, each sent by one client.
    pub streams: Vec<Stream>,
}

/// Errors while loading seeds.
#[derive(Debug, Error)]
pub enum SeedError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A seed scenario does not parse.
    #[error("{0}")]
    Parse(script::Diagnostics),
    /// A seed scenario names no target, so there is nothing to point at the server under test.
    #[error(
        "{0}: the seed scenario has no `target` statement for the server under test to replace"
    )]
    NoTarget(String),
    /// A file named is not one to read (a FIFO, a device) or is too large.
    #[error(transparent)]
    File(#[from] sockharness::suite::LoadError),
    /// A pcap file could not be decoded.
    #[error("{path}: {source}")]
    Pcap {
        /// The path.
        path: String,
        /// The cause.
        source: pcap::PcapError,
    },
}

/// Request bytes that probe a server of an unknown protocol when no seed is given: a line of
/// text, an HTTP request, a RESP (redis) command.
pub const PROBES: [&[u8]; 3] = [
    b"hello, sockharness\n",
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"*1\r\n$4\r\nPING\r\n",
];

impl Seeds {
    /// The built-in probes, for a run given no seeds.
    pub fn probes() -> Seeds {
        Seeds {
            scenarios: Vec::new(),
            streams: PROBES
                .iter()
                .enumerate()
                .map(|(i, b)| Stream {
                    label: format!("probe {}", i + 1),
                    bytes: b.to_vec(),
                })
                .collect(),
        }
    }

    /// Drops request streams whose bytes an earlier stream already has (fifty clients of a
    /// seed sending the same request are one input, not fifty).
    pub fn dedup(&mut self) {
        let mut seen = std::collections::HashSet::new();
        self.streams.retain(|s| seen.insert(s.bytes.clone()));
    }

    /// True when there is nothing to fuzz from.
    pub fn is_empty(&self) -> bool {
        self.scenarios.is_empty() && self.streams.is_empty()
    }

    /// Adds a seed scenario file and the request streams of its clients.
    pub fn add_scenario_file(&mut self, path: &Path) -> Result<(), SeedError> {
        let bytes = sockharness::suite::read_file(path, sockharness::suite::MAX_SCENARIO_FILE)?;
        let label = path.display().to_string();
        let scenario = script::parse(&label, &bytes).map_err(SeedError::Parse)?;
        self.add_scenario(&label, scenario)
    }

    /// Adds a parsed seed scenario and the request streams of its clients.
    pub fn add_scenario(&mut self, label: &str, mut scenario: Scenario) -> Result<(), SeedError> {
        let targets = target_names(&scenario);
        if targets.is_empty() {
            return Err(SeedError::NoTarget(label.to_string()));
        }
        // What needs a namespace or a process of the scenario's own: the fuzzer's server is
        // shared by every input and is not the scenario's to stop.
        scenario.settings.sysctls.clear();
        scenario.settings.sysctl_lines.clear();
        scenario.steps.retain(|s| {
            !matches!(
                s.statement,
                Statement::ExpectWire { .. }
                    | Statement::Stop { .. }
                    | Statement::Kill { .. }
                    | Statement::ExpectTarget { .. }
                    | Statement::ExpectProperty {
                        property: sockharness::script::Property::Fds,
                        ..
                    }
            )
        });
        for (client, bytes) in client_sends(&scenario, &targets) {
            if !bytes.is_empty() {
                self.streams.push(Stream {
                    label: format!("{label}#{client}"),
                    bytes,
                });
            }
        }
        self.scenarios.push(SeedScenario {
            label: label.to_string(),
            scenario,
        });
        Ok(())
    }

    /// Adds every file under `dir`: `*.scenario` as seed scenarios, `*.pcap` and `*.pcapng` as
    /// the client streams they hold, anything else as one request stream.
    pub fn add_corpus(&mut self, dir: &Path) -> Result<(), SeedError> {
        let mut files = Vec::new();
        walk(dir, &mut files)?;
        files.sort();
        for f in files {
            let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
            match ext {
                "scenario" => self.add_scenario_file(&f)?,
                "pcap" | "pcapng" => self.add_pcap(&f)?,
                _ => {
                    // Only the first MAX_STREAM bytes are used: only those are read.
                    let bytes = read_prefix(&f, MAX_STREAM)?;
                    if !bytes.is_empty() {
                        self.streams.push(Stream {
                            label: f.display().to_string(),
                            bytes,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds the client streams of a capture.
    pub fn add_pcap(&mut self, path: &Path) -> Result<(), SeedError> {
        let shown = path.display().to_string();
        let bytes = sockharness::suite::read_file(path, MAX_CAPTURE_FILE)?;
        let cap = pcap::read(&bytes).map_err(|source| SeedError::Pcap {
            path: shown.clone(),
            source,
        })?;
        for s in streams::client_streams(&cap) {
            if s.bytes.is_empty() {
                continue;
            }
            self.streams.push(Stream {
                label: format!("{shown}#{}", s.client),
                bytes: s.bytes,
            });
        }
        Ok(())
    }
}

/// The largest capture read as a seed.
const MAX_CAPTURE_FILE: u64 = 1 << 30;

/// The first `limit` bytes of a file found by a corpus walk (regular files only).
fn read_prefix(path: &Path, limit: usize) -> Result<Vec<u8>, SeedError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit as u64).read_to_end(&mut bytes))
        .map_err(|source| SeedError::Read {
            path: path.display().to_string(),
            source,
        })?;
    Ok(bytes)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SeedError> {
    let entries = std::fs::read_dir(dir).map_err(|source| SeedError::Read {
        path: dir.display().to_string(),
        source,
    })?;
    for e in entries.flatten() {
        let p = e.path();
        // Hidden files are editor and tool droppings, not inputs.
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // Symbolic links are not followed: one to a parent directory would never end.
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(&p, out)?,
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
    Ok(())
}

/// The names of the scenario's targets, in order.
pub fn target_names(scenario: &Scenario) -> Vec<String> {
    scenario
        .steps
        .iter()
        .filter_map(|s| match &s.statement {
            Statement::Target { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// For every socket that connects to one of `targets`, everything it sends, in order.
fn client_sends(scenario: &Scenario, targets: &[String]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for step in &scenario.steps {
        match &step.statement {
            Statement::Connect {
                name,
                to: Endpoint::Name(to),
                ..
            } if targets.contains(to) => out.push((name.clone(), Vec::new())),
            Statement::Send {
                socket, data, mode, ..
            } if !matches!(mode, SendMode::Nowait) => {
                if let Some((_, bytes)) = out.iter_mut().find(|(n, _)| n == socket) {
                    let room = MAX_STREAM.saturating_sub(bytes.len()) as u64;
                    bytes.extend(data.range(0, data.len().min(room)));
                }
            }
            _ => {}
        }
    }
    out
}
