//! What handlers answer with when a request fails: the contract's error
//! body (`{"error": "..."}`) naming the problem and what to do.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use lifeboat_api::service::ErrorBody;

pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(ErrorBody { error: message.into() })).into_response()
}
