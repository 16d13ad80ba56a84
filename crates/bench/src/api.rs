//! The REST calls the bench makes to set up its data (users, tokens, chats) and the reading of `Server-Timing`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// The password of every bench user.
const PASSWORD: &str = "bench-password-123";

/// A client tuned for load: no proxy, no Nagle, an unbounded idle pool (every concurrent request keeps its
/// connection for the next one). The timeout covers whole slow streams. An idle connection is dropped before the
/// server's keep-alive (actix's default, 5 s) would close it: a request sent on a connection the server is closing
/// fails ("connection closed before message completed"), which a soak's quiet moments otherwise turn into errors.
pub fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::MAX)
        .pool_idle_timeout(Duration::from_secs(4))
        .timeout(Duration::from_secs(180))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .context("cannot build the HTTP client")
}

/// A registered user with a bearer token.
#[derive(Debug, Clone)]
pub struct User {
    pub email: String,
    pub token: String,
}

/// A chat and the token of its owner: what one `POST /chat` needs.
#[derive(Debug, Clone)]
pub struct Chat {
    pub id: String,
    pub token: Arc<str>,
}

/// A unique email, so that runs against one PostgreSQL database do not collide.
pub fn fresh_email(label: &str) -> String {
    let tag: u64 = rand::random();
    format!("bench-{label}-{tag:016x}@example.com")
}

async fn json_call(request: reqwest::RequestBuilder, expected: u16, what: &str) -> anyhow::Result<Value> {
    let response = request.send().await.with_context(|| format!("{what}: request failed"))?;
    let status = response.status();
    let body = response.text().await.with_context(|| format!("{what}: reading the body failed"))?;
    if status.as_u16() != expected {
        bail!("{what}: expected {expected}, got {status}: {}", truncate(&body));
    }
    serde_json::from_str(&body).with_context(|| format!("{what}: the body is not JSON: {}", truncate(&body)))
}

/// Logs `email` in; returns the token.
pub async fn login(client: &reqwest::Client, base: &str, email: &str) -> anyhow::Result<String> {
    let body = json!({"email": email, "password": PASSWORD});
    let answer = json_call(client.post(format!("{base}/auth/login")).json(&body), 200, "POST /auth/login").await?;
    answer["access_token"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("POST /auth/login: no access_token"))
}

/// Registers a fresh user and logs them in.
pub async fn signup(client: &reqwest::Client, base: &str, label: &str) -> anyhow::Result<User> {
    let email = fresh_email(label);
    let body = json!({"email": email, "password": PASSWORD});
    json_call(client.post(format!("{base}/auth/register")).json(&body), 201, "POST /auth/register").await?;
    let token = login(client, base, &email).await?;
    Ok(User { email, token })
}

/// The body of a login, for the flood.
pub fn login_body(email: &str) -> Value {
    json!({"email": email, "password": PASSWORD})
}

