//! Backups survive a compromised agent host. An agent holding the
//! write-only Azure SAS token that `repo sas` mints backs up, but Azurite
//! refuses its deletes: retention run with it fails and deletes nothing.
//! Retention with the deleting credential works, and removes the locks the
//! write-only agent could only mark released.

use std::time::Duration;

use serde_json::json;

use lifeboat_restore_tests::served::{write_token, Service};
use lifeboat_restore_tests::{agent, fails, fresh_url, ok, Backend, KeyedTree};

/// A scratch directory with a key file (its path) and a small tree to back up.
fn scratch(seed: u64) -> (tempfile::TempDir, String, std::path::PathBuf) {
    let t = KeyedTree::new(20_000, seed);
    let k = t.k().to_string();
    (t.dir, k, t.source)
}

#[test]
fn a_write_only_agent_cannot_delete_backups() {
    let (scratch, k, source) = scratch(11);
    let k = k.as_str();
    let url = fresh_url(Backend::Azure, "write-only", scratch.path());
    ok(&agent(&["repo", "init", "--repo", &url, "--key-file", k], &[]));
    let sas = ok(&agent(&["repo", "sas", "--repo", &url, "--valid-for", "1h"], &[])).trim().to_string();
    let permissions = sas.split('&').find_map(|p| p.strip_prefix("sp=")).unwrap_or_default().to_string();
    assert!(permissions.contains('w') && !permissions.contains('d'), "a write-only token writes and does not delete: {sas}");
    let write_only = [("AZURE_STORAGE_KEY", ""), ("AZURE_STORAGE_SAS_TOKEN", sas.as_str())];

    let backup = ["files", "backup", source.to_str().unwrap(), "--repo", &url, "--cell", "wo", "--key-file", k];
    for _ in 0..2 {
        ok(&agent(&backup, &write_only));
    }
    let ls = |env: &[(&str, &str)]| ok(&agent(&["repo", "ls", "--repo", &url, "--key-file", k, "--output", "json"], env));
    let count = |listing: String| serde_json::from_str::<serde_json::Value>(&listing).unwrap().as_array().unwrap().len();
    assert_eq!(count(ls(&write_only)), 2, "the write-only token reads and lists");
    let locks = ok(&agent(&["repo", "locks", "--repo", &url, "--key-file", k, "--output", "json"], &[]));
    let released = serde_json::from_str::<serde_json::Value>(&locks)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["info"]["released"] == true)
        .count();
    assert_eq!(released, 2, "each backup's lock was marked released: {locks}");

    let retention = ["repo", "retention", "--repo", &url, "--key-file", k, "--keep-last", "0", "--keep-within", "0s"];
    let err = fails(&agent(&retention, &write_only));
    assert!(err.contains("access denied") || err.contains("AuthorizationPermissionMismatch") || err.contains("403"), "{err}");
    assert_eq!(count(ls(&[])), 2, "nothing was deleted with the write-only token");

    ok(&agent(&retention, &[]));
    assert_eq!(count(ls(&[])), 0, "retention with the deleting credential deletes");
    let locks = ok(&agent(&["repo", "locks", "--repo", &url, "--key-file", k, "--output", "json"], &[]));
    assert_eq!(locks.trim(), "[]", "retention removed the released locks");

    let err = fails(&agent(&["repo", "sas", "--repo", &format!("file://{}", scratch.path().display())], &[]));
    assert!(err.contains("not an az:// location"), "{err}");
}

