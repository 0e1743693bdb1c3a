//! The cost of a minimal scenario on real sockets: listen, connect, accept, send, recv, close.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sockharness::run::{run, Status};
use sockharness::script::parse;

const MINIMAL: &str = "listen srv
connect cli to srv
accept srv as conn
send cli \"ping\"
recv conn 4 == \"ping\"
close cli
close conn
close srv
";

fn minimal(c: &mut Criterion) {
    let scenario =
        parse("minimal.scenario", MINIMAL.as_bytes()).expect("the bench scenario parses");
    let mut group = c.benchmark_group("scenario");
    group.throughput(Throughput::Elements(1));
    group.bench_function("minimal", |b| {
        b.iter(|| {
            let r = run(&scenario);
            assert_eq!(r.status, Status::Passed, "{:?}", r.status);
        })
    });
    group.finish();
}

criterion_group!(benches, minimal);
criterion_main!(benches);
