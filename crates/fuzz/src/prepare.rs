//! Before the loop: every request stream delivered plainly, twice on fresh servers, its answer
//! recorded as the baseline that transport invariance holds mutations to; a few mutated
//! variants calibrated the same way; and whether the server's connections share state. Whether
//! an answer changes with the time of day is decided later, when one differs ([`recheck`]):
//! waiting a second between the deliveries up front would delay every run's first input.

use std::time::{Duration, Instant};

use sockharness::script::TargetSource;

use super::calibrate::{self, Baseline};
use super::case::{Plain, Seed};
use super::fuzzer::{Expect, Fuzzer, Report, Verdict};
use super::mutate;
use super::seed::Seeds;
use super::FuzzError;

/// Mutated variants of the request streams that get an answer of their own, compared like the
/// streams themselves: transport invariance then covers bytes no seed has.
const VARIANTS: usize = 16;
/// How long the variants' first deliveries may take at most: each also costs a second delivery
/// and a check of its seed, all on fresh servers, before the first input.
const VARIANT_TIME: Duration = Duration::from_millis(100);
/// How long a plain delivery waits for more of the answer once none comes.
const QUIET: Duration = Duration::from_millis(60);
/// How long a plain delivery waits for its answer at most.
const LIMIT: Duration = Duration::from_secs(2);
/// The pause after an intruding client on a server whose connections share state.
const SHARED_SETTLE: Duration = Duration::from_millis(20);

/// Turns the given seeds into runnable seeds: seed scenarios as they are, and every request
/// stream (and a few mutated variants of them) with the answer its plain delivery gets.
pub(super) fn prepare(
    fz: &mut Fuzzer<'_>,
    given: &Seeds,
    report: &mut Report,
) -> Result<(), FuzzError> {
    let cfg = fz.cfg;
    let began = Instant::now();
    // Variants are extra: a server slow to start does not spend the run's time on them, nor
    // delay its first input by more than a moment. The streams themselves get half of it: the
    // rest is for fuzzing.
    let extra_time = (cfg.time / 4).min(VARIANT_TIME);
    let own_time = cfg.time / 2;
    let mut left_out = 0;
    let mut seeds: Vec<Seed> = given
        .scenarios
        .iter()
        .map(|s| Seed {
            label: s.label.clone(),
            scenario: s.scenario.clone(),
            plain: None,
            settle: None,
        })
        .collect();
    let mut shared = false;
    let mut crowd_hangs = false;
    let mut requests: Vec<(String, Vec<u8>, bool)> = given
        .streams
        .iter()
        .map(|s| (s.label.clone(), s.bytes.clone(), false))
        .collect();
    let originals: Vec<Vec<u8>> = given.streams.iter().map(|s| s.bytes.clone()).collect();
    if !originals.is_empty() && !matches!(cfg.expect, Some(Expect::Echo)) {
        let mut rng = mutate::rng_for(cfg.seed, u64::MAX);
        for k in 0..VARIANTS {
            let stream = &given.streams[k % given.streams.len()];
            let (label, bytes) = (&stream.label, &stream.bytes);
            let mut b = bytes.clone();
            mutate::mutate(&mut rng, &mut b, mutate::Corpus::plain(&originals), None);
            b.truncate(4096);
            if !b.is_empty() && !requests.iter().any(|(_, r, _)| *r == b) {
                requests.push((format!("{label} (mutation {})", k + 1), b, true));
            }
        }
    }
    // Round one for every request, then round two.
    let mut first = Vec::with_capacity(requests.len());
    // Each on a fresh server: the answer must not depend on the requests before it, as
    // confirmations and reproducers run on fresh servers too.
    for (_, bytes, variant) in &requests {
        if super::interrupted() || (*variant && began.elapsed() > extra_time) {
            first.push(None);
            continue;
        }
        if began.elapsed() > own_time {
            left_out += 1;
            first.push(None);
            continue;
        }
        fz.fresh()?;
        let addr = fz.lock().addr();
        let ex = calibrate::exchange(addr, bytes, QUIET, LIMIT);
        // A request whose plain delivery breaks the server is a finding: its seed, checked
        // first thing, shows it on a fresh server.
        let dead = !fz.lock().alive();
        if dead || ex.is_err() {
            fz.fresh()?;
        }
        first.push(Some(ex.ok().filter(|_| !dead)));
    }
    for ((label, bytes, variant), tried) in requests.iter().zip(first) {
        // Left out for time, or the run was interrupted.
        let Some(a) = tried.filter(|_| !super::interrupted()) else {
            continue;
        };
        // The second deliveries too stay within the calibration's share of the run.
        if !*variant && began.elapsed() > own_time + own_time / 2 {
            left_out += 1;
            continue;
        }
        fz.fresh()?;
        let addr = fz.lock().addr();
        let b = match a {
            Some(_) => calibrate::exchange(addr, bytes, QUIET, LIMIT).ok(),
            None => None,
        };
        if b.is_none() && !fz.lock().alive() {
            fz.fresh()?;
        }
        let addr = fz.lock().addr();
        let compared = match (a, &b) {
            (Some(a), Some(b)) => calibrate::compare(a, b),
            _ => Baseline::Broke,
        };
        let baseline = match (&cfg.expect, compared) {
            (_, Baseline::Broke) => Baseline::Broke,
            // The answer an echo server must give is known: the request.
            (Some(Expect::Echo), _) => Baseline::Exact(calibrate::Exchange {
                response: bytes.clone(),
                end: calibrate::End::Open,
            }),
            (_, Baseline::Unstable) if *variant => continue,
            (_, Baseline::Unstable) => {
                report.notes.push(format!(
                    "{label}: the answer to its plain delivery changes from one delivery to the next; only liveness is checked for it"
                ));
                Baseline::Unstable
            }
            // A variant nobody answers adds nothing the intruders do not already do.
            (_, b) if *variant && b.exchange().is_some_and(|e| e.response.is_empty()) => continue,
            (_, b) => b,
        };
        let mut plain = Plain {
            request: bytes.clone(),
            baseline,
            independent: false,
        };
        // Only a server that answers each connection on its own may be held to the plain answer
        // when clients interleave.
        if plain.baseline.exchange().is_some() && !crowd_hangs {
            let mut crowd = plain.scenario("srv", 3, None, Duration::ZERO);
            super::case::retarget(&mut crowd, &TargetSource::At(addr));
            let v = fz.run(&crowd, Duration::ZERO);
            // A request nobody answers leaves only "nothing arrives" to compare, which is what
            // a broadcast (a chat room) breaks whenever the others' lines come late enough to
            // pass the check: such a request is never sent by clients at once.
            let answered = plain
                .baseline
                .exchange()
                .is_some_and(|e| !e.response.is_empty());
            plain.independent = answered && !v.failed();
            // Clients at once that get other answers than one alone (not none at all): the
            // server's connections share state.
            shared |= matches!(&v, Verdict::Fail(f) if !f.kind.is_timeout());
            // One hang says the server cannot take clients at once; the seed checks show it,
            // and asking again for every request would only wait out more deadlines.
            crowd_hangs |= matches!(&v, Verdict::Fail(f) if f.kind.is_timeout());
            if !plain.independent {
                // What the crowd did (a hang, a crash) is checked again with the seeds, on a
                // fresh server; what follows must not inherit it.
                fz.fresh()?;
            }
        }
        seeds.push(Seed {
            label: label.clone(),
            scenario: scenario(cfg.expect.as_ref(), &plain),
            plain: Some(plain),
            settle: None,
        });
    }
    let streams = given.streams.len();
    let why = format!(
        "{left_out} of {streams} request streams were not calibrated within half of --time ({:.1}s): each needs two fresh starts of the server, and this one took {:.1}s on average to start",
        own_time.as_secs_f64(),
        fz.lock().mean_start().as_secs_f64(),
    );
    if seeds.is_empty() {
        return Err(if super::interrupted() {
            FuzzError::Interrupted
        } else if left_out > 0 {
            FuzzError::NothingRan(format!("{why}; give more --time or fewer streams"))
        } else {
            FuzzError::NoSeeds
        });
    }
    if left_out > 0 {
        report.notes.push(format!("{why}; they are not fuzzed"));
    }
    // The health request must be one the server answers (a chat line is answered to the
    // others, not to its sender): its answer, any answer, shows the server alive.
    fz.health = seeds
        .iter()
        .filter_map(|s| s.plain.as_ref())
        .find(|p| {
            p.baseline
                .exchange()
                .is_some_and(|e| !e.response.is_empty())
        })
        .cloned();
    if shared {
        for s in &mut seeds {
            s.settle = Some(SHARED_SETTLE);
        }
    }
    fz.seeds = seeds;
    Ok(())
}

