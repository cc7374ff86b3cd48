//! What can go wrong asking an agent, classified for retries: an agent that
//! cannot be reached, or answers 429/502/503/504, may answer next time;
//! a refused token or a malformed answer will not.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer: cannot connect, or it timed out.
    #[error("agent of cell {cell} at {url}: {what}: {detail}")]
    Unreachable { cell: String, url: String, what: &'static str, detail: String },
    #[error("agent of cell {cell} at {url} refused the token (401); check the plan's agent token for this cell")]
    Unauthorized { cell: String, url: String },
    /// An answer the contract does not allow for this request.
    #[error("agent of cell {cell}: {what} gave {status}: {message}")]
    Status {
        cell: String,
        what: &'static str,
        status: u16,
        message: String,
        /// What the agent's `Retry-After` asked for.
        retry_after: Option<Duration>,
    },
    /// The agent has seen a coordinator lease epoch above the one sent:
    /// another coordinator leads, and this one must not act.
    #[error("agent of cell {cell} at {url} refused coordinator epoch {sent}: it has seen epoch {seen}, so another coordinator leads now and this one steps down")]
    Superseded { cell: String, url: String, sent: u64, seen: u64 },
    /// Refused before sending: the request cannot be right.
    #[error("agent of cell {cell}: {what}: not sent: {reason}")]
    NotSent { cell: String, what: &'static str, reason: String },
    /// The answer is not the contract's type: the agent and this build disagree.
    #[error("agent of cell {cell}: {what}: the answer is not what this build of Lifeboat expects ({detail}); are the agent and coordinator the same version?")]
    Contract { cell: String, what: &'static str, detail: String },
}

impl ClientError {
    /// Asking again cannot help.
    pub fn is_permanent(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => false,
            ClientError::Status { status, .. } => !matches!(status, 429 | 502 | 503 | 504),
            ClientError::Unauthorized { .. }
            | ClientError::Contract { .. }
            | ClientError::NotSent { .. }
            | ClientError::Superseded { .. } => true,
        }
    }

    /// How long the agent asked callers to wait before asking again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// reqwest's error without the URL (the client names the agent once).
pub(crate) fn describe(e: &reqwest::Error) -> (&'static str, String) {
    let kind = if e.is_connect() {
        "cannot connect (is the agent running?)"
    } else if e.is_timeout() {
        "timed out"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if let Some(hint) = tls_hint(&detail) {
        detail = format!("{detail} ({hint})");
    }
    (kind, detail)
}

/// What a TLS failure (rustls' alert or verifier error) means for the operator.
fn tls_hint(detail: &str) -> Option<&'static str> {
    let hints = [
        ("CertificateRequired", "certificate required: the agent wants a client certificate, LIFEBOAT_AGENT_CLIENT_CERT and _KEY"),
        ("UnknownCA", "unknown ca: the agent does not trust this client certificate's CA"),
        ("BadCertificate", "bad certificate: the agent refused this client certificate"),
        ("UnknownIssuer", "the agent's certificate is not signed by a CA this host trusts: LIFEBOAT_AGENT_CA_FILE"),
        (
            "CaUsedAsEndEntity",
            "the agent serves a CA certificate as its own: make it an end-entity certificate (basicConstraints CA:FALSE)",
        ),
        // TLS 1.3: a refused client certificate can close the connection
        // before the request is sent, and the alert's text is then lost.
        (
            "connection was not ready",
            "the agent closed the connection as it opened; an agent that requires a client certificate does so to a client without one: LIFEBOAT_AGENT_CLIENT_CERT",
        ),
    ];
    hints.iter().find(|(name, _)| detail.contains(name)).map(|(_, hint)| *hint)
}
