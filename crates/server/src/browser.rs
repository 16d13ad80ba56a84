//! What browsers are told: security headers on every response, and CORS for the configured origins only.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};

use crate::state::AppState;

/// The methods and request headers a page from an allowed origin may use, and the response headers it may read.
const ALLOWED_METHODS: &str = "GET, POST, PATCH, DELETE";
const ALLOWED_HEADERS: &str = "authorization, content-type, accept, last-event-id, x-request-id";
const EXPOSED_HEADERS: &str = "x-request-id, server-timing, retry-after, www-authenticate";
/// How long a browser may reuse a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// The API answers JSON and event streams: nothing in them is to be run, framed or sent on as a referrer.
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";
/// The documentation pages run their own scripts (and ReDoc's from its CDN), so they get only the framing rule.
const DOCS_CSP: &str = "frame-ancestors 'none'";

/// Which browser origins may call the API from their pages (CORS). Off by default: a page elsewhere can still send
/// requests, but never read the answers. Credentials (cookies) are never allowed: the API's credential is the
/// bearer token, which a page sends itself in `Authorization`, so no origin can ride on a user's session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsPolicy {
    #[default]
    Off,
    /// `*`: any origin, for a public API whose pages all hold their own tokens.
    AnyOrigin,
    /// Exact origins (`scheme://host[:port]`), lowercase.
    Origins(Vec<String>),
}

