//! The errors the mock's library API returns.

use std::time::Duration;

/// Why starting, scripting or waiting on the mock failed.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// The listening socket could not be bound or handed to the server.
    #[error("could not listen: {0}")]
    Listen(#[source] std::io::Error),
    /// The server thread could not be started, or ended before reporting that it was serving.
    #[error("the mock server thread failed: {0}")]
    Thread(String),
    /// A process-wide default is out of range.
    #[error("invalid defaults: {0}")]
    InvalidDefaults(String),
    /// A scripted behaviour could not be read or has an out-of-range value; nothing was queued.
    #[error("behaviour #{index} is invalid: {reason}")]
    InvalidBehaviour { index: usize, reason: String },
    /// The recorded requests did not reach the awaited state in time.
    #[error("the recorded requests did not match within {0:?}")]
    Timeout(Duration),
}
