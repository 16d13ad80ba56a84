//! SQLite's one writer: every write goes through one connection on its own thread, and the writes that
//! arrive together are committed together (group commit: one `fsync` for many acknowledged writes).
//!
//! SQLite lets one connection write at a time; writers on several pooled connections queue on its file
//! lock, whose busy handler sleeps in steps of milliseconds. One writer never waits on the lock, and a
//! batch makes the durable commit, the costly part, shared. Each write runs in its own savepoint, so one
//! that fails is rolled back alone; a caller hears of its write only once the batch's commit returned.
//! With `synchronous = NORMAL` commits skip the `fsync`, and the [`checkpointer`] makes them durable.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;

use diesel::connection::SimpleConnection;
use diesel::{Connection, RunQueryDsl};

use crate::{DbConnection, StorageError, checkpointer};

/// At most this many writes share one commit, so that a long queue still sees commits often.
const MAX_BATCH: usize = 256;

/// What a write hands back once run: told whether its batch's commit succeeded, it answers its caller.
type Settle = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&mut DbConnection) -> Settle + Send>;

/// The sending side of the writer thread; the thread ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread on `conn`; with `checkpoints`, a connection of their own, the log is
    /// checkpointed there, the writer finishing each pass (see [`checkpointer`]).
    pub(crate) fn start(mut conn: DbConnection, checkpoints: Option<DbConnection>) -> std::io::Result<Self> {
        let checkpoints = match checkpoints {
            Some(other) => {
                conn.batch_execute("PRAGMA wal_autocheckpoint = 0").map_err(std::io::Error::other)?;
                Some(checkpointer::start(other)?)
            }
            None => None,
        };
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-writer".to_owned())
            .spawn(move || serve(conn, &queue, checkpoints.as_ref()))?;
        Ok(Self { jobs })
    }

    /// Runs `work` in the next batch and returns its result once the batch is committed.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StorageError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = in_savepoint(conn, work);
            Box::new(move |committed| {
                let outcome = committed.map_err(StorageError::WriteFailed).and(result);
                let _ = answer.send(outcome);
            })
        });
        let gone = || StorageError::WriteFailed("the write could not be run (see the log)".to_owned());
        self.jobs.send(job).map_err(|_| gone())?;
        answered.await.map_err(|_| gone())?
    }
}

/// Runs `work` in a savepoint of the batch's transaction: a write that fails, or panics, is rolled back
/// alone. The savepoint's statements are prepared once and kept in the connection's statement cache
/// (diesel's own savepoints are parsed anew on every use, a cost every write would pay).
fn in_savepoint<T>(
    conn: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    let DbConnection::Sqlite(sqlite) = conn else {
        return conn.transaction(work);
    };
    statements::Savepoint.execute(sqlite)?;
    let result = catch_unwind(AssertUnwindSafe(|| work(conn)))
        .unwrap_or_else(|_| Err(StorageError::WriteFailed("the write panicked".to_owned())));
    let DbConnection::Sqlite(sqlite) = conn else { unreachable!("the connection's backend cannot change") };
    if result.is_err() {
        statements::RollbackTo.execute(sqlite)?;
    }
    statements::Release.execute(sqlite)?;
    result
}

/// The writer's savepoint statements, as diesel queries with a static id so that each is prepared once.
mod statements {
    use diesel::query_builder::{AstPass, QueryFragment, QueryId};
    use diesel::sqlite::{Sqlite, SqliteConnection};

    macro_rules! statement {
        ($name:ident, $sql:literal) => {
            #[derive(Debug, Clone, Copy, QueryId)]
            pub(super) struct $name;

            impl QueryFragment<Sqlite> for $name {
                fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> diesel::QueryResult<()> {
                    out.push_sql($sql);
                    Ok(())
                }
            }

            impl diesel::RunQueryDsl<SqliteConnection> for $name {}
        };
    }

    statement!(Savepoint, "SAVEPOINT writer_job");
    statement!(RollbackTo, "ROLLBACK TO writer_job");
    statement!(Release, "RELEASE writer_job");
}

/// The writer thread: takes whatever is queued, runs it in one transaction, commits, answers.
fn serve(mut conn: DbConnection, queue: &mpsc::Receiver<Job>, checkpoints: Option<&checkpointer::Checkpoints>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut settles = Vec::with_capacity(batch.len());
        // A transaction that cannot begin drops its jobs unrun: their callers hear so.
        let committed = conn
            .transaction(|conn| {
                settles.extend(batch.drain(..).map(|job| job(conn)));
                Ok::<_, diesel::result::Error>(())
            })
            .map_err(|err| {
                tracing::error!(error = %err, writes = settles.len(), "committing a batch of writes failed");
                format!("committing the write failed: {err}")
            });
        if let (Ok(()), Some(checkpoints)) = (&committed, checkpoints) {
            checkpoints.committed();
        }
        for settle in settles {
            settle(committed.clone());
        }
        // Once the batch's callers have their answers.
        if let Some(checkpoints) = checkpoints {
            checkpoints.finish_pass(&mut conn);
        }
    }
}
