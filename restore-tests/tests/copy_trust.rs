//! A copy trusts content, not listings: an object planted at the
//! destination under a source object's name and with its size is found and
//! replaced, on `file://` and Azure (Azurite), whose listings prove nothing
//! (every held object is read at both ends and compared), and on S3 (moto),
//! where only objects whose S3-computed hashes differ are read. The
//! continuous geo-copy compares an unchanged object once, not on every
//! pass, and again once either end rewrites it.

use lifeboat_repository::copy::{copy_checked, Checked};
use lifeboat_repository::copy_marker;
use lifeboat_repository::{files, verify, InitOptions, Key, Repository};
use lifeboat_restore_tests::{describe_tree, fresh_url, random_tree, Backend};
use lifeboat_storage::{DynStore, ObjectMeta, PutMode};

async fn open(url: &str) -> DynStore {
    let store = lifeboat_storage::open(&url.parse().unwrap()).await.unwrap();
    store.prepare().await.unwrap();
    store
}

/// Replace `victim` at `store` with as many random bytes (what an attacker
/// with write access, or a bad disk, could leave under its name).
async fn plant(store: &DynStore, victim: &ObjectMeta) {
    let junk: Vec<u8> = (0..victim.size).map(|_| rand::random()).collect();
    store.put(&victim.path, junk.into(), PutMode::Overwrite).await.unwrap();
}

/// A source repository on `backend` with one backup of a random tree, and an
/// empty destination on the same backend.
async fn source_and_destination(backend: Backend, scratch: &std::path::Path) -> (Repository, DynStore, Key) {
    let key = Key::from_bytes(&rand::random());
    let src =
        Repository::init(open(&fresh_url(backend, "trust-src", scratch)).await, Some(key.clone()), InitOptions::default()).await.unwrap();
    let tree = scratch.join("tree");
    random_tree(&tree, 3, 7);
    files::backup_dir(&src, "cell-trust", &tree).await.unwrap();
    (src, open(&fresh_url(backend, "trust-dst", scratch)).await, key)
}

/// Objects at `store` a copy compares with the source's (all but the
/// repository's config, its locks and the marker of the last pass into it).
async fn held(store: &DynStore) -> u64 {
    let all = store.list("").await.unwrap();
    let own = |k: &str| k == lifeboat_repository::format::CONFIG_KEY || k == copy_marker::KEY || k.starts_with("locks/");
    all.iter().filter(|m| !own(m.path.as_str())).count() as u64
}

