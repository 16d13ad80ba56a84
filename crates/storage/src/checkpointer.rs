//! SQLite's checkpoints with `synchronous = NORMAL`, on a thread and connection of their own, so that the
//! writer never stops to make the write-ahead log durable and copy it into the database file.
//!
//! With `NORMAL`, commits write the log without `fsync`; the checkpoint is where it is made durable: it
//! `fsync`s the log, copies its pages into the database file and `fsync`s that. Left to SQLite, the
//! connection whose commit takes the log past 1,000 pages runs it at the end of that commit: on the one
//! writer, a stall of 5-8 ms every hundred milliseconds or so at 1,000 replies a second, with every write
//! queued behind it. Here the writer turns automatic checkpoints off and this thread runs a passive one
//! (it never blocks the writer nor readers) [`CHECKPOINT_EVERY`] after a commit, while commits come; the
//! writer's next transaction after a complete one starts the log from its beginning again, so the log
//! stays as small as it was. It also bounds what a power loss may take with `NORMAL`: the commits of the
//! last interval and of the checkpoint under way.
//!
//! With `FULL`, every commit already `fsync`s the log, and a checkpoint on another thread made the
//! writer's tail longer (its `fsync`s then wait on the checkpoint's), so SQLite's own is kept there.

use std::sync::mpsc;
use std::time::Duration;

use diesel::connection::SimpleConnection;

use crate::DbConnection;

/// How long commits gather in the log before it is checkpointed: at 1,000 replies a second, about the pace
/// of SQLite's own 1,000-page threshold.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// What the writer tells the checkpointer: that it committed, and, by being dropped, that it is done.
#[derive(Debug)]
pub(crate) struct Committed(mpsc::SyncSender<()>);

impl Committed {
    /// A commit added to the log: a checkpoint is due.
    pub(crate) fn mark(&self) {
        // Full means a checkpoint is already due: this commit is covered by it.
        let _ = self.0.try_send(());
    }
}

/// Starts the checkpointer on `conn`; it runs until the returned handle is dropped.
pub(crate) fn start(conn: DbConnection) -> std::io::Result<Committed> {
    let (due, marks) = mpsc::sync_channel(1);
    std::thread::Builder::new().name("sqlite-checkpoint".to_owned()).spawn(move || serve(conn, &marks))?;
    Ok(Committed(due))
}

/// Waits for a commit (idle, the thread sleeps), lets more gather, checkpoints; again.
fn serve(mut conn: DbConnection, marks: &mpsc::Receiver<()>) {
    while marks.recv().is_ok() {
        std::thread::sleep(CHECKPOINT_EVERY);
        // A failed checkpoint leaves the log longer, nothing lost: the next one covers it.
        if let Err(err) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
            tracing::warn!(error = %err, "checkpointing SQLite's write-ahead log failed");
        }
    }
}
