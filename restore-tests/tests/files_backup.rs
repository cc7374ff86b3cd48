//! Configuration backups end to end through the `lifeboat-agent` binary, on
//! every backend's real server: round trip, dedup, geo-copy, verify, and
//! corruption detected and survived through the geo-copy.

use std::path::Path;

use lifeboat_restore_tests::{agent, describe_tree, fails, fresh_url, make_config_tree, ok, write_key, Backend, BACKENDS};

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn init(url: &str, key: &Path) {
    ok(&agent(&["repo", "init", "--repo", url, "--key-file", key.to_str().unwrap()], &[]));
}

fn backup(url: &str, key: &Path, dir: &Path, cell: &str) -> serde_json::Value {
    json(&ok(&agent(
        &["files", "backup", dir.to_str().unwrap(), "--repo", url, "--cell", cell, "--key-file", key.to_str().unwrap(), "--output", "json"],
        &[],
    )))
}

fn restore(url: &str, key: &Path, id: &str, dir: &Path, cell: &str) -> std::process::Output {
    agent(&["files", "restore", id, dir.to_str().unwrap(), "--repo", url, "--cell", cell, "--key-file", key.to_str().unwrap()], &[])
}

#[test]
fn round_trip_and_dedup_on_every_backend() {
    let scratch = tempfile::tempdir().unwrap();
    let key = scratch.path().join("key");
    write_key(&key);
    let source = scratch.path().join("source");
    // Over twice the largest chunk (4 MiB), so "several chunks" does not
    // depend on where the repository's seeded chunker happens to cut (one
    // 3 MiB tree came out as one chunk in about 1 of 20 runs).
    make_config_tree(&source, 9 << 20, 7);
    let expected = describe_tree(&source);
    for backend in BACKENDS {
        let url = fresh_url(backend, "files", scratch.path());
        init(&url, &key);
        let first = backup(&url, &key, &source, "cell-a");
        assert_eq!(first["totals"]["files"], 7, "{backend:?}: {first}");
        assert_eq!(first["totals"]["symlinks"], 2);
        assert!(first["totals"]["new_chunks"].as_u64().unwrap() >= 2, "{backend:?}: several chunks expected: {first}");

        // Unchanged data: nothing new is stored.
        let second = backup(&url, &key, &source, "cell-a");
        assert_eq!(second["totals"]["new_chunks"], 0, "{backend:?}: second backup stored chunks: {second}");
        assert_eq!(second["totals"]["new_stored_bytes"], 0);

        let target = scratch.path().join(format!("restored-{backend:?}"));
        let id = first["backup_id"].as_str().unwrap();
        ok(&restore(&url, &key, id, &target, "cell-a"));
        assert_eq!(describe_tree(&target), expected, "{backend:?}: restored tree differs from the source");

        let latest = scratch.path().join(format!("latest-{backend:?}"));
        ok(&restore(&url, &key, "latest", &latest, "cell-a"));
        assert_eq!(describe_tree(&latest), expected);

        let listing = json(&ok(&agent(&["repo", "ls", "--repo", &url, "--key-file", key.to_str().unwrap(), "--output", "json"], &[])));
        assert_eq!(listing.as_array().unwrap().len(), 2, "{backend:?}: {listing}");
        let verify = json(&ok(&agent(&["repo", "verify", "--repo", &url, "--key-file", key.to_str().unwrap(), "--output", "json"], &[])));
        assert_eq!(verify["problems"].as_array().unwrap().len(), 0, "{backend:?}: {verify}");
        assert_eq!(verify["manifests"], 2);
    }
}

