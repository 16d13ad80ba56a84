//! The migrations, embedded in the binary and run at start-up.

use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::{DbConnection, StorageError};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// Applies every pending migration; returns how many ran.
pub(crate) fn run_pending(conn: &mut DbConnection) -> Result<usize, StorageError> {
    conn.run_pending_migrations(SQLITE_MIGRATIONS)
        .map(|applied| applied.len())
        .map_err(|err| StorageError::Migration(err.to_string()))
}
