//! Faults on purpose, in process: a fault-injecting store under the real
//! filesystem backend. Transient errors are retried and succeed, permanent
//! ones surface with a clear message, and a crash in the middle of a backup
//! or a copy leaves no manifest pointing at missing data; the rerun completes.

use std::sync::Arc;

use lifeboat_repository::{copy, files, verify, InitOptions, Key, Repository};
use lifeboat_restore_tests::{describe_tree, make_config_tree};
use lifeboat_storage::faults::{Fault, FaultyStore, Op};
use lifeboat_storage::fs::FileStore;
use lifeboat_storage::retry::{Resilient, RetryPolicy};
use lifeboat_storage::DynStore;

fn key() -> Key {
    Key::from_bytes(&rand::random())
}

async fn faulty(dir: &std::path::Path) -> (Arc<FaultyStore>, DynStore) {
    let base: DynStore = Arc::new(FileStore::new(dir));
    base.prepare().await.unwrap();
    let faulty = Arc::new(FaultyStore::new(base));
    let resilient: DynStore = Arc::new(Resilient::new(faulty.clone(), RetryPolicy::quick()));
    (faulty, resilient)
}

fn healthy(dir: &std::path::Path) -> DynStore {
    Arc::new(FileStore::new(dir))
}

async fn manifests(dir: &std::path::Path) -> usize {
    healthy(dir).list("manifests/").await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transient_errors_are_retried_and_the_backup_succeeds() {
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("source");
    make_config_tree(&source, 6 << 20, 1);
    let repo_dir = scratch.path().join("repo");
    let key = key();
    let (faults, store) = faulty(&repo_dir).await;
    Repository::init(store.clone(), Some(key.clone()), InitOptions::default()).await.unwrap();
    faults.fail(Op::Put, Some("chunks/"), Fault::Transient, 3);
    faults.fail(Op::List, None, Fault::Transient, 1);
    faults.fail(Op::Get, Some("chunks/"), Fault::Transient, 2);
    let repo = Repository::open(store, Some(key)).await.unwrap();
    let m = files::backup_dir(&repo, "cell-t", &source).await.unwrap();
    let target = scratch.path().join("restored");
    files::restore_dir(&repo, &m, &target).await.unwrap();
    assert_eq!(faults.injected(), 6, "every injected fault was hit");
    assert_eq!(describe_tree(&target), describe_tree(&source));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_permanent_error_fails_the_backup_clearly_and_commits_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("source");
    make_config_tree(&source, 2 << 20, 2);
    let repo_dir = scratch.path().join("repo");
    let key = key();
    let (faults, store) = faulty(&repo_dir).await;
    let repo = Repository::init(store, Some(key), InitOptions::default()).await.unwrap();
    faults.fail(Op::Put, Some("chunks/"), Fault::Permanent, 1);
    let err = files::backup_dir(&repo, "cell-p", &source).await.unwrap_err().to_string();
    assert!(err.contains("injected fault") && err.contains("chunks/"), "error should name the object: {err}");
    assert_eq!(faults.injected(), 1, "a permanent error is not retried");
    assert_eq!(manifests(&repo_dir).await, 0);
    let leftover_locks = healthy(&repo_dir).list("locks/").await.unwrap();
    assert!(leftover_locks.is_empty(), "the backup released its lock: {leftover_locks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_mid_backup_leaves_no_manifest_and_the_rerun_completes() {
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("source");
    make_config_tree(&source, 10 << 20, 3);
    let repo_dir = scratch.path().join("repo");
    let key = key();
    let (faults, store) = faulty(&repo_dir).await;
    Repository::init(store.clone(), Some(key.clone()), InitOptions::default()).await.unwrap();
    let repo = Repository::open(store, Some(key.clone())).await.unwrap();
    faults.crash_after_puts(4); // the lock and three chunks land, then the process "dies"
    assert!(files::backup_dir(&repo, "cell-c", &source).await.is_err());
    assert_eq!(manifests(&repo_dir).await, 0, "no manifest after a crash");
    let chunks_left = healthy(&repo_dir).list("chunks/").await.unwrap().len();
    assert_eq!(chunks_left, 3, "the crash happened mid-backup");

    let repo = Repository::open(healthy(&repo_dir), Some(key)).await.unwrap();
    let m = files::backup_dir(&repo, "cell-c", &source).await.unwrap();
    assert!(m.totals.new_chunks < m.totals.chunks, "the rerun reused chunks from the crashed run");
    let report = verify::verify(&repo, 4).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let target = scratch.path().join("restored");
    files::restore_dir(&repo, &m, &target).await.unwrap();
    assert_eq!(describe_tree(&target), describe_tree(&source));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_mid_copy_leaves_no_manifest_and_the_rerun_completes() {
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("source");
    make_config_tree(&source, 10 << 20, 4);
    let key = key();
    let src_dir = scratch.path().join("src");
    let src_store = healthy(&src_dir);
    let src = Repository::init(src_store, Some(key.clone()), InitOptions::default()).await.unwrap();
    let m = files::backup_dir(&src, "cell-g", &source).await.unwrap();

    let dst_dir = scratch.path().join("dst");
    let (faults, dst_store) = faulty(&dst_dir).await;
    faults.crash_after_puts(5); // config, lock, three chunks
    assert!(copy::copy(&src, dst_store, 4).await.is_err());
    assert_eq!(manifests(&dst_dir).await, 0, "no manifest at the destination after a crash");

    let report = copy::copy(&src, healthy(&dst_dir), 4).await.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.manifests_copied, 1);
    assert!(report.objects_already_present >= 3, "the rerun kept what the crashed copy stored: {report:?}");
    let dst = Repository::open(healthy(&dst_dir), Some(key)).await.unwrap();
    assert!(verify::verify(&dst, 4).await.unwrap().is_ok());
    let target = scratch.path().join("restored");
    files::restore_dir(&dst, &m, &target).await.unwrap();
    assert_eq!(describe_tree(&target), describe_tree(&source));
}

/// A copy that died (power loss) may leave objects whose writes were lost:
/// the rerun finds short ones by size, and, because the interrupted copy's
/// lock is still there, checks the seal of everything no manifest references
/// yet, so zero-filled ones of the right size are found too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_writes_of_an_interrupted_copy_are_repaired_on_rerun() {
    let scratch = tempfile::tempdir().unwrap();
    let source = scratch.path().join("source");
    make_config_tree(&source, 10 << 20, 6);
    let key = key();
    let src = Repository::init(healthy(&scratch.path().join("src")), Some(key.clone()), InitOptions::default()).await.unwrap();
    let m = files::backup_dir(&src, "cell-l", &source).await.unwrap();

    let dst_dir = scratch.path().join("dst");
    let (faults, dst_store) = faulty(&dst_dir).await;
    faults.crash_after_puts(6); // config, lock, four chunks
    assert!(copy::copy(&src, dst_store, 1).await.is_err());
    let mut chunks: Vec<_> = healthy(&dst_dir).list("chunks/").await.unwrap().into_iter().map(|m| dst_dir.join(m.path.as_str())).collect();
    chunks.sort();
    assert_eq!(chunks.len(), 4);
    // What a power loss can leave: a truncated object, and one of the right size but zeros.
    std::fs::write(&chunks[0], b"").unwrap();
    let len = std::fs::metadata(&chunks[1]).unwrap().len() as usize;
    std::fs::write(&chunks[1], vec![0u8; len]).unwrap();
    assert!(!healthy(&dst_dir).list("locks/").await.unwrap().is_empty(), "the crashed copy left its lock");

    let report = copy::copy(&src, healthy(&dst_dir), 4).await.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.repaired, 2, "{report:?}");
    let dst = Repository::open(healthy(&dst_dir), Some(key)).await.unwrap();
    let v = verify::verify(&dst, 4).await.unwrap();
    assert!(v.is_ok(), "{:?}", v.problems);
    let target = scratch.path().join("restored");
    files::restore_dir(&dst, &m, &target).await.unwrap();
    assert_eq!(describe_tree(&target), describe_tree(&source));

    // A manifest cut short (what a crash could leave before manifests were
    // written durably) is replaced by the next copy, not taken as present.
    let manifests = healthy(&dst_dir).list(lifeboat_repository::format::MANIFESTS).await.unwrap();
    assert_eq!(manifests.len(), 1);
    std::fs::write(dst_dir.join(manifests[0].path.as_str()), b"").unwrap();
    assert!(!verify::verify(&dst, 4).await.unwrap().is_ok(), "verify sees the short manifest");
    let report = copy::copy(&src, healthy(&dst_dir), 4).await.unwrap();
    assert_eq!((report.repaired, report.manifests_copied), (1, 1), "{report:?}");
    let v = verify::verify(&dst, 4).await.unwrap();
    assert!(v.is_ok(), "{:?}", v.problems);
}
