//! The optional daily token budget: a reply reserves its prompt and longest answer before the provider is asked,
//! settles what the provider counted after, and one the budget cannot cover is a 429 that stores nothing, even
//! when many arrive at once.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::conversation::{say, settled, slow_reply};
use crate::support::{TestServer, llm, on_postgres};

/// The built-in `fast` alias may answer with up to 2,048 tokens: every reply reserves that and its prompt.
const FAST_MAX_OUTPUT: u64 = 2048;

fn spent(prompt: u64, completion: u64) -> serde_json::Value {
    json!({"kind": "reply", "text": "Counted.", "usage": {"prompt_tokens": prompt, "completion_tokens": completion}})
}

#[tokio::test]
async fn replies_spend_the_budget_as_the_provider_counts_and_one_it_cannot_cover_is_429_storing_nothing() {
    let (mock, server, user, chat) = llm::setup(None, &[("DAILY_TOKEN_BUDGET", "5000")]).await;
    let (status, usage) = server.get("/usage", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert_eq!(
        (&usage["budget"], &usage["used"], &usage["reserved"], &usage["remaining"]),
        (&json!(5000), &json!(0), &json!(0), &json!(5000))
    );

    mock.script([spent(1000, 500), spent(1200, 300)]).await.unwrap();
    for text in ["one", "two"] {
        let (status, reply) = say(&server, &user, &chat, text).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
    }
    // Each reply was settled with the reply's final write, before it was answered.
    let (_, usage) = server.get("/usage", Some(&user.token)).await;
    assert_eq!(
        (&usage["used"], &usage["reserved"], &usage["remaining"]),
        (&json!(3000), &json!(0), &json!(2000)),
        "{usage}"
    );

    // 2,000 left, and a reply may need its prompt and 2,048 more: refused, before anything is stored or asked.
    let asked = mock.requests().await.len();
    let (status, headers, answer) = server
        .call(reqwest::Method::POST, "/chat", Some(&user.token), Some(json!({"chat_id": chat, "message": "three"})))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "Retry-After {retry}");
    let detail = answer["detail"].as_str().unwrap();
    assert!(detail.contains("Daily token budget spent") && detail.contains("00:00 UTC"), "{detail}");
    let (status, _, answer) =
        server.call(reqwest::Method::POST, &format!("/chats/{chat}/regenerate"), Some(&user.token), None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    let streamed = server
        .client()
        .post(server.url("/chat"))
        .bearer_auth(&user.token)
        .json(&json!({"chat_id": chat, "message": "four", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(mock.requests().await.len(), asked, "a refused reply must not reach the provider");
    let (_, messages) = server.get(&format!("/chats/{chat}/messages"), Some(&user.token)).await;
    assert_eq!(messages.as_array().unwrap().len(), 4, "{messages}");

    // Another user has a budget of their own.
    let other = server.signup().await;
    let theirs = server.create_chat(&other, None).await["id"].as_str().unwrap().to_owned();
    let (status, reply) = say(&server, &other, &theirs, "hello").await;
    assert_eq!(status, StatusCode::OK, "{reply}");
}

#[tokio::test]
async fn concurrent_replies_cannot_together_pass_the_budget() {
    // Room for two reservations at once, not three.
    let budget = 2 * (FAST_MAX_OUTPUT + 200);
    let budget_setting = budget.to_string();
    let settings = [("DAILY_TOKEN_BUDGET", budget_setting.as_str()), ("MAX_REPLIES_PER_USER", "0")];
    let (mock, server, user, _chat) = llm::setup(None, &settings).await;
    // Each reply takes a while, so that all the requests arrive while the first ones still hold their reservations.
    mock.script((0..8).map(|_| slow_reply("one two three four five six", 4))).await.unwrap();
    let mut chats = Vec::new();
    for _ in 0..8 {
        chats.push(server.create_chat(&user, None).await["id"].as_str().unwrap().to_owned());
    }
    let sends = chats.iter().map(|chat| say(&server, &user, chat, "hi"));
    let answers = futures_util::future::join_all(sends).await;
    let statuses: Vec<StatusCode> = answers.iter().map(|(status, _)| *status).collect();
    let granted = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((granted, refused), (2, 6), "{answers:?}");
    let (_, usage) = server.get("/usage", Some(&user.token)).await;
    assert!(usage["used"].as_u64().unwrap() + usage["reserved"].as_u64().unwrap() <= budget, "{usage}");
}

#[tokio::test]
async fn without_a_budget_nothing_is_refused_or_counted() {
    let (mock, server, user, chat) = llm::setup(None, &[]).await;
    mock.script([spent(1_000_000, 1_000_000)]).await.unwrap();
    for text in ["one", "two"] {
        let (status, reply) = say(&server, &user, &chat, text).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
    }
    let (status, usage) = server.get("/usage", Some(&user.token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&usage["budget"], &usage["used"], &usage["remaining"]),
        (&json!(null), &json!(0), &json!(null)),
        "{usage}"
    );
}

#[tokio::test]
async fn a_reply_that_never_reached_a_provider_gives_its_reservation_back() {
    let (mock, server, user, chat) = llm::setup(None, &[("DAILY_TOKEN_BUDGET", "3000")]).await;
    mock.script([json!({"kind": "status", "status": 400})]).await.unwrap();
    let (status, answer) = say(&server, &user, &chat, "refused by the provider").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    // The reservation is given back once the reply's task ends: poll, it is not part of the answer.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, usage) = server.get("/usage", Some(&user.token)).await;
        if (&usage["used"], &usage["reserved"]) == (&json!(0), &json!(0)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the reservation was never given back: {usage}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The whole budget is there for the next message.
    let (status, reply) = say(&server, &user, &chat, "again").await;
    assert_eq!(status, StatusCode::OK, "{reply}");
}

/// Makes every final write of a reply fail, as a database that refuses writes for a while would; the replies'
/// progress (still `generating`) is written as usual.
fn refuse_final_writes(server: &TestServer, refuse: bool) {
    let sql = match (on_postgres(), refuse) {
        (true, true) => {
            "CREATE FUNCTION refuse_final_write() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'final writes are refused by the test'; END $$; \
             CREATE TRIGGER refuse_final_write BEFORE UPDATE ON messages FOR EACH ROW \
             WHEN (NEW.status <> 'generating') EXECUTE FUNCTION refuse_final_write();"
        }
        (true, false) => "DROP TRIGGER refuse_final_write ON messages;",
        (false, true) => {
            "CREATE TRIGGER refuse_final_write BEFORE UPDATE ON messages WHEN NEW.status <> 'generating' \
             BEGIN SELECT RAISE(ABORT, 'final writes are refused by the test'); END;"
        }
        (false, false) => "DROP TRIGGER refuse_final_write;",
    };
    server.execute_sql(sql);
}

#[tokio::test]
async fn a_reply_whose_final_write_is_retried_in_the_background_is_counted_once_stored() {
    let (mock, server, user, chat) = llm::setup(None, &[("DAILY_TOKEN_BUDGET", "10000")]).await;
    mock.script([spent(1000, 500)]).await.unwrap();
    refuse_final_writes(&server, true);
    let (status, answer) = say(&server, &user, &chat, "stored late").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");

    // While the reply is not stored, its reservation is held: nothing counted yet, nothing given back.
    let (_, usage) = server.get("/usage", Some(&user.token)).await;
    assert_eq!(usage["used"], json!(0), "{usage}");
    let reserved = usage["reserved"].as_u64().unwrap();
    assert!(reserved >= FAST_MAX_OUTPUT, "{usage}");

    // The database takes writes again: the flusher stores the reply and settles its tokens in the same write.
    refuse_final_writes(&server, false);
    let stored = settled(&server, &user, &chat, Duration::from_secs(10)).await;
    let reply = stored.last().unwrap();
    assert_eq!((&reply["status"], &reply["content"]), (&json!("complete"), &json!("Counted.")), "{stored:?}");
    let (_, usage) = server.get("/usage", Some(&user.token)).await;
    assert_eq!((&usage["used"], &usage["reserved"]), (&json!(1500), &json!(0)), "{usage}");
}
