//! Server-sent events from a provider's response, one parser for every HTTP adapter.

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt};

use crate::ProviderError;
use crate::http::transport_error;

/// One event: its name (`message` when unnamed) and its data (multi-line data joined with `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub event: String,
    pub data: String,
}

/// The events of `response`'s body. Comment lines (`: keep-alive`) are skipped by the parser.
pub(crate) fn events(response: reqwest::Response) -> impl Stream<Item = Result<SseEvent, ProviderError>> + Send {
    response.bytes_stream().eventsource().map(|item| match item {
        Ok(event) => Ok(SseEvent { event: event.event, data: event.data }),
        Err(eventsource_stream::EventStreamError::Transport(err)) => Err(transport_error(&err)),
        Err(other) => Err(ProviderError::UnusableAnswer(format!("invalid event stream: {other}"))),
    })
}
