//! [`Resilient`]: timeouts, retries and cancellation around any store.
//!
//! This is the one retry layer of Lifeboat's storage path (the SDKs' own
//! retries are turned off). Only errors that are not
//! [`StoreError::is_permanent`] are retried, with exponential backoff and
//! jitter: a few times for failures such as refused connections, and, when
//! the service says it is throttling (503, 429), for as long as the
//! policy's throttle window, never sooner than its `Retry-After`. Every attempt has a timeout; a cancelled token ends the operation
//! (and any backoff sleep) at once with [`StoreError::Cancelled`].
//!
//! Streaming uploads cannot be replayed, so `put_stream` is not retried (its
//! caller retries from its source); `get_stream` retries opening the stream.
//! A retried `put` in [`PutMode::Create`] whose first attempt did land reports
//! [`StoreError::AlreadyExists`]; content-addressed callers treat that as
//! success after checking the content.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::{ByteStream, DynStore, ObjectMeta, ObjectPath, ObjectStore, PutMode, StoreError};

/// How hard to try.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Limit for one attempt of a non-streaming operation.
    pub attempt_timeout: Duration,
    /// How long a throttling service is waited for, in all.
    pub throttle_window: Duration,
    pub cancel: CancellationToken,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 5,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(120),
            throttle_window: Duration::from_secs(180),
            cancel: CancellationToken::new(),
        }
    }
}

impl RetryPolicy {
    /// The default policy, with the limit for one attempt from
    /// `LIFEBOAT_STORE_TIMEOUT_SECONDS` when set (a store that accepts a
    /// connection and never answers fails after that, times the retries).
    pub fn from_env() -> Result<Self, StoreError> {
        let mut policy = RetryPolicy::default();
        if let Ok(text) = std::env::var("LIFEBOAT_STORE_TIMEOUT_SECONDS") {
            let seconds = text.trim().parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| StoreError::InvalidUrl {
                url: format!("LIFEBOAT_STORE_TIMEOUT_SECONDS={text}"),
                reason: "a whole number of seconds, at least 1".into(),
            })?;
            policy.attempt_timeout = Duration::from_secs(seconds);
        }
        Ok(policy)
    }

    /// A policy for tests and for failing fast: few, short retries.
    pub fn quick() -> Self {
        RetryPolicy {
            retries: 3,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
            attempt_timeout: Duration::from_secs(30),
            throttle_window: Duration::from_secs(2),
            cancel: CancellationToken::new(),
        }
    }

    /// Run `attempt` until it succeeds, fails permanently, runs out of
    /// retries, or the policy's token is cancelled.
    pub async fn run<T, F, Fut>(&self, store: &str, op: &'static str, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let timeout = self.attempt_timeout;
        let timed = || {
            let fut = attempt();
            async move {
                match tokio::time::timeout(timeout, fut).await {
                    Ok(result) => result,
                    Err(_) => Err(StoreError::Transient {
                        store: store.to_string(),
                        op,
                        message: format!("no answer within {}s", timeout.as_secs()),
                    }),
                }
            }
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(usize::MAX)
            .with_total_delay(Some(self.throttle_window))
            .with_jitter();
        let (failures, attempts) = (AtomicUsize::new(0), AtomicUsize::new(1));
        let retried = timed
            .retry(backoff)
            .when(|e: &StoreError| match e {
                StoreError::Throttled { .. } => true,
                e if !e.is_permanent() => failures.fetch_add(1, Ordering::Relaxed) < self.retries,
                _ => false,
            })
            .adjust(|e: &StoreError, delay: Option<Duration>| match e {
                StoreError::Throttled { retry_after: Some(asked), .. } => delay.map(|d| d.max(*asked)),
                _ => delay,
            })
            .notify(|e: &StoreError, delay: Duration| {
                attempts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(store, op, error = %e, retry_in_ms = delay.as_millis() as u64, "transient storage error, retrying");
            });
        tokio::select! {
            result = retried => result.map_err(|e| {
                let gave_up = |message: String| format!("{message} (gave up after {} attempts)", attempts.load(Ordering::Relaxed));
                match e {
                    StoreError::Transient { store, op, message } => StoreError::Transient { store, op, message: gave_up(message) },
                    StoreError::Throttled { store, op, message, retry_after } => {
                        StoreError::Throttled { store, op, message: gave_up(message), retry_after }
                    }
                    other => other,
                }
            }),
            _ = self.cancel.cancelled() => Err(StoreError::Cancelled),
        }
    }
}

/// Wraps a store with [`RetryPolicy`].
#[derive(Debug)]
pub struct Resilient {
    inner: DynStore,
    policy: RetryPolicy,
    name: String,
}

impl Resilient {
    pub fn new(inner: DynStore, policy: RetryPolicy) -> Self {
        let name = inner.describe();
        Resilient { inner, policy, name }
    }
}

#[async_trait]
impl ObjectStore for Resilient {
    fn describe(&self) -> String {
        self.name.clone()
    }

    /// Local files have nothing to retry or time out: a copy between two
    /// of them goes to the files directly.
    fn as_file_store(&self) -> Option<&crate::fs::FileStore> {
        self.inner.as_file_store()
    }

    async fn prepare(&self) -> Result<(), StoreError> {
        self.policy.run(&self.name, "prepare", || self.inner.prepare()).await
    }

    async fn put(&self, path: &ObjectPath, data: Bytes, mode: PutMode) -> Result<(), StoreError> {
        self.policy.run(&self.name, "put", || self.inner.put(path, data.clone(), mode)).await
    }

    async fn put_deferred(&self, path: &ObjectPath, data: Bytes, mode: PutMode) -> Result<(), StoreError> {
        self.policy.run(&self.name, "put", || self.inner.put_deferred(path, data.clone(), mode)).await
    }

    async fn put_stream(&self, path: &ObjectPath, data: ByteStream, mode: PutMode) -> Result<u64, StoreError> {
        tokio::select! {
            result = self.inner.put_stream(path, data, mode) => result,
            _ = self.policy.cancel.cancelled() => Err(StoreError::Cancelled),
        }
    }

    async fn get(&self, path: &ObjectPath) -> Result<Bytes, StoreError> {
        self.policy.run(&self.name, "get", || self.inner.get(path)).await
    }

    async fn get_bounded(&self, path: &ObjectPath, limit: u64) -> Result<Bytes, StoreError> {
        self.policy.run(&self.name, "get", || self.inner.get_bounded(path, limit)).await
    }

    async fn get_stream(&self, path: &ObjectPath) -> Result<ByteStream, StoreError> {
        self.policy.run(&self.name, "get", || self.inner.get_stream(path)).await
    }

    async fn head(&self, path: &ObjectPath) -> Result<Option<ObjectMeta>, StoreError> {
        self.policy.run(&self.name, "head", || self.inner.head(path)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.policy.run(&self.name, "list", || self.inner.list(prefix)).await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.policy.run(&self.name, "sync", || self.inner.sync()).await
    }

    async fn delete(&self, path: &ObjectPath) -> Result<(), StoreError> {
        self.policy.run(&self.name, "delete", || self.inner.delete(path)).await
    }

    async fn set_legal_hold(&self, path: &ObjectPath, on: bool) -> Result<bool, StoreError> {
        self.policy.run(&self.name, "legal hold", || self.inner.set_legal_hold(path, on)).await
    }
}
