//! Request extractors: the authenticated user, rate-limited sign-in attempts, bodies read within the size limit,
//! and query parameters.

mod attempt;
mod auth;
mod body;
mod query;

pub use attempt::AuthAttempt;
pub use auth::{AuthUser, TokenUser};
pub use body::{FormBody, JsonBody};
pub use query::QueryParams;
