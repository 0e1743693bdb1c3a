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
    socat(&mut group);
    group.finish();
}

/// socat as an outside reference, where it is installed: the same transfer through
/// `socat TCP-LISTEN TCP`.
fn socat(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
    };
    let (Ok(server), Ok(front)) = (free(), free()) else {
        return;
    };
    let child = std::process::Command::new("socat")
        .arg(format!("TCP-LISTEN:{front},bind=127.0.0.1,reuseaddr,fork"))
        .arg(format!("TCP:127.0.0.1:{server}"))
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("socat reference skipped: socat is not installed");
        return;
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    let text = format!(
        "listen srv on 127.0.0.1:{server} reuseaddr\nconnect cli to 127.0.0.1:{front}\naccept srv as conn\n\
         send cli pattern({BYTES}) &s\nrecv conn exact {BYTES}\nwait s\nclose conn\nclose cli\nclose srv\n"
    );
    let scenario = parse("socat.scenario", text.as_bytes()).expect("the bench scenario parses");
    let opts = RunOptions {
        isolation: Isolation::Never,
        capture: false,
        ..RunOptions::default()
    };
    group.bench_function("socat", |b| {
        b.iter(|| {
            let r = run_with(&scenario, &opts);
            assert_eq!(r.status, Status::Passed, "{:?}", r.status);
        })
    });
    let _ = child.kill();
    let _ = child.wait();
}

criterion_group!(benches, through);
criterion_main!(benches);
