//! `kill -9` of the real agent process in the middle of a backup, a
//! geo-copy, a restore, a verify and a retention run: nothing half-valid
//! is left, nothing committed is damaged, and the rerun completes without
//! waiting for the dead process's lock to expire.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lifeboat_restore_tests::{agent, agent_bin, describe_tree, fresh_url, ok, random_tree, write_key, Backend};

/// ~`mib` MiB of incompressible data in a few files.
fn big_tree(root: &Path, mib: usize) {
    random_tree(root, mib, 0x9e37_79b9_7f4a_7c15);
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    // Hidden names are a writer's temporary files, not objects.
    entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| if e.file_type().unwrap().is_dir() { count_files(&e.path()) } else { 1 })
        .sum()
}

/// Start the agent, wait until `progress_dir` holds `at_least` files, kill -9 it.
fn kill_when(args: &[&str], progress_dir: &Path, at_least: usize) {
    kill_once(args, || count_files(progress_dir) >= at_least);
}

/// Start the agent, wait until `ready()` holds, kill -9 it.
fn kill_once(args: &[&str], ready: impl Fn() -> bool) {
    let mut child = Command::new(agent_bin()).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the agent finished ({status}) before it could be killed; make the data larger");
        }
        if ready() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "no progress within 2 minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[test]
fn kill_9_mid_backup_copy_and_restore() {
    lifeboat_restore_tests::services();
    let scratch = tempfile::tempdir().unwrap();
    let key = scratch.path().join("key");
    write_key(&key);
    let k = key.to_str().unwrap();
    let source = scratch.path().join("source");
    big_tree(&source, 64);
    let repo_dir = scratch.path().join("repo");
    let repo = format!("file://{}", repo_dir.display());
    ok(&agent(&["repo", "init", "--repo", &repo, "--key-file", k], &[]));

    let src = source.to_str().unwrap();
    kill_when(&["files", "backup", src, "--repo", &repo, "--cell", "cell-k", "--key-file", k], &repo_dir.join("chunks"), 20);
    assert_eq!(count_files(&repo_dir.join("manifests")), 0, "a killed backup must not leave a manifest");
    let out = ok(&agent(&["repo", "verify", "--repo", &repo, "--key-file", k, "--output", "json"], &[]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["unreferenced_chunks"].as_u64().unwrap() >= 20, "the killed run's chunks are garbage, not errors: {v}");

    let out = ok(&agent(&["files", "backup", src, "--repo", &repo, "--cell", "cell-k", "--key-file", k, "--output", "json"], &[]));
    let b: serde_json::Value = serde_json::from_str(&out).unwrap();
    ok(&agent(&["repo", "verify", "--repo", &repo, "--key-file", k], &[]));

    let copy_dir = scratch.path().join("copy");
    let copy = format!("file://{}", copy_dir.display());
    kill_when(&["repo", "copy", &repo, &copy, "--key-file", k], &copy_dir.join("chunks"), 20);
    assert_eq!(count_files(&copy_dir.join("manifests")), 0, "a killed copy must not leave a manifest");
    ok(&agent(&["repo", "copy", &repo, &copy, "--key-file", k], &[]));
    ok(&agent(&["repo", "verify", "--repo", &copy, "--key-file", k], &[]));

    // A restore killed while it writes its staging directory leaves no target.
    let target = scratch.path().join("restored");
    let id = b["backup_id"].as_str().unwrap();
    let restore = ["files", "restore", id, target.to_str().unwrap(), "--repo", &copy, "--cell", "cell-k", "--key-file", k];
    let staging_written = || {
        let staging = std::fs::read_dir(scratch.path())
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with(".restored.lifeboat-restore-"));
        staging.is_some_and(|s| std::fs::read_dir(s.path()).map(|d| d.count() > 0).unwrap_or(false))
    };
    kill_once(&restore, staging_written);
    assert!(!target.exists(), "a killed restore must not leave a target that looks complete");
    ok(&agent(&restore, &[]));
    assert_eq!(describe_tree(&target), describe_tree(&source));
}