async fn planted_copy_is_replaced(backend: Backend) {
    let scratch = tempfile::tempdir().unwrap();
    let (src, dst, key) = source_and_destination(backend, scratch.path()).await;
    let first = copy_checked(&src, dst.clone(), 4, &mut Checked::default()).await.unwrap();
    assert!(first.failures.is_empty() && first.objects_copied >= 2, "a chunk or more and the manifest: {first:?}");

    let chunks = dst.list("chunks/").await.unwrap();
    let victim = chunks.iter().max_by_key(|m| m.size).unwrap().clone();
    plant(&dst, &victim).await;
    let again = copy_checked(&src, dst.clone(), 4, &mut Checked::default()).await.unwrap();
    assert!(again.failures.is_empty(), "{again:?}");
    assert_eq!((again.repaired, again.objects_copied), (1, 1), "the planted object, and only it, is copied again: {again:?}");
    let read_there = match backend {
        // S3 lists the hashes it computed: only the planted object (whose hash differs) is read.
        Backend::S3 => 1,
        // No trustworthy listed hashes: everything held is read at both ends once.
        _ => held(&dst).await,
    };
    assert_eq!(again.checked_at_destination, read_there, "{again:?}");

    let copy = Repository::open(dst, Some(key)).await.unwrap();
    let report = verify::verify(&copy, 4).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let manifest = copy.list_backups(None).await.unwrap().remove(0);
    let manifest = copy.read_manifest(&manifest.cell, &manifest.id).await.unwrap();
    let restored = scratch.path().join("restored");
    files::restore_dir(&copy, &manifest, &restored).await.unwrap();
    assert_eq!(describe_tree(&restored), describe_tree(&scratch.path().join("tree")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_planted_object_is_replaced_on_file() {
    planted_copy_is_replaced(Backend::File).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_planted_object_is_replaced_on_s3_by_its_listed_hash() {
    planted_copy_is_replaced(Backend::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_planted_object_is_replaced_on_azure() {
    planted_copy_is_replaced(Backend::Azure).await;
}

/// Between two `file://` locations no store lists a hash: the first pass of
/// a geo-copy reads what the destination already held, later passes read
/// nothing unchanged, and a rewritten object is read and replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_geo_copy_checks_each_object_once_until_it_changes() {
    let scratch = tempfile::tempdir().unwrap();
    let (src, dst, _) = source_and_destination(Backend::File, scratch.path()).await;
    copy_checked(&src, dst.clone(), 4, &mut Checked::default()).await.unwrap();
    let held = held(&dst).await;

    let mut checked = Checked::default();
    let pass = copy_checked(&src, dst.clone(), 4, &mut checked).await.unwrap();
    assert_eq!((pass.objects_copied, pass.checked_at_destination), (0, held), "everything held is read once: {pass:?}");
    let pass = copy_checked(&src, dst.clone(), 4, &mut checked).await.unwrap();
    assert_eq!((pass.objects_copied, pass.checked_at_destination), (0, 0), "nothing unchanged is read again: {pass:?}");

    let victim = dst.list("chunks/").await.unwrap().remove(0);
    std::thread::sleep(std::time::Duration::from_millis(20)); // a new modification time, even on coarse clocks
    plant(&dst, &victim).await;
    let pass = copy_checked(&src, dst.clone(), 4, &mut checked).await.unwrap();
    assert_eq!((pass.repaired, pass.objects_copied, pass.checked_at_destination), (1, 1, 1), "{pass:?}");
}

/// A complete pass leaves its marker in the destination (when it started,
/// from where, per cell the newest WAL segment it copied); a copy of that
/// copy gets a marker of its own pass, never the first one's; a pass that
/// left something behind leaves none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_complete_pass_leaves_its_marker_and_a_failed_one_none() {
    let scratch = tempfile::tempdir().unwrap();
    let (src, dst, key) = source_and_destination(Backend::File, scratch.path()).await;
    for segment in ["000000010000000000000007", "000000020000000000000003"] {
        let path = lifeboat_repository::format::path(&format!("wal/cell-trust/{segment}"));
        src.put_sealed(&path, b"a segment's bytes", PutMode::Create).await.unwrap();
    }
    let before = time::OffsetDateTime::now_utc();
    let report = copy_checked(&src, dst.clone(), 4, &mut Checked::default()).await.unwrap();
    assert!(report.failures.is_empty(), "{report:?}");
    let copy = Repository::open(dst.clone(), Some(key.clone())).await.unwrap();
    let marker = copy_marker::read(&copy).await.unwrap().expect("a marker after a complete pass");
    assert!(before <= marker.started && marker.started <= marker.finished, "{marker:?}");
    assert_eq!((marker.source.as_str(), marker.objects_copied), (src.location().as_str(), report.objects_copied));
    assert_eq!(marker.cells["cell-trust"].newest_wal.as_deref(), Some("000000020000000000000003"), "{marker:?}");
    assert!(copy_marker::read(&src).await.unwrap().is_none(), "a primary has none");
    assert!(verify::verify(&copy, 4).await.unwrap().is_ok(), "the marker is sealed like every object");

    // A copy of the copy: its own pass's marker.
    let second = open(&fresh_url(Backend::File, "trust-dst2", scratch.path())).await;
    copy_checked(&copy, second.clone(), 4, &mut Checked::default()).await.unwrap();
    let again = copy_marker::read(&Repository::open(second, Some(key.clone())).await.unwrap()).await.unwrap().unwrap();
    assert_eq!(again.source, copy.location(), "{again:?}");
    assert!(again.started > marker.finished);

    // A source object that cannot be read: the pass reports it and marks nothing.
    let chunks = src.store().list("chunks/").await.unwrap();
    plant(src.store(), &chunks[0]).await;
    let third = open(&fresh_url(Backend::File, "trust-dst3", scratch.path())).await;
    let failed = copy_checked(&src, third.clone(), 4, &mut Checked::default()).await.unwrap();
    assert!(!failed.failures.is_empty(), "{failed:?}");
    assert!(copy_marker::read(&Repository::open(third, Some(key)).await.unwrap()).await.unwrap().is_none());
}
