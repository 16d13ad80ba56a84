//! An OpenAI- and Anthropic-compatible LLM server with scripted latency, speed and faults; see the crate README.

mod anthropic;
mod behaviour;
mod dialect;
mod error;
mod openai;
mod playback;
mod prompt;
mod reset;
mod respond;
mod routes;
mod server;
mod state;

pub use behaviour::{Behaviour, Defaults, ErrorStatus, Fault, Partial, Reply, UsageOverride, UsageStyle};
pub use error::MockError;
pub use server::MockLlm;
pub use state::RecordedRequest;
