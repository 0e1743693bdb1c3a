//! Any bytes given to `sockharness trace`: reading them as pcap or pcapng, decoding TCP, and
//! rendering the result as text, JSON and SVG never panic, and a capture that reads can be
//! written back as classic pcap.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sockharness::capture::{decode, pcap, svg, RenderOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(capture) = pcap::read(data) else {
        return;
    };
    let wire = decode(&capture);
    // A capture file names no sockets, as in `sockharness trace`.
    let names = |_| None;
    let all = RenderOptions {
        acks: true,
        windows: true,
        options: true,
        timestamps: true,
    };
    for opts in [RenderOptions::default(), all] {
        let _ = wire.render(&names, &opts);
    }
    let _ = wire.to_json(&names);
    let _ = svg::svg(&wire, &names);

    // What the reader accepts, the writer writes and the reader takes back, except times past
    // 2106: pcapng holds them, classic pcap's 32-bit seconds do not, and writing says so.
    let fits = capture
        .packets
        .iter()
        .all(|p| p.ts.as_secs() <= u64::from(u32::MAX));
    let mut bytes = Vec::new();
    match pcap::write(&mut bytes, &capture) {
        Ok(()) => {
            let back = pcap::read(&bytes).expect("a written capture reads back");
            assert_eq!(back.link, capture.link);
            assert_eq!(back.packets.len(), capture.packets.len());
        }
        Err(e) => assert!(!fits, "writing a capture classic pcap can hold failed: {e}"),
    }
});
