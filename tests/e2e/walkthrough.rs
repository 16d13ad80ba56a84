//! The README's curl walkthrough, run verbatim (but for address, token and chat id) against a live server.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::TestServer;

/// The ```bash blocks between the walkthrough markers of the README, each with its heading.
fn walkthrough_steps() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).expect("README.md");
    let start = readme.find("<!-- walkthrough:start -->").expect("walkthrough start marker");
    let end = readme.find("<!-- walkthrough:end -->").expect("walkthrough end marker");
    let mut steps = Vec::new();
    let mut heading = String::new();
    let mut lines = readme[start..end].lines();
    while let Some(line) = lines.next() {
        if let Some(title) = line.strip_prefix("### ") {
            heading = title.trim().to_owned();
        } else if line.trim() == "```bash" {
            let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            steps.push((heading.clone(), block.join("\n")));
        }
    }
    steps
}

/// Runs one step with bash, after substituting the live address, token and chat id; returns stdout.
fn run(step: &str, base: &str, token: &str, chat_id: &str) -> String {
    let script = step
        .replace("http://localhost:8000", base)
        .replace("YOUR_TOKEN_HERE", token)
        .replace("CHAT_ID_HERE", chat_id)
        .replace("chat-uuid-here", chat_id);
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!("set -e\n{script}"))
        .output()
        .expect("bash with curl must be installed to run the walkthrough");
    assert!(output.status.success(), "step failed: {script}\n{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8 output")
}

fn json(text: &str, step: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("{step}: not JSON: {text:?}"))
}

#[tokio::test]
async fn the_readme_walkthrough_works_verbatim() {
    let steps = walkthrough_steps();
    let headings: Vec<&str> = steps.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        headings,
        [
            "Register",
            "Login (get token)",
            "Create a Chat",
            "Send a Message",
            "List All Chats",
            "Get a Chat",
            "Get a Chat's Messages",
            "Rename a Chat",
            "Delete a Chat"
        ]
    );
    let server = TestServer::start().await;
    let (mut token, mut chat_id) = (String::new(), String::new());
    for (heading, step) in &steps {
        let out = run(step, &server.base, &token, &chat_id);
        match heading.as_str() {
            "Register" => assert_eq!(json(&out, heading)["email"], "user@example.com"),
            "Login (get token)" => {
                let body = json(&out, heading);
                assert_eq!(body["token_type"], "bearer");
                token = body["access_token"].as_str().expect("access_token").to_owned();
            }
            "Create a Chat" => {
                let body = json(&out, heading);
                assert_eq!(body["title"], "My First Chat");
                chat_id = body["id"].as_str().expect("id").to_owned();
            }
            "Send a Message" => {
                // No provider key in the test environment: the offline model answers, and says so.
                let body = json(&out, heading);
                assert_eq!(body["chat_id"], chat_id.as_str());
                assert_eq!(body["model"], "fast");
                let reply = body["reply"].as_str().expect("reply");
                assert!(reply.contains("not from a language model") && reply.contains("Hello, AI!"), "{reply}");
            }
            "List All Chats" => {
                let body = json(&out, heading);
                assert_eq!(body["total"], 1);
                assert_eq!(body["chats"][0]["id"], chat_id.as_str());
                assert_eq!(body["chats"][0]["message_count"], 2);
            }
            "Get a Chat" => assert_eq!(json(&out, heading)["id"], chat_id.as_str()),
            "Get a Chat's Messages" => {
                let body = json(&out, heading);
                let roles: Vec<&str> =
                    body.as_array().expect("list").iter().map(|m| m["role"].as_str().unwrap()).collect();
                assert_eq!(roles, ["user", "assistant"]);
                assert_eq!(body[0]["content"], "Hello, AI!");
            }
            "Rename a Chat" => assert_eq!(json(&out, heading)["title"], "Renamed Chat"),
            "Delete a Chat" => {
                assert_eq!(out, "", "204 has no body");
                let (status, _) = server.get(&format!("/chats/{chat_id}"), Some(&token)).await;
                assert_eq!(status, StatusCode::NOT_FOUND);
            }
            other => panic!("unexpected walkthrough step {other:?}"),
        }
    }
}
