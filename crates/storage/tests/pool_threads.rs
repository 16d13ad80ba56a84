//! Database calls run on the database's own threads, at most as many as the pool has connections, whichever runtime calls.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_storage::{Database, PoolOptions};
use diesel::connection::SimpleConnection;

#[test]
fn calls_from_every_runtime_share_at_most_as_many_threads_as_connections() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let db = Database::open(&url, &PoolOptions { max_connections: 3, ..PoolOptions::default() }).unwrap();
    let threads = Arc::new(Mutex::new(HashSet::new()));
    // Two runtimes of one thread each, as the server's two HTTP workers on two cores, each with more calls at
    // once than there are connections.
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                let calls = (0..12).map(|_| {
                    let threads = Arc::clone(&threads);
                    db.run(move |conn| {
                        let thread = std::thread::current();
                        threads.lock().unwrap().insert((thread.id(), thread.name().unwrap_or("unnamed").to_owned()));
                        conn.batch_execute("SELECT 1")?;
                        std::thread::sleep(Duration::from_millis(5));
                        Ok(())
                    })
                });
                for result in runtime.block_on(futures_util::future::join_all(calls)) {
                    result.unwrap();
                }
            });
        }
    });
    let threads = threads.lock().unwrap().clone();
    assert!(threads.len() <= 3, "{threads:?}");
    assert!(threads.iter().all(|(_, name)| name.starts_with("database-")), "{threads:?}");
}
