//! Typed identifiers, so a user id can never be passed where a chat id is expected.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random (v4) id.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl TryFrom<String> for $name {
            type Error = uuid::Error;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Hyphenated lower case: the form stored in the database and sent to clients.
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// The id of a user account.
    UserId
);
uuid_id!(
    /// The id of a chat (a conversation).
    ChatId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_lower_case_hyphenated_and_round_trips() {
        let id: ChatId = "6F9619FF-8B86-D011-B42D-00C04FC964FF".parse().unwrap();
        assert_eq!(id.to_string(), "6f9619ff-8b86-d011-b42d-00c04fc964ff");
        assert_eq!(id.to_string().parse::<ChatId>().unwrap(), id);
    }

    #[test]
    fn rejects_non_uuid() {
        assert!("not-a-uuid".parse::<UserId>().is_err());
        assert!("".parse::<UserId>().is_err());
    }
}
