//! `sockharness fuzz`: fuzz a real server and write reproducers of what breaks it.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use sockharness::script::Dur;
use sockharness_fuzz::{self as fuzz, seed::Seeds, Config, Expect, Phase, Progress, Server};

use super::{EXIT_FAILED, EXIT_INVALID, EXIT_OK};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("server").required(true).args(["cmd", "addr"])))]
pub(super) struct FuzzArgs {
    /// The server under test, started by the fuzzer (and again if it dies): a shell command
    /// with `{port}` (or `$PORT`) for the port it must listen on, on 127.0.0.1.
    #[arg(long, value_name = "COMMAND")]
    cmd: Option<String>,
    /// The server under test, already running on the loopback (it cannot be restarted).
    #[arg(long, value_name = "ADDR")]
    addr: Option<SocketAddr>,
    /// A scenario whose target is replaced by the server under test: its expectations must
    /// hold however its sends are cut and paced, and what its clients send is fuzzed too.
    /// Repeatable.
    #[arg(long = "seed-scenario", value_name = "FILE")]
    seed_scenarios: Vec<PathBuf>,
    /// A directory of inputs: request bytes (one file, one client), `*.pcap`/`*.pcapng` (their
    /// client streams) and `*.scenario` (seed scenarios). Repeatable.
    #[arg(long, value_name = "DIR")]
    corpus: Vec<PathBuf>,
    /// An extra oracle: `echo` (every byte comes back) or `regex:RE` (every plain answer
    /// matches RE).
    #[arg(long, value_name = "echo|regex:RE", value_parser = parse_expect)]
    expect: Option<Expect>,
    /// Stop after this long.
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_duration)]
    time: Duration,
    /// Stop after this many inputs.
    #[arg(long, value_name = "N")]
    runs: Option<u64>,
    /// The generator's seed; the same seed makes the same inputs (default: from the clock,
    /// and printed).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Where reproducers are written.
    #[arg(long, value_name = "DIR", default_value = "fuzz-out")]
    out: PathBuf,
    /// Inputs run at once (default: sixteen per core; four with --coverage, which starts a
    /// server instance for each).
    #[arg(short, long, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
    /// Time spent shrinking a failure before its reproducer is written.
    #[arg(long, value_name = "DUR", default_value = "20s", value_parser = parse_duration)]
    minimize_for: Duration,
    /// Guide the inputs by the server's coverage: `afl`, for a server built with AFL++
    /// (afl-clang-fast, afl-gcc-fast, `cargo afl build`); inputs that reach new edges join a
    /// queue that later inputs draw from. Needs --cmd.
    #[arg(long, value_enum, value_name = "KIND")]
    coverage: Option<CoverageArg>,
    /// Tokens to write into the inputs, in AFL's dictionary format (`name="value"` per line,
    /// `\xNN` escapes): keywords, magic values, what `AFL_LLVM_DICT2FILE` collects at build.
    #[arg(long, value_name = "FILE")]
    dict: Option<PathBuf>,
    /// Write coverage, queue, inputs and inputs/s once a second to FILE as CSV, in the columns
    /// ProFuzzBench's scripts plot (`time,subject,fuzzer,run,cov_type,cov`).
    #[arg(long, value_name = "FILE")]
    stats: Option<PathBuf>,
    /// Share the queue of a guided run with other runs, here or on other machines, or with
    /// AFL++, in AFL++'s layout: this run's entries go to DIR/NAME/queue/, and those of every
    /// DIR/*/queue/ are tried here. Needs --coverage.
    #[arg(long, value_name = "DIR", requires = "coverage")]
    sync_dir: Option<PathBuf>,
    /// This run's name in --sync-dir (default: sockharness-SEED).
    #[arg(long, value_name = "NAME", requires = "sync_dir")]
    sync_name: Option<String>,
}

/// `--coverage`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum CoverageArg {
    /// AFL++'s shared-memory edge map (`__AFL_SHM_ID`).
    Afl,
}

fn parse_expect(s: &str) -> Result<Expect, String> {
    if s == "echo" {
        return Ok(Expect::Echo);
    }
    match s.strip_prefix("regex:") {
        Some(re) => regex::bytes::Regex::new(re)
            .map(Expect::Regex)
            .map_err(|e| e.to_string()),
        None => Err("expected `echo` or `regex:RE`".into()),
    }
}

