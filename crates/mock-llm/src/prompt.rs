//! What the mock reads from a chat request (model, streaming flags, prompt size) and how it cuts text into tokens.

use serde_json::Value;

use crate::dialect::Dialect;

/// Model named in answers when the request names none.
const FALLBACK_MODEL: &str = "mock-model";

/// The parts of a chat request that shape the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChatRequest {
    pub(crate) model: String,
    pub(crate) stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub(crate) include_usage: bool,
    /// Whitespace-separated words of every message's content (and Anthropic's `system`).
    pub(crate) prompt_tokens: u64,
    /// Text content of the last `user` message, empty when there is none.
    pub(crate) last_user: String,
}

impl ChatRequest {
    /// Reads a request leniently: missing or oddly typed fields fall back to defaults, since the mock's job is to
    /// answer, not to validate clients.
    pub(crate) fn read(body: &Value, dialect: Dialect) -> Self {
        let messages = body.get("messages").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        let mut words: usize = messages.iter().map(|message| word_count(&content_text(message.get("content")))).sum();
        if dialect == Dialect::Anthropic {
            words += word_count(&content_text(body.get("system")));
        }
        let last_user = messages
            .iter()
            .rev()
            .find(|message| message.get("role").and_then(Value::as_str) == Some("user"))
            .map(|message| content_text(message.get("content")))
            .unwrap_or_default();
        Self {
            model: body.get("model").and_then(Value::as_str).unwrap_or(FALLBACK_MODEL).to_owned(),
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
            include_usage: body.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false),
            prompt_tokens: u64::try_from(words).unwrap_or(u64::MAX),
            last_user,
        }
    }

    /// The answer when neither the behaviour nor the process defaults give a text.
    pub(crate) fn default_reply(&self) -> String {
        format!("Mock reply to: {}", self.last_user)
    }
}

/// Text of a message content: a string as is, or the `text` of each part of an array, one part per line.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            parts.iter().filter_map(|part| part.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

/// Cuts text into tokens: each word with the whitespace before it, trailing whitespace kept on the last token, so
/// the tokens concatenate back to the text exactly (newlines included).
pub(crate) fn split_tokens(text: &str) -> Vec<&str> {
    let mut cuts = vec![0];
    let mut after_word = false;
    for (at, ch) in text.char_indices() {
        let space = ch.is_whitespace();
        if space && after_word {
            cuts.push(at);
        }
        after_word = !space;
    }
    // Trailing whitespace alone is not a token: it stays with the last word.
    if cuts.len() > 1 && cuts.last().and_then(|&last| text.get(last..)).is_some_and(|tail| tail.trim().is_empty()) {
        cuts.pop();
    }
    cuts.push(text.len());
    cuts.windows(2).filter_map(|pair| text.get(pair[0]..pair[1])).filter(|piece| !piece.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tokens_concatenate_back_to_the_text() {
        for text in ["", "one", "Mock reply to: hi", "  lead", "trail  ", "a\nb\n\nc d\t e\n", " ", "é ü ß"] {
            let tokens = split_tokens(text);
            assert_eq!(tokens.concat(), text, "{text:?} -> {tokens:?}");
        }
        assert_eq!(
            split_tokens("Mock reply to: line 1\nline 2"),
            ["Mock", " reply", " to:", " line", " 1", "\nline", " 2"]
        );
        assert_eq!(split_tokens("end \n"), ["end \n"]);
        assert!(split_tokens("").is_empty());
    }

    #[test]
    fn reads_openai_requests() {
        let body = json!({
            "model": "gpt-x",
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": null},
                {"role": "user", "content": [{"type": "text", "text": "line one"}, {"type": "text", "text": "two"}]},
            ],
        });
        let request = ChatRequest::read(&body, Dialect::OpenAi);
        assert_eq!(request.model, "gpt-x");
        assert!(request.stream && request.include_usage);
        assert_eq!(request.prompt_tokens, 7);
        assert_eq!(request.default_reply(), "Mock reply to: line one\ntwo");
    }

    #[test]
    fn counts_the_anthropic_system_prompt() {
        let body = json!({
            "system": [{"type": "text", "text": "you are terse"}],
            "messages": [{"role": "user", "content": "hello there"}],
        });
        let request = ChatRequest::read(&body, Dialect::Anthropic);
        assert_eq!((request.prompt_tokens, request.stream, request.model.as_str()), (5, false, FALLBACK_MODEL));
        assert_eq!(ChatRequest::read(&body, Dialect::OpenAi).prompt_tokens, 2);
    }
}
