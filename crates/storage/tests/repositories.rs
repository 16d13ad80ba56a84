//! The repositories against a real SQLite file: ownership, ordering, counts, cascades and constraints.
#![expect(clippy::unwrap_used, reason = "test helpers, like tests, fail loudly on anything unexpected")]

use std::time::{Duration, Instant};

use chat_domain::time::now_utc;
use chat_domain::{ChatId, Role, UserId};
use chat_storage::chats::{self, NewChat};
use chat_storage::messages::{self, NewMessage};
use chat_storage::users::{self, NewUser};
use chat_storage::{Database, PoolOptions, SqliteSynchronous, StorageError};
use diesel::connection::SimpleConnection;
use diesel::{Connection, RunQueryDsl, SqliteConnection};

fn open() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let db = Database::open(&url, &PoolOptions::default()).unwrap();
    (dir, db)
}

fn new_user(db: &Database, email: &str) -> UserId {
    let now = now_utc();
    let user = NewUser {
        id: UserId::new_random(),
        email: email.to_owned(),
        password_hash: "$2b$04$hash".to_owned(),
        created_at: now,
        updated_at: now,
    };
    db.with_connection(|c| users::insert_user(c, user)).unwrap().id
}

fn new_chat(db: &Database, user: UserId, title: &str) -> ChatId {
    let now = now_utc();
    let chat = NewChat {
        id: ChatId::new_random(),
        user_id: user,
        title: Some(title.to_owned()),
        system_prompt: None,
        created_at: now,
        updated_at: now,
    };
    db.with_connection(|c| chats::insert_chat(c, chat)).unwrap().id
}

fn add_message(db: &Database, chat: ChatId, text: &str) -> i64 {
    let message = NewMessage::plain(chat, Role::User, text.to_owned(), now_utc());
    db.with_connection(|c| messages::insert_message(c, message)).unwrap().id
}

#[test]
fn duplicate_email_is_a_unique_violation() {
    let (_dir, db) = open();
    new_user(&db, "a@example.com");
    let now = now_utc();
    let again = NewUser {
        id: UserId::new_random(),
        email: "a@example.com".to_owned(),
        password_hash: "x".to_owned(),
        created_at: now,
        updated_at: now,
    };
    let err = db.with_connection(|c| users::insert_user(c, again)).unwrap_err();
    assert!(matches!(err, StorageError::UniqueViolation), "{err:?}");
}

#[test]
fn users_are_found_by_id_and_email() {
    let (_dir, db) = open();
    let id = new_user(&db, "b@example.com");
    let by_email = db.with_connection(|c| users::find_user_by_email(c, "b@example.com")).unwrap().unwrap();
    assert_eq!(by_email.id, id);
    let by_id = db.with_connection(|c| users::find_user_by_id(c, id)).unwrap().unwrap();
    assert_eq!(by_id.email, "b@example.com");
    assert!(db.with_connection(|c| users::find_user_by_email(c, "nobody@example.com")).unwrap().is_none());
}

#[test]
fn chats_are_only_found_by_their_owner() {
    let (_dir, db) = open();
    let alice = new_user(&db, "alice@example.com");
    let bob = new_user(&db, "bob@example.com");
    let chat = new_chat(&db, alice, "Alice's");
    assert!(db.with_connection(|c| chats::find_chat_for_user(c, chat, alice)).unwrap().is_some());
    assert!(db.with_connection(|c| chats::find_chat_for_user(c, chat, bob)).unwrap().is_none());
    assert!(
        db.with_connection(|c| chats::rename_chat_for_user(
            c,
            chat,
            bob,
            "x",
            chat_storage::PromptChange::Keep,
            now_utc()
        ))
        .unwrap()
        .is_none()
    );
    assert!(!db.with_connection(|c| chats::delete_chat_for_user(c, chat, bob)).unwrap());
    assert!(db.with_connection(|c| chats::delete_chat_for_user(c, chat, alice)).unwrap());
}

#[test]
fn list_is_newest_first_with_exact_total_and_counts() {
    let (_dir, db) = open();
    let user = new_user(&db, "c@example.com");
    let other = new_user(&db, "d@example.com");
    new_chat(&db, other, "not mine");
    let ids: Vec<ChatId> = (0..5).map(|i| new_chat(&db, user, &format!("chat {i}"))).collect();
    // A message moves its chat to the top.
    add_message(&db, ids[1], "hello");
    add_message(&db, ids[1], "again");
    let page = db.with_connection(|c| chats::list_chats_for_user(c, user, 3, 0)).unwrap().unwrap();
    assert_eq!(page.total, 5);
    assert_eq!(page.chats.len(), 3);
    assert_eq!(page.chats[0].chat.id, ids[1]);
    assert_eq!(page.chats[0].message_count, 2);
    assert_eq!(page.chats[1].chat.id, ids[4]);
    assert_eq!(page.chats[1].message_count, 0);
    let rest = db.with_connection(|c| chats::list_chats_for_user(c, user, 3, 3)).unwrap().unwrap();
    assert_eq!(rest.total, 5);
    assert_eq!(rest.chats.len(), 2);
    assert_eq!(rest.chats[1].chat.id, ids[0]);
}

