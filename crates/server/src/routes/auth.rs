//! `/auth/*`: register, log in (JSON or OAuth2 form), and who am I.

use actix_web::{HttpResponse, web};
use chat_domain::{Email, Password, PasswordError};

use crate::dto::{
    ErrorResponse, LoginRequest, RefreshRequest, RegisterRequest, TokenForm, TokenResponse, UserResponse,
    ValidationErrorResponse,
};
use crate::error::ApiError;
use crate::extract::{AuthAttempt, AuthUser, FormBody, JsonBody};
use crate::state::AppState;
use crate::validation::{FieldError, ObjectReader};

/// Longer than any refresh token the server issues; a longer one is refused before it is looked up.
const MAX_REFRESH_TOKEN_CHARS: usize = 128;

fn token_response(session: chat_service::Session) -> HttpResponse {
    HttpResponse::Ok().json(TokenResponse {
        access_token: session.access.token,
        token_type: "bearer",
        expires_in: session.access.expires_in,
        refresh_token: session.refresh_token.value,
        refresh_expires_in: session.refresh_expires_in,
    })
}

fn parse_email(reader: &mut ObjectReader<'_>) -> Option<Email> {
    let raw = reader.required_str("email")?;
    Email::parse(&raw)
        .map_err(|err| {
            reader
                .push(FieldError::value_error(&["body", "email"], format!("value is not a valid email address: {err}")))
        })
        .ok()
}

/// Create an account.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterRequest, responses(
    (status = 201, body = UserResponse, description = "The new account"),
    (status = 409, body = ErrorResponse, description = "Email already registered"),
    (status = 413, body = ErrorResponse),
    (status = 422, body = ValidationErrorResponse, description = "Bad email, or password length out of bounds"),
    (status = 429, body = ErrorResponse, description = "Too many attempts from this address; see Retry-After"),
    (status = 503, body = ErrorResponse, description = "The database cannot be reached"),
))]
pub async fn register(_: AuthAttempt, state: web::Data<AppState>, body: JsonBody) -> Result<HttpResponse, ApiError> {
    let mut reader = ObjectReader::new(body.0.as_ref())?;
    let email = parse_email(&mut reader);
    let password = reader.required_str("password").and_then(|raw| {
        Password::parse(raw)
            .map_err(|err| {
                let loc = ["body", "password"];
                reader.push(match err {
                    PasswordError::TooShort { min } => FieldError::too_short(&loc, min),
                    PasswordError::TooLong { max } => FieldError::too_long(&loc, max),
                    PasswordError::TooManyBytes { .. } => FieldError::value_error(&loc, err),
                })
            })
            .ok()
    });
    reader.finish()?;
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::Internal("validated fields missing".into()));
    };
    let user = state.service.register(email, password).await?;
    Ok(HttpResponse::Created().json(UserResponse::from(&user)))
}

/// Log in with email and password; answers a bearer token.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, body = TokenResponse),
    (status = 401, body = ErrorResponse, description = "Invalid email or password"),
    (status = 413, body = ErrorResponse),
    (status = 422, body = ValidationErrorResponse),
    (status = 429, body = ErrorResponse, description = "Too many attempts from this address; see Retry-After"),
    (status = 503, body = ErrorResponse, description = "The database cannot be reached"),
))]
pub async fn login(_: AuthAttempt, state: web::Data<AppState>, body: JsonBody) -> Result<HttpResponse, ApiError> {
    let mut reader = ObjectReader::new(body.0.as_ref())?;
    let email = parse_email(&mut reader);
    let password = reader.required_str("password").and_then(|raw| {
        let length = raw.chars().count();
        if length < 1 {
            reader.push(FieldError::too_short(&["body", "password"], 1));
            None
        } else if length > 72 {
            reader.push(FieldError::too_long(&["body", "password"], 72));
            None
        } else {
            Some(raw)
        }
    });
    reader.finish()?;
    let (Some(email), Some(password)) = (email, password) else {
        return Err(ApiError::Internal("validated fields missing".into()));
    };
    Ok(token_response(state.service.login(email.as_str(), &password).await?))
}

