//! The echo logic over an in-memory pipe under chaos I/O: whatever the fuzz input's read and
//! write schedules do (partial results, `Pending`, EOF, errors), what comes back is the request's
//! beginning, in order, and all of what the service read unless a fault stopped it.
//!
//! One rig per process keeps its runtime between inputs.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sockharness_fuzz::rig::InProcess;

thread_local! {
    static RIG: InProcess = InProcess::new().expect("a current-thread runtime starts");
}

fuzz_target!(|data: &[u8]| {
    RIG.with(|rig| {
        if let Err(mismatch) = rig.play(data) {
            panic!("{mismatch}\n--- input: {data:?}");
        }
    });
});