/// Creates `count` chats spread over `users`, `concurrency` requests at a time.
pub async fn create_chats(
    client: &reqwest::Client,
    base: &str,
    users: &[User],
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Chat>> {
    if users.is_empty() {
        bail!("no users to create chats for");
    }
    let tokens: Vec<Arc<str>> = users.iter().map(|user| Arc::from(user.token.as_str())).collect();
    let url = format!("{base}/chats");
    let results: Vec<anyhow::Result<Chat>> = futures_util::stream::iter(0..count)
        .map(|i| {
            let token = Arc::clone(&tokens[i % tokens.len()]);
            let request = client.post(&url).bearer_auth(&token).json(&json!({"title": format!("bench {i}")}));
            async move {
                let chat = json_call(request, 201, "POST /chats").await?;
                let id = chat["id"].as_str().ok_or_else(|| anyhow!("POST /chats: no id"))?.to_owned();
                Ok(Chat { id, token })
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// A new chat of the owner of `token`.
pub async fn create_chat(client: &reqwest::Client, base: &str, token: Arc<str>) -> anyhow::Result<Chat> {
    let request = client.post(format!("{base}/chats")).bearer_auth(&token).json(&json!({"title": "bench"}));
    let chat = json_call(request, 201, "POST /chats").await?;
    let id = chat["id"].as_str().ok_or_else(|| anyhow!("POST /chats: no id"))?.to_owned();
    Ok(Chat { id, token })
}

/// Sends one non-streaming message to a chat and waits for the reply.
pub async fn send_message(client: &reqwest::Client, base: &str, chat: &Chat, message: &str) -> anyhow::Result<()> {
    let body = json!({"chat_id": chat.id, "message": message, "model": "fast"});
    json_call(client.post(format!("{base}/chat")).bearer_auth(&chat.token).json(&body), 200, "POST /chat").await?;
    Ok(())
}

/// Idle chats handed out one per request, oldest-returned first, so that a chat is reused as late as possible (the
/// server allows one generation per chat, and may still be finishing the last one's bookkeeping). A retiring pool
/// sets a chat aside once it has been used a number of times, as a conversation ends, for [`ChatPool::retired`] to
/// hand to whoever replaces it.
#[derive(Debug, Clone)]
pub struct ChatPool {
    inner: Arc<Mutex<PoolInner>>,
}

#[derive(Debug)]
struct PoolInner {
    idle: VecDeque<Chat>,
    /// Uses of each chat so far, with a retirement limit only.
    uses: HashMap<String, u32>,
    retire_after: Option<u32>,
    retired: Vec<Chat>,
}

impl ChatPool {
    pub fn new(chats: Vec<Chat>) -> Self {
        Self::with_retirement(chats, None)
    }

    /// A pool whose chats are set aside after `uses` uses each.
    pub fn retiring(chats: Vec<Chat>, uses: u32) -> Self {
        Self::with_retirement(chats, Some(uses))
    }

    fn with_retirement(chats: Vec<Chat>, retire_after: Option<u32>) -> Self {
        let inner = PoolInner { idle: chats.into(), uses: HashMap::new(), retire_after, retired: Vec::new() };
        Self { inner: Arc::new(Mutex::new(inner)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn take(&self) -> Option<Chat> {
        self.lock().idle.pop_front()
    }

    pub fn give_back(&self, chat: Chat) {
        let mut inner = self.lock();
        if let Some(limit) = inner.retire_after {
            let uses = inner.uses.entry(chat.id.clone()).or_insert(0);
            *uses += 1;
            if *uses >= limit {
                inner.uses.remove(&chat.id);
                inner.retired.push(chat);
                return;
            }
        }
        inner.idle.push_back(chat);
    }

    /// The chats set aside since the last call.
    pub fn retired(&self) -> Vec<Chat> {
        std::mem::take(&mut self.lock().retired)
    }

    /// Adds fresh chats.
    pub fn add(&self, chats: Vec<Chat>) {
        self.lock().idle.extend(chats);
    }
}

/// `Server-Timing: upstream;dur=X, total;dur=Y` (milliseconds): the time the server added on top of the provider,
/// `total - upstream`. `None` when either metric is missing.
pub fn server_added(header: &str) -> Option<Duration> {
    let mut upstream = None;
    let mut total = None;
    for metric in header.split(',') {
        let mut parts = metric.split(';').map(str::trim);
        let name = parts.next()?;
        let duration = parts.find_map(|param| param.strip_prefix("dur=")).and_then(|v| v.parse::<f64>().ok());
        match name {
            "upstream" => upstream = duration,
            "total" => total = duration,
            _ => {}
        }
    }
    let added_ms = (total? - upstream?).max(0.0);
    Duration::try_from_secs_f64(added_ms / 1000.0).ok()
}

/// The server's added time of a response, from its header.
pub fn server_added_of(response: &reqwest::Response) -> Option<Duration> {
    response.headers().get("server-timing").and_then(|value| value.to_str().ok()).and_then(server_added)
}

/// A body cut short for an error message.
pub fn truncate(body: &str) -> String {
    let mut end = body.len().min(200);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    body.get(..end).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_gives_total_minus_upstream() {
        let added = server_added("upstream;dur=1.250, total;dur=1.750");
        assert_eq!(added, Some(Duration::from_micros(500)));
        // Order, spacing and extra metrics or parameters do not matter.
        let added = server_added("total;desc=\"all\";dur=3.0,db;dur=1,upstream;dur=2.5");
        assert_eq!(added, Some(Duration::from_micros(500)));
    }

    #[test]
    fn server_timing_without_upstream_is_not_a_figure() {
        assert_eq!(server_added("total;dur=0.800"), None);
        assert_eq!(server_added("upstream;dur=x, total;dur=1"), None);
        assert_eq!(server_added(""), None);
    }

    #[test]
    fn truncation_respects_characters() {
        let long = "é".repeat(150);
        assert!(truncate(&long).len() <= 200);
        assert_eq!(truncate("short"), "short");
    }
}

#[cfg(test)]
mod pool_tests {
    use super::*;

    fn chat(id: &str) -> Chat {
        Chat { id: id.to_owned(), token: Arc::from("t") }
    }

    #[test]
    fn a_retiring_pool_sets_a_chat_aside_after_its_uses_and_takes_fresh_ones() {
        let pool = ChatPool::retiring(vec![chat("a"), chat("b")], 2);
        for _ in 0..2 {
            let taken = pool.take().unwrap();
            pool.give_back(taken);
        }
        // a and b were used once each; the next round ends both.
        let (a, b) = (pool.take().unwrap(), pool.take().unwrap());
        pool.give_back(a);
        pool.give_back(b);
        assert!(pool.take().is_none());
        let ended: Vec<String> = pool.retired().into_iter().map(|c| c.id).collect();
        assert_eq!(ended, ["a", "b"]);
        assert!(pool.retired().is_empty());
        pool.add(vec![chat("c")]);
        assert_eq!(pool.take().unwrap().id, "c");
        // Without retirement a chat comes back forever.
        let plain = ChatPool::new(vec![chat("d")]);
        for _ in 0..100 {
            let taken = plain.take().unwrap();
            plain.give_back(taken);
        }
        assert!(plain.retired().is_empty());
    }
}
