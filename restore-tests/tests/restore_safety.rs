//! A restore never writes outside its target, whatever a manifest says: a
//! manifest with an escaping path or an entry below a symlink is refused as
//! corrupt before anything is written. Nor does it plant privileged
//! programs: setuid/setgid bits are cleared unless asked to keep them.

use std::sync::Arc;

use lifeboat_repository::manifest::{Entry, EntryKind};
use lifeboat_repository::{files, InitOptions, Key, Repository};
use lifeboat_restore_tests::make_config_tree;
use lifeboat_storage::fs::FileStore;

/// A new encrypted repository under `dir/repo`.
async fn encrypted_repo(dir: &std::path::Path) -> Repository {
    let store = Arc::new(FileStore::new(dir.join("repo")));
    Repository::init(store, Some(Key::from_bytes(&rand::random())), InitOptions::default()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_manifests_are_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let repo = encrypted_repo(scratch.path()).await;
    let source = scratch.path().join("source");
    make_config_tree(&source, 10_000, 9);
    let good = files::backup_dir(&repo, "cell-s", &source).await.unwrap();
    let first_file = good.entries.iter().position(|e| e.kind == EntryKind::File).unwrap();

    let escape = |path: &str| {
        let mut m = good.clone();
        m.id = format!("{}-hostile-{}", good.id, path.len());
        m.entries[first_file].path = path.to_string();
        m
    };
    let mut below_link = good.clone();
    below_link.id = format!("{}-below-link", good.id);
    below_link.entries.insert(
        0,
        Entry {
            path: "evil".into(),
            kind: EntryKind::Symlink,
            mode: 0o777,
            size: 0,
            mtime: 0,
            target: Some("..".into()),
            extent: None,
            blake3: None,
        },
    );
    below_link.entries[first_file + 1].path = "evil/escaped".into();

    for (name, hostile) in [
        ("parent dir", escape("../escaped")),
        ("absolute", escape("/tmp/escaped")),
        ("nested parent", escape("gitops/../../escaped")),
        ("below a symlink", below_link),
    ] {
        repo.write_manifest(&hostile).await.unwrap();
        let stored = repo.read_manifest("cell-s", &hostile.id).await.unwrap();
        let target = scratch.path().join("t").join(name.replace(' ', "-"));
        let err = files::restore_dir(&repo, &stored, &target).await.unwrap_err().to_string();
        assert!(err.contains("corrupt"), "{name}: {err}");
        assert!(!target.exists(), "{name}: target created");
        assert!(!scratch.path().join("escaped").exists() && !scratch.path().join("t/escaped").exists(), "{name}: wrote outside");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setuid_and_setgid_bits_are_cleared_unless_kept() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = tempfile::tempdir().unwrap();
    let repo = encrypted_repo(scratch.path()).await;
    let source = scratch.path().join("source");
    make_config_tree(&source, 1_000, 3);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let set = |p: std::path::PathBuf, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    set(source.join("run.sh"), 0o4755);
    set(source.join("secrets"), 0o2750);
    let m = files::backup_dir(&repo, "cell-s", &source).await.unwrap();
    let recorded = |path: &str| m.entries.iter().find(|e| e.path == path).unwrap().mode;
    assert_eq!((recorded("run.sh"), recorded("secrets")), (0o4755, 0o2750), "the backup records the modes as they were");

    let cleared = scratch.path().join("cleared");
    files::restore_dir(&repo, &m, &cleared).await.unwrap();
    assert_eq!((mode(&cleared.join("run.sh")), mode(&cleared.join("secrets"))), (0o755, 0o750));
    let kept = scratch.path().join("kept");
    files::restore_dir_with(&repo, &m, &kept, files::RestoreOptions { preserve_special_bits: true }).await.unwrap();
    assert_eq!((mode(&kept.join("run.sh")), mode(&kept.join("secrets"))), (0o4755, 0o2750));
    // A delta restore over the kept tree clears them too.
    files::restore_delta(&repo, &m, &kept, &[]).await.unwrap();
    assert_eq!((mode(&kept.join("run.sh")), mode(&kept.join("secrets"))), (0o755, 0o750));
}
