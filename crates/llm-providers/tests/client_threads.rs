//! The providers' HTTP client is one per thread: each runtime of the server sends over connections it drives.
#![expect(clippy::unwrap_used, reason = "tests fail loudly on anything unexpected")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use llm_providers::http::{HttpClient, Timeouts};
use llm_providers::openai::{MaxTokensField, OpenAiCompatible, OpenAiConfig};
use llm_providers::{ChatMessage, ChatProvider, ChatRole, CompletionRequest};

const ANSWER: &str = r#"{"choices":[{"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#;

/// An HTTP/1.1 server that answers every request on a connection it keeps open, and counts the connections.
fn serve() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}/v1", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counted.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || answer_each_request(stream.unwrap()));
        }
    });
    (address, connections)
}

fn answer_each_request(stream: TcpStream) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{ANSWER}",
            ANSWER.len()
        );
        writer.write_all(response.as_bytes()).unwrap();
    }
}

fn request() -> CompletionRequest {
    CompletionRequest {
        model: "the-model".into(),
        messages: vec![ChatMessage::new(ChatRole::User, "Hello")],
        max_output_tokens: None,
        temperature: None,
    }
}

#[test]
fn each_thread_sends_over_connections_of_its_own() {
    let (base_url, connections) = serve();
    let config = OpenAiConfig {
        name: "groq".into(),
        base_url,
        api_key: None,
        headers: Vec::new(),
        max_tokens_field: MaxTokensField::MaxTokens,
        timeouts: Timeouts::default(),
    };
    let client = HttpClient::new(Timeouts::default().connect, false).unwrap();
    let provider = Arc::new(OpenAiCompatible::new(config, client).unwrap());
    let (first_done, first_asked) = std::sync::mpsc::channel();
    let (release, released) = tokio::sync::oneshot::channel::<()>();

    // The first thread asks twice over one connection, then keeps its runtime running (driving that connection,
    // idle in a pool) until the second thread has asked.
    let first = {
        let provider = Arc::clone(&provider);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                provider.complete(&request()).await.unwrap();
                provider.complete(&request()).await.unwrap();
                first_done.send(()).unwrap();
                released.await.unwrap();
            });
        })
    };
    first_asked.recv().unwrap();
    assert_eq!(connections.load(Ordering::SeqCst), 1, "the first thread reuses its connection");

    // One client shared by both threads would hand the second the first's idle connection.
    let second = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(provider.complete(&request())).unwrap();
    });
    second.join().unwrap();
    assert_eq!(connections.load(Ordering::SeqCst), 2, "the second thread opened a connection of its own");
    release.send(()).unwrap();
    first.join().unwrap();
}
