//! Persistence: the Diesel schema, the connection pool, migrations and the repositories of users, chats and messages.
//!
//! Diesel is synchronous. Callers go through [`Database::run`], which moves the pool checkout and every
//! query onto the blocking thread pool so that async workers never wait on SQLite.

pub mod chats;
mod error;
pub mod messages;
mod migrations;
mod pool;
mod schema;
mod url;
pub mod users;

pub use chats::{Chat, ChatPage, ChatSummary, NewChat, PromptChange};
pub use error::StorageError;
pub use messages::{FinishedReply, Message, NewMessage};
pub use pool::{Database, DbConnection, PoolOptions, SqliteSynchronous};
pub use url::DatabaseLocation;
pub use users::{NewUser, User};
