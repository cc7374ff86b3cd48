//! JSON-schema stand-ins for the field types whose serde form is not their
//! Rust shape: instants (RFC 3339 strings) and durations (humantime
//! strings). Fields name them with `#[schemars(with = ...)]`.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

/// An instant as RFC 3339 (`time::serde::rfc3339`).
pub struct Timestamp;

impl JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "format": "date-time", "description": "An instant, RFC 3339 (e.g. 2026-11-27T10:15:00Z)." })
    }
}

/// A duration as humantime writes it (`humantime_serde`).
pub struct HumanDuration;

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "HumanDuration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "description": "A duration: a number and a unit, e.g. 90s, 15m, 24h, 35days.", "examples": ["24h", "35days"] })
    }
}
