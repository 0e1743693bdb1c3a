//! The bug zoo, proven: each protocol's scenarios under `scenarios/targets/` (the files named
//! `PROTOCOL-*.scenario`) run against the protocol's correct builtin server, which must pass them
//! all, and against each of its broken variants (`crates/sockharness/src/servers/zoo`), each of which must
//! fail at least one, the scenario written for its bug among them. The scenarios test a target
//! named `srv`; the test swaps the server by rewriting that target's `builtin` statement in the
//! parsed scenario.
//!
//! `cargo test --test zoo -- --nocapture` prints the detection table: for every broken server,
//! the scenarios that caught it, at which statement, and what they saw.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use sockharness::report;
use sockharness::run::{run, ScenarioRun, Status};
use sockharness::script::{parse, Scenario, Statement, TargetSource};

/// The correct servers, one per protocol.
const PROTOCOLS: [&str; 3] = ["echo", "http", "chat"];

/// The broken servers: name (its protocol is the part before the first `-`), its bug, and the
/// scenario written to catch it.
const ZOO: &[(&str, &str, &str)] = &[
    (
        "echo-one-read",
        "answers the first read, then closes: one read taken for the whole message",
        "echo-byte-at-a-time",
    ),
    (
        "echo-short-write",
        "one write() per read, its count ignored: a short write loses bytes",
        "echo-big-transfer",
    ),
    (
        "echo-one-at-a-time",
        "serves each connection inline: a stalled client blocks everyone",
        "echo-stalled-client",
    ),
    (
        "echo-exit-on-reset",
        "a client's ECONNRESET ends the whole server",
        "echo-clients-abort",
    ),
    (
        "echo-leak-closed",
        "a registry keeps every socket: a departed client's is never closed",
        "echo-half-close",
    ),
    (
        "http-one-read",
        "parses each read as whole requests: a request in pieces gets 400",
        "http-byte-at-a-time",
    ),
    (
        "http-first-pipelined",
        "answers the first request of a read and drops the rest",
        "http-pipelining",
    ),
    (
        "http-body-as-request",
        "answers at the blank line and leaves the body to be parsed as a request",
        "http-request-body",
    ),
    (
        "http-half-close-drop",
        "takes a half-close for a client gone and drops its pending response",
        "http-half-close",
    ),
    (
        "http-stop-accepting",
        "the accept loop ends with the first failed connection",
        "http-clients-abort",
    ),
    (
        "chat-echo-sender",
        "broadcasts each line to its sender too",
        "chat-relay",
    ),
    (
        "chat-one-read",
        "forwards each read as one line",
        "chat-relay",
    ),
    (
        "chat-slow-blocks",
        "writes to every member in turn: a client that does not read stalls the room",
        "chat-slow-reader",
    ),
    (
        "chat-leak-closed",
        "keeps members that left: their connections are never closed",
        "chat-leave",
    ),
];

/// Scenarios run at once: most of a broken server's failures are waits for a deadline.
const JOBS: usize = 6;

/// One scenario file of the library.
struct Source {
    /// Its name, such as `echo-half-close`.
    name: String,
    path: PathBuf,
    scenario: Scenario,
}

fn targets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios/targets")
}

/// The scenarios of `protocol`, sorted by name.
fn scenarios_of(protocol: &str) -> Vec<Source> {
    let dir = targets_dir();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("scenarios/targets is readable") {
        let path = entry.expect("a directory entry").path();
        let Some(name) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|_| path.extension().is_some_and(|e| e == "scenario"))
            .map(str::to_string)
        else {
            continue;
        };
        if name.split('-').next() != Some(protocol) {
            continue;
        }
        let bytes = std::fs::read(&path).expect("a scenario file is readable");
        let scenario = parse(&path.display().to_string(), &bytes).unwrap_or_else(|d| panic!("{d}"));
        out.push(Source {
            name,
            path,
            scenario,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// `scenario` with its `target srv builtin ...` serving `server` instead.
fn with_server(source: &Source, server: &str) -> Scenario {
    let mut scenario = source.scenario.clone();
    let mut swapped = 0;
    for step in &mut scenario.steps {
        if let Statement::Target {
            name,
            source: TargetSource::Builtin(builtin),
            ..
        } = &mut step.statement
        {
            if name == "srv" {
                *builtin = server.to_string();
                swapped += 1;
            }
        }
    }
    assert_eq!(
        swapped,
        1,
        "{} must have exactly one `target srv builtin ...`",
        source.path.display()
    );
    scenario
}

/// Runs every (server, scenario) pair on [`JOBS`] threads; results by (server, scenario name).
fn run_pairs(pairs: Vec<(String, &Source)>) -> BTreeMap<(String, String), ScenarioRun> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| {
        for _ in 0..JOBS {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((server, source)) = pairs.get(i) else {
                    break;
                };
                let result = run(&with_server(source, server));
                results
                    .lock()
                    .expect("no thread panics holding the lock")
                    .insert((server.clone(), source.name.clone()), result);
            });
        }
    });
    results.into_inner().expect("no thread panicked")
}

