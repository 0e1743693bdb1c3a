//! An answer that changes with the time of day (an HTTP `Date`, a clock) differs from the one
//! recorded once the time moves on. The fuzzer records answers without waiting for that, and
//! finds out when a case's answer differs: the plain request delivered again gets another
//! answer too, so the failure is the recorded answer's, not the server's, and the run goes on
//! comparing lengths.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sockharness_fuzz::seed::{Seeds, Stream};
use sockharness_fuzz::{fuzz, Config, Phase, Server};

/// Answers every line with the time `now` holds: a clock the test moves on.
fn clock(now: Arc<AtomicU64>) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = l.local_addr().expect("has an address");
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let now = now.clone();
            std::thread::spawn(move || answer(c, &now));
        }
    });
    addr
}

fn answer(c: TcpStream, now: &AtomicU64) {
    let Ok(mut w) = c.try_clone() else { return };
    for line in BufReader::new(c).split(b'\n') {
        let time = now.load(Ordering::Relaxed);
        if line.is_err() || w.write_all(format!("time {time}\n").as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn an_answer_with_the_time_of_day_is_no_failure() {
    let now = Arc::new(AtomicU64::new(10));
    let out = tempfile::tempdir().expect("a temporary directory");
    let cfg = Config {
        server: Server::Addr(clock(now.clone())),
        seeds: Seeds {
            scenarios: Vec::new(),
            streams: vec![Stream {
                label: "time".into(),
                bytes: b"TIME\n".to_vec(),
            }],
        },
        expect: None,
        time: Duration::from_secs(4),
        runs: None,
        seed: 1,
        out: out.path().to_path_buf(),
        jobs: 1,
        minimize_for: Duration::from_secs(5),
        coverage: None,
        dict: Vec::new(),
        sync: None,
    };
    // The time moves on once the answers are recorded and fuzzing has begun: every answer
    // from then on differs from its recording.
    let report = fuzz(&cfg, |p| {
        if p.phase == Phase::Fuzzing && p.inputs > 0 {
            now.store(11, Ordering::Relaxed);
        }
    })
    .expect("runs");
    assert!(report.found.is_empty(), "{:#?}", report.found);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains(": the answer to its plain delivery changed")),
        "{:#?}",
        report.notes
    );
}
