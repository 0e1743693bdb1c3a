//! Arguments, commands and exit codes.

/// `println!` that ignores a closed stdout (`sockharness run | head`) instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `print!` with the same care as [`say!`].
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod artifacts;
mod from_pcap;
mod fuzz;
mod output;
mod signals;
mod trace;

/// The scenario library embedded in the binary, as `(relative path, contents)`.
pub static LIBRARY: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/library.rs"));

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand, ValueEnum};
use sockharness::run::{RunOptions, Status};
use sockharness::sandbox::{self, Isolation, Support};
use sockharness::script::{Statement, TargetSource};
use sockharness::suite::{self, Source};

/// Exit status when nothing failed.
pub const EXIT_OK: u8 = 0;
/// Exit status when a scenario failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit status when an input is invalid or the command line is wrong.
pub const EXIT_INVALID: u8 = 2;

/// Scripted scenarios on real kernel sockets: what a server and the kernel really do.
#[derive(Parser)]
#[command(name = "sockharness", version, about, long_about = None)]
#[command(
    after_help = "Exit status: 0 nothing failed, 1 a scenario failed, 2 invalid input or usage."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenarios: files, or directories searched for `*.scenario`. With no path, runs
    /// `./scenarios` if it exists, else the scenario library built into this binary.
    Run(RunArgs),
    /// Parse and validate scenarios without running them.
    Check(CheckArgs),
    /// Decode a pcap capture (tcpdump's included) into a wire trace.
    Trace(trace::TraceArgs),
    /// Run one of the bundled example servers (echo, chat, http) until interrupted.
    Serve(ServeArgs),
    /// Run the fault-injecting proxy standalone, for any client and server, logging each
    /// connection.
    Proxy(ProxyArgs),
    /// Fuzz a real server: vary how requests are cut, delayed, interleaved and cut off, mutate
    /// their bytes, and write a scenario that reproduces each failure.
    Fuzz(fuzz::FuzzArgs),
    /// Make a seed scenario from a capture of a real client and server: each connection's
    /// sends, and the server's answers as expectations.
    ScenarioFromPcap(from_pcap::FromPcapArgs),
}

#[derive(clap::Args)]
struct ProxyArgs {
    /// Address to listen on.
    #[arg(long)]
    listen: std::net::SocketAddr,
    /// The server to forward to.
    #[arg(long)]
    to: std::net::SocketAddr,
    /// A fault, as in a scenario: `up slice 1 gap 1ms`, `down delay 50ms`, `both rst after 1KiB
    /// on conn 2`. Repeatable.
    #[arg(long = "fault", value_name = "FAULT", value_parser = |s: &str| sockharness::script::parse_faults(s))]
    faults: Vec<Vec<sockharness::script::Fault>>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The server: echo, chat or http.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(sockharness::script::BUILTINS))]
    server: String,
    /// Address to listen on: a loopback one, or as a scenario's `cmd` target on a host, that
    /// host's (`{addr}` in the command).
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: std::net::SocketAddr,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Scenario files and directories.
    paths: Vec<PathBuf>,
    /// Scenarios run at once, each on its own thread (default: the number of cores).
    #[arg(short, long, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
    /// Run only scenarios whose name or path contains TEXT.
    #[arg(long, value_name = "TEXT")]
    filter: Option<String>,
    /// Print every scenario's event trace.
    #[arg(long)]
    trace: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Run each scenario in a private network namespace: `auto` where possible, `always` or
    /// fail, `never` (host loopback, no capture).
    #[arg(long, value_enum, default_value_t = IsolateArg::Auto)]
    isolate: IsolateArg,
    /// Write every scenario's capture to DIR/NAME.pcap (failed scenarios' captures are kept
    /// under target/sockharness/ anyway).
    #[arg(long, value_name = "DIR")]
    pcap_dir: Option<PathBuf>,
    /// Draw every scenario's capture as a ladder diagram, DIR/NAME.svg.
    #[arg(long, value_name = "DIR")]
    svg_dir: Option<PathBuf>,
    /// Replace target NAME of every scenario: `NAME=COMMAND` (with `{port}`) or `NAME=@ADDR` for
    /// a server already running on the loopback. Repeatable.
    #[arg(long = "target", value_name = "NAME=COMMAND", value_parser = parse_target)]
    targets: Vec<(String, TargetSource)>,
    /// The seed of every random decision of the scenarios' links, in place of their own `seed`
    /// (a failure report gives the one it ran with).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
}

