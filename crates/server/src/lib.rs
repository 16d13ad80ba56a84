//! The HTTP server: configuration, start-up, routes, extractors, event streams, the error mapping and the OpenAPI document.

pub mod browser;
pub mod config;
pub mod dto;
pub mod error;
pub mod extract;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod routes;
pub mod sse;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod validation;
