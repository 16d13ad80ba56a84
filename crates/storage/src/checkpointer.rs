//! SQLite's checkpoints with `synchronous = NORMAL`, mostly on a thread and connection of their own, so that the
//! writer seldom stops to make the write-ahead log durable and copy it into the database file.
//!
//! With `NORMAL`, commits write the log without `fsync`; the checkpoint is where it is made durable: it
//! `fsync`s the log, copies its pages into the database file and `fsync`s that. Left to SQLite, the
//! connection whose commit takes the log past 1,000 pages runs it at the end of that commit: on the one
//! writer, a stall of 5-8 ms every hundred milliseconds or so at 1,000 replies a second, with every write
//! queued behind it. Here the writer turns automatic checkpoints off and this thread runs a passive one
//! (it blocks neither the writer nor readers) [`CHECKPOINT_EVERY`] after a commit, while commits come.
//! The log starts again from its beginning only at a write that finds it wholly copied, and the writer
//! appends while this thread copies; so after each pass the writer copies the little it appended meanwhile,
//! between its transactions ([`Checkpoints::finish_pass`]). Without that, the log grew by every write (a
//! test shows it). What a power loss may take with `NORMAL` is bounded the same way: the commits of about
//! the last interval.
//!
//! With `FULL`, every commit already `fsync`s the log, and SQLite's own checkpoints are kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use diesel::connection::SimpleConnection;

use crate::DbConnection;

/// How long commits gather in the log before it is checkpointed: at 1,000 replies a second, about the pace
/// of SQLite's own 1,000-page threshold.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// The writer's side of the checkpointer: it tells it of commits and finishes its passes; dropped, the
/// checkpointer ends.
#[derive(Debug)]
pub(crate) struct Checkpoints {
    due: mpsc::SyncSender<()>,
    /// The checkpointer has done a pass since the writer last finished one.
    passed: Arc<AtomicBool>,
}

impl Checkpoints {
    /// A commit added to the log: a checkpoint is due.
    pub(crate) fn committed(&self) {
        // Full means a checkpoint is already due: this commit is covered by it.
        let _ = self.due.try_send(());
    }

    /// After a pass of the checkpointer, copies what the writer appended meanwhile (little: a pass takes
    /// milliseconds), on the writer's connection, between its transactions. The log starts again from its
    /// beginning only at a write that finds it wholly copied, which nothing appended during the copy can
    /// break when the writer copies: without this the log would grow without end under steady writes.
    pub(crate) fn finish_pass(&self, conn: &mut DbConnection) {
        if self.passed.swap(false, Ordering::AcqRel)
            && let Err(err) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)")
        {
            tracing::warn!(error = %err, "checkpointing SQLite's write-ahead log failed");
        }
    }
}

/// Starts the checkpointer on `conn`; it runs until the returned handle is dropped.
pub(crate) fn start(conn: DbConnection) -> std::io::Result<Checkpoints> {
    let (due, marks) = mpsc::sync_channel(1);
    let passed = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&passed);
    std::thread::Builder::new().name("sqlite-checkpoint".to_owned()).spawn(move || serve(conn, &marks, &flag))?;
    Ok(Checkpoints { due, passed })
}

/// Waits for a commit (idle, the thread sleeps), lets more gather, checkpoints; again.
fn serve(mut conn: DbConnection, marks: &mpsc::Receiver<()>, passed: &AtomicBool) {
    while marks.recv().is_ok() {
        std::thread::sleep(CHECKPOINT_EVERY);
        // A failed checkpoint leaves the log longer, nothing lost: the next one covers it.
        match conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
            Ok(()) => passed.store(true, Ordering::Release),
            Err(err) => tracing::warn!(error = %err, "checkpointing SQLite's write-ahead log failed"),
        }
    }
}
