//! The scenario library lives in the topic folders beside this crate; see `tests/scenarios.rs`.
