//! Chaos I/O: the echo logic survives any schedule of partial reads and writes, `Pending`, EOF
//! and errors, and a service that takes one read for one message is caught and shrunk to the
//! smallest schedule that shows it. No kernel sockets: everything runs over an in-memory pipe.

use std::io;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestError, TestRunner};
use sockharness_fuzz::chaos::{
    drive, ops, ops_from_bytes, ops_with_faults, plan_from_bytes, Chaos, Op,
};
use sockharness_fuzz::rig::{check_chaos_echo, echo, InProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

fn config(cases: u32) -> Config {
    Config {
        cases,
        // A deliberately failing property must not leave a regression file behind.
        failure_persistence: None,
        ..Config::default()
    }
}

/// The classic bug: one read is taken for the whole message, answered, and the connection
/// closed.
async fn one_read_is_one_message(mut stream: Chaos<DuplexStream>) {
    let mut buf = vec![0u8; 64 * 1024];
    if let Ok(n) = stream.read(&mut buf).await {
        let _ = stream.write_all(&buf[..n]).await;
    }
    let _ = stream.shutdown().await;
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..4096)
}

#[test]
fn the_echo_returns_everything_under_any_benign_schedule() {
    let mut runner = TestRunner::new(config(256));
    runner
        .run(&(request(), ops(), ops()), |(req, reads, writes)| {
            let out =
                drive(echo, &req, reads, writes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&out.response, &req);
            prop_assert!(!out.stats.read_fault && !out.stats.write_fault);
            prop_assert_eq!(out.stats.read, req.len() as u64);
            Ok(())
        })
        .unwrap();
}

#[test]
fn the_echo_passes_the_oracle_under_faults() {
    let mut runner = TestRunner::new(config(256));
    runner
        .run(
            &(request(), ops_with_faults(), ops_with_faults()),
            |(req, reads, writes)| {
                let out = drive(echo, &req, reads, writes)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                check_chaos_echo(&req, &out).map_err(|m| TestCaseError::fail(m.to_string()))
            },
        )
        .unwrap();
}

#[test]
fn one_read_as_one_message_is_caught_and_shrunk_to_one_short_read() {
    let mut runner = TestRunner::new(Config {
        max_shrink_iters: 100_000,
        ..config(256)
    });
    // Requests that fit the pipe arrive in one read unless the schedule cuts them, so the bug
    // shows only through chaos. The schedule comes first, so it shrinks first.
    let cases = (ops(), vec(any::<u8>(), 0..512));
    let result = runner.run(&cases, |(reads, req)| {
        let out = drive(one_read_is_one_message, &req, reads, Vec::new())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(out.response, req);
        Ok(())
    });
    let Err(TestError::Fail(_, (reads, req))) = result else {
        panic!("the one-read bug went unnoticed: {result:?}");
    };
    // The smallest case: two bytes, and a first read that takes only one of them.
    assert_eq!(reads, [Op::Limited(1)], "{req:?}");
    assert_eq!(req.len(), 2, "{req:?}");
}

#[test]
fn eof_ends_the_stream_for_good() {
    // Reads: 3 bytes, then the stream ends, although more was sent.
    let out = drive(
        echo,
        b"hello world",
        vec![Op::Limited(3), Op::Eof],
        Vec::new(),
    )
    .unwrap();
    assert_eq!(out.response, b"hel");
    assert_eq!(out.stats.read, 3);
    assert!(out.stats.read_fault);
    check_chaos_echo(b"hello world", &out).unwrap();

    // Writes: 2 bytes go out, then the peer is gone.
    let out = drive(echo, b"hello", Vec::new(), vec![Op::Limited(2), Op::Eof]).unwrap();
    assert_eq!(out.response, b"he");
    assert!(out.stats.write_fault);
    check_chaos_echo(b"hello", &out).unwrap();
}

#[test]
fn errors_reach_the_service() {
    let out = drive(
        echo,
        b"abcdef",
        vec![Op::Limited(2), Op::Err(io::ErrorKind::ConnectionReset)],
        Vec::new(),
    )
    .unwrap();
    assert_eq!(out.response, b"ab");
    assert!(out.stats.read_fault);
    // Interrupted and Pending are retried, not faults.
    let out = drive(
        echo,
        b"abcdef",
        vec![
            Op::Pending,
            Op::Err(io::ErrorKind::Interrupted),
            Op::Limited(1),
        ],
        vec![Op::Pending, Op::Limited(1), Op::Pending],
    )
    .unwrap();
    assert_eq!(out.response, b"abcdef");
    assert!(!out.stats.read_fault && !out.stats.write_fault);
}

#[test]
fn the_oracle_rejects_a_service_that_stops_reading() {
    let out = drive(
        one_read_is_one_message,
        b"abcdef",
        vec![Op::Limited(2)],
        Vec::new(),
    )
    .unwrap();
    assert!(check_chaos_echo(b"abcdef", &out).is_err());
}

#[test]
fn fuzz_bytes_give_ops_and_a_request_deterministically() {
    assert_eq!(
        ops_from_bytes(&[0x00, 0x3f, 0x60, 0x80, 0xa0, 0xc0, 0xe0]),
        [
            Op::Limited(1),
            Op::Limited(64),
            Op::Unlimited,
            Op::Pending,
            Op::Err(io::ErrorKind::Interrupted),
            Op::Eof,
            Op::Err(io::ErrorKind::ConnectionReset),
        ]
    );
    let (reads, writes, req) = plan_from_bytes(&[2, 33, 0x00, 0x01, 0x80, b'h', b'i']);
    assert_eq!(reads, [Op::Limited(1), Op::Limited(2)]);
    assert_eq!(writes, [Op::Pending]);
    assert_eq!(req, b"hi");
    assert_eq!(plan_from_bytes(&[]), (Vec::new(), Vec::new(), &[][..]));
}

#[test]
fn the_in_process_rig_passes_the_echo_on_any_fuzz_input() {
    let rig = InProcess::new().unwrap();
    let mut runner = TestRunner::new(config(512));
    runner
        .run(&vec(any::<u8>(), 0..2048), |data| {
            rig.play(&data)
                .map_err(|m| TestCaseError::fail(m.to_string()))
        })
        .unwrap();
}
