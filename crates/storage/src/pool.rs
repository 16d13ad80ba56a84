//! The connection pool over SQLite or PostgreSQL (chosen by the URL) and the ways to use it:
//! [`Database::run`] on the database's own threads, and [`Database::write`] through SQLite's one writer.

use std::fmt;
use std::fs::{File, TryLockError};
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ManageConnection, Pool};
use diesel::{Connection, PgConnection, SqliteConnection};

use crate::threads::Threads;
use crate::writer::Writer;
use crate::{DatabaseLocation, StorageError, migrations};

/// The connection every repository function takes: one set of queries for both backends.
#[derive(diesel::MultiConnection)]
#[expect(missing_debug_implementations, reason = "diesel's connections implement no Debug")]
pub enum DbConnection {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// SQLite's `synchronous` setting: how hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteSynchronous {
    /// Every commit reaches the disk before it is acknowledged: survives power loss.
    Full,
    /// In WAL mode, commits survive a crash of the process; a power loss may take those of the last moments:
    /// the checkpointer makes them durable within about a tenth of a second (see `checkpointer`).
    Normal,
}

/// How the pool is sized and how long a caller may wait.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: u32,
    /// How long a call waits for a database thread and a free connection, together, before the database
    /// counts as unavailable.
    pub acquire_timeout: Duration,
    /// How long SQLite waits on a lock held by another connection before giving up.
    pub busy_timeout: Duration,
    pub synchronous: SqliteSynchronous,
    /// Hold a lock beside an SQLite file so that no second server opens it: replies being generated
    /// belong to the one process that runs them (tools that only read need no lock).
    pub exclusive: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            synchronous: SqliteSynchronous::Full,
            exclusive: false,
        }
    }
}

/// A pool of database connections; cheap to clone.
#[derive(Clone)]
pub struct Database {
    pool: Pool<Manager>,
    location: DatabaseLocation,
    /// The lock file held while the pool lives, with `PoolOptions::exclusive`.
    lock: Option<Arc<File>>,
    /// SQLite's one writer connection (PostgreSQL writes through the pool).
    writer: Option<Writer>,
    /// The threads that run [`Database::run`]'s calls, at most one per pooled connection.
    threads: Threads,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database").field("location", &self.location).finish_non_exhaustive()
    }
}

/// Makes the pool's connections, of the backend the URL named (diesel's own multi-connection
/// `establish` tries each backend and hides the real error).
enum Manager {
    Sqlite { path: String, pragmas: String },
    Postgres { url: String },
}

impl Manager {
    fn new(location: &DatabaseLocation, options: &PoolOptions) -> Self {
        match location {
            DatabaseLocation::SqliteFile(path) => {
                let synchronous = match options.synchronous {
                    SqliteSynchronous::Full => "FULL",
                    SqliteSynchronous::Normal => "NORMAL",
                };
                let pragmas = format!(
                    "PRAGMA busy_timeout = {};
                     PRAGMA journal_mode = WAL;
                     PRAGMA synchronous = {synchronous};
                     PRAGMA foreign_keys = ON;",
                    options.busy_timeout.as_millis()
                );
                Manager::Sqlite { path: path.to_string_lossy().into_owned(), pragmas }
            }
            DatabaseLocation::Postgres(url) => Manager::Postgres { url: url.clone() },
        }
    }
}

