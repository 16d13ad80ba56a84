//! `AuthUser` (the bearer token checked and its user loaded) and `TokenUser` (the token checked), or the contract's 401.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use chat_service::Caller;
use chat_storage::User;
use futures_util::future::{LocalBoxFuture, Ready, ready};

use crate::error::ApiError;
use crate::state::AppState;

/// The user making the request. Every handler outside `routes::PUBLIC_ROUTES` takes one, or a [`TokenUser`].
#[derive(Debug)]
pub struct AuthUser(pub User);

/// The caller a valid bearer token names, not looked up: for the busiest routes (`POST /chat`, the chat list, a
/// chat's messages), whose service call checks the user and the token's version in its own first read, which
/// saves a database call per request. A user who no longer exists, or logged out, gets the same 401 as with
/// [`AuthUser`].
#[derive(Debug)]
pub struct TokenUser(pub Caller);

/// The token of an `Authorization` header, as FastAPI's `OAuth2PasswordBearer` reads it: the scheme
/// (case-insensitive) must be `Bearer`; what follows the first space is the token, possibly empty.
fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer_token(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let token = token.ok_or(ApiError::NotAuthenticated)?;
            let state = state.ok_or_else(|| ApiError::Internal("application state is not registered".into()))?;
            let user = state.service.authenticate(&token).await?;
            tracing::Span::current().record("user_id", tracing::field::display(user.id));
            Ok(AuthUser(user))
        })
    }
}

impl FromRequest for TokenUser {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready((|| {
            let token = bearer_token(req).ok_or(ApiError::NotAuthenticated)?;
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| ApiError::Internal("application state is not registered".into()))?;
            let caller = state.service.verify_token(&token)?;
            tracing::Span::current().record("user_id", tracing::field::display(caller.id));
            Ok(TokenUser(caller))
        })())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn token_of(value: &str) -> Option<String> {
        bearer_token(&TestRequest::default().insert_header((header::AUTHORIZATION, value)).to_http_request())
    }

    #[test]
    fn scheme_is_case_insensitive_and_others_are_refused() {
        assert_eq!(token_of("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(token_of("bearer abc").as_deref(), Some("abc"));
        assert_eq!(token_of("BEARER abc").as_deref(), Some("abc"));
        assert_eq!(token_of("Bearer").as_deref(), Some(""));
        assert_eq!(token_of("Bearer   ").as_deref(), Some(""));
        assert_eq!(token_of("Basic dXNlcjpwYXNz"), None);
        assert_eq!(token_of("Token abc"), None);
        assert_eq!(bearer_token(&TestRequest::default().to_http_request()), None);
    }
}