/// `NAME=COMMAND` or `NAME=@ADDR`.
fn parse_target(s: &str) -> Result<(String, TargetSource), String> {
    let (name, what) = s
        .split_once('=')
        .ok_or("expected NAME=COMMAND or NAME=@ADDR")?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("`{name}` is not a target name"));
    }
    let source = match what.strip_prefix('@') {
        Some(addr) => {
            let addr: std::net::SocketAddr = addr
                .parse()
                .map_err(|_| format!("`{addr}` is not an address"))?;
            if !addr.ip().is_loopback() {
                return Err("targets must be on the loopback".into());
            }
            TargetSource::At(addr)
        }
        None if what.trim().is_empty() => return Err("the command is empty".into()),
        None => TargetSource::Cmd {
            command: what.to_string(),
            ready: None,
        },
    };
    Ok((name.to_string(), source))
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum IsolateArg {
    Auto,
    Always,
    Never,
}

impl From<IsolateArg> for Isolation {
    fn from(a: IsolateArg) -> Isolation {
        match a {
            IsolateArg::Auto => Isolation::Auto,
            IsolateArg::Always => Isolation::Always,
            IsolateArg::Never => Isolation::Never,
        }
    }
}

#[derive(clap::Args)]
struct CheckArgs {
    /// Scenario files and directories.
    paths: Vec<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Human-readable lines and failure reports.
    Text,
    /// One JSON document.
    Json,
    /// JUnit XML, for CI systems.
    Junit,
}

pub fn main() -> Result<ExitCode> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                EXIT_INVALID
            } else {
                EXIT_OK
            };
            let _ = e.print();
            return Ok(ExitCode::from(code));
        }
    };
    // A server's daemon whose parent exits comes to this process rather than to init, so that
    // stopping the server finds it even on the host's network.
    if let Err(e) = sockharness::process::adopt_orphans() {
        eprintln!("note: cannot adopt orphaned processes ({e}): a server's daemons on the host's network may outlive it");
    }
    match cli.command {
        Command::Run(args) => {
            // Before any thread starts: without root this creates the process's user namespace.
            if args.isolate != IsolateArg::Never {
                sandbox::init();
            }
            run(args)
        }
        Command::Check(args) => check(args),
        Command::Trace(args) => trace::trace(args),
        Command::Serve(args) => serve(args),
        Command::Proxy(args) => proxy(args),
        Command::Fuzz(args) => fuzz::fuzz(args),
        Command::ScenarioFromPcap(args) => from_pcap::from_pcap(args),
    }
}

/// The sources named by `paths`, or the default set.
fn sources(paths: &[PathBuf]) -> Result<Vec<Source>> {
    if !paths.is_empty() {
        return Ok(suite::load(paths)?);
    }
    let local = Path::new("scenarios");
    if local.is_dir() {
        Ok(suite::load(&[local.to_path_buf()])?)
    } else {
        Ok(suite::embedded(LIBRARY))
    }
}

fn report_invalid(bad: &[sockharness::script::Diagnostics]) -> ExitCode {
    for d in bad {
        eprint!("{d}");
    }
    let problems: usize = bad.iter().map(|d| d.problems.len() + d.omitted).sum();
    eprintln!(
        "{problems} problem{} in {} file{}; nothing was run",
        plural(problems),
        bad.len(),
        plural(bad.len())
    );
    ExitCode::from(EXIT_INVALID)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn check(args: CheckArgs) -> Result<ExitCode> {
    let sources = sources(&args.paths)?;
    match suite::parse_all(&sources) {
        Ok(s) => {
            say!("{} scenario{} ok", s.len(), plural(s.len()));
            Ok(ExitCode::from(EXIT_OK))
        }
        Err(bad) => Ok(report_invalid(&bad)),
    }
}

/// Refuses an address off loopback: sockharness's servers and proxy are for tests on this
/// machine, and one on every interface would be open to the network.
fn loopback_only(addr: std::net::SocketAddr) -> Result<()> {
    if !addr.ip().is_loopback() {
        anyhow::bail!(
            "{addr} is not a loopback address: sockharness sends traffic only to loopback"
        );
    }
    Ok(())
}

/// Binds a listener, naming the address when it cannot (in use, not ours).
async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

fn proxy(args: ProxyArgs) -> Result<ExitCode> {
    loopback_only(args.listen)?;
    loopback_only(args.to)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let listener = bind(args.listen).await?;
        let faults: Vec<_> = args.faults.into_iter().flatten().collect();
        eprintln!(
            "proxy {} -> {} with {} fault(s)",
            listener.local_addr()?,
            args.to,
            faults.len()
        );
        let log: sockharness::proxy::Log = std::rc::Rc::new(|line| eprintln!("{line}"));
        let faults = std::rc::Rc::new(std::cell::RefCell::new(faults));
        sockharness::proxy::serve(listener, args.to, faults, Some(log)).await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::from(EXIT_OK))
}

