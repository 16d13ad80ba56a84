//! Validated values and pure rules shared by every crate: ids, emails, passwords, titles, roles, statuses.

pub mod chat;
pub mod email;
pub mod ids;
pub mod message;
pub mod password;
pub mod time;

pub use chat::{ChatTitle, TitleError};
pub use email::{Email, EmailError};
pub use ids::{ChatId, UserId};
pub use message::{MessageStatus, Role, UnknownValue};
pub use password::{Password, PasswordError};
