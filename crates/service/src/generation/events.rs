//! The events a reply is told in (`start`, `delta`, `done`, `error`), numbered from 1 within the message.

use std::time::Duration;

use chat_domain::{ChatId, MessageStatus};
use chat_storage::Message;
use llm_providers::{FailureKind, Usage};

/// The `finish_reason` of a reply stopped on request.
pub const CANCELLED: &str = "cancelled";

/// What identifies a reply: the first event of its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStart {
    pub chat_id: ChatId,
    pub user_message_id: i64,
    pub message_id: i64,
    /// The alias asked.
    pub model: String,
}

/// Why a reply ended without finishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamFailure {
    /// The provider failed: after the reply began, or before it for listeners that joined early.
    Provider { alias: String, provider: Option<String>, kind: FailureKind, retry_after: Option<Duration> },
    /// The server stopped (shut down, or crashed) before the reply was finished.
    Interrupted,
    /// The reply could not be stored.
    Storage,
}

impl StreamFailure {
    /// What a stored reply keeps in `error_detail` to tell this failure again.
    pub(crate) fn stored(&self) -> &'static str {
        match self {
            StreamFailure::Provider { kind, .. } => kind.as_str(),
            StreamFailure::Interrupted => "interrupted",
            StreamFailure::Storage => "storage",
        }
    }
}

/// How a reply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Finished, or stopped on request (`finish_reason` [`CANCELLED`]).
    Done {
        finish_reason: String,
        usage: Usage,
    },
    Failed(StreamFailure),
}

/// One event of a reply's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    Start(StreamStart),
    /// The next piece of the reply's text.
    Delta(String),
    /// The last event: the reply's outcome.
    End {
        message_id: i64,
        ending: Ending,
    },
}

/// An event with its id (1 is `start`, each `delta` the next, the ending last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberedEvent {
    pub id: u64,
    pub event: StreamEvent,
}

/// A reply's events after id `after`, its deltas ending at `ends` in `text` (delta `i` has id `i + 2`),
/// its ending last once it has one; and whether the stream is over once they are sent.
pub(crate) fn numbered_after(
    start: &StreamStart,
    text: &str,
    ends: &[u32],
    ending: Option<&Ending>,
    after: u64,
) -> (Vec<NumberedEvent>, bool) {
    let mut events = Vec::new();
    if after < 1 {
        events.push(NumberedEvent { id: 1, event: StreamEvent::Start(start.clone()) });
    }
    let first = usize::try_from(after.saturating_sub(1)).unwrap_or(usize::MAX);
    for index in first..ends.len() {
        let from = if index == 0 { 0 } else { ends[index - 1] as usize };
        let piece = text[from..ends[index] as usize].to_owned();
        events.push(NumberedEvent { id: index as u64 + 2, event: StreamEvent::Delta(piece) });
    }
    let last_id = ends.len() as u64 + 2;
    let Some(ending) = ending else { return (events, false) };
    if after < last_id {
        let event = StreamEvent::End { message_id: start.message_id, ending: ending.clone() };
        events.push(NumberedEvent { id: last_id, event });
    }
    (events, true)
}

/// A finished reply of `deltas` deltas told as a stored one is: `start`, one `delta` with all its text
/// (none when it is empty), its ending. The delta and the ending keep the ids they had live, so that a
/// listener resuming with either id gets exactly what follows it.
pub(crate) fn numbered_whole(start: &StreamStart, text: &str, deltas: usize, ending: &Ending) -> Vec<NumberedEvent> {
    let last_id = deltas as u64 + 2;
    let mut events = vec![NumberedEvent { id: 1, event: StreamEvent::Start(start.clone()) }];
    if !text.is_empty() {
        events.push(NumberedEvent { id: last_id - 1, event: StreamEvent::Delta(text.to_owned()) });
    }
    events.push(NumberedEvent {
        id: last_id,
        event: StreamEvent::End { message_id: start.message_id, ending: ending.clone() },
    });
    events
}

/// The events that tell a stored reply again: `start`, one `delta` with the whole text (none when it
/// is empty), and its ending.
pub(crate) fn replay(message: &Message, user_message_id: i64) -> Vec<NumberedEvent> {
    let start = StreamStart {
        chat_id: message.chat_id,
        user_message_id,
        message_id: message.id,
        model: message.model_alias.clone().unwrap_or_default(),
    };
    let mut events = vec![StreamEvent::Start(start)];
    if !message.content.is_empty() {
        events.push(StreamEvent::Delta(message.content.clone()));
    }
    events.push(StreamEvent::End { message_id: message.id, ending: stored_ending(message) });
    events.into_iter().zip(1..).map(|(event, id)| NumberedEvent { id, event }).collect()
}

/// The ending a stored reply records.
pub(crate) fn stored_ending(message: &Message) -> Ending {
    let usage = Usage {
        prompt_tokens: message.prompt_tokens.map_or(0, |t| u32::try_from(t).unwrap_or(0)),
        completion_tokens: message.completion_tokens.map_or(0, |t| u32::try_from(t).unwrap_or(0)),
    };
    match message.status {
        MessageStatus::Complete => {
            Ending::Done { finish_reason: message.finish_reason.clone().unwrap_or_else(|| "stop".to_owned()), usage }
        }
        MessageStatus::Cancelled => Ending::Done { finish_reason: CANCELLED.to_owned(), usage },
        MessageStatus::Error => {
            let detail = message.error_detail.as_deref().unwrap_or_default();
            Ending::Failed(match FailureKind::parse(detail) {
                Some(kind) => StreamFailure::Provider {
                    alias: message.model_alias.clone().unwrap_or_default(),
                    provider: message.provider.clone(),
                    kind,
                    retry_after: None,
                },
                None if detail == "storage" => StreamFailure::Storage,
                None => StreamFailure::Interrupted,
            })
        }
        // A reply left `generating` by another process or a crash tells what it has so far.
        MessageStatus::Interrupted | MessageStatus::Generating => Ending::Failed(StreamFailure::Interrupted),
    }
}
