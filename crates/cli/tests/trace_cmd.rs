//! `sockharness trace`: decoding capture files from the command line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The wire crate's committed captures.
fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../wire/tests/data")
        .join(name)
}

#[track_caller]
fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(data(name)).unwrap_or_else(|e| panic!("cannot read {name}: {e}"))
}

fn sockharness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sockharness"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn broken_files_exit_2_with_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let whole = bytes("lo-mixed.pcap");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.pcap", Vec::new(), "empty file"),
        (
            "half.pcap",
            whole[..whole.len() / 2].to_vec(),
            "truncated capture",
        ),
        (
            "ten.pcap",
            whole[..10].to_vec(),
            "truncated capture: it ends inside the file header",
        ),
        (
            "random.pcap",
            (0..=255u8).rev().collect(),
            "not a pcap or pcapng file",
        ),
        (
            "notes.txt",
            b"just some text\n".to_vec(),
            "not a pcap or pcapng file (it starts with \"just som\")",
        ),
    ];
    for (file, contents, expected) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, contents).expect("temp dir is writable");
        let out = sockharness(&["trace", path.to_str().expect("utf-8 temp path")]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{file}: {stderr}");
        assert!(stderr.starts_with("error: "), "{file}: {stderr}");
        assert!(stderr.contains(expected), "{file}: {stderr}");
        assert!(out.stdout.is_empty(), "{file}");
    }
    let out = sockharness(&["trace", "/nonexistent/x.pcap"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("error: cannot read /nonexistent/x.pcap: "));
}

#[test]
fn trace_command_prints_text_json_and_svg() {
    let file = data("lo-refused.pcapng");
    let file = file.to_str().expect("utf-8 path");
    let out = sockharness(&["trace", file]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("  S     seq=0 ack=0 len=0\n"));

    let out = sockharness(&["trace", file, "--format", "json", "--acks"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(json["segments"][1]["flags"], "RA");

    let dir = tempfile::tempdir().expect("temp dir");
    let svg_path = dir.path().join("ladder.svg");
    let mixed = data("lo-mixed.pcap");
    let out = sockharness(&[
        "trace",
        mixed.to_str().expect("utf-8 path"),
        "--svg",
        svg_path.to_str().expect("utf-8 path"),
        "--timestamps",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let drawing = std::fs::read_to_string(&svg_path).expect("the SVG was written");
    assert!(drawing.starts_with("<?xml"));
    assert!(drawing.ends_with("</svg>\n"));
    assert_eq!(
        drawing.matches("<title>").count(),
        46,
        "one arrow per segment"
    );

    let out = sockharness(&["trace", file, "--format", "xml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_svg_over_the_capture_being_read_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let capture = dir.path().join("x.pcap");
    let original = std::fs::read(data("lo-mixed.pcap")).expect("test data");
    std::fs::write(&capture, &original).expect("copy");
    let same = dir.path().join(".").join("x.pcap");
    let out = sockharness(&[
        "trace",
        capture.to_str().expect("utf-8 path"),
        "--svg",
        same.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("that is the capture being read"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&capture).expect("still there"), original);
}