/// Start the agent with debug logs, kill -9 it once its stderr has shown
/// `lines` lines containing `needle`.
fn kill_after_logged(args: &[&str], needle: &str, lines: usize) {
    let mut child = Command::new(agent_bin())
        .args(args)
        .env("RUST_LOG", "lifeboat_repository=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = 0;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        seen += line.unwrap().contains(needle) as usize;
        if seen >= lines {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return;
        }
    }
    panic!("the agent finished ({}) after {seen} of {lines} lines containing {needle:?}", child.wait().unwrap());
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap()
}

/// Verify and retention killed mid-way (on S3, moto): the verify changes
/// nothing; the retention has deleted manifests first, so every backup
/// still listed restores and the repository verifies; the rerun starts at
/// once (the dead process's lock is recognised as such, not waited out)
/// and finishes the sweep.
#[test]
fn kill_9_mid_verify_and_mid_retention() {
    lifeboat_restore_tests::services();
    let scratch = tempfile::tempdir().unwrap();
    let key = scratch.path().join("key");
    write_key(&key);
    let k = key.to_str().unwrap();
    let repo = fresh_url(Backend::S3, "kill-retention", scratch.path());
    ok(&agent(&["repo", "init", "--repo", &repo, "--key-file", k], &[]));
    let mut last = String::new();
    for seed in 1..=3u64 {
        let src = scratch.path().join(format!("tree-{seed}"));
        random_tree(&src, 32, seed);
        let out = ok(&agent(
            &["files", "backup", src.to_str().unwrap(), "--repo", &repo, "--cell", "cell-k", "--key-file", k, "--output", "json"],
            &[],
        ));
        last = json(&out)["backup_id"].as_str().unwrap().to_string();
    }

    // Verify reads about 96 chunks; it is killed after ten.
    kill_after_logged(&["repo", "verify", "--repo", &repo, "--key-file", k], "checked", 10);
    let v = json(&ok(&agent(&["repo", "verify", "--repo", &repo, "--key-file", k, "--output", "json"], &[])));
    assert_eq!((v["manifests"].as_u64(), v["problems"].as_array().map(Vec::len)), (Some(3), Some(0)), "{v}");

    let retention = ["repo", "retention", "--repo", &repo, "--key-file", k, "--keep-last", "1", "--keep-within", "0s"];
    kill_after_logged(&retention, "deleted", 5); // two manifests, then three chunks
    let listed = json(&ok(&agent(&["repo", "ls", "--repo", &repo, "--key-file", k, "--output", "json"], &[])));
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "manifests go first: {listed}");
    let v = json(&ok(&agent(&["repo", "verify", "--repo", &repo, "--key-file", k, "--output", "json"], &[])));
    assert!(v["unreferenced_chunks"].as_u64().unwrap() > 0, "the cut-off sweep left garbage, never damage: {v}");
    let target = scratch.path().join("restored");
    ok(&agent(&["files", "restore", &last, target.to_str().unwrap(), "--repo", &repo, "--cell", "cell-k", "--key-file", k], &[]));
    assert_eq!(describe_tree(&target), describe_tree(&scratch.path().join("tree-3")));

    let rerun = agent(&retention, &[("RUST_LOG", "warn")]);
    let stderr = String::from_utf8_lossy(&rerun.stderr).to_string();
    assert!(rerun.status.success(), "the rerun did not wait out the dead process's lock: {stderr}");
    assert!(stderr.contains("a lock left by a process that died on this host"), "{stderr}");
    let v = json(&ok(&agent(&["repo", "verify", "--repo", &repo, "--key-file", k, "--output", "json"], &[])));
    assert_eq!((v["unreferenced_chunks"].as_u64(), v["problems"].as_array().map(Vec::len)), (Some(0), Some(0)), "{v}");
}
