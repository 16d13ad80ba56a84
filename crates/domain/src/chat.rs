//! Chat titles: at most 200 characters; a rename needs at least one.

pub const MAX_TITLE_CHARS: usize = 200;

/// A title that fits the 200-character bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTitle(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TitleError {
    #[error("Title must have at least 1 character")]
    Empty,
    #[error("Title must have at most {max} characters")]
    TooLong { max: usize },
}

impl ChatTitle {
    /// A title for a new chat: may be empty (the original accepted that), at most 200 characters.
    pub fn parse_for_create(raw: String) -> Result<Self, TitleError> {
        if raw.chars().count() > MAX_TITLE_CHARS {
            return Err(TitleError::TooLong { max: MAX_TITLE_CHARS });
        }
        Ok(Self(raw))
    }

    /// A new title for an existing chat: 1 to 200 characters.
    pub fn parse_for_rename(raw: String) -> Result<Self, TitleError> {
        if raw.is_empty() {
            return Err(TitleError::Empty);
        }
        Self::parse_for_create(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_count_characters_not_bytes() {
        assert!(ChatTitle::parse_for_create("é".repeat(200)).is_ok());
        assert_eq!(ChatTitle::parse_for_create("é".repeat(201)), Err(TitleError::TooLong { max: 200 }));
    }

    #[test]
    fn rename_needs_a_character_create_does_not() {
        assert!(ChatTitle::parse_for_create(String::new()).is_ok());
        assert_eq!(ChatTitle::parse_for_rename(String::new()), Err(TitleError::Empty));
        assert_eq!(ChatTitle::parse_for_rename("Trip".into()).unwrap().as_str(), "Trip");
    }
}
