//! The fuzz loop against a real server: seeds checked and calibrated, cases run by worker
//! threads against one server process, failures confirmed alone, minimised, and written as
//! scenario files that reproduce them with `sockharness run`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use sockharness::run::{self};
use sockharness::script::TargetSource;

use super::case::{Case, Edit, Intruder, Leave, CASE_TIMEOUT};
use super::coverage;
use super::fuzzer::{
    lock, Config, Coverage, Expect, Fuzzer, Phase, Progress, Report, Verdict, SETTLE,
};
use super::leak;
use super::mutate::{self, Shape};
use super::prepare::{prepare, recheck};
use super::queue::Queue;
use super::reproduce::{conclude, conclude_leak, describe};
use super::server::{Running, Server};
use super::sync::Sync;
use super::FuzzError;

/// Fuzzes the server as `cfg` says; `progress` hears how it goes about twice a second.
pub fn fuzz(cfg: &Config, mut progress: impl FnMut(&Progress)) -> Result<Report, FuzzError> {
    let started = Instant::now();
    writable(&cfg.out)?;
    let mut report = Report::default();
    let map_len = match (cfg.coverage, &cfg.server) {
        (None, _) => None,
        (Some(Coverage::Afl), Server::Cmd(command)) => {
            let port = sockharness::process::free_port()
                .map_err(|e| FuzzError::Server(e.to_string()))?;
            Some(coverage::map_size(command, port)?)
        }
        (Some(_), Server::Addr(a)) => {
            return Err(FuzzError::Server(format!(
                "coverage needs a server the fuzzer starts with its map (--cmd), not one already running at {a}"
            )))
        }
        (Some(_), Server::Service(s)) => {
            return Err(FuzzError::Server(format!(
                "the service {} runs in this process: its coverage is the fuzz target's (cargo fuzz), not an AFL++ map",
                s.name()
            )))
        }
    };
    let new_map = |len: usize| {
        coverage::Map::new(len)
            .map(Arc::new)
            .map_err(|source| coverage::CoverageError::Map { len, source })
    };
    let server = Running::start(&cfg.server, map_len.map(new_map).transpose()?)?;
    let mut fz = Fuzzer {
        cfg,
        server: Mutex::new(server),
        seeds: Vec::new(),
        health: None,
        invalid: Mutex::new((0, None)),
        pool: Vec::new(),
        queue: None,
    };
    let mut given = cfg.seeds.clone();
    given.dedup();
    prepare(&mut fz, &given, &mut report)?;
    let calibrated = started.elapsed();
    let mut shapes: Vec<Shape> = fz.seeds.iter().map(Shape::of).collect();
    // A seed that fails with nothing changed is the first finding.
    for (i, shape) in shapes.iter_mut().enumerate() {
        let case = Case {
            seed: i,
            edits: Vec::new(),
        };
        if super::interrupted() || started.elapsed() > cfg.time {
            break;
        }
        // Timed without the server's start.
        fz.fresh()?;
        let sc = fz.with_health(&fz.seeds[i], &case, &fz.source());
        let t = Instant::now();
        let v = match fz.run(&sc, SETTLE) {
            Verdict::Fail(f) if !f.kind.is_timeout() && recheck(&mut fz, i, &mut report)? => {
                Verdict::Pass
            }
            v => v,
        };
        let cost = t.elapsed();
        shape.weight = 1.0 / (cost.as_secs_f64() * 1000.0 + 2.0);
        if matches!(v, Verdict::Skip) {
            report.notes.push(format!(
                "{}: skipped here (a program it requires is missing?), so it is not fuzzed",
                fz.seeds[i].label
            ));
            shape.weight = 0.0;
            continue;
        }
        // Past a few times what the seed takes plainly, a case is hanging: say so then, not at
        // the seed's own (generous) deadline.
        let settings = &mut fz.seeds[i].scenario.settings;
        let own = settings.timeout.unwrap_or(run::DEFAULT_TIMEOUT);
        settings.timeout = Some(own.min(CASE_TIMEOUT.max(cost * 4)));
        // Three clients at once, each sending its request whole: a server that answers one
        // connection at a time hangs here.
        let crowd = fz.seeds[i].plain.as_ref().map(|p| Case {
            seed: i,
            edits: vec![Edit::Crowd {
                clients: 3,
                chunk: p.request.len().max(1) as u64,
                gap: Duration::ZERO,
            }],
        });
        let crowd = match crowd {
            Some(c) if !v.failed() => match fz.check_fresh(&fz.seeds[i], &c)? {
                Verdict::Fail(f) if f.kind.is_timeout() => Some((c, Verdict::Fail(f))),
                v @ Verdict::Crash(..) => Some((c, v)),
                _ => None,
            },
            _ => None,
        };
        let plain_failed = v.failed();
        let failed = match (plain_failed, crowd) {
            (true, _) => Some((case, v)),
            (false, c) => c,
        };
        if let Some((case, v)) = failed {
            if let Some(found) = conclude(&fz, case, v, started, 0, &mut progress, &mut report)? {
                report.found.push(found);
                fz.finish(&mut report, started);
                return Ok(report);
            }
            // The note is in the report. A seed that fails by itself is not fuzzed; one whose
            // crowd failed only once keeps its other edits.
            if plain_failed {
                shape.weight = 0.0;
            } else if let Some(p) = &mut fz.seeds[i].plain {
                p.independent = false;
            }
            fz.fresh()?;
        }
    }
    if shapes.iter().all(|s| s.weight == 0.0) {
        return Err(FuzzError::Server(format!(
            "no seed runs the same way twice against this server, so nothing can be compared:\n{}",
            report.notes.join("\n")
        )));
    }
    let streams: Vec<Vec<u8>> = given.streams.iter().map(|s| s.bytes.clone()).collect();
    // Words to write into the bytes: the dictionary's, then the seeds', then the answers'.
    let mut tokens = cfg.dict.clone();
    let dict = tokens.len();
    for s in &streams {
        mutate::words(s, &mut tokens, MAX_TOKENS);
    }
    for seed in &fz.seeds {
        if let Some(answer) = seed.plain.as_ref().and_then(|p| p.baseline.exchange()) {
            mutate::words(&answer.response, &mut tokens, MAX_TOKENS);
        }
    }
    if let Some(len) = map_len {
        // One instance per worker, each with its own map, so that what a map holds after an
        // input is that input's doing.
        for _ in 1..cfg.jobs.max(1) {
            if super::interrupted() {
                break;
            }
            let map = new_map(len)?;
            fz.pool
                .push(Mutex::new(Running::start(&cfg.server, Some(map))?));
        }
        fz.queue = Some(Queue::new(streams.clone(), len, cfg.dict.clone()));
    }
    let mut sync =
        match (&cfg.sync, &fz.queue) {
            (Some(to), Some(_)) => Some(Sync::new(to.clone()).map_err(|e| {
                FuzzError::Sync(format!("{}: {e}", to.dir.join(&to.name).display()))
            })?),
            _ => None,
        };
    let mut last_sync = Instant::now();
    // The server's descriptors when idle, once the seed checks' connections are closed: the
    // same count twice in a row, 20 ms apart (200 ms at most).
    let mut idle = fz.fds();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(20));
        let now = fz.fds();
        if now == idle {
            break;
        }
        idle = now;
    }
    let mut leak_checks = idle.is_some();
    let mut jobs = cfg.jobs.max(1);
    let mut unsteady = vec![0u32; fz.seeds.len()];
    let echo = matches!(cfg.expect, Some(Expect::Echo));
    let next = AtomicU64::new(0);
    report.ready = Some(started.elapsed());
    let deadline = started
        .checked_add(cfg.time)
        .unwrap_or_else(|| started + Duration::from_secs(365 * 24 * 3600));
    loop {
        let stop = AtomicBool::new(false);
        // Each case, with the case its worker ran before it: on a server instance of the
        // worker's own, a crash the last bytes of that one caused may show only now.
        let (tx, rx) = mpsc::channel::<(u64, Case, Verdict, Option<(u64, Case)>)>();
        let mut failing: Vec<(u64, Case, Verdict)> = Vec::new();
        let mut leaking = None;
        let mut recent: Vec<(u64, Case)> = Vec::new();
        std::thread::scope(|scope| {
            for w in 0..jobs {
                let tx = tx.clone();
                let (fz, next, stop, shapes, streams) = (&fz, &next, &stop, &shapes, &streams);
                let tokens = &tokens;
                scope.spawn(move || {
                    let instance = fz.instance(w);
                    let source = TargetSource::At(lock(instance).addr());
                    let map = lock(instance).map().cloned();
                    let (mut counts, mut settling) = (Vec::new(), Vec::new());
                    let mut before: Option<(u64, Case)> = None;
                    while !stop.load(Ordering::Relaxed)
                        && !super::interrupted()
                        && Instant::now() < deadline
                    {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if cfg.runs.is_some_and(|r| i >= r) {
                            break;
                        }
                        let generate = |corpus: mutate::Corpus<'_>| {
                            mutate::generate(cfg.seed, i, &fz.seeds, shapes, corpus, echo)
                        };
                        // Another run's entries first, then every other input a step of a
                        // sweep, the rest made from the queue.
                        let (case, swept) = match &fz.queue {
                            Some(q) => {
                                if let Some(data) = q.take_offered() {
                                    (as_is(data, None, shapes), false)
                                } else if let Some((data, at)) =
                                    (i % 2 == 0).then(|| q.take_swept()).flatten()
                                {
                                    (as_is(data, Some(at), shapes), true)
                                } else {
                                    (q.with_corpus(tokens, dict, generate), false)
                                }
                            }
                            None => (
                                generate(mutate::Corpus {
                                    tokens,
                                    dict,
                                    ..mutate::Corpus::plain(streams)
                                }),
                                false,
                            ),
                        };
                        let sc = case.scenario(&fz.seeds[case.seed], &source);
                        if let Some(m) = &map {
                            m.clear();
                        }
                        let v = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            fz.run_on(instance, &sc, Duration::ZERO)
                        }))
                        .unwrap_or(Verdict::Skip);
                        if let (Some(m), Some(q)) = (&map, &fz.queue) {
                            m.read_settled(&mut counts, &mut settling);
                            q.observe(&counts, &case, swept);
                        }
                        let prev = if fz.pool.is_empty() {
                            None
                        } else {
                            before.replace((i, case.clone()))
                        };
                        if tx.send((i, case, v, prev)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut last = Instant::now();
            loop {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok((i, case, v, prev)) => {
                        report.inputs += 1;
                        if v.failed() {
                            stop.store(true, Ordering::Relaxed);
                            if let (Some((j, c)), Verdict::Crash(..)) = (prev, &v) {
                                failing.push((j, c, v.clone()));
                            }
                            failing.push((i, case, v));
                        } else {
                            recent.push((i, case));
                            if recent.len() > 64 {
                                recent.remove(0);
                            }
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
                if last.elapsed() >= Duration::from_millis(500) {
                    last = Instant::now();
                    let fds = if leak_checks { fz.fds() } else { None };
                    if let (Some(idle), Some(now)) = (idle, fds) {
                        if now > idle + leak::margin(jobs) && leaking.is_none() {
                            leaking = Some(now);
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    progress(&fz.progress(&report, started, report.inputs, Phase::Fuzzing));
                    if let (Some(s), Some(q)) = (&mut sync, &fz.queue) {
                        if last_sync.elapsed() >= SYNC_EVERY {
                            last_sync = Instant::now();
                            share(s, q, &mut report);
                        }
                    }
                }
            }
        });
        // A failure may be a leak's symptom (out of descriptors, it stops accepting), and the
        // replays that follow restart the server, which hides the leak: look at it first.
        let high = |fds: Option<u64>| matches!((idle, fds), (Some(i), Some(n)) if n > i + leak::margin(jobs));
        if let (Some(idle), true) = (
            idle,
            leaking.is_some() || (leak_checks && !failing.is_empty() && high(fz.fds())),
        ) {
            // With every input finished, what is still open is the server's own doing.
            std::thread::sleep(Duration::from_millis(500));
            let now = fz.fds().unwrap_or(0);
            let seen = leaking.unwrap_or(now);
            if now > idle + leak::margin(jobs) {
                if let Some(found) =
                    conclude_leak(&fz, idle, seen.max(now), started, report.inputs)?
                {
                    report.found.push(found);
                    break;
                }
                report.notes.push(format!(
                    "the server held {now} descriptors after {} inputs (idle: {idle}), but {} connections opened and closed on a fresh server did not show it",
                    report.inputs,
                    leak::CONNECTIONS
                ));
                // Once is enough: what this server holds on to is not what the reproducer does.
                leak_checks = false;
                fz.fresh()?;
            }
            if failing.is_empty() && Instant::now() < deadline {
                continue;
            }
        }
        if failing.is_empty() {
            break;
        }
        // Several workers share one server: the case that failed may be the victim of another
        // that broke the server. Replay the failing cases, then the recent ones, each alone.
        failing.sort_by_key(|(i, ..)| *i);
        recent.sort_by_key(|(i, _)| *i);
        progress(&fz.progress(&report, started, report.inputs, Phase::Confirming));
        let first_seen = started.elapsed();
        let suspects = failing
            .iter()
            .map(|(i, c, _)| (*i, c.clone()))
            .chain(recent.iter().rev().take(SUSPECTS).cloned())
            .collect::<Vec<_>>();
        let mut confirmed = None;
        'suspects: for (_, case) in suspects {
            // Replays stay within the run's time, with a little to spare for the first ones.
            if super::interrupted() || Instant::now() > deadline + Duration::from_secs(10) {
                break;
            }
            let steadied = Case {
                seed: case.seed,
                edits: case.edits.iter().map(Edit::steadied).collect(),
            };
            for case in [case.clone(), case, steadied] {
                let v = fz.check_fresh(&fz.seeds[case.seed], &case)?;
                if v.failed() {
                    confirmed = Some((case, v));
                    break 'suspects;
                }
            }
        }
        match confirmed {
            Some((case, v)) => {
                if matches!(&v, Verdict::Fail(f) if !f.kind.is_timeout())
                    && recheck(&mut fz, case.seed, &mut report)?
                {
                    fz.ensure_alive()?;
                    fz.pool_alive()?;
                    continue;
                }
                let inputs = report.inputs;
                if let Some(mut found) =
                    conclude(&fz, case, v, started, inputs, &mut progress, &mut report)?
                {
                    found.after = first_seen;
                    report.found.push(found);
                    break;
                }
                fz.ensure_alive()?;
                fz.pool_alive()?;
            }
            None => {
                let (i, case, v) = &failing[0];
                report.notes.push(format!(
                    "input {i} failed ({}) but did not fail again when replayed alone: {}",
                    describe(v),
                    case.edits
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
                if !fz.pool.is_empty() {
                    // With a server instance per worker, inputs do not disturb each other, and
                    // the queue, not the seed, is what a guided run draws from: the note says
                    // it, and the run goes on as it was.
                } else if jobs > 1 {
                    // Inputs running at once disturb each other here (the server shares state
                    // between connections, or slows down under load): one at a time from now.
                    jobs = 1;
                    report.notes.push("inputs running at the same time disturbed each other, so the rest of the run went one input at a time".into());
                } else {
                    // Alone, and still only on the long-running server: this seed's answers
                    // depend on what earlier inputs did to the server's state (a key, a
                    // counter). Twice, and it is fuzzed no more.
                    let seed = case.seed;
                    unsteady[seed] += 1;
                    if unsteady[seed] == 2 {
                        shapes[seed].weight = 0.0;
                        report.notes.push(format!(
                            "{}: its answers depend on the state earlier inputs left in the server, so it is fuzzed no more",
                            fz.seeds[seed].label
                        ));
                        if shapes.iter().all(|s| s.weight == 0.0) {
                            report.notes.push(
                                "no seed is left whose answers do not depend on the server's state"
                                    .into(),
                            );
                            break;
                        }
                    }
                }
                fz.ensure_alive()?;
                fz.pool_alive()?;
            }
        }
        if Instant::now() >= deadline
            || super::interrupted()
            || cfg.runs.is_some_and(|r| next.load(Ordering::Relaxed) >= r)
        {
            break;
        }
    }
    if super::interrupted() {
        report
            .notes
            .push("interrupted: the run stopped early".into());
    }
    if report.inputs == 0 && report.found.is_empty() && !super::interrupted() {
        let mean = fz.lock().mean_start();
        fz.lock().stop();
        return Err(FuzzError::NothingRan(format!(
            "calibrating the seeds took {:.1}s of the {:.1}s given (--time), with the server taking {:.1}s on average to stop and start again; give more --time",
            calibrated.as_secs_f64(),
            cfg.time.as_secs_f64(),
            mean.as_secs_f64()
        )));
    }
    if calibrated > cfg.time / 2 && !super::interrupted() {
        report.notes.push(format!(
            "calibrating the seeds took {:.1}s of the {:.1}s given (--time): fewer inputs ran than the time allows",
            calibrated.as_secs_f64(),
            cfg.time.as_secs_f64()
        ));
    }
    fz.finish(&mut report, started);
    if let Some(q) = &fz.queue {
        let dir = cfg.out.join("queue");
        if let Err(e) = q.save(&dir) {
            report
                .notes
                .push(format!("cannot write the queue to {}: {e}", dir.display()));
        }
    }
    if let (Some(s), Some(q)) = (&mut sync, &fz.queue) {
        if let Err(e) = s.export(q) {
            report.notes.push(format!(
                "cannot write the queue to {}: {e}",
                s.queue_dir().display()
            ));
        }
    }
    fz.lock().stop();
    for s in &fz.pool {
        lock(s).stop();
    }
    Ok(report)
}

/// Makes sure reproducers can be written to `out` before any fuzzing, rather than learning it
/// when the first one is found.
fn writable(out: &std::path::Path) -> Result<(), FuzzError> {
    let failed = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| FuzzError::Out { path, source }
    };
    std::fs::create_dir_all(out).map_err(failed(out))?;
    let probe = out.join(format!(".sockharness-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(failed(out))?;
    std::fs::remove_file(&probe).map_err(failed(&probe))
}

/// Tokens taken from seeds and answers at most (the dictionary's are all kept).
const MAX_TOKENS: usize = 512;

/// How often a run with `--sync-dir` writes its new queue entries and takes in the others'.
const SYNC_EVERY: Duration = Duration::from_secs(5);

/// Writes the queue's new entries to the sync directory and offers the other runs' new ones;
/// a failure is noted once, and the run goes on.
fn share(s: &mut Sync, q: &Queue, report: &mut Report) {
    let shared = s.export(q).and_then(|_| s.import());
    match shared {
        Ok(streams) => q.offer(streams),
        Err(e) => {
            let note = format!("sharing the queue in {}: {e}", s.queue_dir().display());
            if !report.notes.contains(&note) {
                report.notes.push(note);
            }
        }
    }
}

/// A case that sends a stream as it is (from another run's queue, or a step of a sweep) beside
/// the clients of the first seed still fuzzed, unchanged: what it reaches decides whether it
/// joins the queue.
fn as_is(data: Vec<u8>, focus: Option<usize>, shapes: &[Shape]) -> Case {
    Case {
        seed: shapes.iter().position(|s| s.weight > 0.0).unwrap_or(0),
        edits: vec![Edit::Intruder(Intruder {
            data,
            chunk: None,
            leave: Leave::Close,
            echo: false,
            rcvbuf: None,
            mutated: true,
            focus,
        })],
    }
}

/// Inputs that ran just before a failure, replayed alone as its possible cause.
const SUSPECTS: usize = 8;
