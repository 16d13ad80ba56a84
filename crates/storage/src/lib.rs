//! Persistence: the Diesel schema, the connection pool, migrations and the repositories of each table.
//!
//! One set of queries serves SQLite and PostgreSQL through `#[derive(diesel::MultiConnection)]`; the
//! backend comes from the URL. Diesel is synchronous: callers go through [`Database::run`] to read, which
//! moves the pool checkout and every query onto the database's own threads, at most as many as the pool
//! has connections, so that async workers never wait on the database, and through [`Database::write`] to
//! write, which on SQLite is one writer thread that commits the writes arriving together in one transaction.

pub mod chats;
mod checkpointer;
mod error;
pub mod messages;
pub mod migrations;
mod pool;
pub mod refresh_tokens;
mod schema;
pub mod scratch;
mod threads;
pub mod token_usage;
mod url;
pub mod users;
mod writer;

pub use chats::{Chat, ChatPage, ChatSummary, NewChat, PromptChange};
pub use error::StorageError;
pub use messages::{FinishedReply, HistoryRow, Message, NewMessage};
pub use pool::{Database, DbConnection, PoolOptions, SqliteSynchronous};
pub use url::DatabaseLocation;
pub use users::{NewUser, User};
