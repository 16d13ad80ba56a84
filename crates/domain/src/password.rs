//! Password rules: 8 to 72 characters and at most 72 UTF-8 bytes, the most bcrypt can take without truncating.

use std::fmt;

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 72;
/// bcrypt reads at most 72 bytes of input; anything past that would be silently ignored.
pub const MAX_PASSWORD_BYTES: usize = 72;

/// A password that satisfies the rules. Its `Debug` never shows the text.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("Password must have at least {min} characters")]
    TooShort { min: usize },
    #[error("Password must have at most {max} characters")]
    TooLong { max: usize },
    #[error(
        "Password must be at most {max} bytes when encoded as UTF-8 (this one is {actual} bytes); \
         bcrypt cannot use more, and a password is never silently truncated"
    )]
    TooManyBytes { max: usize, actual: usize },
}

impl Password {
    pub fn parse(raw: String) -> Result<Self, PasswordError> {
        let chars = raw.chars().count();
        if chars < MIN_PASSWORD_CHARS {
            return Err(PasswordError::TooShort { min: MIN_PASSWORD_CHARS });
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(PasswordError::TooLong { max: MAX_PASSWORD_CHARS });
        }
        if raw.len() > MAX_PASSWORD_BYTES {
            return Err(PasswordError::TooManyBytes { max: MAX_PASSWORD_BYTES, actual: raw.len() });
        }
        Ok(Self(raw))
    }

    /// Whether a login attempt could possibly match a stored password: a longer input never can, and
    /// must not be handed to bcrypt (which would compare only its first 72 bytes).
    pub fn fits_bcrypt(candidate: &str) -> bool {
        candidate.len() <= MAX_PASSWORD_BYTES
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_bounds_in_characters() {
        assert_eq!(Password::parse("1234567".into()), Err(PasswordError::TooShort { min: 8 }));
        assert!(Password::parse("12345678".into()).is_ok());
        assert!(Password::parse("x".repeat(72)).is_ok());
        assert_eq!(Password::parse("x".repeat(73)), Err(PasswordError::TooLong { max: 72 }));
    }

    #[test]
    fn byte_bound_for_multibyte_text() {
        // 30 characters but 90 bytes: within the character bound, over bcrypt's byte bound.
        let pw = "€".repeat(30);
        assert_eq!(Password::parse(pw), Err(PasswordError::TooManyBytes { max: 72, actual: 90 }));
        // 24 three-byte characters are exactly 72 bytes: allowed.
        assert!(Password::parse("€".repeat(24)).is_ok());
    }

    #[test]
    fn debug_never_shows_the_text() {
        let pw = Password::parse("correct horse".into()).unwrap();
        assert!(!format!("{pw:?}").contains("horse"));
    }

    #[test]
    fn fits_bcrypt_is_a_byte_test() {
        assert!(Password::fits_bcrypt(&"a".repeat(72)));
        assert!(!Password::fits_bcrypt(&"a".repeat(73)));
    }
}