/// The URL may carry a password: never shown.
impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Manager::Sqlite { path, .. } => f.debug_struct("Sqlite").field("path", path).finish_non_exhaustive(),
            Manager::Postgres { .. } => f.debug_struct("Postgres").finish_non_exhaustive(),
        }
    }
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConnection, Self::Error> {
        match self {
            Manager::Sqlite { path, pragmas } => {
                let mut conn = SqliteConnection::establish(path).map_err(diesel::r2d2::Error::ConnectionError)?;
                conn.batch_execute(pragmas).map_err(diesel::r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
            Manager::Postgres { url } => {
                PgConnection::establish(url).map(DbConnection::Postgres).map_err(diesel::r2d2::Error::ConnectionError)
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Self::Error> {
        conn.batch_execute("SELECT 1").map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, _conn: &mut DbConnection) -> bool {
        false
    }
}

/// Why a first connection failed, as libpq or SQLite said it (a URL's password is never in it).
fn connect_reason(err: &diesel::r2d2::Error) -> String {
    match err {
        diesel::r2d2::Error::ConnectionError(err) => err.to_string().trim().to_owned(),
        other => other.to_string(),
    }
}

/// Takes the lock file beside an SQLite database, or names the process that holds it.
fn lock_beside(location: &DatabaseLocation) -> Result<File, StorageError> {
    let path = location.directory().join(format!("{}.lock", location.file_name()));
    let open_error = |reason: String| StorageError::Open { location: location.to_string(), reason };
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|err| open_error(format!("cannot open the lock file {}: {err}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(open_error(format!(
            "another chat-server is using this database (it holds {}); an SQLite database serves one \
             server process: stop the other one, or use PostgreSQL to run several",
            path.display()
        ))),
        Err(TryLockError::Error(err)) => Err(open_error(format!("cannot lock {}: {err}", path.display()))),
    }
}

/// A database being opened: where it is, its lock file when this process must be its only server, and how to
/// connect to it.
struct Opening {
    location: DatabaseLocation,
    lock: Option<File>,
    manager: Manager,
}

impl Opening {
    /// Parses `url` and, for an SQLite file this process must serve alone, takes the lock beside it.
    fn begin(url: &str, options: &PoolOptions) -> Result<Self, StorageError> {
        let location = DatabaseLocation::parse(url)?;
        let sqlite = matches!(location, DatabaseLocation::SqliteFile(_));
        let lock = (options.exclusive && sqlite).then(|| lock_beside(&location)).transpose()?;
        let manager = Manager::new(&location, options);
        Ok(Self { location, lock, manager })
    }

    /// A connection of its own, outside any pool, or the real reason there is none.
    fn connect(&self) -> Result<DbConnection, StorageError> {
        self.manager.connect().map_err(|err| self.error(connect_reason(&err)))
    }

    /// Opening failed for `reason`.
    fn error(&self, reason: String) -> StorageError {
        StorageError::Open { location: self.location.to_string(), reason }
    }
}

impl Database {
    /// Opens the database named by `url`, builds the pool and applies pending migrations.
    ///
    /// Blocking: call it at start-up, before serving.
    pub fn open(url: &str, options: &PoolOptions) -> Result<Self, StorageError> {
        let database = Self::connect(url, options)?;
        let applied = database.migrate()?;
        if applied > 0 {
            tracing::info!(applied, "database migrations applied");
        }
        Ok(database)
    }

    /// Applies pending migrations; returns how many ran. Blocking.
    pub fn migrate(&self) -> Result<usize, StorageError> {
        self.with_connection(migrations::run_pending)
    }

    /// Applies pending migrations to the database named by `url` over one connection of its own, and no pool;
    /// returns how many ran. Blocking. For a process that exits next (`chat-server migrate`): a pool opens its
    /// idle connections on threads of its own, and exiting while one of them was still connecting to PostgreSQL
    /// had OpenSSL's exit handler free what that thread was using, a crash at exit in about one run in ten.
    pub fn migrate_alone(url: &str, options: &PoolOptions) -> Result<usize, StorageError> {
        let opening = Opening::begin(url, options)?;
        let mut conn = opening.connect()?;
        tracing::info!(database = %opening.location, "applying pending migrations");
        migrations::run_pending(&mut conn)
    }

    /// Opens the database named by `url` and builds the pool, without touching its schema. Blocking.
    pub fn connect(url: &str, options: &PoolOptions) -> Result<Self, StorageError> {
        let opening = Opening::begin(url, options)?;
        // One direct connection first: r2d2 would hide the real reason behind a timeout. On SQLite it
        // becomes the writer's, outside the pool: readers never wait for it. With `synchronous = NORMAL`,
        // a second one is the checkpointer's (see `checkpointer`).
        let first = opening.connect()?;
        let writer = match first {
            DbConnection::Sqlite(_) => {
                let checkpoints =
                    (options.synchronous == SqliteSynchronous::Normal).then(|| opening.connect()).transpose()?;
                Some(
                    Writer::start(first, checkpoints)
                        .map_err(|err| opening.error(format!("cannot start the writer thread: {err}")))?,
                )
            }
            DbConnection::Postgres(_) => None,
        };
        let sqlite = matches!(opening.location, DatabaseLocation::SqliteFile(_));
        let Opening { location, lock, manager } = opening;
        let pool = Pool::builder()
            .max_size(options.max_connections)
            // Connections open as load needs them: a server at rest holds two, not the whole pool.
            .min_idle(Some(options.max_connections.min(2)))
            // A connection to an SQLite file cannot go stale: no `SELECT 1` is parsed and run before each use.
            .test_on_check_out(!sqlite)
            .connection_timeout(options.acquire_timeout)
            .build(manager)
            .map_err(|err| StorageError::Open { location: location.to_string(), reason: err.to_string() })?;
        let threads =
            Threads::start(options.max_connections as usize, "database", options.acquire_timeout).map_err(|err| {
                StorageError::Open {
                    location: location.to_string(),
                    reason: format!("cannot start its threads: {err}"),
                }
            })?;
        Ok(Self { pool, location, lock: lock.map(Arc::new), writer, threads })
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.location {
            DatabaseLocation::SqliteFile(_) => "sqlite",
            DatabaseLocation::Postgres(_) => "postgres",
        }
    }

    /// The pool's connections: open, and idle among them.
    pub fn pool_state(&self) -> (u32, u32) {
        let state = self.pool.state();
        (state.connections, state.idle_connections)
    }

    /// Whether this process is the database's only server (an SQLite file it holds the lock of).
    pub fn is_exclusive(&self) -> bool {
        self.lock.is_some()
    }

    pub fn location(&self) -> &DatabaseLocation {
        &self.location
    }

    /// Runs `work` with a pooled connection on one of the database's threads. The wait for a thread and then a
    /// connection is bounded by the pool's acquire timeout: past it the call fails with [`StorageError::Busy`] or
    /// [`StorageError::Unavailable`] and `work` never runs. Once started, `work` runs to the end even if the
    /// caller has gone away.
    pub async fn run<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        self.threads
            .run(move |left| {
                let mut conn = pool.get_timeout(left).map_err(StorageError::Unavailable)?;
                work(&mut conn)
            })
            .await
    }

    /// Runs `work`, which writes, in a transaction of its own and returns once it is committed. On
    /// SQLite it goes to the one writer thread and shares the commit of the writes queued with it; on
    /// PostgreSQL it runs on a pooled connection.
    pub async fn write<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        match &self.writer {
            Some(writer) => writer.write(work).await,
            None => self.run(move |conn| conn.transaction(work)).await,
        }
    }

    /// Runs `work` with a pooled connection on the calling thread. For start-up code and tests only.
    pub fn with_connection<T>(
        &self,
        work: impl FnOnce(&mut DbConnection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let mut conn = self.pool.get().map_err(StorageError::Unavailable)?;
        work(&mut conn)
    }

    /// Asks the database a cheap question that needs the schema: is it there, migrated and answering?
    pub async fn ping(&self) -> Result<(), StorageError> {
        self.run(|conn| {
            use diesel::{QueryDsl, RunQueryDsl as _};
            crate::schema::users::table.select(crate::schema::users::id).limit(1).load::<String>(conn)?;
            Ok(())
        })
        .await
    }
}
