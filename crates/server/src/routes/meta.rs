//! The service's own endpoints: `/`, `/health` and `/openapi.json`, plus the fallbacks for unknown paths and methods.

use std::time::Duration;

use actix_web::{HttpResponse, web};

use crate::dto::{HealthResponse, PoolResponse, RootResponse};
use crate::error::ApiError;
use crate::openapi::{Served, document};
use crate::state::AppState;

/// How long `/health` waits for the database before calling it unreachable.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

#[utoipa::path(get, path = "/", tag = "meta", responses((status = 200, body = RootResponse)))]
pub async fn root() -> HttpResponse {
    HttpResponse::Ok().json(RootResponse {
        message: "AI Chat Backend API",
        version: env!("CARGO_PKG_VERSION"),
        docs: "/docs",
    })
}

/// Healthy when the database answers a query.
#[utoipa::path(get, path = "/health", tag = "meta", responses(
    (status = 200, body = HealthResponse, description = "The database answers"),
    (status = 503, body = HealthResponse, description = "The database does not answer"),
))]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let db = state.service.database();
    let answered = match tokio::time::timeout(HEALTH_TIMEOUT, db.ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "health check: database error");
            false
        }
        Err(_) => {
            tracing::warn!("health check: database did not answer in time");
            false
        }
    };
    let (connections, idle) = db.pool_state();
    let body = HealthResponse {
        status: if answered { "healthy" } else { "unhealthy" },
        database: if answered { "ok" } else { "unreachable" },
        backend: db.backend(),
        pool: PoolResponse { connections, idle },
    };
    if answered { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

/// The OpenAPI document, with this server's model aliases and message limit.
pub async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    let aliases = state.service.alias_names();
    HttpResponse::Ok().json(document(&Served {
        aliases: &aliases,
        default_model: &state.default_model,
        max_message_chars: state.max_message_chars,
    }))
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// A method the path does not serve; `allow` names those it does.
pub async fn method_not_allowed(allow: &'static str) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { allow })
}

/// Swagger UI lives at `/docs/`; its page loads its assets relative to that.
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header(("Location", "/docs/")).finish()
}
