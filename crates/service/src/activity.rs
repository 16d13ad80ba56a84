//! What the service has done and is doing, for metrics: replies running, replies ended by status, tokens.

use std::sync::atomic::{AtomicU64, Ordering};

use chat_domain::MessageStatus;
use llm_providers::Usage;

/// The statuses a reply ends with, in the order [`Activity::replies`] lists them.
const ENDED: [MessageStatus; 4] =
    [MessageStatus::Complete, MessageStatus::Cancelled, MessageStatus::Error, MessageStatus::Interrupted];

/// Counters of this process since it started.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    replies: [AtomicU64; ENDED.len()],
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
}

impl Tally {
    /// Counts a reply stored with `status`, and the tokens its provider counted (or that were estimated).
    pub(crate) fn reply(&self, status: MessageStatus, usage: Usage) {
        if let Some(i) = ENDED.iter().position(|&ended| ended == status) {
            self.replies[i].fetch_add(1, Ordering::Relaxed);
        }
        self.prompt_tokens.fetch_add(u64::from(usage.prompt_tokens), Ordering::Relaxed);
        self.completion_tokens.fetch_add(u64::from(usage.completion_tokens), Ordering::Relaxed);
    }

    pub(crate) fn read(&self, running: usize) -> Activity {
        Activity {
            running,
            replies: ENDED.iter().zip(&self.replies).map(|(s, n)| (s.as_str(), n.load(Ordering::Relaxed))).collect(),
            prompt_tokens: self.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: self.completion_tokens.load(Ordering::Relaxed),
        }
    }
}

/// A reading of the service's activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// Replies being generated now.
    pub running: usize,
    /// Replies stored since start-up, by final status (`complete`, `cancelled`, `error`, `interrupted`).
    pub replies: Vec<(&'static str, u64)>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}
