//! Property tests: the echo example over real loopback sockets under any chunking, pause and
//! fault schedule; generated scenarios print and parse back to the same model; and the echo
//! property catches the bug zoo's `echo-one-read`, shrunk to the smallest case that shows it.

use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestError, TestRunner};
use sockharness::script::{parse, random_bytes};
use sockharness_fuzz::rig::EchoSockets;
use sockharness_fuzz::strategy::{chunking, gaps, paced, scenario, schedule, End, Schedule};

/// Pauses stay short so that a case costs a few milliseconds even on a loaded machine.
const MAX_GAP: Duration = Duration::from_millis(2);

fn config(cases: u32) -> Config {
    Config {
        cases,
        // A deliberately failing property must not leave a regression file behind.
        failure_persistence: None,
        ..Config::default()
    }
}

/// The longest payload the echo properties send.
const MAX_LEN: usize = 256;

/// A payload and a complete schedule (pieces and pauses, no early end) for it.
///
/// The payload's length, its bytes (from a seed) and the schedule are drawn independently, the
/// schedule for the longest payload and then cut to the payload: each shrinks on its own, so a
/// failure shrinks to its smallest form without the schedule being drawn anew.
fn chunked_payload() -> impl Strategy<Value = (Vec<u8>, Schedule)> {
    // The schedule comes first, so it shrinks first: then the length shrinks to the cut.
    (paced(MAX_LEN, MAX_GAP), any::<u64>(), 1..=MAX_LEN).prop_map(|((chunks, gaps), seed, len)| {
        let payload = random_bytes(len as u64, seed);
        let s = Schedule {
            chunks,
            gaps,
            end: End::Complete,
        };
        (payload, s.prefix(len))
    })
}

/// The echo property: every byte comes back, in order.
fn echoes(rig: &EchoSockets, payload: &[u8], s: &Schedule) -> Result<(), TestCaseError> {
    rig.play_and_check(s, payload)
        .map_err(|m| TestCaseError::fail(format!("{m} (schedule {s:?})")))
}

#[test]
fn the_echo_returns_every_byte_in_order_for_any_chunking_and_pauses() {
    let rig = EchoSockets::new().expect("the echo rig starts");
    let mut runner = TestRunner::new(config(64));
    runner
        .run(&chunked_payload(), |(payload, s)| {
            echoes(&rig, &payload, &s)
        })
        .unwrap();
}

#[test]
fn the_echo_survives_half_closes_resets_and_stalls() {
    let rig = EchoSockets::new().expect("the echo rig starts");
    let cases = vec(any::<u8>(), 0..=256)
        .prop_flat_map(|payload| (schedule(payload.len(), MAX_GAP), Just(payload)));
    let mut runner = TestRunner::new(config(64));
    runner
        .run(&cases, |(s, payload)| echoes(&rig, &payload, &s))
        .unwrap();
    // After resets and half-closes the server still answers.
    rig.play_and_check(&Schedule::whole(5), b"hello").unwrap();
}

#[test]
fn the_echo_property_catches_echo_one_read_with_a_minimal_case() {
    let rig = EchoSockets::serving("echo-one-read").expect("the rig starts");
    let mut runner = TestRunner::new(Config {
        max_shrink_iters: 4096,
        ..config(64)
    });
    let result = runner.run(&chunked_payload(), |(payload, s)| {
        echoes(&rig, &payload, &s)
    });
    let Err(TestError::Fail(reason, (payload, s))) = result else {
        panic!("echo-one-read passed the echo property: {result:?}");
    };
    // One read per message is only wrong when the message arrives in two pieces, apart.
    assert_eq!(s.chunks.len(), 2, "{reason}: {s:?}");
    assert_eq!(s.chunks.iter().sum::<usize>(), payload.len());
    assert_eq!(s.gaps, [Duration::from_micros(1)], "{reason}: {s:?}");
    assert_eq!(payload.len(), 2, "{reason}: {s:?}");
}

#[test]
fn generated_scenarios_print_and_parse_back_to_the_same_model() {
    let mut runner = TestRunner::new(config(512));
    runner
        .run(&scenario(), |model| {
            let text = model.to_string();
            let again = parse("generated.scenario", text.as_bytes())
                .map_err(|d| TestCaseError::fail(format!("{text}\n{d}")))?;
            prop_assert_eq!(&again, &model, "printed as:\n{}", text);
            Ok(())
        })
        .unwrap();
}