/// `text` cut to `max` characters, with `...` where it was cut.
fn clip(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if out.len() < text.len() {
        out.push_str("...");
    }
    out
}

/// One line of the table for a failed run: where it failed and what it saw (for data that
/// differs, where it first differs).
fn caught_at(name: &str, result: &ScenarioRun) -> Option<String> {
    let Status::Failed(f) = &result.status else {
        return None;
    };
    let mut saw = clip(&f.actual, 60);
    if let Some(first) = f
        .detail
        .as_deref()
        .and_then(|d| d.lines().next())
        .filter(|l| l.starts_with("first difference"))
    {
        saw.push_str(&format!(" ({first})"));
    }
    Some(format!(
        "{name}:{}  `{}`  =>  {saw}",
        f.line,
        clip(&f.statement, 50)
    ))
}

#[test]
fn every_bug_is_caught_and_every_correct_server_passes() {
    let sources: Vec<(&str, Vec<Source>)> =
        PROTOCOLS.iter().map(|p| (*p, scenarios_of(p))).collect();
    let mut pairs = Vec::new();
    for (protocol, scenarios) in &sources {
        assert!(!scenarios.is_empty(), "no scenarios for {protocol}");
        let servers = std::iter::once(*protocol).chain(
            ZOO.iter()
                .map(|(name, _, _)| *name)
                .filter(|name| name.split('-').next() == Some(*protocol)),
        );
        for server in servers {
            pairs.extend(scenarios.iter().map(|s| (server.to_string(), s)));
        }
    }
    let results = run_pairs(pairs);

    let mut problems = Vec::new();
    println!("\nbug zoo: detection table (scenarios/targets)");
    for (protocol, scenarios) in &sources {
        println!(
            "\n{protocol}: {} scenarios ({})",
            scenarios.len(),
            scenarios
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let result = |server: &str, s: &Source| &results[&(server.to_string(), s.name.clone())];
        // The correct server passes everything.
        let failed: Vec<&Source> = scenarios
            .iter()
            .filter(|s| matches!(result(protocol, s).status, Status::Failed(_)))
            .collect();
        if failed.is_empty() {
            println!("  {protocol:<22} correct: passes all {}", scenarios.len());
        } else {
            println!("  {protocol:<22} correct: FAILS {} of them", failed.len());
            for s in failed {
                problems.push(format!(
                    "the correct {protocol} server fails {}:\n{}",
                    s.name,
                    report::render(&s.path.display().to_string(), result(protocol, s))
                ));
            }
        }
        // Every broken server is caught, by its own scenario at least.
        for (server, bug, meant) in ZOO
            .iter()
            .filter(|(name, _, _)| name.split('-').next() == Some(*protocol))
        {
            println!("  {server:<22} {bug}");
            let caught: Vec<(&str, String)> = scenarios
                .iter()
                .filter_map(|s| caught_at(&s.name, result(server, s)).map(|l| (s.name.as_str(), l)))
                .collect();
            for (_, line) in &caught {
                println!("  {:<22}   caught by {line}", "");
            }
            if caught.is_empty() {
                println!("  {:<22}   NOT CAUGHT", "");
                problems.push(format!("{server} ({bug}) passes every {protocol} scenario"));
            } else if !caught.iter().any(|(name, _)| name == meant) {
                problems.push(format!(
                    "{server} ({bug}) is not caught by {meant}, the scenario written for it"
                ));
            }
        }
    }
    println!();
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The leak of `echo-leak-closed` seen from the server's side: run as a process (`sockharness
/// serve` behind a `cmd` target), its descriptor count grows with every client that came and
/// went, while the correct echo's stays put.
#[test]
fn a_leak_shows_in_the_descriptors_of_a_served_process() {
    let bin = env!("CARGO_BIN_EXE_sockharness");
    let scenario = |server: &str| {
        let text = format!(
            "timeout 3s\n\
             target srv cmd \"exec {bin} serve {server} --listen 127.0.0.1:{{port}}\"\n\
             connect c[1..20] to srv\n\
             send c[1..20] \"bye\"\n\
             recv c[1..20] exact 3 == \"bye\"\n\
             close c[1..20]\n\
             sleep 100ms\n\
             expect srv.fds <= 12\n"
        );
        parse("leak.scenario", text.as_bytes()).unwrap_or_else(|d| panic!("{d}"))
    };
    let correct = run(&scenario("echo"));
    assert_eq!(correct.status, Status::Passed, "{}", correct.trace.render());
    let leaky = run(&scenario("echo-leak-closed"));
    let Status::Failed(f) = &leaky.status else {
        panic!("the leak went unnoticed:\n{}", leaky.trace.render())
    };
    assert_eq!(f.line, 8, "{f:?}");
    println!("echo-leak-closed as a process: {}", f.actual);
}
