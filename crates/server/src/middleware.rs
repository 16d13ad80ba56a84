//! Per-request context: an `X-Request-Id` on every response, a tracing span, and one log line per request.

use std::time::{Duration, Instant};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument;

use crate::state::AppState;
use tracing::field::Empty;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
const MAX_REQUEST_ID_LEN: usize = 128;

/// The client's request id when it is sane: short, and only characters that cannot forge a log line.
fn client_request_id(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get(&REQUEST_ID_HEADER)?.to_str().ok()?;
    let sane = !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LEN
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    sane.then(|| value.to_owned())
}

/// An error status with an empty body: made by the framework or a mounted service (Swagger UI's unknown
/// files), not by our handlers, which always send a `detail`.
fn is_bare_error(response: &ServiceResponse<BoxBody>) -> bool {
    let status = response.status();
    (status.is_client_error() || status.is_server_error())
        && matches!(response.response().body().size(), BodySize::None | BodySize::Sized(0))
}

/// Gives a bare error the contract's `{"detail": "<reason>"}` body, keeping its status and headers.
fn with_detail_body(response: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let status = response.status();
    let detail = status.canonical_reason().unwrap_or("Error");
    let body = serde_json::json!({ "detail": detail }).to_string();
    response.map_body(|head, _| {
        head.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        BoxBody::new(body)
    })
}

/// Set by a handler on a response that waited on a model provider: how long the provider took (to its
/// first token, for a stream). The request's middleware turns it into a `Server-Timing` header.
#[derive(Debug, Clone, Copy)]
pub struct Upstream(pub Option<Duration>);

/// `Server-Timing: upstream;dur=…, total;dur=…` in milliseconds, so that anyone can see the latency the
/// server adds on top of the model.
fn server_timing(upstream: Option<Duration>, total: Duration) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    match upstream {
        Some(upstream) => format!("upstream;dur={:.3}, total;dur={:.3}", ms(upstream), ms(total)),
        None => format!("total;dur={:.3}", ms(total)),
    }
}

pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let request_id = client_request_id(&req).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        route = Empty,
        user_id = Empty,
    );
    let started = Instant::now();
    // The request must not be cloned before routing (actix needs sole ownership to record path
    // parameters). Handler errors arrive here as responses; an `Err` can only come from the framework.
    let mut response = match next.call(req).instrument(span.clone()).await {
        Ok(response) => response.map_into_boxed_body(),
        Err(err) => {
            tracing::error!(parent: &span, error = %err, "request failed before a response was made");
            return Err(err);
        }
    };
    if is_bare_error(&response) {
        response = with_detail_body(response);
    }
    let route = response.request().match_pattern().unwrap_or_else(|| "(unmatched)".to_owned());
    span.record("route", route.as_str());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let upstream = response.response().extensions().get::<Upstream>().copied();
    if let Some(state) = response.request().app_data::<web::Data<AppState>>() {
        let streamed = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream"));
        let provider = upstream.and_then(|Upstream(upstream)| upstream).map(|upstream| (upstream, streamed));
        let method = response.request().method().as_str().to_owned();
        state.metrics.record(&method, &route, response.status().as_u16(), started.elapsed(), provider);
    }
    if let Some(Upstream(upstream)) = upstream
        && let Ok(value) = HeaderValue::from_str(&server_timing(upstream, started.elapsed()))
    {
        response.headers_mut().insert(HeaderName::from_static("server-timing"), value);
    }
    tracing::info!(
        parent: &span,
        status = response.status().as_u16(),
        latency_ms = format_args!("{:.3}", started.elapsed().as_secs_f64() * 1000.0),
        "request completed"
    );
    Ok(response)
}