/// The total is kept by the statements that add and delete chats: deleting another user's chat changes
/// nothing, and each owner's total stays exact.
#[test]
fn the_total_follows_creations_and_deletions() {
    let (_dir, db) = open();
    let user = new_user(&db, "g@example.com");
    let other = new_user(&db, "h@example.com");
    let ids: Vec<ChatId> = (0..3).map(|i| new_chat(&db, user, &format!("chat {i}"))).collect();
    let theirs = new_chat(&db, other, "theirs");
    let total = |owner| db.with_connection(|c| chats::list_chats_for_user(c, owner, 50, 0)).unwrap().unwrap().total;
    assert_eq!((total(user), total(other)), (3, 1));
    assert!(!db.with_connection(|c| chats::delete_chat_for_user(c, theirs, user)).unwrap());
    assert!(db.with_connection(|c| chats::delete_chat_for_user(c, ids[1], user)).unwrap());
    assert!(!db.with_connection(|c| chats::delete_chat_for_user(c, ids[1], user)).unwrap());
    assert_eq!((total(user), total(other)), (2, 1));
    assert!(db.with_connection(|c| chats::delete_chat_for_user(c, theirs, other)).unwrap());
    assert_eq!((total(user), total(other)), (2, 0));
    let nobody = UserId::new_random();
    assert!(db.with_connection(|c| chats::list_chats_for_user(c, nobody, 50, 0)).unwrap().is_none());
    assert_eq!(db.with_connection(|c| users::token_version(c, nobody)).unwrap(), None);
    assert_eq!(db.with_connection(|c| users::token_version(c, user)).unwrap(), Some(0));
    // A logout moves the version on; there is nothing to move for nobody.
    assert!(db.with_connection(|c| users::revoke_tokens(c, user)).unwrap());
    assert_eq!(db.with_connection(|c| users::token_version(c, user)).unwrap(), Some(1));
    assert!(!db.with_connection(|c| users::revoke_tokens(c, nobody)).unwrap());
}

#[test]
fn messages_are_oldest_first_and_limit_takes_the_oldest() {
    let (_dir, db) = open();
    let user = new_user(&db, "e@example.com");
    let chat = new_chat(&db, user, "t");
    let ids: Vec<i64> = (0..4).map(|i| add_message(&db, chat, &format!("m{i}"))).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let all = db.with_connection(|c| messages::list_messages(c, chat, None)).unwrap();
    assert_eq!(all.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["m0", "m1", "m2", "m3"]);
    let two = db.with_connection(|c| messages::list_messages(c, chat, Some(2))).unwrap();
    assert_eq!(two.iter().map(|m| m.id).collect::<Vec<_>>(), ids[..2]);
}

#[test]
fn deleting_a_chat_deletes_its_messages() {
    let (_dir, db) = open();
    let user = new_user(&db, "f@example.com");
    let chat = new_chat(&db, user, "t");
    add_message(&db, chat, "bye");
    assert!(db.with_connection(|c| chats::delete_chat_for_user(c, chat, user)).unwrap());
    let left: i64 = db
        .with_connection(|c| Ok(diesel::sql_query("SELECT COUNT(*) AS n FROM messages").get_result::<Count>(c)?.n))
        .unwrap();
    assert_eq!(left, 0);
}

#[test]
fn foreign_keys_and_wal_are_on() {
    let (_dir, db) = open();
    let mode: String = db
        .with_connection(|c| Ok(diesel::sql_query("PRAGMA journal_mode").get_result::<Mode>(c)?.journal_mode))
        .unwrap();
    assert_eq!(mode, "wal");
    let orphan = NewMessage::plain(ChatId::new_random(), Role::User, "x".into(), now_utc());
    let err = db.with_connection(|c| messages::insert_message(c, orphan)).unwrap_err();
    assert!(matches!(err, StorageError::ForeignKeyViolation), "{err:?}");
    // The check constraint refuses a role the domain does not know.
    let bad = db.with_connection(|c| {
        c.batch_execute("INSERT INTO messages (chat_id, role, content, status, created_at, updated_at) VALUES ('x', 'system', '', 'complete', '2026-01-01', '2026-01-01')")?;
        Ok(())
    });
    assert!(bad.is_err());
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct Mode {
    #[diesel(sql_type = diesel::sql_types::Text)]
    journal_mode: String,
}

/// A database with `synchronous = NORMAL` (at `test.db` in the directory) and a chat to write messages to.
fn open_normal_with_a_chat() -> (tempfile::TempDir, Database, ChatId) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let options = PoolOptions { synchronous: SqliteSynchronous::Normal, ..PoolOptions::default() };
    let db = Database::open(&url, &options).unwrap();
    let user = new_user(&db, "normal@example.com");
    let chat = new_chat(&db, user, "t");
    (dir, db, chat)
}