/// Through the agent service: jobs run with the agent's write-only token,
/// retention jobs with `--retention-env-file`'s deleting credential (here
/// the account key), which is what lets retention remove the locks the
/// write-only backups could only mark released.
#[test]
fn retention_jobs_alone_get_the_deleting_credential() {
    let (scratch, k, source) = scratch(12);
    let (s, k) = (scratch.path(), k.as_str());
    let url = fresh_url(Backend::Azure, "retention-env", s);
    ok(&agent(&["repo", "init", "--repo", &url, "--key-file", k], &[]));
    let sas = ok(&agent(&["repo", "sas", "--repo", &url, "--valid-for", "1h"], &[])).trim().to_string();
    let write_only = [("AZURE_STORAGE_KEY", ""), ("AZURE_STORAGE_SAS_TOKEN", sas.as_str())];
    ok(&agent(&["files", "backup", source.to_str().unwrap(), "--repo", &url, "--cell", "re", "--key-file", k], &write_only));
    let released =
        || ok(&agent(&["repo", "locks", "--repo", &url, "--key-file", k, "--output", "json"], &[])).matches("\"released\": true").count();
    assert_eq!(released(), 1);

    let token_file = s.join("agent-token");
    let token = write_token(&token_file);
    let env_file = s.join("retention.env");
    let account_key = std::env::var("AZURE_STORAGE_KEY").unwrap();
    std::fs::write(&env_file, format!("# the deleting credential\nAZURE_STORAGE_KEY={account_key}\n")).unwrap();
    std::fs::set_permissions(&env_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let state = s.join("state");
    let mut args = vec!["--repo", &url, "--cell", "re", "--key-file", k, "--token-file", token_file.to_str().unwrap()];
    args.extend(["--state-dir", state.to_str().unwrap(), "--retention-floor", "0s"]);
    let without = Service::start(&args, &write_only, &token, &s.join("agent.log"));
    let retention = json!({"kind": "retention", "of": "pg"});
    let (_, job) = without.submit("retention-1", &retention);
    let job = without.finish(job["id"].as_str().unwrap(), Duration::from_secs(60));
    assert_eq!(job["state"], "failed", "the write-only token cannot delete the released locks: {job}");
    drop(without);

    args.extend(["--retention-env-file", env_file.to_str().unwrap()]);
    let with = Service::start(&args, &write_only, &token, &s.join("agent.log"));
    let (_, job) = with.submit("retention-2", &retention);
    let job = with.finish(job["id"].as_str().unwrap(), Duration::from_secs(60));
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(released(), 0, "retention removed the released locks with its own credential");
}

/// On an S3 bucket with Object Lock (moto enforces it), every object but
/// the locks is written with a retain-until date; retention whose policy
/// lets the backups go cannot delete them, reports them as retained (not
/// deleted, not hidden behind delete markers) and deletes no chunk they
/// need; the backups still list, verify and restore.
#[test]
fn backups_under_object_lock_survive_retention_and_are_reported() {
    let (scratch, k, source) = scratch(13);
    let k = k.as_str();
    lifeboat_restore_tests::services();
    let endpoint = std::env::var("LIFEBOAT_TEST_S3_ENDPOINT").unwrap();
    let url = format!("s3://{}/repo?endpoint={endpoint}&object_lock=governance&retain_days=1", lifeboat_restore_tests::unique("locked"));
    ok(&agent(&["repo", "init", "--repo", &url, "--key-file", k], &[]));
    let backup = ["files", "backup", source.to_str().unwrap(), "--repo", &url, "--cell", "ol", "--key-file", k];
    ok(&agent(&backup, &[]));
    ok(&agent(&backup, &[]));

    let retention = ["repo", "retention", "--repo", &url, "--key-file", k, "--keep-last", "0", "--keep-within", "0s", "--output", "json"];
    let plan: serde_json::Value = serde_json::from_str(&ok(&agent(&retention, &[]))).unwrap();
    assert_eq!(plan["retained"].as_array().unwrap().len(), 2, "both backups reported as kept by the lock: {plan}");
    assert_eq!(plan["delete"], json!([]), "{plan}");
    assert_eq!(plan["delete_chunks"], json!([]), "no chunk of a kept backup goes: {plan}");
    let listed = ok(&agent(&["repo", "ls", "--repo", &url, "--key-file", k, "--output", "json"], &[]));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&listed).unwrap().as_array().unwrap().len(), 2, "{listed}");
    ok(&agent(&["repo", "verify", "--repo", &url, "--key-file", k], &[]));
    let text = ok(&agent(&retention[..retention.len() - 2], &[]));
    assert!(text.contains("under Object Lock"), "{text}");
    let locks = ok(&agent(&["repo", "locks", "--repo", &url, "--key-file", k, "--output", "json"], &[]));
    assert_eq!(locks.trim(), "[]", "locks carry no retention and are deleted: {locks}");
    let restored = scratch.path().join("restored");
    ok(&agent(&["files", "restore", "latest", restored.to_str().unwrap(), "--repo", &url, "--cell", "ol", "--key-file", k], &[]));
    assert_eq!(lifeboat_restore_tests::describe_tree(&restored), lifeboat_restore_tests::describe_tree(&source));
}

