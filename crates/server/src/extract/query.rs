//! Query-string parameters, checked as FastAPI checks `Query(ge=..., le=...)` integers.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use serde_json::json;
use std::future::{Ready, ready};

use crate::error::ApiError;
use crate::validation::FieldError;

/// The query string's parameters; the last value of a repeated name wins.
#[derive(Debug)]
pub struct QueryParams(Vec<(String, String)>);

impl FromRequest for QueryParams {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(serde_urlencoded::from_str::<Vec<(String, String)>>(req.query_string()).map(QueryParams).map_err(|_| {
            ApiError::Validation(vec![FieldError::new(
                "query_invalid",
                &["query"],
                "The query string is not valid URL encoding",
            )])
        }))
    }
}

impl QueryParams {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// An optional integer in `min..=max`; problems are added to `errors`.
    pub fn int(&self, name: &str, min: i64, max: Option<i64>, errors: &mut Vec<FieldError>) -> Option<i64> {
        let raw = self.get(name)?;
        let loc = ["query", name];
        let Ok(value) = raw.trim().parse::<i64>() else {
            errors.push(FieldError::new(
                "int_parsing",
                &loc,
                "Input should be a valid integer, unable to parse string as an integer",
            ));
            return None;
        };
        if value < min {
            errors.push(
                FieldError::new("greater_than_equal", &loc, format!("Input should be greater than or equal to {min}"))
                    .with_ctx(json!({ "ge": min })),
            );
            return None;
        }
        if let Some(max) = max.filter(|max| value > *max) {
            errors.push(
                FieldError::new("less_than_equal", &loc, format!("Input should be less than or equal to {max}"))
                    .with_ctx(json!({ "le": max })),
            );
            return None;
        }
        Some(value)
    }
}
