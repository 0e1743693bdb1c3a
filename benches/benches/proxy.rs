//! Throughput through the fault-injecting proxy (no faults: spliced; with `slice`: copied in
//! pieces) against direct loopback, in the same run.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sockharness::run::{run_with, RunOptions, Status};
use sockharness::sandbox::Isolation;
use sockharness::script::parse;

const BYTES: u64 = 64 << 20;

fn through(c: &mut Criterion) {
    let mut group = c.benchmark_group("proxy");
    group.throughput(Throughput::Bytes(BYTES));
    group.sample_size(10);
    for (name, path) in [
        ("direct", "srv".to_string()),
        ("proxy_no_faults", "p".to_string()),
        ("proxy_slice_16KiB", "p".to_string()),
    ] {
        let faults = if name == "proxy_slice_16KiB" {
            " up slice 16KiB"
        } else {
            ""
        };
        let text = format!(
            "listen srv\nproxy p to srv{faults}\nconnect cli to {path}\naccept srv as conn\n\
             send cli pattern({BYTES}) &s\nrecv conn exact {BYTES}\nwait s\n"
        );
        let scenario = parse("proxy.scenario", text.as_bytes()).expect("the bench scenario parses");
        // On the host loopback and without capture: this measures forwarding, nothing else.
        let opts = RunOptions {
            isolation: Isolation::Never,
            capture: false,
            ..RunOptions::default()
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                let r = run_with(&scenario, &opts);
                assert_eq!(r.status, Status::Passed, "{:?}", r.status);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, through);
criterion_main!(benches);
