//! Who may do what on the coordinator's HTTP API. Two roles hold tokens:
//! a **viewer** (auditors, dashboards, the status page) reads status, runs,
//! reports and metrics; an **operator** reads too and starts runs. Only
//! the health check answers without a token, and `/metrics` when the
//! coordinator is started with `--open-metrics` (a scraper on a private
//! network). A token comes as `Authorization: Bearer <token>`, or as the
//! password of HTTP Basic authentication so a browser can open the page
//! (any user name). Tokens are compared by `lifeboat_secrets::Token`:
//! digests, in constant time. A refusal is a 401, counted, and logged with
//! the peer's address and path, never with what was sent.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Result};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use lifeboat_https::Peer;
use lifeboat_secrets::Token;

use super::Coordinator;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Operator,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

/// The tokens a coordinator accepts, and whether its metrics are open.
pub struct Access {
    operator: Option<Token>,
    viewer: Option<Token>,
    open_metrics: bool,
}

impl Access {
    /// From the token files; at least one is needed, so nothing but the
    /// health check is ever served without a token.
    pub fn from_files(operator: Option<&Path>, viewer: Option<&Path>, open_metrics: bool) -> Result<Access> {
        if operator.is_none() && viewer.is_none() {
            bail!(
                "every endpoint but /v1/health needs a token: give --viewer-token-file (reads) and/or --operator-token-file (reads and runs), \
                 each a file of 32+ random characters (`openssl rand -hex 32 > F; chmod 600 F`)"
            );
        }
        let load = |path: Option<&Path>, what| path.map(|p| Token::from_file(p, what)).transpose();
        Ok(Access { operator: load(operator, "operator token")?, viewer: load(viewer, "viewer token")?, open_metrics })
    }

    /// The role `token` holds, if any.
    fn role_of(&self, token: &str) -> Option<Role> {
        if self.operator.as_ref().is_some_and(|t| t.matches(token)) {
            return Some(Role::Operator);
        }
        self.viewer.as_ref().filter(|t| t.matches(token)).map(|_| Role::Viewer)
    }

    /// The role a request needs (None: open).
    fn needed(&self, method: &Method, path: &str) -> Option<Role> {
        match path {
            "/v1/health" | "/healthz" => None,
            "/metrics" if self.open_metrics => None,
            _ if method == Method::GET || method == Method::HEAD => Some(Role::Viewer),
            _ => Some(Role::Operator),
        }
    }
}

/// The token a request presents: a bearer token, or Basic's password.
fn presented(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Some(token.to_string());
    }
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let pair = String::from_utf8(decoded).ok()?;
    pair.split_once(':').map(|(_, password)| password.to_string())
}

/// The middleware: let a request through when its token holds the role
/// its method and path need; 401 (or 403 for a viewer asking to act).
pub async fn require(State(c): State<Arc<Coordinator>>, req: Request, next: Next) -> Response {
    let Some(needed) = c.access.needed(req.method(), req.uri().path()) else { return next.run(req).await };
    let held = presented(req.headers()).and_then(|t| c.access.role_of(&t));
    if held.is_some_and(|r| r >= needed) {
        return next.run(req).await;
    }
    let peer = req.extensions().get::<Peer>().map(|p| p.0.to_string()).unwrap_or_else(|| "unknown".into());
    let reason = match held {
        Some(r) => format!("a {} token cannot do this; it needs the {} token", r.as_str(), needed.as_str()),
        None if req.headers().contains_key(header::AUTHORIZATION) => "wrong token".to_string(),
        None => "no token".to_string(),
    };
    tracing::warn!(%peer, method = %req.method(), path = req.uri().path(), reason, "refused a request");
    c.metrics.unauthorized();
    let body = axum::Json(lifeboat_api::ErrorBody {
        error: format!(
            "unauthorized ({reason}): send Authorization: Bearer <token> with the {} token (a browser: any user name, the token as password)",
            needed.as_str()
        ),
    });
    let status = if held.is_some() { StatusCode::FORBIDDEN } else { StatusCode::UNAUTHORIZED };
    let challenge = [(header::WWW_AUTHENTICATE, "Basic realm=\"lifeboat\", charset=\"UTF-8\"")];
    (status, challenge, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn a_token_comes_as_bearer_or_as_basics_password() {
        assert_eq!(presented(&headers("Bearer abc")).as_deref(), Some("abc"));
        // "auditor:s3cr:et" — the password may hold a colon.
        let basic = base64::engine::general_purpose::STANDARD.encode("auditor:s3cr:et");
        assert_eq!(presented(&headers(&format!("Basic {basic}"))).as_deref(), Some("s3cr:et"));
        assert_eq!(presented(&headers("Basic not-base64!")), None);
        assert_eq!(presented(&headers("Digest x")), None);
        assert_eq!(presented(&HeaderMap::new()), None);
    }

    #[test]
    fn reads_need_a_viewer_acting_needs_an_operator_health_is_open() {
        let access = Access { operator: None, viewer: None, open_metrics: false };
        assert_eq!(access.needed(&Method::GET, "/v1/health"), None);
        assert_eq!(access.needed(&Method::GET, "/healthz"), None);
        assert_eq!(access.needed(&Method::GET, "/metrics"), Some(Role::Viewer));
        assert_eq!(access.needed(&Method::GET, "/"), Some(Role::Viewer));
        assert_eq!(access.needed(&Method::GET, "/reports/a/000001-x.json"), Some(Role::Viewer));
        assert_eq!(access.needed(&Method::POST, "/v1/runs"), Some(Role::Operator));
        assert_eq!(access.needed(&Method::POST, "/v1/failovers"), Some(Role::Operator));
        assert_eq!(access.needed(&Method::POST, "/v1/failovers/fo-1/approve"), Some(Role::Operator));
        assert_eq!(access.needed(&Method::GET, "/v1/failovers/fo-1"), Some(Role::Viewer));
        assert_eq!(access.needed(&Method::DELETE, "/v1/runs/1"), Some(Role::Operator));
        let open = Access { open_metrics: true, ..access };
        assert_eq!(open.needed(&Method::GET, "/metrics"), None);
        assert_eq!(open.needed(&Method::GET, "/v1/status"), Some(Role::Viewer));
    }

    #[test]
    fn a_coordinator_without_any_token_does_not_start() {
        let err = Access::from_files(None, None, true).err().unwrap().to_string();
        assert!(err.contains("--viewer-token-file"), "{err}");
    }
}
