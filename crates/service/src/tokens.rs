//! Token estimates with a real tokenizer (cl100k), counted once per message and stored with it.

use tiktoken_rs::CoreBPE;

/// Counts tokens; cheap to clone. cl100k is OpenAI's tokenizer: for other model families it is an
/// estimate, which the context window's safety margin absorbs.
#[derive(Clone)]
pub struct TokenCounter {
    bpe: &'static CoreBPE,
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCounter(cl100k_base)")
    }
}

impl Default for TokenCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenCounter {
    /// Loads the encoding (shipped inside the crate: nothing is downloaded). Blocking, about 100 ms the
    /// first time in a process: build it at start-up.
    pub fn new() -> Self {
        Self { bpe: tiktoken_rs::cl100k_base_singleton() }
    }

    pub fn count(&self, text: &str) -> u32 {
        u32::try_from(self.bpe.encode_ordinary(text).len()).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_like_cl100k() {
        let counter = TokenCounter::new();
        assert_eq!(counter.count(""), 0);
        assert_eq!(counter.count("hello world"), 2);
        assert!(counter.count(&"word ".repeat(1000)) >= 1000);
    }
}
