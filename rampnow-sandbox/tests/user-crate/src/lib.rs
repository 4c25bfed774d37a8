//! Nothing here: the crate exists for its test (see `tests/defaults.rs`).
