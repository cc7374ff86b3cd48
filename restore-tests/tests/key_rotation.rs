//! `key rotate` through the real agent, over a `file://` primary and an S3
//! (moto) copy: backups before and after restore byte for byte with the
//! rotated key file; what was written after is sealed under the new key
//! (a key file with only the new key restores it, and names the missing
//! key for the older backup); the dry run changes nothing; an interrupted
//! rotation is finished by a rerun without a second new key.

use std::path::Path;

use lifeboat_restore_tests::{agent, describe_tree, fails, fresh_url, ok, random_tree, write_key, Backend};

fn key_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(|l| l.split('#').next().unwrap().trim().to_string()).filter(|l| !l.is_empty()).collect()
}

#[test]
fn rotated_keys_write_new_objects_and_still_read_old_ones() {
    lifeboat_restore_tests::services();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let key = s.join("key");
    write_key(&key);
    let k = key.to_str().unwrap();
    let primary_dir = s.join("primary");
    let primary = format!("file://{}", primary_dir.display());
    let copy = fresh_url(Backend::S3, "rotate-copy", s);
    ok(&agent(&["repo", "init", "--repo", &primary, "--key-file", k], &[]));
    let (before, after) = (s.join("before"), s.join("after"));
    random_tree(&before, 4, 5);
    random_tree(&after, 4, 6);
    let backup = |tree: &Path| {
        let out = ok(&agent(
            &["files", "backup", tree.to_str().unwrap(), "--repo", &primary, "--cell", "rot", "--key-file", k, "--output", "json"],
            &[],
        ));
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["backup_id"].as_str().unwrap().to_string()
    };
    let old_backup = backup(&before);
    ok(&agent(&["repo", "copy", &primary, &copy, "--key-file", k], &[]));
    let old_key = key_lines(&key);

    let rotate = ["key", "rotate", "--key-file", k, "--repo", &primary, "--repo", &copy];
    let plan = agent(&[&rotate[..], &["--dry-run"]].concat(), &[]);
    assert!(String::from_utf8_lossy(&plan.stderr).contains("plan: write a new key first"), "{plan:?}");
    assert_eq!(key_lines(&key), old_key, "the dry run changed the key file");
    let out = agent(&rotate, &[]);
    ok(&out);
    let ring = key_lines(&key);
    assert_eq!((ring.len(), &ring[1]), (2, &old_key[0]), "the new key first, the old one kept below it");
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(primary_dir.join("lifeboat.repo.json")).unwrap()).unwrap();
    let (new_id, old_id) = (
        config["encryption"]["key_id"].as_str().unwrap().to_string(),
        config["encryption"]["retired_key_ids"][0].as_str().unwrap().to_string(),
    );
    assert_ne!(new_id, old_id);

    let new_backup = backup(&after);
    let manifest = std::fs::read(primary_dir.join("manifests/rot").join(&new_backup)).unwrap();
    assert_eq!(hex::encode(&manifest[6..14]), new_id, "the new manifest is sealed under the new key");
    let old_manifest = std::fs::read(primary_dir.join("manifests/rot").join(&old_backup)).unwrap();
    assert_eq!(hex::encode(&old_manifest[6..14]), old_id, "objects are not rewritten");
    ok(&agent(&["repo", "copy", &primary, &copy, "--key-file", k], &[]));
    for (repo, id, tree) in [(&primary, &old_backup, &before), (&copy, &new_backup, &after), (&copy, &old_backup, &before)] {
        let target = s.join(format!("restored-{}", rand::random::<u32>()));
        ok(&agent(&["files", "restore", id, target.to_str().unwrap(), "--repo", repo, "--cell", "rot", "--key-file", k], &[]));
        assert_eq!(describe_tree(&target), describe_tree(tree), "{repo} {id}");
    }
    for repo in [&primary, &copy] {
        ok(&agent(&["repo", "verify", "--repo", repo, "--key-file", k], &[]));
    }

    // Only the new key: the new backup restores, the old one names the key it lacks.
    let only_new = s.join("only-new");
    std::fs::write(&only_new, format!("{}\n", ring[0])).unwrap();
    std::fs::set_permissions(&only_new, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let n = only_new.to_str().unwrap();
    let target = s.join("new-only-restore");
    ok(&agent(&["files", "restore", &new_backup, target.to_str().unwrap(), "--repo", &primary, "--cell", "rot", "--key-file", n], &[]));
    assert_eq!(describe_tree(&target), describe_tree(&after));
    let err = fails(&agent(
        &["files", "restore", &old_backup, s.join("x").to_str().unwrap(), "--repo", &primary, "--cell", "rot", "--key-file", n],
        &[],
    ));
    assert!(err.contains(&format!("sealed under key {old_id}, which the key file does not hold")), "{err}");

    // A rotation that reached only the primary is finished by a rerun, with no third key.
    ok(&agent(&["key", "rotate", "--key-file", k, "--repo", &primary], &[]));
    assert_eq!(key_lines(&key).len(), 3);
    let finish = agent(&rotate, &[]);
    ok(&finish);
    assert!(String::from_utf8_lossy(&finish.stderr).contains("plan: finish the rotation"), "{finish:?}");
    assert_eq!(key_lines(&key).len(), 3, "the rerun finished the rotation instead of starting another");
    ok(&agent(&["repo", "verify", "--repo", &copy, "--key-file", k], &[]));
}