/// The scenario of a request stream's seed: one client sending it plainly, held to its answer.
fn scenario(expect: Option<&Expect>, plain: &Plain) -> sockharness::script::Scenario {
    let mut scenario = plain.scenario("srv", 1, None, Duration::ZERO);
    if let (Some(Expect::Regex(re)), Some(ex)) = (expect, plain.baseline.exchange()) {
        // An answer that does not match is held to the pattern instead of to its bytes, so
        // the seed's own check fails, and its reproducer says why.
        if !re.is_match(&ex.response) {
            super::case::expect_matches(&mut scenario, re.as_str());
        }
    }
    scenario
}

/// Before a failure of seed `seed` is believed: whether its plain delivery, on a fresh server,
/// still gets the answer recorded. One that gets another answer (it carries the time of day,
/// an HTTP `Date`, a counter) is compared from then on by what stayed the same (its length,
/// else only that the server lives), the seed's scenario is made again, and `true` says the
/// failure was the baseline's, not the server's.
pub(super) fn recheck(
    fz: &mut Fuzzer<'_>,
    seed: usize,
    report: &mut Report,
) -> Result<bool, FuzzError> {
    let Some(Baseline::Exact(recorded)) = fz.seeds[seed].plain.as_ref().map(|p| &p.baseline) else {
        return Ok(false);
    };
    let recorded = recorded.clone();
    let request = fz.seeds[seed]
        .plain
        .as_ref()
        .map(|p| p.request.clone())
        .unwrap_or_default();
    fz.fresh()?;
    let addr = fz.lock().addr();
    let now = calibrate::exchange(addr, &request, QUIET, LIMIT).ok();
    // A plain delivery that now breaks a fresh server, or gets the answer recorded, leaves the
    // failure standing.
    let Some(now) = now.filter(|now| *now != recorded && fz.lock().alive()) else {
        fz.ensure_alive()?;
        return Ok(false);
    };
    let baseline = calibrate::compare(recorded, &now);
    let what = match baseline {
        Baseline::Length(_) => "by its length",
        _ => "only by the server's liveness",
    };
    let s = &mut fz.seeds[seed];
    report.notes.push(format!(
        "{}: the answer to its plain delivery changed since it was recorded (the time of day?); it is compared {what} from then on",
        s.label
    ));
    if let Some(p) = &mut s.plain {
        p.baseline = baseline;
        let settings = s.scenario.settings.clone();
        s.scenario = scenario(fz.cfg.expect.as_ref(), p);
        s.scenario.settings = settings;
    }
    Ok(true)
}
