//! A capture that outgrows its memory goes on in a pcap file: memory keeps only each frame's
//! headers, wire expectations still count every byte, and the saved pcap has every frame whole.

mod util;

use sockharness::capture::spill::KEPT_WHEN_SPILLED;
use sockharness::capture::{decode, pcap};
use sockharness::run::{run_with, RunOptions, ScenarioRun, Status};
use sockharness::sandbox::{self, Isolation};

const SENT: usize = 4 << 20;

fn run(text: &str, memory: usize, dir: &std::path::Path) -> Option<ScenarioRun> {
    if !matches!(sandbox::support(), sandbox::Support::Available { .. }) {
        eprintln!("isolation unavailable here: not tested");
        return None;
    }
    let opts = RunOptions {
        isolation: Isolation::Always,
        capture: true,
        capture_memory: Some(memory),
        capture_dir: Some(dir.to_path_buf()),
        ..RunOptions::default()
    };
    Some(run_with(&util::scenario(text), &opts))
}

/// A transfer of [`SENT`] bytes and a count of its payload bytes on the wire (`>= SENT`: a
/// retransmitted segment counts again).
fn transfer(expect: &str) -> String {
    format!(
        "listen srv\nconnect cli to srv\naccept srv as conn\n\
         send cli pattern({SENT}) &s\nrecv conn exact {SENT}\nwait s\nclose cli\nclose conn\n\
         expect wire cli -> srv bytes {expect}\n"
    )
}

#[test]
fn a_capture_past_its_memory_is_kept_whole_on_disk_and_cut_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let Some(r) = run(&transfer(&format!(">= {SENT}")), 64 << 10, dir.path()) else {
        return;
    };
    assert_eq!(r.status, Status::Passed, "{}", r.trace.render());
    assert_eq!(r.capture_note, None);
    let file = r.capture_file.as_ref().expect("the capture spilled");
    assert!(file.path().starts_with(dir.path()));
    let in_memory = r.capture.as_ref().unwrap();
    let held: usize = in_memory.packets.iter().map(|p| p.data.len()).sum();
    assert!(
        in_memory
            .packets
            .iter()
            .all(|p| p.data.len() <= KEPT_WHEN_SPILLED),
        "every frame in memory is cut to its headers"
    );
    assert!(
        held < SENT / 4,
        "{held} bytes held in memory for {SENT} sent"
    );

    let saved = dir.path().join("kept.pcap");
    assert!(r.save_capture(&saved).unwrap());
    let whole = pcap::read(&std::fs::read(&saved).unwrap()).unwrap();
    assert_eq!(whole.packets.len(), in_memory.packets.len());
    let payload: usize = whole.packets.iter().map(|p| p.data.len()).sum();
    assert!(payload > SENT, "the file holds every byte: {payload}");
    // The same segments, decoded from the cut frames and from the whole ones (the file keeps
    // microseconds, memory nanoseconds).
    let segments = |c| {
        let mut segs = decode(c).segments;
        segs.iter_mut().for_each(|s| s.ts = Default::default());
        segs
    };
    assert!(segments(in_memory) == segments(&whole), "segments differ");

    // The temporary file goes with the run; the saved one stays.
    let temp = file.path().to_path_buf();
    drop(r);
    assert!(!temp.exists());
    assert!(saved.exists());
}

#[test]
fn a_wrong_byte_count_fails_on_a_spilled_capture_too() {
    let dir = tempfile::tempdir().unwrap();
    let Some(r) = run(&transfer(&format!("< {SENT}")), 64 << 10, dir.path()) else {
        return;
    };
    let Status::Failed(f) = &r.status else {
        panic!("passed with a wrong byte count:\n{}", r.trace.render());
    };
    assert!(
        f.actual.contains("payload bytes cli -> srv captured"),
        "{}",
        f.actual
    );
}

#[test]
fn a_capture_that_cannot_spill_keeps_headers_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the directory should be: no file can be made under it.
    let blocked = dir.path().join("file");
    std::fs::write(&blocked, b"").unwrap();
    let Some(r) = run(
        &transfer(&format!(">= {SENT}")),
        64 << 10,
        &blocked.join("sub"),
    ) else {
        return;
    };
    assert_eq!(r.status, Status::Passed, "{}", r.trace.render());
    assert!(r.capture_file.is_none());
    let note = r.capture_note.as_deref().unwrap_or_default();
    assert!(
        note.contains("capture incomplete") && note.contains("cut to their headers"),
        "{note}"
    );
    let in_memory = r.capture.as_ref().unwrap();
    assert!(in_memory
        .packets
        .iter()
        .all(|p| p.data.len() <= KEPT_WHEN_SPILLED));
}

#[test]
fn a_small_capture_stays_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let Some(r) = run(&transfer(&format!(">= {SENT}")), 64 << 20, dir.path()) else {
        return;
    };
    assert_eq!(r.status, Status::Passed, "{}", r.trace.render());
    assert!(r.capture_file.is_none());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