/// A held backup on an Object Lock bucket (legal holds only:
/// `retain_days=0`): the hold object, the manifest and the chunks carry an
/// S3 legal hold, so even the deleting credential cannot remove the hold
/// (or the backup) behind retention's back, at the primary and in a copy
/// into another Object Lock bucket; retention keeps the held backup, and
/// after `repo hold --release` lets it go.
#[test]
fn a_held_backup_survives_a_deleted_hold_under_s3_legal_holds() {
    let (scratch, k, source) = scratch(14);
    let k = k.as_str();
    lifeboat_restore_tests::services();
    let endpoint = std::env::var("LIFEBOAT_TEST_S3_ENDPOINT").unwrap();
    let url = format!("s3://{}/repo?endpoint={endpoint}&object_lock=governance&retain_days=0", lifeboat_restore_tests::unique("held"));
    ok(&agent(&["repo", "init", "--repo", &url, "--key-file", k], &[]));
    let mut ids = Vec::new();
    for seed in [1, 2] {
        let tree = scratch.path().join(format!("tree-{seed}"));
        lifeboat_restore_tests::random_tree(&tree, 1, seed);
        let out = ok(&agent(
            &["files", "backup", tree.to_str().unwrap(), "--repo", &url, "--cell", "lh", "--key-file", k, "--output", "json"],
            &[],
        ));
        ids.push(serde_json::from_str::<serde_json::Value>(&out).unwrap()["backup_id"].as_str().unwrap().to_string());
    }
    let _ = source;
    ok(&agent(&["repo", "hold", "--repo", &url, "--key-file", k, "--cell", "lh", &ids[0], "--reason", "audit 2026-12"], &[]));
    // A copy into another Object Lock bucket carries the hold and its legal holds.
    let copy =
        format!("s3://{}/repo?endpoint={endpoint}&object_lock=governance&retain_days=0", lifeboat_restore_tests::unique("held-copy"));
    ok(&agent(&["repo", "copy", &url, &copy, "--key-file", k], &[]));

    // Someone holding the deleting credential goes around retention, at both locations.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let key = lifeboat_repository::Key::from_file(std::path::Path::new(k)).unwrap();
    for location in [&url, &copy] {
        let store = runtime.block_on(lifeboat_storage::open(&location.parse().unwrap())).unwrap();
        let repo = runtime.block_on(lifeboat_repository::Repository::open(store.clone(), Some(key.clone()))).unwrap();
        let manifest = runtime.block_on(repo.read_manifest("lh", &ids[0])).unwrap();
        let chunk = lifeboat_repository::format::chunk_path(manifest.chunk_ids().next().unwrap()).to_string();
        for object in [format!("holds/lh/{}", ids[0]), format!("manifests/lh/{}", ids[0]), chunk] {
            let path = lifeboat_storage::ObjectPath::parse(&object).unwrap();
            let err = runtime.block_on(store.delete(&path)).unwrap_err().to_string();
            assert!(err.contains("legal hold"), "{location} {object}: {err}");
        }
    }

    let ls = || {
        serde_json::from_str::<serde_json::Value>(&ok(&agent(&["repo", "ls", "--repo", &url, "--key-file", k, "--output", "json"], &[])))
            .unwrap()
    };
    let retention = ["repo", "retention", "--repo", &url, "--key-file", k, "--keep-last", "0", "--keep-within", "0s"];
    ok(&agent(&retention, &[]));
    let listed = ls();
    assert_eq!(listed.as_array().map(|a| a.iter().map(|b| b["id"].clone()).collect::<Vec<_>>()), Some(vec![json!(ids[0])]), "{listed}");
    ok(&agent(&["repo", "verify", "--repo", &url, "--key-file", k], &[]));

    ok(&agent(&["repo", "hold", "--repo", &url, "--key-file", k, "--cell", "lh", &ids[0], "--release"], &[]));
    ok(&agent(&retention, &[]));
    assert_eq!(ls(), json!([]), "released, the backup goes with retention");
}
