//! Request bodies, read up to the configured limit (413 past it) and parsed as JSON or as a URL-encoded form.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{FromRequest, HttpRequest};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use serde_json::Value;

use crate::error::ApiError;
use crate::state::AppState;
use crate::validation::FieldError;

/// A JSON body: `None` when the request had none.
#[derive(Debug)]
pub struct JsonBody(pub Option<Value>);

/// A URL-encoded form body as name/value pairs, in order.
#[derive(Debug)]
pub struct FormBody(pub Vec<(String, String)>);

impl FormBody {
    /// The last value given for `name` (as Starlette takes it).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

fn content_type(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
}

/// Reads the whole body, refusing (413) a declared or actual size past the limit without reading it all.
async fn read_limited(req: &HttpRequest, mut payload: Payload) -> Result<Bytes, ApiError> {
    let limit = req.app_data::<web::Data<AppState>>().map_or(1 << 20, |state| state.max_body_bytes);
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|err| {
            ApiError::Validation(vec![FieldError::new(
                "body_incomplete",
                &["body"],
                format!("The request body could not be read: {err}"),
            )])
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The character offset of `line`/`column` (both 1-based, as serde_json reports them) in `text`.
fn char_offset(text: &str, line: usize, column: usize) -> usize {
    let before: usize = text.split('\n').take(line.saturating_sub(1)).map(|l| l.chars().count() + 1).sum();
    before + column.saturating_sub(1)
}

/// Reads the body within the limit, then hands it to `parse` with the request.
fn read_then<T: 'static>(
    req: &HttpRequest,
    payload: &mut Payload,
    parse: fn(&HttpRequest, Bytes) -> Result<T, ApiError>,
) -> LocalBoxFuture<'static, Result<T, ApiError>> {
    let req = req.clone();
    let payload = payload.take();
    Box::pin(async move {
        let bytes = read_limited(&req, payload).await?;
        parse(&req, bytes)
    })
}

fn parse_json(req: &HttpRequest, bytes: Bytes) -> Result<JsonBody, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(JsonBody(None));
    }
    let is_json = content_type(req).is_none_or(|ct| ct == "application/json" || ct.ends_with("+json"));
    if !is_json {
        return Err(ApiError::Validation(vec![FieldError::new(
            "model_attributes_type",
            &["body"],
            "Input should be a JSON object; send it with the header Content-Type: application/json",
        )]));
    }
    serde_json::from_slice(&bytes).map(|value| JsonBody(Some(value))).map_err(|err| {
        let text = String::from_utf8_lossy(&bytes);
        let position = char_offset(&text, err.line(), err.column());
        ApiError::Validation(vec![FieldError::json_invalid(&err, position)])
    })
}

fn parse_form(req: &HttpRequest, bytes: Bytes) -> Result<FormBody, ApiError> {
    if content_type(req).as_deref() != Some("application/x-www-form-urlencoded") {
        // Like FastAPI: the form's fields are simply not there.
        return Ok(FormBody(Vec::new()));
    }
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes).map(FormBody).map_err(|err| {
        ApiError::Validation(vec![FieldError::new(
            "form_invalid",
            &["body"],
            format!("The form body could not be parsed: {err}"),
        )])
    })
}

impl FromRequest for JsonBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        read_then(req, payload, parse_json)
    }
}

impl FromRequest for FormBody {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        read_then(req, payload, parse_form)
    }
}

#[cfg(test)]
mod tests {
    use super::char_offset;

    #[test]
    fn offsets_count_characters_across_lines() {
        assert_eq!(char_offset("{\"a\": }", 1, 7), 6);
        assert_eq!(char_offset("{\n  \"é\": x\n}", 2, 8), 9);
    }
}
