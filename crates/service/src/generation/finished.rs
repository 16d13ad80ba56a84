//! A finished reply kept for listeners resuming its stream: how its events were numbered, told again
//! over its text as stored.
//!
//! A reply's whole [`Generation`](super::Generation) (its text, its signals, the error for its caller)
//! is dropped once it has ended: the resume window keeps this much smaller record instead, allocated
//! once, so that thousands of finished replies kept for minutes hold little memory among the
//! short-lived allocations of the requests around them.

use chat_domain::MessageStatus;
use chat_storage::Message;

use super::events::{Ending, NumberedEvent, StreamStart, numbered_after, numbered_whole};

/// What a finished reply's events were: its `start`, where each delta ended, its ending.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) start: StreamStart,
    /// The end offset in the reply's text of each delta, in order: delta `i` has event id `i + 2`.
    ends: Box<[u32]>,
    ending: Ending,
    /// The status the reply was stored with.
    status: MessageStatus,
}

impl Finished {
    pub(crate) fn new(start: StreamStart, ends: Box<[u32]>, ending: Ending, status: MessageStatus) -> Self {
        Self { start, ends, ending, status }
    }

    /// The memory it holds besides its fixed size.
    pub(crate) fn memory(&self) -> usize {
        self.ends.len() * std::mem::size_of::<u32>() + self.start.model.capacity()
    }

    /// Its events over `stored`, the message as read after the reply ended: after `after`, or told
    /// whole when `after` is `None`. `None` when the stored message is not the reply these events
    /// told (its final write failed and is being retried, or another write changed it since): the
    /// caller tells what is stored instead.
    pub(crate) fn events(&self, stored: &Message, after: Option<u64>) -> Option<Vec<NumberedEvent>> {
        let text = stored.content.as_str();
        let fits = stored.id == self.start.message_id
            && stored.status == self.status
            && self.ends.last().map_or(0, |&end| end as usize) == text.len()
            && self.ends.iter().all(|&end| text.is_char_boundary(end as usize));
        if !fits {
            return None;
        }
        Some(match after {
            None => numbered_whole(&self.start, text, self.ends.len(), &self.ending),
            Some(after) => numbered_after(&self.start, text, &self.ends, Some(&self.ending), after).0,
        })
    }
}

#[cfg(test)]
mod tests {
    use chat_domain::{ChatId, Role};
    use chat_storage::NewMessage;
    use llm_providers::Usage;

    use super::super::events::StreamEvent;
    use super::super::record::Generation;
    use super::*;

    fn stored(id: i64, content: &str, status: MessageStatus) -> Message {
        let now = chat_domain::time::now_utc();
        let message =
            NewMessage { status, ..NewMessage::plain(ChatId::new_random(), Role::Assistant, content.into(), now) };
        message.stored_as(id)
    }

    fn finished_reply() -> (Generation, Finished) {
        let start =
            StreamStart { chat_id: ChatId::new_random(), user_message_id: 1, message_id: 2, model: "fast".into() };
        let generation = Generation::new(start);
        for piece in ["Hel", "lo", " wörld"] {
            generation.append(piece);
        }
        let ending = Ending::Done { finish_reason: "stop".into(), usage: Usage::default() };
        generation.end(ending, MessageStatus::Complete, None);
        let finished = generation.to_finished().expect("it has ended");
        (generation, finished)
    }

    #[test]
    fn a_finished_reply_tells_the_events_it_told_live_over_its_stored_text() {
        let (generation, finished) = finished_reply();
        let message = stored(2, "Hello wörld", MessageStatus::Complete);
        for after in 0..=6 {
            assert_eq!(finished.events(&message, Some(after)), Some(generation.events_after(after).0), "after {after}");
        }
        assert_eq!(finished.events(&message, None), generation.summary());
        let whole = finished.events(&message, None).unwrap();
        assert_eq!(whole.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 4, 5]);
        assert_eq!(whole[1].event, StreamEvent::Delta("Hello wörld".into()));
    }

    #[test]
    fn a_stored_message_that_is_not_the_reply_told_is_not_numbered_as_it() {
        let (_generation, finished) = finished_reply();
        // The final write is still being retried: the row is as last flushed.
        assert_eq!(finished.events(&stored(2, "Hel", MessageStatus::Generating), Some(2)), None);
        assert_eq!(finished.events(&stored(2, "Hello wörld", MessageStatus::Error), None), None);
        assert_eq!(finished.events(&stored(3, "Hello wörld", MessageStatus::Complete), None), None);
        // As long, but a delta's end is no longer between two characters.
        assert_eq!(finished.events(&stored(2, "Hellöwörld", MessageStatus::Complete), Some(3)), None);
    }
}
