//! The cost of a minimal scenario on real sockets (listen, connect, accept, send, recv, close):
//! isolated in a private network namespace and captured, as `sockharness run` plays it, against
//! the same on the host loopback without capture, and the cost of entering a new network namespace.
//! It ends by printing the ratio of the first two over 200 runs each, as `--jobs 1` plays them.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sockharness::run::{self, run_with, RunOptions, Status};
use sockharness::sandbox::{self, Isolation, Support};
use sockharness::script::{parse, Scenario};

const MINIMAL: &str = "listen srv
connect cli to srv
accept srv as conn
send cli \"ping\"
recv conn 4 == \"ping\"
close cli
close conn
close srv
";

fn scenario() -> Scenario {
    parse("minimal.scenario", MINIMAL.as_bytes()).expect("the bench scenario parses")
}

fn options(isolation: Isolation, capture: bool) -> RunOptions {
    RunOptions {
        isolation,
        capture,
        ..RunOptions::default()
    }
}

/// Runs `n` times on one thread dedicated to scenarios, as `sockharness run --jobs 1` does.
fn play(scenario: &Scenario, opts: &RunOptions, n: u64) -> Duration {
    std::thread::scope(|s| {
        s.spawn(|| {
            run::dedicate_this_thread();
            let started = Instant::now();
            for _ in 0..n {
                let r = run_with(scenario, opts);
                assert_eq!(r.status, Status::Passed, "{:?}", r.status);
            }
            started.elapsed()
        })
        .join()
        .expect("the bench thread runs")
    })
}

fn minimal(c: &mut Criterion) {
    let isolated = matches!(sandbox::init(), Support::Available { .. });
    let scenario = scenario();
    let mut group = c.benchmark_group("scenario");
    group.throughput(Throughput::Elements(1));
    group.bench_function("minimal_host_loopback", |b| {
        b.iter_custom(|n| play(&scenario, &options(Isolation::Never, false), n))
    });
    if isolated {
        group.bench_function("minimal_isolated_captured", |b| {
            b.iter_custom(|n| play(&scenario, &options(Isolation::Always, true), n))
        });
        group.bench_function("minimal_isolated", |b| {
            b.iter_custom(|n| play(&scenario, &options(Isolation::Always, false), n))
        });
        // A namespace as a scenario gets one: from the pool, so this measures the rate at which
        // the kernel makes them when they are taken one after another.
        group.bench_function("netns_enter", |b| {
            b.iter(|| {
                std::thread::spawn(|| sandbox::enter_private_netns().expect("a namespace"))
                    .join()
                    .expect("the thread runs")
            })
        });
    } else {
        eprintln!("no isolation here: only the host-loopback bench runs");
    }
    group.finish();
}

/// The ratio the speed goal is stated in: isolated and captured against the host loopback.
fn ratio() {
    if !matches!(sandbox::init(), Support::Available { .. }) {
        return;
    }
    let scenario = scenario();
    let n = 200;
    let host = play(&scenario, &options(Isolation::Never, false), n);
    let isolated = play(&scenario, &options(Isolation::Always, true), n);
    println!(
        "minimal scenario, {n} runs each: isolated and captured {:.2} ms, host loopback {:.2} ms, ratio {:.1}",
        isolated.as_secs_f64() * 1e3 / n as f64,
        host.as_secs_f64() * 1e3 / n as f64,
        isolated.as_secs_f64() / host.as_secs_f64()
    );
}

criterion_group!(benches, minimal);
criterion_main!(benches, ratio);