#[test]
fn generated_scenarios_cover_the_language() {
    // Many cases together use every statement; a generator that lost one would show here.
    let mut runner = TestRunner::deterministic();
    let mut text = String::new();
    for _ in 0..300 {
        let tree = scenario().new_tree(&mut runner).unwrap();
        text.push_str(&tree.current().to_string());
    }
    for word in [
        "timeout ",
        "tolerance ",
        "listen ",
        "connect ",
        "accept ",
        "send ",
        "write ",
        "recv ",
        "read ",
        " exact ",
        " until ",
        " all",
        " nowait",
        " chunk=",
        " gap=",
        "shutdown ",
        "close ",
        "abort ",
        "set ",
        "sleep ",
        "wait ",
        " pending",
        ".state ==",
        ".queued ",
        "&h",
        "pattern(",
        "random(",
        "== EOF",
        "== sent(",
        " within ",
    ] {
        assert!(text.contains(word), "no generated scenario has `{word}`");
    }
}

#[test]
fn chunkings_cover_their_length_and_shrink_to_one_piece() {
    let mut runner = TestRunner::new(config(256));
    runner
        .run(
            &(0..300usize).prop_flat_map(|n| (Just(n), chunking(n))),
            |(n, c)| {
                prop_assert_eq!(c.iter().sum::<usize>(), n);
                prop_assert!(c.iter().all(|&p| p >= 1));
                Ok(())
            },
        )
        .unwrap();
    // Failing on "more than one piece" shrinks to exactly two pieces.
    let mut runner = TestRunner::new(config(64));
    let result = runner.run(&chunking(100), |c| {
        prop_assert!(c.len() <= 1);
        Ok(())
    });
    let Err(TestError::Fail(_, c)) = result else {
        panic!("no chunking with two pieces was generated: {result:?}")
    };
    assert_eq!(c.len(), 2, "{c:?}");
}

#[test]
fn gaps_stay_under_their_maximum_and_shrink_to_one_shortest_pause() {
    let mut runner = TestRunner::new(config(128));
    runner
        .run(&gaps(20, MAX_GAP), |g| {
            prop_assert_eq!(g.len(), 20);
            prop_assert!(g.iter().all(|&d| d <= MAX_GAP));
            Ok(())
        })
        .unwrap();
    let mut runner = TestRunner::new(config(64));
    let result = runner.run(&gaps(20, MAX_GAP), |g| {
        prop_assert!(g.iter().all(|d| d.is_zero()));
        Ok(())
    });
    let Err(TestError::Fail(_, g)) = result else {
        panic!("no pause was generated: {result:?}")
    };
    let paused: Vec<_> = g.iter().filter(|d| !d.is_zero()).collect();
    assert_eq!(paused, [&Duration::from_micros(1)], "{g:?}");
}

#[test]
fn fuzz_bytes_give_a_consistent_schedule() {
    let mut runner = TestRunner::new(config(256));
    runner
        .run(&vec(any::<u8>(), 0..600), |data| {
            let (s, payload) = Schedule::from_fuzz_bytes(&data);
            prop_assert_eq!(s.len(), payload.len());
            prop_assert!(s.chunks.iter().all(|&p| p >= 1));
            prop_assert!(s.sent() <= payload.len());
            let writes = s.writes();
            let covered: usize = writes.iter().map(|(r, _)| r.len()).sum();
            prop_assert_eq!(covered, s.sent());
            prop_assert_eq!(Schedule::from_fuzz_bytes(&data), (s, payload));
            Ok(())
        })
        .unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn plays_leave_no_connection_open() {
    let rig = EchoSockets::new().expect("the echo rig starts");
    let payload: Vec<u8> = (0..=255).collect();
    for i in 0..64usize {
        let end = match i % 4 {
            0 => End::Complete,
            1 => End::HalfClose { at: i },
            2 => End::Abort { at: i },
            _ => End::Stall {
                at: i,
                for_: Duration::ZERO,
            },
        };
        let s = Schedule {
            end,
            ..Schedule::whole(payload.len())
        };
        rig.play_and_check(&s, &payload).unwrap();
    }
    // Connections to this rig's port, neither listening nor in TIME_WAIT: open sockets.
    let port = format!(":{:04X} ", rig.addr().port());
    let tcp = std::fs::read_to_string("/proc/net/tcp").expect("/proc is mounted");
    let open: Vec<&str> = tcp
        .lines()
        .skip(1)
        .filter(|l| l.contains(&port))
        .filter(|l| {
            let state = l.split_whitespace().nth(3).unwrap_or("");
            state != "0A" && state != "06"
        })
        .collect();
    // The last play's server side may still be closing.
    assert!(
        open.len() <= 2,
        "connections left open:\n{}",
        open.join("\n")
    );
}

#[test]
fn dropping_the_rig_closes_its_server() {
    let rig = EchoSockets::new().expect("the echo rig starts");
    let addr = rig.addr();
    rig.play_and_check(&Schedule::whole(3), b"abc").unwrap();
    drop(rig);
    let err = std::net::TcpStream::connect(addr).expect_err("the listener is closed");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}
