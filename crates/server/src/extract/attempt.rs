//! `AuthAttempt`: a sign-up or login attempt, counted against its address's rate limit before anything else.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::{Ready, ready};

use crate::error::ApiError;
use crate::state::AppState;

/// Taken first by the sign-up and login handlers, so that every attempt counts (malformed ones too) and one over
/// the limit gets 429 before its body is read or a password hashed.
#[derive(Debug)]
pub struct AuthAttempt;

impl FromRequest for AuthAttempt {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match req.app_data::<web::Data<AppState>>() {
            Some(state) => state.limits.auth_attempt(req).map(|()| AuthAttempt),
            None => Err(ApiError::Internal("application state is not registered".into())),
        })
    }
}
