//! Parsing throughput, in bytes of scenario text per second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sockharness::suite;

fn parse_library(c: &mut Criterion) {
    // The whole bundled library, concatenated per file so names stay unique within each.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let library = suite::load(&[root]).expect("the scenario library loads");
    let files: Vec<&[u8]> = library.iter().map(|s| s.bytes.as_slice()).collect();
    let bytes: u64 = files.iter().map(|f| f.len() as u64).sum();
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("library", |b| {
        b.iter(|| {
            for f in &files {
                let s = sockharness::script::parse("bench.scenario", f).expect("library parses");
                std::hint::black_box(s);
            }
        })
    });
    // One large generated file: a long script of sends and receives.
    let mut big = String::from("listen srv\nconnect cli to srv\naccept srv as conn\n");
    for i in 0..10_000 {
        big.push_str(&format!("send cli \"message {i}\\r\\n\" chunk=3 gap=1ms\nrecv conn until \"\\r\\n\" == \"message {i}\\r\\n\"\n"));
    }
    group.throughput(Throughput::Bytes(big.len() as u64));
    group.bench_function("large", |b| {
        b.iter(|| {
            std::hint::black_box(
                sockharness::script::parse("big.scenario", big.as_bytes()).expect("parses"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, parse_library);
criterion_main!(benches);
