//! Servers wired to a local mock LLM: the Groq provider pointed at it, short timeouts, optional aliases.

use std::time::Duration;

use mock_llm::MockLlm;

use super::{TestDir, TestServer, TestUser};

pub const GROQ_KEY: &str = "test-groq-key";
pub const TOTAL_TIMEOUT: Duration = Duration::from_millis(3000);

/// A CONFIG_FILE whose `fast` alias is `models` on Groq, one retry each, short backoff, `Retry-After` waited up to 2 s.
pub fn fast_alias(models: &[&str], context_window: u32, max_output_tokens: u32) -> String {
    let targets: Vec<String> = models
        .iter()
        .map(|model| {
            format!(
                r#"{{ provider = "groq", model = "{model}", context_window = {context_window}, max_output_tokens = {max_output_tokens} }}"#
            )
        })
        .collect();
    format!(
        "[aliases.fast]\ntargets = [{}]\nmax_retries = 1\ninitial_backoff_ms = 10\nmax_backoff_ms = 20\nmax_retry_after_ms = 2000\n",
        targets.join(", ")
    )
}

/// Starts a server with short LLM timeouts; with `groq_base` the Groq provider is there with the test key; `config`
/// becomes its CONFIG_FILE; `extra` comes last.
pub async fn start(groq_base: Option<&str>, config: Option<&str>, extra: &[(&str, &str)]) -> TestServer {
    let dir = TestDir::new();
    let mut env: Vec<(String, String)> = vec![
        ("LLM_FIRST_TOKEN_TIMEOUT_MS".into(), "1500".into()),
        ("LLM_TOTAL_TIMEOUT_MS".into(), TOTAL_TIMEOUT.as_millis().to_string()),
    ];
    if let Some(base) = groq_base {
        env.push(("GROQ_API_KEY".into(), GROQ_KEY.into()));
        env.push(("GROQ_BASE_URL".into(), format!("{base}/v1")));
    }
    if let Some(config) = config {
        let path = dir.path().join("chat.toml");
        std::fs::write(&path, config).expect("write CONFIG_FILE");
        env.push(("CONFIG_FILE".into(), path.display().to_string()));
    }
    env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    TestServer::start_in(dir, &env, &[]).await
}

/// A mock, a server on it (Groq with the test key), a user and one of their chats.
pub async fn setup(config: Option<&str>, extra: &[(&str, &str)]) -> (MockLlm, TestServer, TestUser, String) {
    let mock = MockLlm::start().await.expect("start mock");
    let server = start(Some(&mock.base_url()), config, extra).await;
    let user = server.signup().await;
    let chat = server.create_chat(&user, None).await["id"].as_str().expect("chat id").to_owned();
    (mock, server, user, chat)
}
