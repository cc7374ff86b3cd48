//! Every request carries `Authorization: Bearer <token>`, the token shared
//! with the coordinator (compared by `lifeboat_secrets::Token`: digests, in
//! constant time); refusals get 401, are counted and logged with the peer's
//! address (never with what was sent).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Agent;
use lifeboat_https::Peer;

pub async fn require_token(State(agent): State<Arc<Agent>>, req: Request, next: Next) -> Response {
    let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let reason = match given {
        Some(token) if agent.token.matches(token) => return next.run(req).await,
        Some(_) => "wrong token",
        None => "no bearer token",
    };
    let peer = req.extensions().get::<Peer>().map(|p| p.0.to_string()).unwrap_or_else(|| "unknown".into());
    tracing::warn!(%peer, method = %req.method(), path = req.uri().path(), reason, "refused an unauthenticated request");
    agent.metrics.unauthorized();
    let body = axum::Json(serde_json::json!({
        "error": format!("unauthorized ({reason}): send Authorization: Bearer <the token in the agent's --token-file>")
    }));
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
}
