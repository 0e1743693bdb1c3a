//! What `sockharness fuzz` starts from: request streams taken from seed scenarios, corpus files
//! and the client side of captures, reassembled byte for byte.

use sockharness::capture::{pcap, streams};
use sockharness::run::{run, Status};
use sockharness::script::parse;
use sockharness_fuzz::seed::Seeds;

#[test]
fn a_captured_client_stream_comes_back_whole_and_in_order() {
    // Two clients; one writes in pieces, so its stream spans many segments.
    let sc = parse(
        "two",
        b"listen srv\nconnect a to srv\nconnect b to srv\naccept srv as sa\naccept srv as sb\n\
          send a \"GET /one HTTP/1.1\\r\\n\\r\\n\" chunk=3\nsend b pattern(100KiB)\n\
          recv sa exact 21\nrecv sb exact 100KiB\nsend sa \"answer\"\nrecv a exact 6\n",
    )
    .expect("parses");
    let r = run(&sc);
    assert_eq!(r.status, Status::Passed);
    // Without a private namespace there is no capture of the scenario's own traffic; with
    // one there must be.
    let Some(cap) = r.capture else {
        assert!(
            !r.isolated,
            "isolated, yet no capture: {:?}",
            r.capture_note
        );
        eprintln!(
            "not isolated here ({:?}): nothing to reassemble",
            r.capture_note
        );
        return;
    };
    let mut file = Vec::new();
    pcap::write(&mut file, &cap).expect("writes");
    let got = streams::client_streams(&pcap::read(&file).expect("reads"));
    let bytes: Vec<&[u8]> = got.iter().map(|s| s.bytes.as_slice()).collect();
    // The server's answer is not a client stream.
    assert_eq!(bytes.len(), 2, "{got:?}");
    assert!(bytes.contains(&&b"GET /one HTTP/1.1\r\n\r\n"[..]));
    let pattern = sockharness::script::Data::Pattern(100 * 1024).bytes();
    assert!(
        bytes.contains(&pattern.as_slice()),
        "the 100 KiB stream is whole"
    );
}

#[test]
fn a_corpus_holds_request_files_captures_and_scenarios() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("get"), "GET / HTTP/1.1\r\n\r\n").expect("writable");
    std::fs::write(dir.path().join("same"), "GET / HTTP/1.1\r\n\r\n").expect("writable");
    std::fs::write(dir.path().join(".hidden"), "ignored").expect("writable");
    std::fs::write(
        dir.path().join("s.scenario"),
        "target web builtin http\nconnect c to web\nsend c \"PING\\r\\n\"\nsend c \"PING\\r\\n\"\n",
    )
    .expect("writable");
    let data =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wire/tests/data/lo-mixed.pcap");
    std::fs::copy(data, dir.path().join("lo.pcap")).expect("copies");
    let mut seeds = Seeds::default();
    seeds.add_corpus(dir.path()).expect("loads");
    assert_eq!(seeds.scenarios.len(), 1);
    let labels: Vec<&str> = seeds.streams.iter().map(|s| s.label.as_str()).collect();
    assert!(
        labels.iter().any(|l| l.ends_with("s.scenario#c")),
        "{labels:?}"
    );
    assert!(labels.iter().any(|l| l.contains("lo.pcap#")), "{labels:?}");
    assert!(!labels.iter().any(|l| l.ends_with(".hidden")), "{labels:?}");
    // A client's sends make one stream.
    let scenario = seeds
        .streams
        .iter()
        .find(|s| s.label.ends_with("#c"))
        .expect("from the scenario");
    assert_eq!(scenario.bytes, b"PING\r\nPING\r\n");
    let gets = |s: &Seeds| {
        s.streams
            .iter()
            .filter(|s| s.bytes == b"GET / HTTP/1.1\r\n\r\n")
            .count()
    };
    assert_eq!(gets(&seeds), 2);
    seeds.dedup();
    assert_eq!(gets(&seeds), 1, "`get` and `same` are one input");
}

#[test]
fn a_seed_scenario_needs_a_target_to_point_at_the_server() {
    let mut seeds = Seeds::default();
    let sc = parse("plain", b"listen srv\nconnect c to srv\n").expect("parses");
    let e = seeds.add_scenario("plain", sc).expect_err("no target");
    assert!(e.to_string().contains("no `target` statement"), "{e}");
}
