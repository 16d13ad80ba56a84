//! The end-to-end suite: the real `chat-server` binary over real HTTP, a fresh database per test.
#![expect(
    clippy::expect_used,
    clippy::panic,
    clippy::unwrap_used,
    reason = "test helpers, like tests, fail loudly on anything unexpected"
)]

mod support;

mod auth;
mod browser;
mod budget;
mod chat;
mod chats;
mod crash;
mod docs;
mod errors;
mod faults;
mod limits;
mod messages_and_ownership;
mod metrics;
mod provider_failures;
mod replies;
mod request_ids_and_logs;
mod servers;
mod startup;
mod streaming;
mod walkthrough;
