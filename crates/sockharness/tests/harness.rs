//! The test API: what a crate's own `#[test]`s see, passing, failing and skipped.

use std::panic::{catch_unwind, AssertUnwindSafe};

use sockharness::run::FailureKind;
use sockharness::script::ScenarioBuilder;
use sockharness::Harness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A line service: answers every line with its length.
async fn lengths(stream: TcpStream) {
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read);
    let mut line = String::new();
    while tokio::io::AsyncBufReadExt::read_line(&mut lines, &mut line)
        .await
        .is_ok_and(|n| n > 0)
    {
        let answer = format!("{}\n", line.trim_end().len());
        if write.write_all(answer.as_bytes()).await.is_err() {
            break;
        }
        line.clear();
    }
}

const ONE_BYTE_AT_A_TIME: &str = "target app builtin echo\n\
    connect c to app\n\
    send c \"hello\\nworld!\\n\" chunk=1 gap=1ms\n\
    recv c exact 4 == \"5\\n6\\n\"\n";

/// The message a panic carried.
fn panic_text(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("it panics");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn a_service_passes_a_scenario() {
    Harness::new()
        .service("app", lengths)
        .run_text("lengths.scenario", ONE_BYTE_AT_A_TIME)
        .assert_passed();
}

#[test]
fn a_failure_panics_with_the_whole_report() {
    let wrong = ONE_BYTE_AT_A_TIME.replace("5\\n6", "5\\n7");
    let harness = Harness::new().service("app", lengths);
    let text = panic_text(|| {
        harness.run_text("lengths.scenario", &wrong).assert_passed();
    });
    assert!(text.starts_with("FAIL lengths.scenario:4\n"), "{text}");
    assert!(text.contains("  expected:  \"5\\n7\\n\""), "{text}");
    assert!(text.contains("first difference at byte 2"), "{text}");
    assert!(text.contains("trace up to the failure:"), "{text}");
    assert!(text.contains("  capture: "), "{text}");
    let failure = harness
        .run_text("lengths.scenario", &wrong)
        .assert_failed()
        .clone();
    assert_eq!(failure.kind, FailureKind::Data { offset: 2 });
}

#[test]
fn a_skip_is_not_a_pass() {
    let text = "require no-such-program-here\nlisten srv\n";
    let checked = Harness::new().run_text("needs.scenario", text);
    let message = panic_text(|| {
        checked.assert_passed();
    });
    assert!(
        message.contains("needs.scenario was skipped, not passed"),
        "{message}"
    );
    let reason = checked.assert_passed_or_skipped().expect("it was skipped");
    assert!(reason.contains("no-such-program-here"), "{reason}");
}

#[test]
fn isolation_works_under_the_test_threads() {
    // A sysctl needs a private namespace: as an ordinary user, that takes the user namespace
    // entered before main, as libtest's threads already run.
    Harness::new()
        .run_text(
            "somaxconn.scenario",
            "sysctl net.core.somaxconn=4\nlisten srv backlog=100\nconnect c to srv\n",
        )
        .assert_passed();
}

#[test]
fn built_scenarios_are_validated_like_parsed_ones() {
    let built = ScenarioBuilder::new()
        .listen("srv")
        .connect("cli", "nowhere")
        .build();
    let message = panic_text(|| {
        Harness::new().run(&built);
    });
    assert!(message.contains("the scenario is not valid"), "{message}");
    assert!(message.contains("nowhere"), "{message}");
    let fine = ScenarioBuilder::new()
        .listen("srv")
        .connect("cli", "srv")
        .accept("srv", "conn")
        .send("cli", "ping")
        .recv("conn", 4)
        .build();
    Harness::new().run(&fine).assert_passed();
}

#[test]
fn a_plain_test_can_still_use_the_loopback() {
    // The user namespace changes nothing for the rest of the test binary: its own sockets
    // still reach each other on the host loopback.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("an address");
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let (mut server, _) = listener.accept().await.expect("accept");
        client.write_all(b"x").await.expect("write");
        let mut b = [0u8; 1];
        server.read_exact(&mut b).await.expect("read");
        assert_eq!(&b, b"x");
    });
}
