//! Throw-away PostgreSQL schemas for tests and benchmarks: each a fresh, empty namespace in one database,
//! dropped when done (and with the database, when a CI run drops it).

use diesel::{Connection, PgConnection, RunQueryDsl};

use crate::{DatabaseLocation, StorageError};

/// The database tests use when nothing else is said: this machine kind's local PostgreSQL.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A schema created for one test (or benchmark run), dropped with this value.
#[derive(Debug)]
pub struct ScratchSchema {
    base_url: String,
    name: String,
    url: String,
}

impl ScratchSchema {
    /// Creates a uniquely named schema in the database `base_url` names; [`ScratchSchema::url`] is a
    /// URL whose connections see only it.
    pub fn create(base_url: &str) -> Result<Self, StorageError> {
        let mut conn = connect(base_url)?;
        let name = format!("scratch_{}", uuid::Uuid::new_v4().simple());
        diesel::sql_query(format!("CREATE SCHEMA {name}")).execute(&mut conn)?;
        let separator = if base_url.contains('?') { '&' } else { '?' };
        let url = format!("{base_url}{separator}options=-c%20search_path%3D{name}");
        Ok(Self { base_url: base_url.to_owned(), name, url })
    }

    /// The database URL in `variable` (else [`DEFAULT_URL`]), if a server answers there.
    pub fn reachable_url(variable: &str) -> Option<String> {
        let url = std::env::var(variable).ok().filter(|u| !u.trim().is_empty());
        let url = url.unwrap_or_else(|| DEFAULT_URL.to_owned());
        connect(&url).ok().map(|_| url)
    }

    /// The URL that opens the schema.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        let dropped = connect(&self.base_url).and_then(|mut conn| {
            diesel::sql_query(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
                .execute(&mut conn)
                .map_err(StorageError::from)
        });
        if let Err(err) = dropped {
            tracing::warn!(schema = %self.name, error = %err, "could not drop a scratch schema");
        }
    }
}

fn connect(url: &str) -> Result<PgConnection, StorageError> {
    PgConnection::establish(url).map_err(|err| StorageError::Open {
        location: DatabaseLocation::Postgres(url.to_owned()).to_string(),
        reason: err.to_string().trim().to_owned(),
    })
}
