//! A provider that hangs, resets connections and answers garbage, for many requests at once: every one of them
//! gets its documented failure, the server's other requests keep their normal latency, and nothing stays stuck.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::conversation::say;
use crate::support::llm::setup;

/// Replies asked for while the provider misbehaves: more than the server's worker threads, many times over.
const FAULTY: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_provider_slows_nothing_else_and_leaves_nothing_stuck() {
    let (mock, server, user, first) = setup(None, &[("MAX_REPLIES_PER_USER", "0")]).await;
    // Every provider call misbehaves (each request may be retried, so there are plenty).
    let faults: Vec<Value> = (0..FAULTY * 4)
        .map(|i| match i % 3 {
            0 => json!({"kind": "hang"}),
            1 => json!({"kind": "reset"}),
            _ => json!({"kind": "malformed"}),
        })
        .collect();
    mock.script(faults).await.unwrap();
    let mut chats = vec![first];
    for _ in 1..FAULTY {
        chats.push(server.create_chat(&user, None).await["id"].as_str().unwrap().to_owned());
    }

    // What the other requests take when all is well.
    let other = |i: usize| {
        let (server, user, chat) = (&server, &user, &chats[i % chats.len()]);
        async move {
            let started = Instant::now();
            let (status, _) = match i % 3 {
                0 => server.get("/chats", Some(&user.token)).await,
                1 => server.get(&format!("/chats/{chat}/messages"), Some(&user.token)).await,
                _ => server.post("/chats", Some(&user.token), json!({"title": format!("made meanwhile {i}")})).await,
            };
            assert!(status.is_success(), "{status}");
            started.elapsed()
        }
    };
    let mut quiet = Vec::new();
    for i in 0..30 {
        quiet.push(other(i).await);
    }

    let started = Instant::now();
    let faulty = join_all(chats.iter().map(|chat| say(&server, &user, chat, "are you there?")));
    let meanwhile = async {
        let mut latencies = Vec::new();
        // Until the faulty replies are bound to have reached the provider and hung there.
        while started.elapsed() < Duration::from_millis(1200) {
            latencies.push(other(latencies.len()).await);
        }
        latencies
    };
    let (answers, mut busy) = tokio::join!(faulty, meanwhile);

    for (status, body) in &answers {
        assert!(
            [StatusCode::BAD_GATEWAY, StatusCode::GATEWAY_TIMEOUT].contains(status),
            "a faulty reply got {status}: {body}"
        );
        assert!(body["detail"].as_str().unwrap().contains("groq"), "{body}");
    }
    assert!(answers.iter().any(|(status, _)| *status == StatusCode::GATEWAY_TIMEOUT), "no request hung");
    quiet.sort();
    busy.sort();
    let median = |l: &[Duration]| l[l.len() / 2];
    let (quiet_median, busy_median, busy_max) = (median(&quiet), median(&busy), *busy.last().unwrap());
    assert!(busy.len() >= 20, "only {} other requests answered while the provider hung", busy.len());
    assert!(
        busy_max < Duration::from_secs(1) && busy_median < quiet_median * 5 + Duration::from_millis(50),
        "other requests slowed: median {busy_median:?} (quiet {quiet_median:?}), max {busy_max:?}"
    );

    // Nothing is stuck: every chat takes a new message, and the provider, behaving again, answers it.
    mock.reset().await;
    for chat in &chats {
        let (status, body) = say(&server, &user, chat, "better now?").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}
