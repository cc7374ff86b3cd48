//! `kill -9` of the real agent process in the middle of a backup, a
//! geo-copy and a restore: nothing half-valid is left, and the rerun
//! completes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lifeboat_restore_tests::{agent, agent_bin, describe_tree, ok, write_key};

/// ~`mib` MiB of incompressible data in a few files.
fn big_tree(root: &Path, mib: usize) {
    std::fs::create_dir_all(root).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for f in 0..4 {
        let words: Vec<u64> = (0..(mib << 20) / 32)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            })
            .collect();
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        std::fs::write(root.join(format!("data-{f}.bin")), bytes).unwrap();
    }
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
