//! The storage error type: what went wrong, in terms the service layer can act on.

/// A failure of the storage layer. The `Display` text may name paths and SQL errors: it is for logs,
/// never for clients.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No connection could be had in time (pool exhausted, or the database cannot be opened now).
    #[error("no database connection available")]
    Unavailable(#[source] diesel::r2d2::PoolError),
    /// An insert or update hit a unique constraint.
    #[error("a row with the same unique key already exists")]
    UniqueViolation,
    /// An insert referred to a row that does not exist (e.g. a chat deleted meanwhile).
    #[error("the row referred to does not exist")]
    ForeignKeyViolation,
    #[error("database query failed")]
    Query(#[from] diesel::result::Error),
    #[error("invalid DATABASE_URL: {0}")]
    InvalidUrl(String),
    #[error("cannot open the database at {location}: {reason}")]
    Open { location: String, reason: String },
    #[error("running database migrations failed: {0}")]
    Migration(String),
    /// A write through SQLite's writer could not be run or committed.
    #[error("database write failed: {0}")]
    WriteFailed(String),
    /// Every database thread stayed busy for as long as a call may wait (the pool's acquire timeout).
    #[error("no database thread was free within {0:?}")]
    Busy(std::time::Duration),
    /// The database thread running the call ended without an answer: the call panicked.
    #[error("the database call ended without an answer")]
    NoAnswer,
    /// A task doing storage work panicked or was cancelled at shutdown.
    #[error("the database task did not complete")]
    TaskFailed(#[source] tokio::task::JoinError),
}

impl StorageError {
    /// Maps an insert's error, telling constraint hits (unique key, missing parent row) apart.
    pub(crate) fn from_insert(err: diesel::result::Error) -> Self {
        match err {
            diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _) => {
                StorageError::UniqueViolation
            }
            diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::ForeignKeyViolation, _) => {
                StorageError::ForeignKeyViolation
            }
            other => StorageError::Query(other),
        }
    }
}
