//! Finding scenario files, parsing them, and running many in parallel.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use thiserror::Error;

use crate::run::{self, RunOptions, ScenarioRun};
use crate::script::{self, Diagnostics, Scenario};

/// One scenario file, read but not parsed.
#[derive(Debug, Clone)]
pub struct Source {
    /// The path shown to users (relative to the directory it was found under, if any).
    pub path: String,
    /// The scenario's name: its path under the searched directory, without `.scenario`.
    pub name: String,
    /// The file's bytes.
    pub bytes: Vec<u8>,
}

/// Errors while finding scenario files.
#[derive(Debug, Error)]
pub enum LoadError {
    /// A path could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A path given on the command line does not exist.
    #[error("{0}: no such file or directory")]
    Missing(String),
    /// A path names a FIFO, a socket or a device: reading it could block or never end.
    #[error("{0}: not a regular file (a FIFO, socket or device cannot be read as a file)")]
    NotAFile(String),
    /// A file is larger than any input of its kind can sensibly be.
    #[error("{path}: {size} bytes is more than the {limit} bytes a file of this kind may have")]
    TooLarge {
        /// The path.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

/// The largest scenario file read: far more than any scenario needs (data literals are
/// generated, not written out), and little enough memory.
pub const MAX_SCENARIO_FILE: u64 = 16 << 20;

/// Reads a regular file of at most `limit` bytes, checking both before reading: a FIFO or a
/// device would block or never end, a huge file would take memory it has no use for.
pub fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>, LoadError> {
    use std::io::Read;
    let shown = path.display().to_string();
    let failed = |e: std::io::Error| LoadError::Read {
        path: shown.clone(),
        source: e,
    };
    let meta = std::fs::metadata(path).map_err(failed)?;
    if !meta.is_file() {
        return Err(LoadError::NotAFile(shown));
    }
    if meta.len() > limit {
        return Err(LoadError::TooLarge {
            path: shown,
            size: meta.len(),
            limit,
        });
    }
    // The file may have been swapped or grown since: the read is bounded as well.
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    std::fs::File::open(path)
        .and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
        .map_err(failed)?;
    if bytes.len() as u64 > limit {
        return Err(LoadError::TooLarge {
            path: shown,
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

/// Embedded files, `(relative path, contents)`, as sources named by their path without
/// `.scenario` and shown as `<library>/PATH`.
pub fn embedded(files: &[(&str, &[u8])]) -> Vec<Source> {
    files
        .iter()
        .map(|(path, bytes)| Source {
            path: format!("<library>/{path}"),
            name: path.trim_end_matches(".scenario").to_string(),
            bytes: bytes.to_vec(),
        })
        .collect()
}

/// Reads files and directories (recursively, `*.scenario`), sorted by path within a directory.
pub fn load(paths: &[PathBuf]) -> Result<Vec<Source>, LoadError> {
    let mut out = Vec::new();
    for p in paths {
        let shown = p.display().to_string();
        let meta = std::fs::metadata(p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => LoadError::Missing(shown.clone()),
            _ => LoadError::Read {
                path: shown.clone(),
                source: e,
            },
        })?;
        if meta.is_dir() {
            let mut files = Vec::new();
            walk(p, &mut files)?;
            files.sort();
            for f in files {
                let name = f
                    .strip_prefix(p)
                    .unwrap_or(&f)
                    .with_extension("")
                    .to_string_lossy()
                    .into_owned();
                out.push(read(&f, name)?);
            }
        } else {
            let name = p
                .file_stem()
                .map_or_else(|| shown.clone(), |s| s.to_string_lossy().into_owned());
            out.push(read(p, name)?);
        }
    }
    Ok(out)
}

fn read(path: &Path, name: String) -> Result<Source, LoadError> {
    Ok(Source {
        bytes: read_file(path, MAX_SCENARIO_FILE)?,
        path: path.display().to_string(),
        name,
    })
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|e| LoadError::Read {
        path: dir.display().to_string(),
        source: e,
    })?;
    for entry in entries {
        let entry = entry.map_err(|e| LoadError::Read {
            path: dir.display().to_string(),
            source: e,
        })?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| LoadError::Read {
            path: path.display().to_string(),
            source: e,
        })?;
        if kind.is_dir() {
            // Build output and snapshots hold no scenarios; skipping them keeps a walk of a
            // checkout fast.
            let skip = matches!(
                path.file_name().and_then(|n| n.to_str()),
                Some("target" | ".git" | "snapshots")
            );
            if !skip {
                walk(&path, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "scenario")
            // A FIFO, socket or device found by a scan is not a scenario; named, it is an
            // error (see `read_file`).
            && std::fs::metadata(&path).is_ok_and(|m| m.is_file())
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Parses every source; on any problem returns the diagnostics of every broken file.
pub fn parse_all(sources: &[Source]) -> Result<Vec<Scenario>, Vec<Diagnostics>> {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for s in sources {
        match script::parse(&s.path, &s.bytes) {
            Ok(sc) => ok.push(sc),
            Err(d) => bad.push(d),
        }
    }
    if bad.is_empty() {
        Ok(ok)
    } else {
        Err(bad)
    }
}

/// Runs scenarios on `jobs` threads, one scenario per thread at a time. `done` hears of each
/// result as it finishes (index into `scenarios`); results come back in input order.
pub fn run_all(
    scenarios: &[Scenario],
    opts: &RunOptions,
    jobs: usize,
    mut done: impl FnMut(usize, &ScenarioRun),
) -> Vec<ScenarioRun> {
    let jobs = jobs.clamp(1, scenarios.len().max(1));
    let next = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let mut results: Vec<Option<ScenarioRun>> = vec![None; scenarios.len()];
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let (next, tx) = (next.clone(), tx.clone());
            scope.spawn(move || {
                run::dedicate_this_thread();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(sc) = scenarios.get(i) else { break };
                    // A bug in one scenario's run must not take the others down with it.
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run::run_with(sc, opts)
                    }))
                    .unwrap_or_else(|_| run::ScenarioRun::panicked());
                    if tx.send((i, r)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (i, r) in rx {
            done(i, &r);
            results[i] = Some(r);
        }
    });
    // Capture sockets close in the background; let them finish rather than leave the work to
    // process exit, which would close them one by one.
    crate::capture::live::wait_for_closes(std::time::Duration::from_secs(2));
    results.into_iter().flatten().collect()
}

/// Default parallelism: the machine's cores.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What one scenario file's test found: the verdict, and the traces a snapshot test compares.
#[derive(Debug, Clone)]
pub enum FileCheck {
    /// The file does not parse, or the scenario failed: the report to show (with the capture's
    /// path, where one was kept).
    Failed(String),
    /// The scenario could not run here, for this reason.
    Skipped(String),
    /// It passed.
    Passed {
        /// The event trace, for its snapshot; `None` for a scenario against an installed server
        /// (`require PROGRAM`), whose answers (versions, dates) are not stable.
        trace: Option<String>,
        /// The wire trace, where the scenario was captured in full.
        wire: Option<String>,
        /// Why the wire trace is missing, where it is.
        wire_note: Option<String>,
    },
}

/// Parses and runs one file with `harness`, for a crate's own per-file test target. With
/// `libtest-mimic` and `insta` that is a few lines (this workspace's `scenarios/` does it):
///
/// ```no_run
/// # use sockharness::{suite::{self, FileCheck}, Harness};
/// for source in suite::load(&["tests/scenarios".into()]).unwrap() {
///     match suite::check(&source, &Harness::new()) {
///         FileCheck::Failed(report) => panic!("{report}"),
///         FileCheck::Skipped(why) => println!("skipped {}: {why}", source.name),
///         FileCheck::Passed { trace, .. } => {
///             // insta::assert_snapshot!(source.name.replace('/', "__"), trace.unwrap_or_default());
///             let _ = trace;
///         }
///     }
/// }
/// ```
pub fn check(source: &Source, harness: &crate::Harness) -> FileCheck {
    let scenario = match script::parse(&source.path, &source.bytes) {
        Ok(s) => s,
        Err(d) => return FileCheck::Failed(d.to_string()),
    };
    let checked = harness.check(&source.path, &scenario);
    let run = &checked.run;
    match &run.status {
        run::Status::Failed(_) => return FileCheck::Failed(checked.report()),
        run::Status::Skipped(why) => return FileCheck::Skipped(why.clone()),
        run::Status::Passed => {}
    }
    let stable = scenario.settings.requires.is_empty();
    // A capture the kernel dropped frames from cannot match its snapshot; the event trace still
    // must.
    let incomplete = run
        .capture_note
        .as_deref()
        .filter(|n| n.starts_with("capture incomplete"));
    let wire = run
        .render_wire(&crate::capture::RenderOptions::default())
        .filter(|_| stable && incomplete.is_none());
    FileCheck::Passed {
        trace: stable.then(|| run.trace.render()),
        wire,
        wire_note: incomplete.map(str::to_string),
    }
}
