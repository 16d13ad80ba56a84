//! The migrations of each backend, embedded in the binary and run at start-up (or by `chat-server migrate`).

use diesel::RunQueryDsl;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::{DbConnection, StorageError};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// The advisory lock that lets one server at a time migrate a PostgreSQL database.
const MIGRATION_LOCK: i64 = 0x0063_6861_746d_6967; // "chatmig"

/// Applies every pending migration; returns how many ran. On PostgreSQL, servers starting together
/// take turns (an advisory lock): the first applies them, the others find nothing left to do.
pub(crate) fn run_pending(conn: &mut DbConnection) -> Result<usize, StorageError> {
    let applied = match conn {
        DbConnection::Sqlite(conn) => conn.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
        DbConnection::Postgres(conn) => {
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")).execute(conn)?;
            let applied = conn.run_pending_migrations(POSTGRES_MIGRATIONS).map(|v| v.len());
            diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")).execute(conn)?;
            applied
        }
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