/// `250ms`, `1.5s`, `60s`, `2m`, or a number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 30s)"))?;
    let secs = match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{unit}` is not a unit: use ms, s, m or h")),
    };
    const DAY: f64 = 24.0 * 3600.0;
    if secs > 7.0 * DAY {
        return Err(format!("`{s}` is more than a week: every run is bounded"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

pub(super) fn fuzz(args: FuzzArgs) -> Result<ExitCode> {
    let server = match (&args.cmd, args.addr) {
        (Some(c), None) if c.trim().is_empty() => bail!("--cmd is empty"),
        (Some(c), None) => {
            if !c.contains("{port}") && !c.contains("PORT") {
                eprintln!("note: the command has neither {{port}} nor $PORT: the server must listen on the port the fuzzer gives it");
            }
            Server::Cmd(c.clone())
        }
        (None, Some(a)) if !a.ip().is_loopback() => {
            eprintln!(
                "error: {a} is not a loopback address: sockharness sends traffic only to loopback"
            );
            return Ok(ExitCode::from(EXIT_INVALID));
        }
        (None, Some(a)) => Server::Addr(a),
        _ => unreachable!("clap requires exactly one of --cmd and --addr"),
    };
    let mut seeds = Seeds::default();
    let loaded = (|| {
        for f in &args.seed_scenarios {
            seeds.add_scenario_file(f)?;
        }
        for d in &args.corpus {
            seeds.add_corpus(d)?;
        }
        Ok::<_, fuzz::seed::SeedError>(())
    })();
    if let Err(e) = loaded {
        eprint!("error: {e}");
        if !e.to_string().ends_with('\n') {
            eprintln!();
        }
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    seeds.dedup();
    let dict = match &args.dict {
        None => Vec::new(),
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| fuzz::mutate::parse_dict(&t))
        {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                return Ok(ExitCode::from(EXIT_INVALID));
            }
        },
    };
    if let Some(name) = &args.sync_name {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            eprintln!("error: --sync-name {name:?}: a name for a directory, with no `/`, not starting with `.`");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    }
    if seeds.is_empty() {
        eprintln!("note: no seeds given: starting from built-in probes (a text line, an HTTP request, a redis PING)");
        seeds = Seeds::probes();
    }
    // Before any thread starts: reproducers are checked in a private namespace, which without
    // root needs the process's user namespace.
    sockharness::sandbox::init();
    super::signals::on_interrupt(
        fuzz::interrupt,
        "finishing the inputs in flight and stopping the server",
    );
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let cfg = Config {
        server,
        seeds,
        expect: args.expect,
        time: args.time,
        runs: args.runs,
        seed,
        out: args.out,
        // Inputs mostly wait (on the network, on their own gaps and pauses), so many per core
        // keep the cores busy; a guided run has a server instance per worker, so fewer.
        jobs: args.jobs.map_or_else(
            || {
                let per_core = if args.coverage.is_some() { 4 } else { 16 };
                per_core * sockharness::suite::default_jobs()
            },
            usize::from,
        ),
        minimize_for: args.minimize_for,
        coverage: args.coverage.map(|CoverageArg::Afl| fuzz::Coverage::Afl),
        dict,
        sync: args.sync_dir.map(|dir| fuzz::sync::SyncDir {
            dir,
            name: args
                .sync_name
                .unwrap_or_else(|| format!("sockharness-{seed}")),
        }),
    };
    eprintln!(
        "fuzz: {} seed scenario(s), {} request stream(s), seed {seed}, for {}{}",
        cfg.seeds.scenarios.len(),
        cfg.seeds.streams.len(),
        Dur(cfg.time),
        cfg.runs
            .map_or(String::new(), |r| format!(" or {r} inputs"))
    );
    let mut stats = match &args.stats {
        None => None,
        Some(path) => {
            match std::fs::File::create(path)
                .and_then(|f| fuzz::stats::Stats::new(f, &subject(&cfg.server), seed))
            {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("error: {}: {e}", path.display());
                    return Ok(ExitCode::from(EXIT_INVALID));
                }
            }
        }
    };
    let mut stats_lost = None;
    let mut stats_row = |p: &Progress, last: bool| {
        let Some(s) = &mut stats else { return };
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let written = if last {
            s.finish(p, unix)
        } else {
            s.record(p, unix)
        };
        if let Err(e) = written {
            stats_lost.get_or_insert(e);
        }
    };
    let tty = std::io::stderr().is_terminal();
    let mut last_line = std::time::Instant::now();
    let report = fuzz::fuzz(&cfg, |p| {
        stats_row(p, false);
        let line = progress_line(p);
        if tty {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        } else if p.phase != Phase::Fuzzing || last_line.elapsed() >= Duration::from_secs(5) {
            last_line = std::time::Instant::now();
            eprintln!("{line}");
        }
    });
    if tty {
        eprint!("\r\x1b[2K");
    }
    let report = match report {
        Ok(r) => r,
        Err(e @ fuzz::FuzzError::Seed(_))
        | Err(e @ fuzz::FuzzError::NoSeeds)
        | Err(e @ fuzz::FuzzError::Coverage(_))
        | Err(e @ fuzz::FuzzError::Sync(_)) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
        Err(fuzz::FuzzError::Interrupted) => {
            eprintln!("interrupted before anything was fuzzed");
            return Ok(ExitCode::from(
                super::signals::interrupted().unwrap_or(EXIT_INVALID),
            ));
        }
        Err(fuzz::FuzzError::Gone(why)) => {
            say!("FAIL gone: {why}");
            return Ok(ExitCode::from(EXIT_FAILED));
        }
        Err(e) => return Err(e.into()),
    };
    stats_row(
        &Progress {
            inputs: report.inputs,
            elapsed: report.elapsed,
            failures: report.found.len(),
            restarts: report.restarts,
            phase: Phase::Fuzzing,
            coverage: report.coverage,
        },
        true,
    );
    if let (Some(e), Some(path)) = (&stats_lost, &args.stats) {
        eprintln!(
            "warning: {}: stats not written in full: {e}",
            path.display()
        );
    }
    // The first notes say what kind of trouble there was; a hundred more of it say nothing new.
    const NOTES: usize = 8;
    for n in report.notes.iter().take(NOTES) {
        say!("note: {}", clip(n));
    }
    if report.notes.len() > NOTES {
        say!(
            "note: ... and {} more like these",
            report.notes.len() - NOTES
        );
    }
    for f in &report.found {
        say!(
            "FAIL {} after {:.1}s ({} inputs): {}",
            f.oracle,
            f.after.as_secs_f64(),
            f.inputs,
            f.exit.as_deref().map_or_else(
                || format!(
                    "{}: expected {}, got {}",
                    f.failure.statement, f.failure.expected, f.failure.actual
                ),
                |e| format!(
                    "the server exited ({}); the reproducer fails at {}: expected {}, got {}",
                    e.lines()
                        .next()
                        .unwrap_or_default()
                        .trim_end_matches("; its last output:"),
                    f.failure.statement,
                    f.failure.expected,
                    f.failure.actual
                )
            )
        );
        say!("  how: {}", f.how);
        let checked = if f.tries == 0 {
            "not minimised or checked against a fresh server (interrupted)".to_string()
        } else {
            format!(
                "it failed {} of {} runs against a fresh server",
                f.reproduced, f.tries
            )
        };
        if let Some(why) = &f.unwritten {
            // The only copy: shown whole, to be saved by hand.
            say!("  reproducer: {why}; here it is ({checked}):");
            say!("{}", f.text.trim_end());
            continue;
        }
        say!(
            "  reproducer: {} ({} statements, {} bytes); {checked}",
            f.reproducer.display(),
            f.statements,
            f.bytes,
        );
        say!("  run it: sockharness run {}", f.reproducer.display());
    }
    let secs = report.elapsed.as_secs_f64().max(1e-3);
    if let Some(c) = &report.coverage {
        say!(
            "coverage: {} of {} edges, {} queue entries beyond the seeds",
            c.edges,
            c.map,
            c.queue
        );
    }
    // The steady rate too: a run of a few seconds spends much of them calibrating.
    let start = match report.ready {
        Some(r) if report.inputs > 0 => {
            let rest = (report.elapsed.saturating_sub(r)).as_secs_f64().max(1e-3);
            format!(
                "; the first after {:.1}s, {:.0}/s from then",
                r.as_secs_f64(),
                report.inputs as f64 / rest
            )
        }
        _ => String::new(),
    };
    say!(
        "{} inputs in {secs:.1}s ({:.0}/s{start}), {} failure{}, {} server restart{} after it died",
        report.inputs,
        report.inputs as f64 / secs,
        report.found.len(),
        if report.found.len() == 1 { "" } else { "s" },
        report.restarts,
        if report.restarts == 1 { "" } else { "s" }
    );
    if let Some(code) = super::signals::interrupted() {
        return Ok(ExitCode::from(code));
    }
    Ok(ExitCode::from(if report.found.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    }))
}

/// The server's name for `--stats`: the program a command runs (past `exec` and variables),
/// or the address.
fn subject(server: &Server) -> String {
    match server {
        Server::Addr(a) => a.to_string(),
        Server::Service(s) => s.name().to_string(),
        Server::Cmd(c) => c
            .split_whitespace()
            .find(|w| *w != "exec" && !w.contains('='))
            .map(|w| w.rsplit('/').next().unwrap_or(w).to_string())
            .unwrap_or_else(|| "server".into()),
    }
}

fn progress_line(p: &Progress) -> String {
    let secs = p.elapsed.as_secs_f64().max(1e-3);
    let phase = match p.phase {
        Phase::Fuzzing => "",
        Phase::Confirming => ", replaying a failure alone",
        Phase::Minimizing => ", minimising a failure",
    };
    let coverage = p.coverage.map_or(String::new(), |c| {
        format!(", {} edges, queue {}", c.edges, c.queue)
    });
    format!(
        "fuzz: {} inputs, {:.0}/s{coverage}, {} failures, {} restarts after the server died, {:.0}s{phase}",
        p.inputs,
        p.inputs as f64 / secs,
        p.failures,
        p.restarts,
        secs
    )
}

/// A note cut to a few lines' worth: one about a case with a long request quotes all of it.
fn clip(note: &str) -> String {
    const MAX: usize = 400;
    match note.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}... ({} bytes in all)", &note[..at], note.len()),
        None => note.to_string(),
    }
}
