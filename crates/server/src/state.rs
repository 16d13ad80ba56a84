//! `AppState`: the one shared context handed to every handler through `web::Data`.

use chat_service::ChatService;

#[derive(Debug, Clone)]
pub struct AppState {
    pub service: ChatService,
    /// Bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
}
