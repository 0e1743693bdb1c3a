//! The fault-injecting proxy, in scenarios and standalone.

mod util;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sockharness::run::Status;

#[test]
fn faults_slice_reset_half_close_and_stall() {
    let r = util::run_text(
        "listen srv\nproxy p to srv up slice 1 gap 1ms\nconnect c to p\naccept srv as s\nsend c \"hello\"\n\
         recv s 16 == \"h\" within 1s\nrecv s exact 4 == \"ello\"\n\
         fault p up rst after 3\nconnect c2 to p\naccept srv as s2\nsend c2 \"abcdef\"\nrecv s2 exact 3 == \"abc\"\n\
         recv s2 16 == ECONNRESET\nrecv c2 16 == ECONNRESET\n\
         fault p\nconnect d to p\naccept srv as sd\nshutdown d write\nrecv sd 16 == EOF\nsend sd \"still open\"\n\
         recv d exact 10 == \"still open\"\n\
         fault p down stall after 2\nconnect e to p\naccept srv as se\nsend se \"xyz\"\nrecv e exact 2 == \"xy\"\n\
         recv e 1 &late\nexpect late pending for 200ms\n\
         fault p down fin after 1 on conn 5\nconnect f to p\naccept srv as sf\nsend sf \"12\"\nrecv f all == \"1\"\n",
    );
    assert_eq!(r.status, Status::Passed, "{}", r.trace.render());
}

#[test]
fn a_wrong_expectation_through_the_proxy_fails() {
    // Sliced into single bytes, one read cannot return the whole word.
    let r = util::run_text(
        "listen srv\nproxy p to srv up slice 1 gap 20ms\nconnect c to p\naccept srv as s\nsend c \"hello\"\n\
         sleep 10ms\nrecv s 16 == \"hello\"\n",
    );
    let Status::Failed(f) = r.status else {
        panic!("expected a failure")
    };
    assert_eq!(f.line, 7);
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn spawn(args: &[&str]) -> Killed {
    Killed(
        Command::new(env!("CARGO_BIN_EXE_sockharness"))
            .args(args)
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts"),
    )
}

fn connect_when_up(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("nothing listens on {port}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[test]
fn the_standalone_proxy_forwards_with_faults() {
    let (server, proxy) = (free_port(), free_port());
    let _echo = spawn(&["serve", "echo", "--listen", &format!("127.0.0.1:{server}")]);
    let _ = connect_when_up(server);
    let _proxy = spawn(&[
        "proxy",
        "--listen",
        &format!("127.0.0.1:{proxy}"),
        "--to",
        &format!("127.0.0.1:{server}"),
        "--fault",
        "down slice 1",
    ]);
    let mut c = connect_when_up(proxy);
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout set");
    c.write_all(b"through the proxy").expect("written");
    let mut got = vec![0u8; 17];
    c.read_exact(&mut got).expect("echoed back");
    assert_eq!(got, b"through the proxy");
}

/// `serve` and `proxy` listen on loopback only, and a port that is taken is named.
#[test]
fn servers_refuse_other_interfaces_and_name_a_taken_port() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sockharness"))
            .args(args)
            .output()
            .expect("the binary runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for args in [
        &["serve", "echo", "--listen", "0.0.0.0:0"][..],
        &["proxy", "--listen", "0.0.0.0:0", "--to", "127.0.0.1:1"],
        &["proxy", "--listen", "127.0.0.1:0", "--to", "192.0.2.1:80"],
    ] {
        let (code, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("is not a loopback address"), "{stderr}");
    }
    let taken = TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("its address").to_string();
    for args in [
        &["serve", "echo", "--listen", addr.as_str()][..],
        &["proxy", "--listen", addr.as_str(), "--to", "127.0.0.1:1"],
    ] {
        let (code, stderr) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("cannot listen on {addr}: ")),
            "{stderr}"
        );
    }
}