fn serve(args: ServeArgs) -> Result<ExitCode> {
    // On a scenario's host the host's own address leads only to the scenario's other hosts.
    if !sockharness::process::on_scenario_host() {
        loopback_only(args.listen)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let listener = bind(args.listen).await?;
        eprintln!(
            "{} server listening on {}",
            args.server,
            listener.local_addr()?
        );
        sockharness::servers::serve(&args.server, listener).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::from(EXIT_OK))
}

fn run(args: RunArgs) -> Result<ExitCode> {
    signals::on_interrupt(
        sockharness::run::interrupt,
        "stopping the scenarios that are running and their servers",
    );
    let mut sources = sources(&args.paths)?;
    if let Some(f) = &args.filter {
        sources.retain(|s| s.name.contains(f.as_str()) || s.path.contains(f.as_str()));
    }
    if sources.is_empty() {
        let filtered = args
            .filter
            .as_ref()
            .map_or(String::new(), |f| format!(" matching `{f}`"));
        eprintln!("error: no scenarios{filtered} to run (a scenario file ends in `.scenario`)");
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    let mut scenarios = match suite::parse_all(&sources) {
        Ok(s) => s,
        Err(bad) => {
            // A program reading the document learns why nothing ran from the document itself.
            match args.format {
                Format::Text => {}
                Format::Json => say!("{}", output::invalid_json(&bad)),
                Format::Junit => say!("{}", output::invalid_junit(&bad)?),
            }
            return Ok(report_invalid(&bad));
        }
    };
    // An override that matches no target is a mistake (a misspelt name), not a no-op.
    for (name, _) in &args.targets {
        let used = scenarios.iter().any(|sc| {
            sc.steps
                .iter()
                .any(|s| matches!(&s.statement, Statement::Target { name: n, .. } if n == name))
        });
        if !used {
            eprintln!("error: --target {name}=...: no scenario has a target `{name}`");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    }
    for scenario in &mut scenarios {
        for step in &mut scenario.steps {
            let Statement::Target { name, source, .. } = &mut step.statement else {
                continue;
            };
            let Some((_, replacement)) = args.targets.iter().find(|(n, _)| n == name) else {
                continue;
            };
            *source = replacement.clone();
            // A report quotes the statement that ran, not the one the file had.
            let text = format!("{}  (from --target)", step.statement);
            if let Some(origin) = &mut step.origin {
                origin.text = text;
            }
        }
    }
    let isolation = Isolation::from(args.isolate);
    if isolation != Isolation::Never {
        if let Support::Unavailable(why) = sandbox::support() {
            if isolation == Isolation::Always {
                eprintln!("error: --isolate always, but isolation is unavailable: {why}");
                return Ok(ExitCode::from(EXIT_INVALID));
            }
            eprintln!("note: isolation is unavailable ({why}): scenarios run on the host loopback without capture, and those that need isolation are skipped");
        }
    }
    let opts = RunOptions {
        isolation,
        capture: true,
        // A capture too big for memory is written where it will be kept, so keeping it is a
        // link, not a copy.
        capture_dir: args.pcap_dir.clone(),
        seed: args.seed,
        ..RunOptions::default()
    };
    let jobs = args.jobs.map_or_else(suite::default_jobs, usize::from);
    let started = Instant::now();
    let interactive = args.format == Format::Text && std::io::stderr().is_terminal();
    let mut progress = output::Progress::new(interactive, sources.len());
    let results = suite::run_all(&scenarios, &opts, jobs, |i, r| {
        if args.format == Format::Text {
            progress.finished(&sources[i], r, args.trace);
        }
    });
    progress.done();
    let saved = artifacts::save(
        &sources,
        &results,
        args.pcap_dir.as_deref(),
        args.svg_dir.as_deref(),
    );
    let rows: Vec<_> = sources.iter().zip(&results).collect();
    match args.format {
        Format::Text => output::text_summary(&rows, &saved, started.elapsed()),
        Format::Json => say!("{}", output::json(&rows, &saved)),
        Format::Junit => say!("{}", output::junit(&rows, started.elapsed())?),
    }
    if let Some(code) = signals::interrupted() {
        let stopped = results
            .iter()
            .filter(|r| matches!(&r.status, Status::Skipped(why) if why.starts_with("interrupted")))
            .count();
        eprintln!("interrupted: {stopped} scenarios were stopped or not run");
        return Ok(ExitCode::from(code));
    }
    let failed = results
        .iter()
        .any(|r| matches!(r.status, Status::Failed(_)));
    Ok(ExitCode::from(if failed { EXIT_FAILED } else { EXIT_OK }))
}
