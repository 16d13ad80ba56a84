//! The migrations of each backend, embedded in the binary and run at start-up (or by `chat-server migrate`).

use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::{DbConnection, StorageError};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// Applies every pending migration; returns how many ran.
pub(crate) fn run_pending(conn: &mut DbConnection) -> Result<usize, StorageError> {
    let applied = match conn {
        DbConnection::Sqlite(conn) => conn.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        DbConnection::Postgres(conn) => conn.run_pending_migrations(POSTGRES_MIGRATIONS).map(|v| v.len()),
    };
    applied.map_err(|err| StorageError::Migration(err.to_string()))
}

/// Reverts every applied migration, newest first; returns how many were reverted. For tests of the
/// migrations themselves.
pub fn revert_all(conn: &mut DbConnection) -> Result<usize, StorageError> {
    let reverted = match conn {
        DbConnection::Sqlite(conn) => conn.revert_all_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        DbConnection::Postgres(conn) => conn.revert_all_migrations(POSTGRES_MIGRATIONS).map(|v| v.len()),
    };
    reverted.map_err(|err| StorageError::Migration(err.to_string()))
}

/// Applies every pending migration; returns how many ran. For `chat-server migrate` and tests.
pub fn apply_pending(conn: &mut DbConnection) -> Result<usize, StorageError> {
    run_pending(conn)
}