/// With `synchronous = NORMAL` a commit is not made durable on its own: the checkpointer copies the log into the
/// database file soon after, instead of SQLite once the log passes 1,000 pages. One small write is in the database
/// file itself, as a power loss would leave it without the log, within moments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_synchronous_normal_a_write_reaches_the_database_file_soon() {
    let (dir, db, chat) = open_normal_with_a_chat();
    let path = dir.path().join("test.db");
    let message = NewMessage::plain(chat, Role::User, "in the file".to_owned(), now_utc());
    db.write(move |c| messages::insert_message(c, message)).await.unwrap();
    let copy = dir.path().join("copy.db");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        std::fs::copy(&path, &copy).unwrap();
        let stored = SqliteConnection::establish(&copy.display().to_string()).ok().and_then(|mut c| {
            diesel::sql_query("SELECT count(*) AS n FROM messages WHERE content = 'in the file'")
                .get_result::<Count>(&mut c)
                .ok()
        });
        if stored.is_some_and(|count| count.n == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "after 10 s the write is still only in the log");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Under steady writes, with `synchronous = NORMAL`, the log starts again from its beginning after checkpoints
/// instead of growing with every write (it does only when a checkpoint found nothing appended meanwhile, which the
/// writer arranges after each pass of the checkpointer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_synchronous_normal_the_log_stays_short_under_steady_writes() {
    let (dir, db, chat) = open_normal_with_a_chat();
    let text = "x".repeat(4096);
    let (mut writes, started) = (0_u64, Instant::now());
    while started.elapsed() < Duration::from_secs(3) {
        let message = NewMessage::plain(chat, Role::User, text.clone(), now_utc());
        db.write(move |c| messages::insert_message(c, message)).await.unwrap();
        writes += 1;
    }
    let log = std::fs::metadata(dir.path().join("test.db-wal")).unwrap().len();
    // Without restarts the log holds every write's text and more (its index pages): it can only be longer.
    let content = writes * 4096;
    assert!(log < content, "the log is {log} bytes after {writes} writes of 4 KiB each");
}

/// Writes sent together share the writer's transaction, each in its own savepoint: one that fails (a message for
/// a chat that does not exist) is rolled back alone and told so, and every other one is committed and answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_in_a_batch_leaves_the_others_committed() {
    let (_dir, db) = open();
    let user = new_user(&db, "w@example.com");
    let chat = new_chat(&db, user, "t");
    let writes: Vec<_> = (0..50)
        .map(|i| {
            let db = db.clone();
            let target = if i == 25 { ChatId::new_random() } else { chat };
            tokio::spawn(async move {
                let message = NewMessage::plain(target, Role::User, format!("m{i}"), now_utc());
                db.write(move |c| messages::insert_message(c, message)).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for write in writes {
        results.push(write.await.unwrap());
    }
    assert!(matches!(results[25], Err(StorageError::ForeignKeyViolation)), "{:?}", results[25]);
    assert!(results.iter().enumerate().all(|(i, r)| i == 25 || r.is_ok()));
    let stored = db.with_connection(|c| messages::list_messages(c, chat, None)).unwrap();
    assert_eq!(stored.len(), 49);
}

/// A write that fails or panics after it has written is rolled back alone, the writes batched with it are
/// committed, and the writer goes on taking writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_fails_or_panics_after_writing_is_rolled_back_alone() {
    let (_dir, db) = open();
    let user = new_user(&db, "half@example.com");
    let chat = new_chat(&db, user, "t");
    let writes: Vec<_> = (0..30)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                let message = NewMessage::plain(chat, Role::User, format!("m{i}"), now_utc());
                db.write(move |c| {
                    messages::insert_message(c, message)?;
                    match i {
                        10 => Err(StorageError::WriteFailed("refused after writing".to_owned())),
                        20 => panic!("a write that panics after writing"),
                        _ => Ok(()),
                    }
                })
                .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for write in writes {
        results.push(write.await.unwrap());
    }
    assert!(matches!(&results[10], Err(StorageError::WriteFailed(why)) if why == "refused after writing"));
    assert!(matches!(&results[20], Err(StorageError::WriteFailed(why)) if why.contains("panicked")));
    assert!(results.iter().enumerate().all(|(i, r)| i == 10 || i == 20 || r.is_ok()));
    let later = NewMessage::plain(chat, Role::User, "later".to_owned(), now_utc());
    db.write(move |c| messages::insert_message(c, later)).await.unwrap();
    let stored: Vec<String> = db
        .with_connection(|c| messages::list_messages(c, chat, None))
        .unwrap()
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(stored.len(), 29, "{stored:?}");
    assert!(!stored.iter().any(|content| content == "m10" || content == "m20"), "{stored:?}");
    assert_eq!(stored.last().map(String::as_str), Some("later"));
}
