//! Turns one scripted behaviour into the HTTP response (or the lack of one) for a chat request.

use std::time::Duration;

use actix_web::body::SizedStream;
use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::Value;

use crate::behaviour::{Behaviour, Defaults, ErrorStatus, Fault, Partial, Reply};
use crate::dialect::{Dialect, Generation};
use crate::playback::{self, Script, Step};
use crate::prompt::{ChatRequest, split_tokens};
use crate::reset;
use crate::state::Ticket;

/// Everything known about the request being answered.
#[derive(Debug)]
pub(crate) struct Exchange<'a> {
    pub(crate) http: &'a HttpRequest,
    pub(crate) dialect: Dialect,
    pub(crate) chat: ChatRequest,
    pub(crate) ticket: Ticket,
    pub(crate) defaults: &'a Defaults,
}

/// How a partial stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Stall,
    Cut,
}

pub(crate) async fn respond(exchange: Exchange<'_>, behaviour: Behaviour) -> HttpResponse {
    match behaviour {
        Behaviour::Reply(reply) => self::reply(exchange, reply).await,
        Behaviour::Status(status) => self::status(exchange, status).await,
        Behaviour::Hang(fault) => hang(exchange, fault).await,
        Behaviour::HangAfter(partial) => self::partial(exchange, partial, Ending::Stall).await,
        Behaviour::CutAfter(partial) => self::partial(exchange, partial, Ending::Cut).await,
        Behaviour::Malformed(fault) => malformed(exchange, fault).await,
        Behaviour::NullContent(fault) => null_content(exchange, fault).await,
        Behaviour::Reset(fault) => self::reset(exchange, fault).await,
    }
}

impl Exchange<'_> {
    async fn wait_latency(&self, latency_ms: Option<u64>) {
        let millis = latency_ms.unwrap_or(self.defaults.latency_ms);
        if millis > 0 {
            tokio::time::sleep(Duration::from_millis(millis)).await;
        }
    }

    fn text(&self, scripted: Option<String>) -> String {
        scripted.or_else(|| self.defaults.reply.clone()).unwrap_or_else(|| self.chat.default_reply())
    }

    fn interval(&self, scripted: Option<Option<f64>>) -> Option<Duration> {
        playback::interval(scripted.unwrap_or(self.defaults.tokens_per_second))
    }

    fn generation(&self, completion_tokens: usize) -> Generation {
        let completion_tokens = u64::try_from(completion_tokens).unwrap_or(u64::MAX);
        Generation::new(self.dialect, self.ticket.seq, &self.chat, completion_tokens)
    }

    /// A complete JSON answer; the request is done once it is handed to the server.
    fn json(mut self, status: StatusCode, body: &Value) -> HttpResponse {
        self.ticket.finish();
        HttpResponse::build(status).json(body)
    }

    /// An SSE answer playing `script`.
    fn sse(self, script: Script, interval: Option<Duration>) -> HttpResponse {
        HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, "text/event-stream"))
            .insert_header((CACHE_CONTROL, "no-cache"))
            .streaming(script.play(interval, self.ticket))
    }
}

async fn reply(exchange: Exchange<'_>, reply: Reply) -> HttpResponse {
    let text = exchange.text(reply.text);
    let tokens = split_tokens(&text);
    let interval = exchange.interval(reply.tokens_per_second);
    let mut generation = exchange.generation(tokens.len());
    if let Some(usage) = reply.usage {
        generation.prompt_tokens = usage.prompt_tokens.unwrap_or(generation.prompt_tokens);
        generation.completion_tokens = usage.completion_tokens.unwrap_or(generation.completion_tokens);
    }
    if let Some(finish_reason) = reply.finish_reason {
        generation.finish_reason = finish_reason;
    }
    generation.usage_style = reply.usage_style;
    exchange.wait_latency(reply.latency_ms).await;
    let dialect = exchange.dialect;
    if exchange.chat.stream {
        let mut script = Script::new(reply.keep_alive_comments);
        script.events(dialect.stream_open(&generation));
        for token in &tokens {
            script.token(dialect.stream_token(&generation, token));
        }
        script.events(dialect.stream_close(&generation));
        return exchange.sse(script, interval);
    }
    // Unstreamed answers still take as long as generating the tokens would, like a real model's.
    if let Some(interval) = interval {
        let count = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
        tokio::time::sleep(interval.saturating_mul(count)).await;
    }
    let body = dialect.completion(&generation, Some(&text));
    exchange.json(StatusCode::OK, &body)
}

