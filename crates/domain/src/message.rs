//! Message roles and statuses, with the exact strings stored and sent.

use std::fmt;
use std::str::FromStr;

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    User,
    Assistant,
}

/// Where an assistant message is in its life; user messages are always `Complete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageStatus {
    Generating,
    Complete,
    Cancelled,
    Error,
    Interrupted,
}

/// A stored string that names no known variant (a corrupted or newer database).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Generating => "generating",
            MessageStatus::Complete => "complete",
            MessageStatus::Cancelled => "cancelled",
            MessageStatus::Error => "error",
            MessageStatus::Interrupted => "interrupted",
        }
    }
}

impl FromStr for Role {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Role::User, Role::Assistant]
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownValue { kind: "role", value: s.to_owned() })
    }
}

impl FromStr for MessageStatus {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use MessageStatus::*;
        [Generating, Complete, Cancelled, Error, Interrupted]
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownValue { kind: "message status", value: s.to_owned() })
    }
}

impl TryFrom<String> for Role {
    type Error = UnknownValue;

    fn try_from(s: String) -> Result<Self, UnknownValue> {
        s.parse()
    }
}

impl TryFrom<String> for MessageStatus {
    type Error = UnknownValue;

    fn try_from(s: String) -> Result<Self, UnknownValue> {
        s.parse()
    }
}

impl From<Role> for String {
    fn from(role: Role) -> String {
        role.as_str().to_owned()
    }
}

impl From<MessageStatus> for String {
    fn from(status: MessageStatus) -> String {
        status.as_str().to_owned()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip() {
        for role in [Role::User, Role::Assistant] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        for status in [
            MessageStatus::Generating,
            MessageStatus::Complete,
            MessageStatus::Cancelled,
            MessageStatus::Error,
            MessageStatus::Interrupted,
        ] {
            assert_eq!(status.as_str().parse::<MessageStatus>().unwrap(), status);
        }
        assert!("system".parse::<Role>().is_err());
    }
}