impl CorsPolicy {
    /// Reads `CORS_ALLOWED_ORIGINS`: empty for none, `*` for any, or comma-separated `http(s)://host[:port]`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let entries: Vec<&str> = raw.split(',').map(str::trim).filter(|entry| !entry.is_empty()).collect();
        match entries.as_slice() {
            [] => Ok(CorsPolicy::Off),
            ["*"] => Ok(CorsPolicy::AnyOrigin),
            _ if entries.contains(&"*") => Err("`*` allows every origin and cannot be combined with others".into()),
            _ => entries.iter().map(|entry| parse_origin(entry)).collect::<Result<_, _>>().map(CorsPolicy::Origins),
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if that origin is allowed.
    fn allow(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        match self {
            CorsPolicy::Off => None,
            CorsPolicy::AnyOrigin => Some(HeaderValue::from_static("*")),
            CorsPolicy::Origins(allowed) => {
                let origin = origin.to_str().ok()?.to_ascii_lowercase();
                allowed.contains(&origin).then(|| HeaderValue::from_str(&origin).ok()).flatten()
            }
        }
    }
}

/// One origin as browsers send it: `http` or `https`, a host, perhaps a port, and nothing after.
fn parse_origin(raw: &str) -> Result<String, String> {
    let lower = raw.to_ascii_lowercase();
    let invalid = || format!("{raw:?} is not an origin: write it as https://host or https://host:port, with no path");
    let (scheme, authority) = lower.split_once("://").ok_or_else(invalid)?;
    if !matches!(scheme, "http" | "https") {
        return Err(invalid());
    }
    // An IPv6 host is bracketed: its colons are not the port's.
    let (host, port) = match authority.find(']') {
        Some(end) if authority.starts_with('[') => match &authority[end + 1..] {
            "" => (&authority[..=end], None),
            rest => (&authority[..=end], Some(rest.strip_prefix(':').ok_or_else(invalid)?)),
        },
        _ => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let host_ok = !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
        && !host.starts_with('.')
        && !host.ends_with('.');
    let port_ok = port.is_none_or(|port| port.parse::<u16>().is_ok_and(|port| port > 0));
    if host_ok && port_ok { Ok(lower) } else { Err(invalid()) }
}

/// Whether `path` is one of the documentation pages or their assets.
fn is_docs(path: &str) -> bool {
    path == "/docs" || path.starts_with("/docs/") || path == "/redoc" || path == "/openapi.json"
}

/// A CORS preflight: `OPTIONS` naming the method the page wants to send.
fn is_preflight(req: &ServiceRequest) -> bool {
    req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: &'static str) {
    headers.insert(name, HeaderValue::from_static(value));
}

/// The headers every response carries.
fn secure(headers: &mut HeaderMap, docs: bool) {
    insert(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    insert(headers, header::X_FRAME_OPTIONS, "DENY");
    insert(headers, header::REFERRER_POLICY, "no-referrer");
    insert(headers, header::CONTENT_SECURITY_POLICY, if docs { DOCS_CSP } else { API_CSP });
    insert(headers, HeaderName::from_static("cross-origin-opener-policy"), "same-origin");
    // Answers carry people's conversations: no shared cache keeps them (event streams say `no-cache` themselves).
    if !docs && !headers.contains_key(header::CACHE_CONTROL) {
        insert(headers, header::CACHE_CONTROL, "no-store");
    }
}

/// Answers an allowed origin's preflight itself and marks allowed origins' responses as readable; adds the
/// security headers to every response. A preflight from an origin that is not allowed goes on to the routes,
/// whose answer (405) carries no CORS header, so the browser refuses the page's request.
pub async fn browser_safety(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let docs = is_docs(req.path());
    let allowed = req.headers().get(header::ORIGIN).and_then(|origin| {
        let state = req.app_data::<web::Data<AppState>>()?;
        state.cors.allow(origin)
    });
    let mut response = match &allowed {
        Some(origin) if is_preflight(&req) => {
            let answer = HttpResponse::NoContent()
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()))
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS))
                .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE))
                .finish();
            req.into_response(answer)
        }
        _ => next.call(req).await?.map_into_boxed_body(),
    };
    let headers = response.headers_mut();
    if let Some(origin) = allowed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        insert(headers, header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED_HEADERS);
    }
    // Whatever the policy, the answer depends on the origin: caches must keep them apart.
    headers.append(header::VARY, HeaderValue::from_static("origin"));
    secure(headers, docs);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_parsed_lowercase_and_anything_else_is_refused() {
        assert_eq!(CorsPolicy::parse("").unwrap(), CorsPolicy::Off);
        assert_eq!(CorsPolicy::parse(" , ").unwrap(), CorsPolicy::Off);
        assert_eq!(CorsPolicy::parse("*").unwrap(), CorsPolicy::AnyOrigin);
        assert_eq!(
            CorsPolicy::parse("https://App.Example.com, http://localhost:5173,http://[::1]:8080").unwrap(),
            CorsPolicy::Origins(vec![
                "https://app.example.com".into(),
                "http://localhost:5173".into(),
                "http://[::1]:8080".into()
            ])
        );
        assert_eq!(CorsPolicy::parse("http://[::1]").unwrap(), CorsPolicy::Origins(vec!["http://[::1]".into()]));
        for bad in [
            "app.example.com",
            "ftp://app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://",
            "https://app.example.com:0",
            "https://app.example.com:99999",
            "https://user@app.example.com",
            "*, https://app.example.com",
        ] {
            assert!(CorsPolicy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_listed_origins_are_allowed_and_matching_ignores_case() {
        let policy = CorsPolicy::parse("https://app.example.com").unwrap();
        let allow = |origin: &str| policy.allow(&HeaderValue::from_str(origin).unwrap());
        assert_eq!(allow("https://app.example.com").unwrap(), "https://app.example.com");
        assert_eq!(allow("HTTPS://APP.EXAMPLE.COM").unwrap(), "https://app.example.com");
        assert!(allow("https://app.example.com.evil.com").is_none());
        assert!(allow("http://app.example.com").is_none());
        assert!(allow("null").is_none());
        assert!(CorsPolicy::Off.allow(&HeaderValue::from_static("https://app.example.com")).is_none());
        assert_eq!(CorsPolicy::AnyOrigin.allow(&HeaderValue::from_static("https://x.example")).unwrap(), "*");
    }
}
