//! The storage error type, classified as transient (worth a retry) or permanent.

use thiserror::Error;

/// Errors from an [`crate::ObjectStore`]. Messages name the location and the
/// object and say what to do.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("object {path} not found in {store}")]
    NotFound { store: String, path: String },

    #[error("object {path} already exists in {store} and objects are never overwritten")]
    AlreadyExists { store: String, path: String },

    /// A failure that may go away on its own: timeouts, refused connections,
    /// throttling, 5xx answers.
    #[error("{store}: {op} failed: {message}")]
    Transient { store: String, op: &'static str, message: String },

    /// The service asked to slow down (HTTP 503 or 429): retried for as
    /// long as the retry policy's throttle window, and never sooner than
    /// its `Retry-After`.
    #[error("{store}: {op} throttled: {message}")]
    Throttled { store: String, op: &'static str, message: String, retry_after: Option<std::time::Duration> },

    #[error("{store}: access denied: {message}; check the credentials (AWS_* / AZURE_STORAGE_* variables) and their permissions")]
    AccessDenied { store: String, message: String },

    #[error("{store}: {op} failed: {message}")]
    Permanent { store: String, op: &'static str, message: String },

    #[error("invalid storage url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error("invalid object path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },

    #[error("operation cancelled")]
    Cancelled,

    /// The store keeps the object (S3 Object Lock; an Azure immutability
    /// policy or legal hold) until its retain-until date or the hold ends.
    #[error("object {path} in {store} is under Object Lock (immutable){until}; it stays until then")]
    Retained { store: String, path: String, until: String },

    /// Refused before reading it whole: no object of its kind is this large.
    #[error("object {path} in {store} holds more than {limit} bytes, more than any object of its kind; it was not written by Lifeboat (run `repo verify`)")]
    TooLarge { store: String, path: String, limit: u64 },
}

impl StoreError {
    /// True when retrying cannot help.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, StoreError::Transient { .. } | StoreError::Throttled { .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    pub fn is_already_exists(&self) -> bool {
        matches!(self, StoreError::AlreadyExists { .. })
    }
}

/// `Ok(None)` for a missing object, for `head` and `delete`.
pub(crate) fn absent_ok<T>(result: Result<T, StoreError>) -> Result<Option<T>, StoreError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// An error and its sources as one line of `Display` text (the SDK's own
/// context printer appends `Debug` output, which is not for people).
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

/// A store whose TLS certificate this host does not trust fails every try
/// alike: permanent, with where the CA goes (None: not that failure).
pub(crate) fn untrusted(store: &str, op: &'static str, message: &str) -> Option<StoreError> {
    message.contains("invalid peer certificate").then(|| StoreError::Permanent {
        store: store.to_string(),
        op,
        message: format!(
            "{message}; the store's TLS certificate is not trusted here: give the CA bundle that signed it with ca_file=/path.pem on the location or LIFEBOAT_CA_FILE"
        ),
    })
}
