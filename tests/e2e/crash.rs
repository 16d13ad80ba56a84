//! A crash under write load: the server is killed with SIGKILL while many requests write, then started again on
//! the same database, which must pass its integrity check and hold every write that was acknowledged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mock_llm::MockLlm;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::llm::GROQ_KEY;
use crate::support::{TestServer, TestUser, on_postgres};

/// Requests writing at once.
const WRITERS: usize = 16;
/// Acknowledged writes before the kill.
const BEFORE_KILL: usize = 150;

/// A write the server answered with a 2xx.
#[derive(Debug, Clone)]
enum Acked {
    Chat { id: String, title: String },
    Exchange { chat: String, question: (i64, String), reply: (i64, String) },
}

/// Writes until the server stops answering: chats, and messages in the writer's own chat.
async fn writer(server: Arc<(String, reqwest::Client)>, user: TestUser, n: usize, acked: Arc<Mutex<Vec<Acked>>>) {
    let (base, client) = &*server;
    let send = |method: Method, path: String, body: Value| {
        client.request(method, format!("{base}{path}")).bearer_auth(&user.token).json(&body).send()
    };
    let mut chat = None;
    for round in 0.. {
        let outcome = if round % 4 == 0 || chat.is_none() {
            let title = format!("writer {n} chat {round}");
            match send(Method::POST, "/chats".into(), json!({"title": title})).await {
                Ok(response) if response.status() == StatusCode::CREATED => {
                    let Ok(body) = response.json::<Value>().await else { return };
                    let id = body["id"].as_str().unwrap().to_owned();
                    chat = Some(id.clone());
                    Some(Acked::Chat { id, title })
                }
                _ => None,
            }
        } else {
            let chat = chat.clone().unwrap();
            let text = format!("writer {n} message {round}");
            match send(Method::POST, "/chat".into(), json!({"chat_id": chat, "message": text})).await {
                Ok(response) if response.status() == StatusCode::OK => {
                    let Ok(body) = response.json::<Value>().await else { return };
                    let question = (body["user_message_id"].as_i64().unwrap(), text);
                    let reply = (body["message_id"].as_i64().unwrap(), body["reply"].as_str().unwrap().to_owned());
                    Some(Acked::Exchange { chat, question, reply })
                }
                _ => None,
            }
        };
        match outcome {
            Some(write) => acked.lock().unwrap().push(write),
            // The server is gone (or refused): this writer is done.
            None => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_acknowledged_before_a_sigkill_under_load_is_there_after_the_restart() {
    let mock = MockLlm::start().await.unwrap();
    let groq = format!("{}/v1", mock.base_url());
    // One user's 16 writers at once: over the default limit on a user's running replies.
    let env = [("GROQ_API_KEY", GROQ_KEY), ("GROQ_BASE_URL", groq.as_str()), ("MAX_REPLIES_PER_USER", "0")];
    let mut server = TestServer::start_in(crate::support::TestDir::new(), &env, &[]).await;
    let user = server.signup().await;

    let acked = Arc::new(Mutex::new(Vec::new()));
    let shared = Arc::new((server.base.clone(), reqwest::Client::new()));
    let running = Arc::new(AtomicUsize::new(WRITERS));
    let writers: Vec<_> = (0..WRITERS)
        .map(|n| {
            let (shared, user, acked, running) =
                (Arc::clone(&shared), user.clone(), Arc::clone(&acked), Arc::clone(&running));
            tokio::spawn(async move {
                writer(shared, user, n, acked).await;
                running.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < BEFORE_KILL {
        assert!(Instant::now() < deadline, "only {} writes acknowledged in 30 s", acked.lock().unwrap().len());
        assert_eq!(running.load(Ordering::SeqCst), WRITERS, "a writer stopped before the crash");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Mid-load: every writer has a request in flight.
    server.kill();
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let server = TestServer::start_in(Arc::clone(&server.dir), &env, &[]).await;
    if !on_postgres() {
        assert_eq!(integrity_check(&server), "ok");
    }
    let (mut chats, mut exchanges) = (0, 0);
    for write in &acked {
        match write {
            Acked::Chat { id, title } => {
                let (status, chat) = server.get(&format!("/chats/{id}"), Some(&user.token)).await;
                assert_eq!((status, &chat["title"]), (StatusCode::OK, &json!(title)), "acknowledged chat {id} lost");
                chats += 1;
            }
            Acked::Exchange { chat, question, reply } => {
                let (status, messages) = server.get(&format!("/chats/{chat}/messages"), Some(&user.token)).await;
                assert_eq!(status, StatusCode::OK);
                let find = |id: i64| messages.as_array().unwrap().iter().find(|m| m["id"] == json!(id)).cloned();
                let stored = find(question.0).unwrap_or_else(|| panic!("acknowledged message {question:?} lost"));
                assert_eq!((&stored["role"], &stored["content"]), (&json!("user"), &json!(question.1)));
                let stored = find(reply.0).unwrap_or_else(|| panic!("acknowledged reply {reply:?} lost"));
                assert_eq!(
                    (&stored["role"], &stored["content"], &stored["status"]),
                    (&json!("assistant"), &json!(reply.1), &json!("complete"))
                );
                exchanges += 1;
            }
        }
    }
    assert!(chats > 0 && exchanges > 0, "{chats} chats and {exchanges} exchanges checked");
    // Still writable after the crash.
    let (status, _) = server.post("/chats", Some(&user.token), json!({"title": "after the crash"})).await;
    assert_eq!(status, StatusCode::CREATED);
}

/// SQLite's own check of the database file, read directly.
fn integrity_check(server: &TestServer) -> String {
    use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};
    #[derive(QueryableByName)]
    struct Check {
        #[diesel(sql_type = diesel::sql_types::Text)]
        integrity_check: String,
    }
    let mut conn = SqliteConnection::establish(&server.db_path().display().to_string()).unwrap();
    let rows: Vec<Check> = diesel::sql_query("PRAGMA integrity_check").load(&mut conn).unwrap();
    rows.into_iter().map(|row| row.integrity_check).collect::<Vec<_>>().join("; ")
}
