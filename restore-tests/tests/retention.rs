//! Retention: the plan is computed and shown before anything is deleted,
//! honours keep-last, keep-within and legal holds, never deletes a chunk a
//! kept backup needs, sweeps garbage, and stands aside while writers run.

use std::sync::Arc;
use std::time::Duration;

use lifeboat_repository::lock::{LockGuard, LockKind};
use lifeboat_repository::{files, retention, verify, InitOptions, Key, Repository};
use lifeboat_restore_tests::{describe_tree, make_config_tree};
use lifeboat_storage::fs::FileStore;
use lifeboat_storage::{DynStore, ObjectPath, PutMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_plans_then_deletes_only_what_it_may() {
    let scratch = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(FileStore::new(scratch.path().join("repo")));
    let repo = Repository::init(store.clone(), Some(Key::from_bytes(&rand::random())), InitOptions::default()).await.unwrap();

    // Five backups of cell-a, each with content of its own; two of cell-b.
    let mut a = Vec::new();
    for i in 0..5u64 {
        let dir = scratch.path().join(format!("a{i}"));
        make_config_tree(&dir, 1 << 20, 100 + i);
        a.push((files::backup_dir(&repo, "cell-a", &dir).await.unwrap(), dir));
    }
    let mut b = Vec::new();
    for i in 0..2u64 {
        let dir = scratch.path().join(format!("b{i}"));
        make_config_tree(&dir, 1 << 20, 200 + i);
        b.push(files::backup_dir(&repo, "cell-b", &dir).await.unwrap());
    }
    // Garbage from an interrupted run: a chunk no manifest references.
    let orphan = b"left behind by a killed backup".to_vec();
    let orphan_id = repo.chunk_id(&orphan);
    let orphan_path = lifeboat_repository::format::chunk_path(&orphan_id);
    store.put(&orphan_path, repo.seal(&orphan_path, &orphan).into(), PutMode::Create).await.unwrap();

    // And the temporary files of writes: one killed two days ago, one in progress.
    let chunk_dir = scratch.path().join("repo").join(orphan_path.as_str()).parent().unwrap().to_path_buf();
    let (stale, fresh) = (chunk_dir.join(".killed.tmp-00000000deadbeef"), chunk_dir.join(".writing.tmp-00000000feedf00d"));
    std::fs::write(&stale, b"half of a chunk").unwrap();
    std::fs::write(&fresh, b"a chunk being written").unwrap();
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 86400);
    std::fs::File::options().write(true).open(&stale).unwrap().set_modified(two_days_ago).unwrap();
    assert_eq!(verify::verify(&repo, 4).await.unwrap().leftover_temporaries, 1);

    retention::add_hold(&repo, "cell-a", &a[0].0.id, "audit 2026-Q4").await.unwrap();
    let now = a[4].0.finished + Duration::from_secs(3600 * 24);
    let policy = retention::Policy { keep_last: 2, keep_within: Duration::from_secs(3600), ..Default::default() };

    let chunks_before = repo.list_chunks().await.unwrap().len();
    let plan = retention::plan(&repo, Some("cell-a"), &policy, now).await.unwrap();
    let deleted: Vec<&str> = plan.delete.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(deleted, [a[1].0.id.as_str(), a[2].0.id.as_str()], "keep the two newest and the held one");
    let held = plan.keep.iter().find(|d| d.id == a[0].0.id).unwrap();
    assert_eq!(held.reason, "legal hold");
    assert!(plan.delete_chunks.contains(&orphan_id), "garbage is swept");
    let stale_key = stale.strip_prefix(scratch.path().join("repo")).unwrap().to_str().unwrap().to_string();
    assert_eq!(plan.delete_temporaries, [stale_key], "only the idle temporary file goes");
    assert!(plan.freed_bytes > 0);
    assert_eq!(repo.list_chunks().await.unwrap().len(), chunks_before, "planning deletes nothing");

    // A running backup (shared lock) holds retention off.
    let writer = LockGuard::acquire(&repo, LockKind::Shared, "files backup of cell cell-c").await.unwrap();
    let err = retention::execute(&repo, Some("cell-a"), &policy, now).await.unwrap_err().to_string();
    assert!(err.contains("is locked: lock") && err.contains("files backup of cell cell-c"), "{err}");
    writer.release().await.unwrap();

    // And a running retention holds backups off.
    let pruner = LockGuard::acquire(&repo, LockKind::Exclusive, "retention").await.unwrap();
    let err = files::backup_dir(&repo, "cell-a", &a[4].1).await.unwrap_err().to_string();
    assert!(err.contains("is locked: lock") && err.contains("retention"), "{err}");
    pruner.release().await.unwrap();

    let done = retention::execute(&repo, Some("cell-a"), &policy, now).await.unwrap();
    assert_eq!(done.delete.len(), 2);
    let left: Vec<String> = repo.list_backups(None).await.unwrap().into_iter().map(|r| r.id).collect();
    for gone in &deleted {
        assert!(!left.iter().any(|id| id == gone), "{gone} should be deleted");
    }
    assert_eq!(left.len(), 5, "three of cell-a and both of cell-b remain");
    assert!(store.head(&ObjectPath::parse(orphan_path.as_str()).unwrap()).await.unwrap().is_none());
    assert!(!stale.exists() && fresh.exists(), "the stale temporary file went, the fresh one stayed");
    assert!(repo.list_chunks().await.unwrap().len() < chunks_before);

    // Nothing a kept backup needs was deleted: verify is clean and every kept backup restores.
    let report = verify::verify(&repo, 4).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.unreferenced_chunks, 0);
    for (i, (m, dir)) in a.iter().enumerate().filter(|(i, _)| ![1, 2].contains(i)) {
        let target = scratch.path().join(format!("restored-a{i}"));
        files::restore_dir(&repo, m, &target).await.unwrap();
        assert_eq!(describe_tree(&target), describe_tree(dir));
    }
    for m in &b {
        files::restore_dir(&repo, m, &scratch.path().join(format!("restored-{}", m.id))).await.unwrap();
    }

    // Releasing the hold lets the next run delete it.
    retention::remove_hold(&repo, "cell-a", &a[0].0.id).await.unwrap();
    let plan = retention::plan(&repo, Some("cell-a"), &policy, now).await.unwrap();
    assert_eq!(plan.delete.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), [a[0].0.id.as_str()]);
}
