//! The mock driven over real HTTP, as the workspace's tests and benchmarks use it.
#![expect(
    clippy::expect_used,
    clippy::panic,
    clippy::unwrap_used,
    reason = "test helpers, like tests, fail loudly on anything unexpected"
)]

mod anthropic;
mod common;
mod control;
mod faults;
mod openai;
