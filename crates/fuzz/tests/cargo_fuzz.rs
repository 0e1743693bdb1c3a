//! The cargo-fuzz API without libFuzzer: bytes from a seeded generator stand in for its inputs.
//! A broken bundled server is found, with a reproducer that fails under `sockharness run`; the
//! correct one stays quiet; a service of the test's own, written against tokio, is found too.

use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sockharness::run::{self, RunOptions, Status};
use sockharness_fuzz::cargo_fuzz::{Options, Target};
use sockharness_fuzz::service::Service;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ECHO: &str = include_str!("../../cli/tests/fuzz-seeds/echo.scenario");
const HTTP: &str = include_str!("../../cli/tests/fuzz-seeds/http.scenario");

/// Plays up to `inputs` inputs (and at most `time`): the first failure, with how many ran.
fn play(
    target: &Target,
    inputs: u32,
    time: Duration,
) -> Option<(u32, Box<sockharness_fuzz::Found>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let began = Instant::now();
    for i in 0..inputs {
        if began.elapsed() > time {
            break;
        }
        let len = rng.random_range(0..24);
        let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if let Err(found) = target.run(&data) {
            return Some((i + 1, found));
        }
    }
    None
}

fn options(dir: &tempfile::TempDir, label: &str, text: &str) -> Options {
    Options::new()
        .seed(label, text)
        .out(dir.path())
        .minimize_for(Duration::from_secs(5))
}

#[test]
fn a_bundled_server_that_reads_once_is_found_and_its_reproducer_fails() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::builtin("http-one-read").unwrap();
    let target = Target::new(service, options(&dir, "http.scenario", HTTP)).unwrap();
    let (n, found) = play(&target, 2000, Duration::from_secs(60))
        .expect("http-one-read is found within 2,000 inputs");
    eprintln!(
        "found after {n} inputs: {}",
        sockharness_fuzz::cargo_fuzz::describe(&found)
    );
    assert!(found.reproduced >= 3, "{found:?}");
    // The reproducer starts the bundled server itself, as `sockharness run FILE` does.
    let text = std::fs::read_to_string(&found.reproducer).unwrap();
    assert!(text.contains("builtin \"http-one-read\""), "{text}");
    let sc = sockharness::script::parse("repro", text.as_bytes()).unwrap();
    let failed = (0..3)
        .filter(|_| {
            matches!(
                run::run_with(&sc, &RunOptions::default()).status,
                Status::Failed(_)
            )
        })
        .count();
    assert!(
        failed >= 2,
        "the reproducer failed {failed} of 3 runs:\n{text}"
    );
}

#[test]
fn the_correct_server_stays_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::new(
        Service::builtin("echo").unwrap(),
        options(&dir, "echo.scenario", ECHO).expect_echo(),
    )
    .unwrap();
    if let Some((n, found)) = play(&target, 1500, Duration::from_secs(30)) {
        panic!(
            "input {n}: {}",
            sockharness_fuzz::cargo_fuzz::describe(&found)
        );
    }
}

/// An echo service that ends (its accept loop returns) at the first read it gets that ends in
/// a space: a bug behind a byte no seed sends, reached by an intruding client's bytes.
async fn stops_at_a_space(listener: tokio::net::TcpListener) {
    let stop = std::rc::Rc::new(tokio::sync::Notify::new());
    loop {
        let (mut stream, _) = tokio::select! {
            Ok(accepted) = listener.accept() => accepted,
            () = stop.notified() => return,
        };
        let stop = stop.clone();
        tokio::task::spawn_local(async move {
            let (mut r, mut w) = stream.split();
            let mut buf = [0u8; 4096];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) if buf[n - 1] == b' ' => return stop.notify_one(),
                    Ok(n) => {
                        if w.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
}

#[test]
fn a_service_of_the_crate_s_own_is_found_with_a_reproducer_aimed_at_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::new("stops-at-a-space", stops_at_a_space);
    let target = Target::new(service, options(&dir, "echo.scenario", ECHO).expect_echo()).unwrap();
    let (_, found) = play(&target, 3000, Duration::from_secs(60))
        .expect("the service that stops at a space is found within 3,000 inputs");
    assert_eq!(found.oracle, "crash", "{found:?}");
    let text = std::fs::read_to_string(&found.reproducer).unwrap();
    assert!(text.contains("--target"), "{text}");
}

#[test]
fn a_seed_that_does_not_parse_is_an_error_with_its_place() {
    let e = Target::new(
        Service::builtin("echo").unwrap(),
        Options::new().seed("bad.scenario", "target srv builtin echo\nconnect c to\n"),
    )
    .err()
    .expect("a seed that does not parse is an error");
    assert!(e.to_string().contains("bad.scenario:2:"), "{e}");
}
