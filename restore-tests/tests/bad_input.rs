//! Bad input: each case is a one-line error naming the problem and the fix,
//! a non-zero exit, and nothing written.

use std::path::Path;

use lifeboat_restore_tests::{agent, fails, fresh_url, make_config_tree, ok, write_key, Backend};

/// The error is exactly one line and mentions every `needle`.
fn one_line_error(stderr: &str, needles: &[&str]) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected a one-line error, got:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for n in needles {
        assert!(lines[0].contains(n), "error should mention {n:?}: {stderr}");
    }
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if !e.path().to_string_lossy().contains("/locks/") {
                out.push((e.path().display().to_string(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn bad_input_gives_one_clear_line_and_writes_nothing() {
    lifeboat_restore_tests::services();
    let scratch = tempfile::tempdir().unwrap();
    let key = scratch.path().join("key");
    write_key(&key);
    let k = key.to_str().unwrap();
    let other_key = scratch.path().join("other-key");
    write_key(&other_key);
    let source = scratch.path().join("source");
    make_config_tree(&source, 1 << 20, 5);
    let repo_dir = scratch.path().join("repo");
    let repo = format!("file://{}", repo_dir.display());
    ok(&agent(&["repo", "init", "--repo", &repo, "--key-file", k], &[]));
    ok(&agent(&["files", "backup", source.to_str().unwrap(), "--repo", &repo, "--cell", "cell-x", "--key-file", k], &[]));
    let before = snapshot(&repo_dir);

    // Unknown URL scheme.
    one_line_error(
        &fails(&agent(&["repo", "ls", "--repo", "ftp://host/dir", "--key-file", k], &[])),
        &["unknown scheme", "file://", "s3://", "az://"],
    );
    // A relative path is not a URL.
    one_line_error(&fails(&agent(&["repo", "ls", "--repo", "backups/here", "--key-file", k], &[])), &["file:///"]);
    // Unreachable endpoint: fails after bounded retries, names the endpoint.
    let unreachable = "s3://bucket/x?endpoint=http://127.0.0.1:9";
    one_line_error(&fails(&agent(&["repo", "ls", "--repo", unreachable, "--key-file", k], &[])), &["127.0.0.1:9", "gave up after"]);
    // Wrong credentials (Azurite checks the shared key).
    let az = fresh_url(Backend::Azure, "badcreds", scratch.path());
    let bad_key = "bm90LXRoZS1yaWdodC1rZXktbm90LXRoZS1yaWdodC1rZXktbm90LXRoZS1yaWdodC1rZXk=";
    one_line_error(
        &fails(&agent(&["repo", "init", "--repo", &az, "--key-file", k], &[("AZURE_STORAGE_KEY", bad_key)])),
        &["access denied", "AZURE_STORAGE"],
    );
    // Wrong encryption key, and no key at all.
    one_line_error(
        &fails(&agent(&["repo", "ls", "--repo", &repo, "--key-file", other_key.to_str().unwrap()], &[])),
        &["wrong encryption key", "key id"],
    );
    one_line_error(&fails(&agent(&["repo", "ls", "--repo", &repo], &[])), &["encrypted", "--key-file"]);
    // A backup into a repository that does not exist.
    let nowhere = format!("file://{}", scratch.path().join("nowhere").display());
    one_line_error(
        &fails(&agent(&["files", "backup", source.to_str().unwrap(), "--repo", &nowhere, "--cell", "cell-x", "--key-file", k], &[])),
        &["no Lifeboat repository", "repo init"],
    );
    assert!(!scratch.path().join("nowhere").join("manifests").exists());
    // An invalid cell name.
    one_line_error(
        &fails(&agent(&["files", "backup", source.to_str().unwrap(), "--repo", &repo, "--cell", "Cell_X", "--key-file", k], &[])),
        &["invalid cell name"],
    );
    // A restore target that exists and is not empty.
    let target = scratch.path().join("occupied");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep-me"), "precious").unwrap();
    one_line_error(
        &fails(&agent(
            &["files", "restore", "latest", target.to_str().unwrap(), "--repo", &repo, "--cell", "cell-x", "--key-file", k],
            &[],
        )),
        &["exists and is not empty"],
    );
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 1);
    assert_eq!(std::fs::read_to_string(target.join("keep-me")).unwrap(), "precious");
    // A backup id that does not exist.
    one_line_error(
        &fails(&agent(
            &[
                "files",
                "restore",
                "20990101T000000.000Z-files-000000",
                scratch.path().join("t2").to_str().unwrap(),
                "--repo",
                &repo,
                "--cell",
                "cell-x",
                "--key-file",
                k,
            ],
            &[],
        )),
        &["not found"],
    );
    assert!(!scratch.path().join("t2").exists());
    // init over an existing repository.
    one_line_error(&fails(&agent(&["repo", "init", "--repo", &repo, "--key-file", k], &[])), &["already exists"]);
    // init where the path is a dangling symbolic link, or a file.
    let dangling = scratch.path().join("dangling-repo");
    std::os::unix::fs::symlink(scratch.path().join("nowhere"), &dangling).unwrap();
    let url = format!("file://{}", dangling.display());
    one_line_error(
        &fails(&agent(&["repo", "init", "--repo", &url, "--key-file", k], &[])),
        &["symbolic link", "nowhere", "create that directory"],
    );
    assert!(!scratch.path().join("nowhere").exists());
    let file = scratch.path().join("a-file");
    std::fs::write(&file, "not a repository").unwrap();
    let url = format!("file://{}", file.display());
    one_line_error(&fails(&agent(&["repo", "init", "--repo", &url, "--key-file", k], &[])), &["exists and is not a directory"]);
    let url = format!("file://{}", file.join("repo").display());
    one_line_error(&fails(&agent(&["repo", "init", "--repo", &url, "--key-file", k], &[])), &["a part of", "is not a directory"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"not a repository");
    // init without a key and without the explicit opt-out.
    one_line_error(
        &fails(&agent(&["repo", "init", "--repo", &format!("file://{}", scratch.path().join("plain").display())], &[])),
        &["--key-file", "--insecure-no-encryption"],
    );
    assert!(!scratch.path().join("plain").exists());

    assert_eq!(snapshot(&repo_dir), before, "a failed command changed the repository");

    // A repository of a newer format version.
    let config = repo_dir.join("lifeboat.repo.json");
    let text = std::fs::read_to_string(&config).unwrap().replace("\"version\": 1", "\"version\": 2");
    std::fs::write(&config, text).unwrap();
    one_line_error(&fails(&agent(&["repo", "ls", "--repo", &repo, "--key-file", k], &[])), &["format version 2", "upgrade lifeboat"]);
}

/// Repository metadata an attacker (or a careless hand) changed is named,
/// exit 1, never a panic (101): an edited config of an encrypted
/// repository fails its MAC; values no build could use in an unencrypted
/// one are refused; a hold written without the key keeps its backup and
/// retention says so; a forged lock is named with how to remove it. A key
/// file its group or others may read is refused.
#[test]
fn tampered_metadata_is_named_never_a_panic() {
    use std::os::unix::fs::PermissionsExt;
    lifeboat_restore_tests::services();
    let t = lifeboat_restore_tests::KeyedTree::new(10_000, 7);
    let (scratch, key, k, source) = (&t.dir, &t.key, t.k(), &t.source);
    let repo_dir = scratch.path().join("repo");
    let repo = format!("file://{}", repo_dir.display());
    ok(&agent(&["repo", "init", "--repo", &repo, "--key-file", k], &[]));
    let out = ok(&agent(
        &["files", "backup", source.to_str().unwrap(), "--repo", &repo, "--cell", "cell-t", "--key-file", k, "--output", "json"],
        &[],
    ));
    let backup = serde_json::from_str::<serde_json::Value>(&out).unwrap()["backup_id"].as_str().unwrap().to_string();
    let exit_one = |args: &[&str], needles: &[&str]| {
        let out = agent(args, &[]);
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        one_line_error(&String::from_utf8_lossy(&out.stderr), needles);
    };

    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o644)).unwrap();
    exit_one(&["repo", "ls", "--repo", &repo, "--key-file", k], &["readable by its group or by others", "chmod 600"]);
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A hold written without the key: its backup is kept, and retention names it.
    let hold = repo_dir.join("holds/cell-t").join(&backup);
    std::fs::create_dir_all(hold.parent().unwrap()).unwrap();
    std::fs::write(&hold, br#"{"reason":"forged","created":"2026-01-01T00:00:00Z"}"#).unwrap();
    let retention = ["repo", "retention", "--repo", &repo, "--key-file", k, "--keep-last", "0", "--keep-within", "1s", "--dry-run"];
    std::thread::sleep(std::time::Duration::from_secs(2));
    let plan = ok(&agent(&retention, &[]));
    assert!(plan.contains("does not verify") && plan.contains(&format!("holds/cell-t/{backup}")), "{plan}");

    // A forged lock blocks retention, named with how to remove it.
    std::fs::create_dir_all(repo_dir.join("locks")).unwrap();
    std::fs::write(
        repo_dir.join("locks/planted"),
        br#"{"kind":"exclusive","operation":"x","holder":"h","refreshed":"2999-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    let apply = ["repo", "retention", "--repo", &repo, "--key-file", k, "--keep-last", "0", "--keep-within", "1s"];
    exit_one(&apply, &["lock planted that does not verify", "repo unlock planted --force"]);
    let listed = ok(&agent(&["repo", "locks", "--repo", &repo, "--key-file", k], &[]));
    assert!(listed.contains("planted"), "{listed}");
    ok(&agent(&["repo", "unlock", "planted", "--repo", &repo, "--key-file", k], &[]));
    assert!(repo_dir.join("locks/planted").exists(), "without --force nothing is removed");
    ok(&agent(&["repo", "unlock", "planted", "--force", "--repo", &repo, "--key-file", k], &[]));
    let kept = ok(&agent(&apply, &[]));
    assert!(kept.contains("does not verify"), "the held backup is still kept: {kept}");

    // A chunk replaced by a 3 GiB (sparse) file is refused before it is read.
    let chunk = std::fs::read_dir(repo_dir.join("chunks"))
        .unwrap()
        .flatten()
        .find_map(|d| std::fs::read_dir(d.path()).unwrap().flatten().next())
        .unwrap();
    std::fs::File::create(chunk.path()).unwrap().set_len(3 << 30).unwrap();
    let target = scratch.path().join("restored");
    exit_one(
        &["files", "restore", &backup, target.to_str().unwrap(), "--repo", &repo, "--cell", "cell-t", "--key-file", k],
        &["holds more than", "run `repo verify`"],
    );
    assert!(!target.exists(), "nothing restored");

    // An edited config: the MAC names it.
    let config = repo_dir.join("lifeboat.repo.json");
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, original.replace("\"level\": 1", "\"level\": 3")).unwrap();
    exit_one(&["repo", "ls", "--repo", &repo, "--key-file", k], &["lifeboat.repo.json", "MAC does not match"]);
    // Unencrypted: no MAC, but values that would have crashed the chunker are refused.
    let plain_dir = scratch.path().join("plain");
    let plain = format!("file://{}", plain_dir.display());
    ok(&agent(&["repo", "init", "--repo", &plain, "--insecure-no-encryption"], &[]));
    let config = plain_dir.join("lifeboat.repo.json");
    let text = std::fs::read_to_string(&config).unwrap();
    let avg = text.lines().find(|l| l.contains("\"avg_size\"")).unwrap().to_string();
    std::fs::write(&config, text.replace(&avg, "    \"avg_size\": 0,")).unwrap();
    exit_one(&["files", "backup", source.to_str().unwrap(), "--repo", &plain, "--cell", "cell-t"], &["lifeboat.repo.json", "chunking"]);
}
