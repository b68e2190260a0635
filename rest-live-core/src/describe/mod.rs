//! Descriptions of an app, generated from its registry (one source of truth): the OpenAPI
//! document of its HTTP API and the inspector's metadata.

pub mod inspector;
pub mod openapi;
pub mod schema;