/// Flip a byte in one chunk, truncate another, delete a third: verify names
/// each, restore refuses to produce wrong bytes, the geo-copy restores.
#[test]
fn corruption_is_named_and_the_geo_copy_restores() {
    let scratch = tempfile::tempdir().unwrap();
    let key = scratch.path().join("key");
    write_key(&key);
    let k = key.to_str().unwrap();
    let source = scratch.path().join("source");
    make_config_tree(&source, 12 << 20, 11);
    let primary_dir = scratch.path().join("primary");
    let primary = format!("file://{}", primary_dir.display());
    init(&primary, &key);
    let b = backup(&primary, &key, &source, "cell-b");
    let id = b["backup_id"].as_str().unwrap().to_string();

    // Geo-copies: a second region (file) and the second cloud (S3, moto).
    let secondary = fresh_url(Backend::File, "secondary", scratch.path());
    let cross_cloud = fresh_url(Backend::S3, "cross-cloud", scratch.path());
    for dest in [&secondary, &cross_cloud] {
        let report = json(&ok(&agent(&["repo", "copy", &primary, dest, "--key-file", k, "--output", "json"], &[])));
        assert_eq!(report["manifests_copied"], 1, "{report}");
        assert!(report["failures"].as_array().unwrap().is_empty());
        let again = json(&ok(&agent(&["repo", "copy", &primary, dest, "--key-file", k, "--output", "json"], &[])));
        assert_eq!(again["objects_copied"], 0, "a rerun copies nothing new: {again}");
    }

    let mut chunks: Vec<_> = lifeboat_restore_tests::files_under(&primary_dir.join("chunks"));
    chunks.sort();
    assert!(chunks.len() >= 3, "need three chunks to damage, have {}", chunks.len());
    let (flipped, truncated, deleted) = (&chunks[0], &chunks[1], &chunks[2]);
    let mut data = std::fs::read(flipped).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x01;
    std::fs::write(flipped, data).unwrap();
    let data = std::fs::read(truncated).unwrap();
    std::fs::write(truncated, &data[..data.len() - 100]).unwrap();
    std::fs::remove_file(deleted).unwrap();

    let out = agent(&["repo", "verify", "--repo", &primary, "--key-file", k], &[]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "verify must fail on a damaged repository:\n{text}");
    for damaged in [flipped, truncated, deleted] {
        let name = damaged.file_name().unwrap().to_str().unwrap();
        assert!(text.contains(name), "verify did not name {name}:\n{text}");
    }
    assert!(text.contains(&id), "verify should name the broken backup {id}:\n{text}");

    let target = scratch.path().join("from-primary");
    let err = fails(&restore(&primary, &key, &id, &target, "cell-b"));
    assert!(err.contains("corrupt") || err.contains("not found"), "{err}");
    assert!(!target.exists(), "a failed restore must leave nothing behind");
    let leftovers: Vec<_> = std::fs::read_dir(scratch.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("lifeboat-restore"))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");

    for (name, copy) in [("secondary", &secondary), ("cross-cloud", &cross_cloud)] {
        let target = scratch.path().join(format!("from-{name}"));
        ok(&restore(copy, &key, &id, &target, "cell-b"));
        assert_eq!(describe_tree(&target), describe_tree(&source), "restore from the {name} copy differs");
        ok(&agent(&["repo", "verify", "--repo", copy, "--key-file", k], &[]));
    }

    // A copy from the damaged primary into a fresh location copies no manifest
    // that would point at missing data, and says so.
    let third = fresh_url(Backend::File, "third", scratch.path());
    let out = agent(&["repo", "copy", &primary, &third, "--key-file", k, "--output", "json"], &[]);
    assert!(!out.status.success());
    let report = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(report["manifests_copied"], 0, "{report}");
    assert_eq!(report["failures"].as_array().unwrap().len(), 3, "two corrupt chunks and one manifest: {report}");
    let third_dir = std::path::Path::new(third.strip_prefix("file://").unwrap());
    let copied: Vec<String> =
        lifeboat_restore_tests::files_under(third_dir).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for damaged in [flipped, truncated] {
        let name = damaged.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!copied.contains(&name), "the corrupt {name} was copied");
    }
    assert!(!copied.iter().any(|n| n.starts_with('.')), "temporary files left behind: {copied:?}");
}

/// `--delta` over a directory that drifted: matching files are kept,
/// changed, missing and retyped entries are restored, extra ones removed,
/// and the result equals the backup exactly.
#[test]
fn delta_restore_repairs_a_drifted_directory() {
    use std::fs;
    let scratch = tempfile::tempdir().unwrap();
    let key = scratch.path().join("key");
    write_key(&key);
    let source = scratch.path().join("source");
    make_config_tree(&source, 4 << 20, 5);
    let expected = describe_tree(&source);
    let url = format!("file://{}", scratch.path().join("repo").display());
    init(&url, &key);
    let id = backup(&url, &key, &source, "cell-d")["backup_id"].as_str().unwrap().to_string();

    let target = scratch.path().join("target");
    ok(&restore(&url, &key, &id, &target, "cell-d"));
    // Without --delta a non-empty target is refused.
    let refused = fails(&restore(&url, &key, &id, &target, "cell-d"));
    assert!(refused.contains("not empty") && refused.contains("--delta"), "{refused}");

    // Drift: change content (same size), delete a file, add files and a
    // directory, turn a symlink into a file, loosen a mode.
    let large = target.join("gitops/large.txt");
    let mut data = fs::read(&large).unwrap();
    data[1000] ^= 0x55;
    fs::write(&large, &data).unwrap();
    fs::remove_file(target.join("gitops/README.md")).unwrap();
    fs::write(target.join("stray.txt"), "not in the backup").unwrap();
    fs::create_dir_all(target.join("stray-dir/deep")).unwrap();
    fs::write(target.join("stray-dir/deep/file"), "x").unwrap();
    fs::remove_file(target.join("current-values")).unwrap();
    fs::write(target.join("current-values"), "a file where a link was").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(target.join("secrets/token"), fs::Permissions::from_mode(0o644)).unwrap();

    let out = ok(&agent(
        &[
            "files",
            "restore",
            &id,
            target.to_str().unwrap(),
            "--delta",
            "--repo",
            &url,
            "--cell",
            "cell-d",
            "--key-file",
            key.to_str().unwrap(),
            "--output",
            "json",
        ],
        &[],
    ));
    let summary = json(&out);
    assert_eq!(describe_tree(&target), expected, "delta restore left the tree different from the backup");
    // Kept: blob.bin, values.yaml, empty.conf, token, run.sh (5 of 7 files).
    assert_eq!(summary["reused_files"], 5, "{summary}");
    assert_eq!(summary["removed"], 3, "stray.txt, stray-dir, the file at current-values: {summary}");
    assert!(!target.join(".lifeboat-delta-restore-incomplete").exists());

    // A delta into a missing directory is a plain restore.
    let fresh = scratch.path().join("fresh");
    ok(&agent(
        &[
            "files",
            "restore",
            &id,
            fresh.to_str().unwrap(),
            "--delta",
            "--repo",
            &url,
            "--cell",
            "cell-d",
            "--key-file",
            key.to_str().unwrap(),
        ],
        &[],
    ));
    assert_eq!(describe_tree(&fresh), expected);
}
