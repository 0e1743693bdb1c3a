//! The scriptable wire's cost, in one run: a bulk transfer over a link with no impairment
//! against the same transfer between two sockets of one namespace's loopback (the ratio is the
//! link's share of loopback throughput, printed at the end), the same over a captured link (the
//! forwarder recording both sides of it), and a minimal two-host scenario.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sockharness::run::{run_with, RunOptions, Status};
use sockharness::sandbox::{self, Isolation, Support};
use sockharness::script::{parse, Scenario};

const BYTES: u64 = 64 << 20;

fn scenario(text: &str) -> Scenario {
    parse("bench.scenario", text.as_bytes()).expect("the bench scenario parses")
}

fn opts(capture: bool) -> RunOptions {
    RunOptions {
        isolation: Isolation::Always,
        // The forwarding is measured, and separately what recording it adds.
        capture,
        ..RunOptions::default()
    }
}

fn run(s: &Scenario) -> Duration {
    run_as(s, false)
}

fn run_as(s: &Scenario, capture: bool) -> Duration {
    let started = Instant::now();
    let r = run_with(s, &opts(capture));
    assert_eq!(r.status, Status::Passed, "{:?}", r.status);
    started.elapsed()
}

fn links(c: &mut Criterion) {
    if let Support::Unavailable(why) = sandbox::init() {
        eprintln!("links bench skipped: isolation is unavailable ({why})");
        return;
    }
    let transfer =
        "accept srv as conn\nsend cli pattern(BYTES) &s\nrecv conn exact BYTES\nwait s\n"
            .replace("BYTES", &BYTES.to_string());
    let direct = scenario(&format!("listen srv\nconnect cli to srv\n{transfer}"));
    let linked = scenario(&format!(
        "host a\nhost b\nlink a b\nlisten srv on b\nconnect cli from a to srv\n{transfer}"
    ));
    let minimal = scenario(
        "host a\nhost b\nlink a b\nlisten srv on b\nconnect cli from a to srv\n\
         accept srv as conn\nsend cli \"hi\"\nrecv conn exact 2 == \"hi\"\n",
    );
    let mut group = c.benchmark_group("link");
    group.throughput(Throughput::Bytes(BYTES));
    group.sample_size(10);
    group.bench_function("loopback_64MiB", |b| b.iter(|| run(&direct)));
    group.bench_function("link_64MiB", |b| b.iter(|| run(&linked)));
    group.bench_function("link_captured_64MiB", |b| b.iter(|| run_as(&linked, true)));
    group.finish();
    let mut group = c.benchmark_group("hosts");
    group.sample_size(20);
    group.bench_function("two_hosts_minimal", |b| b.iter(|| run(&minimal)));
    group.finish();
    // Criterion's figures are per group; the ratio asked of a link is between two of them, so
    // it is measured once more here, interleaved, on the same machine state.
    let mut times = (Duration::ZERO, Duration::ZERO);
    for _ in 0..5 {
        times.0 += run(&direct);
        times.1 += run(&linked);
    }
    let mbit = |t: Duration| (BYTES * 5 * 8) as f64 / t.as_secs_f64() / 1e6;
    println!(
        "link throughput: {:.0} Mbit/s over a link, {:.0} Mbit/s over loopback: {:.2} of loopback",
        mbit(times.1),
        mbit(times.0),
        times.0.as_secs_f64() / times.1.as_secs_f64()
    );
}

criterion_group!(benches, links);
criterion_main!(benches);
