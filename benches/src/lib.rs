//! Benches live in `benches/`; run them with `cargo bench -p sockharness-benches`.
