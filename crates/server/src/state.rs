//! `AppState`: the one shared context handed to every handler through `web::Data`.

use std::time::Duration;

use chat_service::ChatService;

use crate::browser::CorsPolicy;
use crate::dto::ModelResponse;
use crate::limits::Limits;
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct AppState {
    pub service: ChatService,
    /// Bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// The longest message `POST /chat` accepts, in characters.
    pub max_message_chars: usize,
    /// The alias used when a request names none.
    pub default_model: String,
    /// The longest silence on an event stream before a keep-alive comment.
    pub keep_alive: Duration,
    /// `GET /models`, computed once at start-up.
    pub models: Vec<ModelResponse>,
    /// Which browser origins may read the API's answers.
    pub cors: CorsPolicy,
    /// What the server has answered, for `GET /metrics`.
    pub metrics: std::sync::Arc<Metrics>,
    /// `GET /metrics` is served on an address of its own (`METRICS_ADDRESS`), not the API's.
    pub metrics_elsewhere: bool,
    /// Rate limits on sign-up and login, and on new replies.
    pub limits: std::sync::Arc<Limits>,
}
