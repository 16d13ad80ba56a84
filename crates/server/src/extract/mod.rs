//! Request extractors: the authenticated user, bodies read within the size limit, and query parameters.

mod auth;
mod body;
mod query;

pub use auth::{AuthUser, TokenUser};
pub use body::{FormBody, JsonBody};
pub use query::QueryParams;
