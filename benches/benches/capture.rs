//! Loopback throughput with capture on versus off, in the same run: the cost of recording every
//! frame of a scenario.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sockharness::run::{run_with, RunOptions, Status};
use sockharness::sandbox::{self, Isolation, Support};
use sockharness::script::parse;

const BYTES: u64 = 64 << 20;

fn transfer(c: &mut Criterion) {
    let text = format!(
        "listen srv\nconnect cli to srv\naccept srv as conn\nsend cli pattern({BYTES}) &s\nrecv conn exact {BYTES}\nwait s\n"
    );
    let scenario = parse("transfer.scenario", text.as_bytes()).expect("the bench scenario parses");
    if let Support::Unavailable(why) = sandbox::init() {
        eprintln!("capture bench skipped: isolation is unavailable ({why})");
        return;
    }
    let mut group = c.benchmark_group("loopback");
    group.throughput(Throughput::Bytes(BYTES));
    group.sample_size(10);
    for (name, capture) in [("capture_off", false), ("capture_on", true)] {
        let opts = RunOptions {
            isolation: Isolation::Always,
            capture,
            ..RunOptions::default()
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let r = run_with(&scenario, &opts);
                assert_eq!(r.status, Status::Passed, "{:?}", r.status);
                assert_eq!(r.capture.is_some(), capture, "{:?}", r.capture_note);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, transfer);
criterion_main!(benches);
