//! Request validation in FastAPI's shape: a list of `{type, loc, msg, ctx?}` entries, all problems at once.

use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::error::ApiError;

/// One step of a `loc` path: a field name or a position.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LocItem {
    Key(String),
    Index(usize),
}

impl From<&str> for LocItem {
    fn from(key: &str) -> Self {
        LocItem::Key(key.to_owned())
    }
}

/// One validation failure, as FastAPI (pydantic 2) reports it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    /// A snake_case code such as `missing`, `string_too_short`, `json_invalid`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Where: `["body", "password"]`, `["query", "limit"]`.
    #[schema(value_type = Vec<serde_json::Value>)]
    pub loc: Vec<LocItem>,
    /// A sentence for a person.
    pub msg: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub ctx: Option<Value>,
}

impl FieldError {
    pub fn new(kind: &'static str, loc: &[&str], msg: impl Into<String>) -> Self {
        Self { kind, loc: loc.iter().map(|k| LocItem::from(*k)).collect(), msg: msg.into(), ctx: None }
    }

    pub fn with_ctx(mut self, ctx: Value) -> Self {
        self.ctx = Some(ctx);
        self
    }

    pub fn missing(loc: &[&str]) -> Self {
        Self::new("missing", loc, "Field required")
    }

    pub fn too_short(loc: &[&str], min: usize) -> Self {
        let unit = if min == 1 { "character" } else { "characters" };
        Self::new("string_too_short", loc, format!("String should have at least {min} {unit}"))
            .with_ctx(json!({ "min_length": min }))
    }

    pub fn too_long(loc: &[&str], max: usize) -> Self {
        Self::new("string_too_long", loc, format!("String should have at most {max} characters"))
            .with_ctx(json!({ "max_length": max }))
    }

    pub fn value_error(loc: &[&str], reason: impl std::fmt::Display) -> Self {
        Self::new("value_error", loc, format!("Value error, {reason}")).with_ctx(json!({ "error": reason.to_string() }))
    }

    /// Malformed JSON; `position` is the character offset where parsing failed, as FastAPI reports it.
    pub fn json_invalid(err: &serde_json::Error, position: usize) -> Self {
        Self {
            kind: "json_invalid",
            loc: vec![LocItem::from("body"), LocItem::Index(position)],
            msg: format!("JSON decode error: {err}"),
            ctx: Some(json!({ "error": err.to_string() })),
        }
    }
}

/// Reads the fields of a JSON object body, recording a FastAPI-style error for each problem.
#[derive(Debug)]
pub struct ObjectReader<'a> {
    fields: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> ObjectReader<'a> {
    /// `None` (no body) is a `missing` body; anything but an object is `model_attributes_type`.
    pub fn new(body: Option<&'a Value>) -> Result<Self, ApiError> {
        match body {
            Some(Value::Object(fields)) => Ok(Self { fields, errors: Vec::new() }),
            None => Err(ApiError::Validation(vec![FieldError::missing(&["body"])])),
            Some(_) => Err(ApiError::Validation(vec![FieldError::new(
                "model_attributes_type",
                &["body"],
                "Input should be a valid dictionary or object to extract fields from",
            )])),
        }
    }

    /// A required string field; records `missing` or `string_type`.
    pub fn required_str(&mut self, field: &str) -> Option<String> {
        match self.fields.get(field) {
            None => {
                self.errors.push(FieldError::missing(&["body", field]));
                None
            }
            Some(value) => self.string(field, value),
        }
    }

    /// An optional string field: absent and `null` are both `None`.
    pub fn optional_str(&mut self, field: &str) -> Option<String> {
        match self.fields.get(field) {
            None | Some(Value::Null) => None,
            Some(value) => self.string(field, value),
        }
    }

    /// An optional boolean field: absent and `null` are both `None`.
    pub fn optional_bool(&mut self, field: &str) -> Option<bool> {
        match self.fields.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                self.errors.push(FieldError::new("bool_type", &["body", field], "Input should be a valid boolean"));
                None
            }
        }
    }

    fn string(&mut self, field: &str, value: &Value) -> Option<String> {
        match value {
            // No database stores NUL in text (PostgreSQL refuses it): refused here, for every string.
            Value::String(s) if s.contains('\0') => {
                let msg = "String should not contain NUL characters (\\u0000)";
                self.errors.push(FieldError::new("string_pattern_mismatch", &["body", field], msg));
                None
            }
            Value::String(s) => Some(s.clone()),
            _ => {
                self.errors.push(FieldError::new("string_type", &["body", field], "Input should be a valid string"));
                None
            }
        }
    }

    pub fn push(&mut self, error: FieldError) {
        self.errors.push(error);
    }

    /// Ok when no problem was recorded; otherwise the 422 with all of them.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() { Ok(()) } else { Err(ApiError::Validation(self.errors)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_like_fastapi() {
        let err = FieldError::too_short(&["body", "password"], 8);
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"type": "string_too_short", "loc": ["body", "password"],
                   "msg": "String should have at least 8 characters", "ctx": {"min_length": 8}})
        );
        assert_eq!(serde_json::to_value(FieldError::missing(&["body", "email"])).unwrap()["msg"], "Field required");
    }

    #[test]
    fn reader_collects_every_problem() {
        let body = json!({"email": 5});
        let mut reader = ObjectReader::new(Some(&body)).unwrap();
        assert!(reader.required_str("email").is_none());
        assert!(reader.required_str("password").is_none());
        let Err(ApiError::Validation(errors)) = reader.finish() else { panic!("expected a validation error") };
        let kinds: Vec<_> = errors.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["string_type", "missing"]);
    }

    #[test]
    fn non_objects_and_missing_bodies_are_refused() {
        assert!(matches!(ObjectReader::new(Some(&json!([1, 2]))), Err(ApiError::Validation(_))));
        assert!(matches!(ObjectReader::new(None), Err(ApiError::Validation(_))));
    }
}