async fn status(exchange: Exchange<'_>, fault: ErrorStatus) -> HttpResponse {
    exchange.wait_latency(fault.latency_ms).await;
    // Validation keeps the status in range; 500 is only a fallback for a behaviour built without it.
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = fault.message.unwrap_or_else(|| {
        format!("scripted {} {} from mock-llm", status.as_u16(), status.canonical_reason().unwrap_or("error"))
    });
    let body = fault.body.unwrap_or_else(|| exchange.dialect.error_body(status, &message));
    let mut ticket = exchange.ticket;
    ticket.finish();
    let mut response = HttpResponse::build(status);
    if let Some(retry_after) = fault.retry_after {
        response.insert_header((RETRY_AFTER, retry_after));
    }
    match body {
        Value::String(raw) => response.content_type("text/plain; charset=utf-8").body(raw),
        json => response.json(json),
    }
}

async fn hang(exchange: Exchange<'_>, fault: Fault) -> HttpResponse {
    exchange.wait_latency(fault.latency_ms).await;
    // The ticket stays alive in this future: when the client gives up, the server drops the future and the ticket
    // flags the request as disconnected. Other requests are unaffected, this only parks one task.
    let _unfinished = exchange.ticket;
    std::future::pending().await
}

async fn partial(exchange: Exchange<'_>, partial: Partial, ending: Ending) -> HttpResponse {
    let text = exchange.text(partial.text);
    let tokens = split_tokens(&text);
    let interval = exchange.interval(partial.tokens_per_second);
    let generation = exchange.generation(tokens.len());
    if !exchange.chat.stream {
        return match ending {
            // A stall before any byte of an unstreamed answer is a hang.
            Ending::Stall => hang(exchange, Fault { latency_ms: partial.latency_ms }).await,
            Ending::Cut => {
                exchange.wait_latency(partial.latency_ms).await;
                let body = exchange.dialect.completion(&generation, Some(&text)).to_string();
                truncated(exchange, body)
            }
        };
    }
    exchange.wait_latency(partial.latency_ms).await;
    let dialect = exchange.dialect;
    let mut script = Script::new(false);
    script.events(dialect.stream_open(&generation));
    for token in tokens.iter().take(partial.tokens) {
        script.token(dialect.stream_token(&generation, token));
    }
    script.end_with(match ending {
        Ending::Stall => Step::Stall,
        Ending::Cut => Step::Cut,
    });
    exchange.sse(script, interval)
}

/// Declares the full body's length, sends its first half, then closes the connection.
fn truncated(exchange: Exchange<'_>, body: String) -> HttpResponse {
    let full_length = u64::try_from(body.len()).unwrap_or(u64::MAX);
    let half = body.get(..body.len() / 2).unwrap_or_default().to_owned();
    let mut script = Script::new(false);
    script.events([Bytes::from(half)]);
    script.end_with(Step::Cut);
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "application/json"))
        .body(SizedStream::new(full_length, script.play(None, exchange.ticket)))
}

async fn malformed(exchange: Exchange<'_>, fault: Fault) -> HttpResponse {
    let generation = exchange.generation(0);
    exchange.wait_latency(fault.latency_ms).await;
    let dialect = exchange.dialect;
    if exchange.chat.stream {
        let mut script = Script::new(false);
        script.events(dialect.stream_open(&generation));
        script.events([dialect.malformed_event()]);
        script.events(dialect.stream_close(&generation));
        return exchange.sse(script, None);
    }
    let mut ticket = exchange.ticket;
    ticket.finish();
    HttpResponse::Ok().insert_header((CONTENT_TYPE, "application/json")).body(dialect.malformed_body())
}

async fn null_content(exchange: Exchange<'_>, fault: Fault) -> HttpResponse {
    let generation = exchange.generation(0);
    exchange.wait_latency(fault.latency_ms).await;
    let dialect = exchange.dialect;
    if exchange.chat.stream {
        let mut script = Script::new(false);
        script.events(dialect.stream_null_content(&generation));
        return exchange.sse(script, None);
    }
    let body = dialect.completion(&generation, None);
    exchange.json(StatusCode::OK, &body)
}

async fn reset(exchange: Exchange<'_>, fault: Fault) -> HttpResponse {
    exchange.wait_latency(fault.latency_ms).await;
    let mut ticket = exchange.ticket;
    ticket.finish();
    if reset::abort_connection(exchange.http) {
        // The socket is already disconnected: the server fails to write this and drops the connection.
        return HttpResponse::InternalServerError().finish();
    }
    // No way to abort this connection (not a Unix TCP socket): the closest is headers, then a cut.
    let mut script = Script::new(false);
    script.end_with(Step::Cut);
    HttpResponse::Ok().body(SizedStream::new(1, script.play(None, ticket)))
}
