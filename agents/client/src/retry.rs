//! How the client asks again: exponential backoff with jitter for errors
//! that are not permanent, waiting at least what an agent's `Retry-After`
//! asks (capped, so a confused proxy cannot stall a failover).

use std::future::Future;
use std::time::{Duration, SystemTime};

use backon::{ExponentialBuilder, Retryable};

use crate::error::ClientError;

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts after the first.
    pub retries: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 3,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retries: every error is the caller's to handle.
    pub fn none() -> Self {
        RetryPolicy { retries: 0, ..RetryPolicy::default() }
    }

    pub(crate) async fn run<T, F, Fut>(&self, cell: &str, what: &'static str, attempt: F) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.retries)
            .with_jitter();
        let cap = self.max_retry_after;
        attempt
            .retry(backoff)
            .when(|e: &ClientError| !e.is_permanent())
            .adjust(move |e: &ClientError, delay| wait(delay, e.retry_after(), cap))
            .notify(|e: &ClientError, delay: Duration| {
                tracing::warn!(cell, what, error = %e, retry_in_ms = delay.as_millis() as u64, "asking the agent again");
            })
            .await
    }
}

/// The backoff's next delay (None: retries are used up), stretched to what
/// the agent asked for, within `cap`.
fn wait(backoff: Option<Duration>, asked: Option<Duration>, cap: Duration) -> Option<Duration> {
    let delay = backoff?;
    Some(asked.map_or(delay, |a| a.min(cap).max(delay)))
}

/// A `Retry-After` value: seconds, or an HTTP date.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(90)));
        assert_eq!(parse_retry_after(&httpdate::fmt_http_date(now - Duration::from_secs(5)), now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn the_agent_can_stretch_a_delay_but_not_past_the_cap_nor_the_retries() {
        let s = Duration::from_secs;
        assert_eq!(wait(Some(s(1)), Some(s(4)), s(30)), Some(s(4)));
        assert_eq!(wait(Some(s(1)), Some(s(600)), s(30)), Some(s(30)));
        assert_eq!(wait(Some(s(2)), Some(s(0)), s(30)), Some(s(2)));
        assert_eq!(wait(None, Some(s(4)), s(30)), None, "no retries left");
    }
}
