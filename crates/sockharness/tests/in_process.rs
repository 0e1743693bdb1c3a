//! A Rust service tested in-process: the scenario's target is served by a function of the
//! test, on real sockets, without a process.

use sockharness::run::{run_with, RunOptions, Services, Status};
use sockharness::script::parse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Answers every line with `OK <length of the line>`.
async fn lines(mut stream: TcpStream) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let reply = format!("OK {}\n", line.len() - 1);
            if stream.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

/// The classic bug: one read is taken for one line.
async fn lines_one_read(mut stream: TcpStream) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let len = buf[..n].iter().position(|&b| b == b'\n').unwrap_or(n);
        if stream
            .write_all(format!("OK {len}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

const SCENARIO: &str = "target app builtin echo
connect c to app
send c \"hello\\n\" chunk=1 gap=1ms
recv c until \"\\n\" == \"OK 5\\n\"
";

#[test]
fn a_correct_service_passes_and_a_buggy_one_is_caught() {
    let scenario = parse("app.scenario", SCENARIO.as_bytes()).expect("parses");
    let good = RunOptions {
        services: Services::default().with("app", lines),
        ..RunOptions::default()
    };
    let r = run_with(&scenario, &good);
    assert_eq!(r.status, Status::Passed, "{}", r.trace.render());

    let bad = RunOptions {
        services: Services::default().with("app", lines_one_read),
        ..RunOptions::default()
    };
    let r = run_with(&scenario, &bad);
    let Status::Failed(f) = r.status else {
        panic!("the one-read bug went unnoticed: {}", r.trace.render())
    };
    assert_eq!(f.line, 4);
    assert!(f.actual.contains("\"OK 1\\n\""), "{f:?}");
}
