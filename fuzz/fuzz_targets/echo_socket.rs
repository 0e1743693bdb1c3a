//! The bundled echo server on a real 127.0.0.1 socket: however the fuzz input cuts, paces,
//! half-closes, resets or stalls the client's stream, the echo is exactly the bytes sent (for a
//! reset, their beginning), and every play ends within its deadline.
//!
//! One rig per process keeps the runtime and the server between inputs.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sockharness_fuzz::rig::EchoSockets;
use sockharness_fuzz::strategy::Schedule;

thread_local! {
    static RIG: EchoSockets = EchoSockets::new().expect("the echo server starts on 127.0.0.1");
}

fuzz_target!(|data: &[u8]| {
    let (schedule, payload) = Schedule::from_fuzz_bytes(data);
    RIG.with(|rig| {
        if let Err(mismatch) = rig.play_and_check(&schedule, payload) {
            panic!("{mismatch}\n--- schedule: {schedule:?}\n--- payload: {payload:?}");
        }
    });
});
