//! The service's own endpoints: `/` and `/health`, plus the fallbacks for unknown paths and methods.

use std::time::Duration;

use actix_web::{HttpResponse, web};

use crate::dto::{HealthResponse, RootResponse};
use crate::error::ApiError;
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
    match tokio::time::timeout(HEALTH_TIMEOUT, state.service.database().ping()).await {
        Ok(Ok(())) => HttpResponse::Ok().json(HealthResponse { status: "healthy", database: "ok" }),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "health check: database error");
            HttpResponse::ServiceUnavailable().json(HealthResponse { status: "unhealthy", database: "unreachable" })
        }
        Err(_) => {
            tracing::warn!("health check: database did not answer in time");
            HttpResponse::ServiceUnavailable().json(HealthResponse { status: "unhealthy", database: "unreachable" })
        }
    }
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

pub async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

/// Swagger UI lives at `/docs/`; its page loads its assets relative to that.
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header(("Location", "/docs/")).finish()
}
