//! The context window: the system prompt plus the newest messages that fit the model's budget, ending with the new message.

use chat_domain::{MessageStatus, Role};
use llm_providers::{ChatMessage, ChatRole};

/// Tokens a chat format adds around each message (role markers, separators).
const PER_MESSAGE_OVERHEAD: u32 = 4;
/// Tokens that prime the reply.
const REPLY_PRIMING: u32 = 3;
/// Share of the budget kept free, because the tokenizer only estimates other model families.
const SAFETY_MARGIN_PERCENT: u32 = 10;

/// A stored message as the context builder sees it.
#[derive(Debug, Clone)]
pub struct HistoryItem {
    pub role: Role,
    pub status: MessageStatus,
    pub content: String,
    pub tokens: u32,
}

/// The new message alone does not fit the model's budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the message is {needed} tokens; this model accepts at most {budget}")]
pub struct TooLarge {
    pub needed: u32,
    pub budget: u32,
}

/// The usable budget once the safety margin is set aside.
pub fn usable_budget(prompt_budget: u32) -> u32 {
    prompt_budget - prompt_budget * SAFETY_MARGIN_PERCENT / 100
}

/// Whether a stored message belongs in a model's context: failed or unfinished replies do not.
fn usable(item: &HistoryItem) -> bool {
    match item.status {
        MessageStatus::Complete | MessageStatus::Cancelled | MessageStatus::Interrupted => !item.content.is_empty(),
        MessageStatus::Error | MessageStatus::Generating => false,
    }
}

/// The messages to send and their estimated size.
#[derive(Debug, Clone)]
pub struct Context {
    pub messages: Vec<ChatMessage>,
    /// Estimated prompt tokens, overheads included.
    pub tokens: u32,
}

/// Builds the messages to send: `system` first, then the newest history that fits, oldest to newest,
/// then `new_message`. History is given newest first and is read only as far as needed.
pub fn build(
    system: Option<(&str, u32)>,
    new_message: (&str, u32),
    history_newest_first: impl IntoIterator<Item = HistoryItem>,
    prompt_budget: u32,
) -> Result<Context, TooLarge> {
    let budget = usable_budget(prompt_budget);
    let fixed = REPLY_PRIMING
        + system.map_or(0, |(_, tokens)| tokens + PER_MESSAGE_OVERHEAD)
        + new_message.1
        + PER_MESSAGE_OVERHEAD;
    if fixed > budget {
        return Err(TooLarge { needed: fixed, budget });
    }
    let mut left = budget - fixed;
    let mut kept = Vec::new();
    for item in history_newest_first.into_iter().filter(usable) {
        let cost = item.tokens + PER_MESSAGE_OVERHEAD;
        if cost > left {
            // Stop at the first message that does not fit: the context stays one unbroken stretch.
            break;
        }
        left -= cost;
        kept.push(item);
    }
    let mut messages = Vec::with_capacity(kept.len() + 2);
    if let Some((prompt, _)) = system {
        messages.push(ChatMessage::new(ChatRole::System, prompt));
    }
    messages.extend(kept.into_iter().rev().map(|item| {
        let role = match item.role {
            Role::User => ChatRole::User,
            Role::Assistant => ChatRole::Assistant,
        };
        ChatMessage::new(role, item.content)
    }));
    messages.push(ChatMessage::new(ChatRole::User, new_message.0));
    Ok(Context { messages, tokens: budget - left })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(i: usize, tokens: u32) -> HistoryItem {
        HistoryItem {
            role: if i.is_multiple_of(2) { Role::User } else { Role::Assistant },
            status: MessageStatus::Complete,
            content: format!("turn {i}"),
            tokens,
        }
    }

    /// 120 turns, oldest 0 to newest 119, given newest first.
    fn long_chat() -> Vec<HistoryItem> {
        (0..120).rev().map(|i| item(i, 10)).collect()
    }

    #[test]
    fn keeps_the_newest_turns_of_a_long_chat() {
        // Each turn costs 14; the budget (after margin) leaves room for exactly a few.
        let context = build(Some(("sys", 5)), ("new", 6), long_chat(), 200).unwrap();
        let messages = &context.messages;
        assert_eq!(messages.first().unwrap().role, ChatRole::System);
        assert_eq!(messages.last().unwrap().content, "new");
        let turns: Vec<&str> = messages[1..messages.len() - 1].iter().map(|m| m.content.as_str()).collect();
        assert!(!turns.is_empty());
        assert_eq!(*turns.last().unwrap(), "turn 119", "the newest turn is kept");
        assert!(!turns.contains(&"turn 0"), "the oldest is dropped, not the newest");
        // Consecutive and in order.
        let numbers: Vec<usize> = turns.iter().map(|t| t[5..].parse().unwrap()).collect();
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1));
        // Within the usable budget, and counted.
        let used: u32 = 3 + (5 + 4) + (6 + 4) + numbers.len() as u32 * 14;
        assert!(used <= usable_budget(200));
        assert_eq!(context.tokens, used);
    }

    #[test]
    fn a_large_window_takes_everything() {
        let messages = build(None, ("new", 1), long_chat(), 100_000).unwrap().messages;
        assert_eq!(messages.len(), 121);
        assert_eq!(messages[0].content, "turn 0");
    }

    #[test]
    fn failed_and_unfinished_replies_are_left_out() {
        let mut history = vec![item(1, 5), item(0, 5)];
        history[0].status = MessageStatus::Error;
        let mut generating = item(3, 5);
        generating.status = MessageStatus::Generating;
        history.insert(0, generating);
        let messages = build(None, ("new", 1), history, 1000).unwrap().messages;
        let contents: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["turn 0", "new"]);
    }

    #[test]
    fn a_message_too_large_alone_is_refused() {
        let err = build(Some(("sys", 10)), ("huge", 1000), Vec::new(), 500).unwrap_err();
        assert_eq!(err.budget, usable_budget(500));
        assert!(err.needed > err.budget);
    }

    #[test]
    fn a_tiny_window_still_sends_the_new_message() {
        let messages = build(None, ("new", 10), long_chat(), 30).unwrap().messages;
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].content, "new");
    }
}
