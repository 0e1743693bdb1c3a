//! Inputs per second of the two fast fuzzing tiers, each keeping its runtime (and server)
//! between inputs: the echo logic in-process under chaos I/O, and the bundled echo server on a
//! real 127.0.0.1 socket. One element is one input, played and checked.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sockharness_fuzz::rig::{EchoSockets, InProcess};
use sockharness_fuzz::strategy::{End, Schedule};

/// The request every input carries: 256 bytes, so the cost is the tier's, not the copying.
fn payload() -> Vec<u8> {
    (0..=255u8).collect()
}

/// Chaos inputs in the in-process tier's fuzz layout (read-op count, write-op count, read ops,
/// write ops, request): no chaos, small pieces, `Pending` between pieces, an early EOF.
fn chaos_inputs() -> Vec<Vec<u8>> {
    let schedules: [(&[u8], &[u8]); 4] = [
        (&[], &[]),
        (&[0x07, 0x0f, 0x1f], &[0x03, 0x1f]),
        (&[0x80, 0x00, 0x80, 0x3f], &[0x80, 0x60]),
        (&[0x1f, 0xc0], &[]),
    ];
    schedules
        .iter()
        .map(|(reads, writes)| {
            let mut input = vec![reads.len() as u8, writes.len() as u8];
            input.extend_from_slice(reads);
            input.extend_from_slice(writes);
            input.extend(payload());
            input
        })
        .collect()
}

/// Socket schedules without pauses (a pause costs at least a timer tick and would measure the
/// timer): whole, in pieces, a byte at a time, half-closed, reset.
fn socket_schedules() -> Vec<Schedule> {
    let len = payload().len();
    let pieces = |size: usize| Schedule {
        chunks: (0..len).step_by(size).map(|s| size.min(len - s)).collect(),
        gaps: Vec::new(),
        end: End::Complete,
    };
    vec![
        Schedule::whole(len),
        pieces(64),
        pieces(1),
        Schedule {
            end: End::HalfClose { at: len / 2 },
            ..pieces(16)
        },
        Schedule {
            end: End::Abort { at: len / 2 },
            ..pieces(16)
        },
    ]
}

fn tiers(c: &mut Criterion) {
    let mut group = c.benchmark_group("fuzz_tiers");
    group.throughput(Throughput::Elements(1));

    let rig = InProcess::new().expect("a current-thread runtime starts");
    let inputs = chaos_inputs();
    // Every input must pass, or the bench measures failures.
    for input in &inputs {
        rig.play(input).expect("the echo passes");
    }
    let mut next = inputs.iter().cycle();
    group.bench_function("in_process", |b| {
        b.iter(|| {
            let input = next.next().expect("the input set is not empty");
            rig.play(input).expect("the echo passes");
        })
    });

    let rig = EchoSockets::new()
        .expect("the echo server starts on 127.0.0.1")
        .with_deadline(Duration::from_secs(5));
    let payload = payload();
    let schedules = socket_schedules();
    for s in &schedules {
        rig.play_and_check(s, &payload).expect("the echo passes");
    }
    let mut next = schedules.iter().cycle();
    group.bench_function("echo_sockets", |b| {
        b.iter(|| {
            let s = next.next().expect("the schedule set is not empty");
            rig.play_and_check(s, &payload).expect("the echo passes");
        })
    });
    group.finish();
}

criterion_group!(benches, tiers);
criterion_main!(benches);
