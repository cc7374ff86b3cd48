//! A store that throttles for a whole minute (every request answered
//! `503 Slow Down`, `Retry-After: 1`, in front of moto): a backup started
//! into it waits, never asking sooner than Retry-After says, finishes once
//! the store answers again, and loses nothing (restored byte for byte).

use std::time::{Duration, Instant};

use lifeboat_restore_tests::throttle::Throttle;
use lifeboat_restore_tests::{agent, describe_tree, ok, unique, KeyedTree};

#[test]
fn a_minute_of_503s_is_waited_out_and_nothing_is_lost() {
    lifeboat_restore_tests::services();
    let t = KeyedTree::new(2 << 20, 31);
    let (scratch, k, source) = (&t.dir, t.k(), &t.source);
    let moto = std::env::var("LIFEBOAT_TEST_S3_ENDPOINT").unwrap();
    let prefix = unique("throttled");
    let direct = format!("s3://lifeboat-test/{prefix}?endpoint={moto}");
    ok(&agent(&["repo", "init", "--repo", &direct, "--key-file", k], &[]));

    let target = moto.trim_start_matches("http://").trim_end_matches('/').parse().unwrap();
    let throttle = Throttle::start(target, Duration::from_secs(60));
    let throttled = format!("s3://lifeboat-test/{prefix}?endpoint={}", throttle.url);
    let started = Instant::now();
    let out = agent(
        &["files", "backup", source.to_str().unwrap(), "--repo", &throttled, "--cell", "th", "--key-file", k, "--output", "json"],
        &[],
    );
    let waited = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "the backup gave up on a throttling store: {stderr}");
    assert!(waited >= Duration::from_secs(55), "the store throttled for a minute, the backup took {waited:?}");
    // Retry-After: 1 is a floor (backoff grows past it), so at most one attempt a second.
    let refused = throttle.refused();
    assert!((5..=61).contains(&refused), "{refused} requests refused in a minute: Retry-After not honoured, or no retries");

    let restored = scratch.path().join("restored");
    ok(&agent(&["files", "restore", "latest", restored.to_str().unwrap(), "--repo", &direct, "--cell", "th", "--key-file", k], &[]));
    assert_eq!(describe_tree(&restored), describe_tree(source));
}

/// A store that accepts connections and never answers: the command ends
/// with an error naming the store and the timeout (each attempt limited by
/// `LIFEBOAT_STORE_TIMEOUT_SECONDS`), it does not hang.
#[test]
fn a_store_that_never_answers_times_out_instead_of_hanging() {
    lifeboat_restore_tests::services();
    let t = KeyedTree::new(1000, 32);
    let silent = Throttle::silent();
    let url = format!("s3://lifeboat-test/{}?endpoint={}", unique("hung"), silent.url);
    let started = Instant::now();
    let out = agent(&["repo", "ls", "--repo", &url, "--key-file", t.k()], &[("LIFEBOAT_STORE_TIMEOUT_SECONDS", "2")]);
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("no answer within 2s") && err.contains("gave up after 6 attempts") && err.contains(&silent.url), "{err}");
    assert!(took < Duration::from_secs(60), "6 attempts of 2 s and their backoff took {took:?}");
    assert!(silent.refused() >= 6, "each attempt reached the store: {}", silent.refused());
}