/// OAuth2 password flow (what Swagger UI's Authorize button uses): the email goes in `username`.
#[utoipa::path(post, path = "/auth/token", tag = "auth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, body = ErrorResponse, description = "Invalid email or password"),
        (status = 413, body = ErrorResponse),
        (status = 422, body = ValidationErrorResponse),
        (status = 429, body = ErrorResponse, description = "Too many attempts from this address; see Retry-After"),
        (status = 503, body = ErrorResponse, description = "The database cannot be reached"),
))]
pub async fn token(_: AuthAttempt, state: web::Data<AppState>, form: FormBody) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let mut field = |name: &str| match form.get(name).filter(|v| !v.is_empty()) {
        Some(value) => Some(value.to_owned()),
        None => {
            errors.push(FieldError::missing(&["body", name]));
            None
        }
    };
    let (username, password) = (field("username"), field("password"));
    let (Some(username), Some(password)) = (username, password) else {
        return Err(ApiError::Validation(errors));
    };
    Ok(token_response(state.service.login(&username, &password).await?))
}

/// The account the token belongs to.
#[utoipa::path(get, path = "/auth/me", tag = "auth",
    security(("OAuth2PasswordBearer" = []), ("HTTPBearer" = [])),
    responses(
        (status = 200, body = UserResponse),
        (status = 401, body = ErrorResponse),
        (status = 503, body = ErrorResponse, description = "The database cannot be reached"),
))]
pub async fn me(AuthUser(user): AuthUser) -> HttpResponse {
    HttpResponse::Ok().json(UserResponse::from(&user))
}

/// Logs out everywhere: every token of the account issued until now is refused from now on, on every server.
#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    security(("OAuth2PasswordBearer" = []), ("HTTPBearer" = [])),
    responses(
        (status = 204, description = "Every token of the account is revoked"),
        (status = 401, body = ErrorResponse),
        (status = 503, body = ErrorResponse, description = "The database cannot be reached"),
))]
pub async fn logout(state: web::Data<AppState>, AuthUser(user): AuthUser) -> Result<HttpResponse, ApiError> {
    state.service.logout(user.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Exchanges a refresh token (usable once) for a new access token and the next refresh token. A refresh token
/// presented a second time revokes every refresh token of its login, the holder's too (access tokens already issued
/// live until they expire; a logout revokes them).
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest, responses(
    (status = 200, body = TokenResponse),
    (status = 401, body = ErrorResponse, description = "Unknown, expired, revoked or already used refresh token"),
    (status = 413, body = ErrorResponse),
    (status = 422, body = ValidationErrorResponse),
    (status = 429, body = ErrorResponse, description = "Too many attempts from this address; see Retry-After"),
    (status = 503, body = ErrorResponse, description = "The database cannot be reached"),
))]
pub async fn refresh(_: AuthAttempt, state: web::Data<AppState>, body: JsonBody) -> Result<HttpResponse, ApiError> {
    let mut reader = ObjectReader::new(body.0.as_ref())?;
    let token = reader.required_str("refresh_token").filter(|token| {
        let loc = ["body", "refresh_token"];
        let length = token.chars().count();
        if length < 1 {
            reader.push(FieldError::too_short(&loc, 1));
        } else if length > MAX_REFRESH_TOKEN_CHARS {
            reader.push(FieldError::too_long(&loc, MAX_REFRESH_TOKEN_CHARS));
        }
        (1..=MAX_REFRESH_TOKEN_CHARS).contains(&length)
    });
    reader.finish()?;
    let Some(token) = token else {
        return Err(ApiError::Internal("validated fields missing".into()));
    };
    Ok(token_response(state.service.refresh(&token).await?))
}
