//! The storage conformance suite against every backend's real server:
//! the local filesystem, moto (S3) and Azurite (Azure Blob).

use std::sync::Arc;

use lifeboat_restore_tests::{fresh_url, Backend, BACKENDS};
use lifeboat_storage::{conformance, retry::RetryPolicy, Location, ObjectStore};

/// Size of the streamed "multi-GiB" object (MiB); LIFEBOAT_TEST_BIG_MIB overrides.
fn big_mib() -> u64 {
    std::env::var("LIFEBOAT_TEST_BIG_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(2100)
}

async fn store(backend: Backend, scratch: &std::path::Path) -> Arc<dyn ObjectStore> {
    let url = fresh_url(backend, "conformance", scratch);
    let location: Location = url.parse().unwrap();
    lifeboat_storage::open_with(&location, RetryPolicy::quick()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_filesystem() {
    let scratch = tempfile::tempdir().unwrap();
    conformance::run_all(store(Backend::File, scratch.path()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_s3_moto() {
    let scratch = tempfile::tempdir().unwrap();
    conformance::run_all(store(Backend::S3, scratch.path()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_azure_azurite() {
    let scratch = tempfile::tempdir().unwrap();
    conformance::run_all(store(Backend::Azure, scratch.path()).await).await;
}

/// A multi-GiB object streamed up and down on every backend with bounded
/// memory (one multipart part / block at a time), compared by SHA-256.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_gib_streamed_objects() {
    let scratch = tempfile::tempdir().unwrap();
    for backend in BACKENDS {
        let s = store(backend, scratch.path()).await;
        s.prepare().await.unwrap();
        conformance::streamed_round_trip(s.as_ref(), "big/object", big_mib() << 20).await;
        s.delete(&lifeboat_storage::ObjectPath::parse("big/object").unwrap()).await.unwrap();
    }
}
