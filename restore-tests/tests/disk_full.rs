//! A full disk under a `file://` location (a 4 MiB tmpfs): a backup that
//! does not fit fails with the system's own words, commits nothing (no
//! manifest), and leaves a repository that still verifies; once there is
//! room, the rerun completes and restores byte for byte.

use std::path::{Path, PathBuf};
use std::process::Command;

use lifeboat_restore_tests::served::{agent_args, write_token, Service};
use lifeboat_restore_tests::{agent, describe_tree, fails, make_config_tree, ok, write_key};

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).output().unwrap();
        if !out.status.success() {
            eprintln!("cannot mount a tmpfs here ({}); the disk-full test needs root", String::from_utf8_lossy(&out.stderr).trim());
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_location_fails_the_backup_cleanly_and_the_rerun_completes() {
    lifeboat_restore_tests::services();
    let scratch = tempfile::tempdir().unwrap();
    let small = scratch.path().join("small");
    let Some(fs) = Tmpfs::mount(&small, "4m") else {
        assert!(std::env::var("CI").is_err(), "CI runs as root: the disk-full test must run there");
        return;
    };
    let key = scratch.path().join("key");
    write_key(&key);
    let k = key.to_str().unwrap();
    let source = scratch.path().join("source");
    make_config_tree(&source, 24 << 20, 21);
    let repo = format!("file://{}", small.join("repo").display());
    ok(&agent(&["repo", "init", "--repo", &repo, "--key-file", k], &[]));
    let backup = ["files", "backup", source.to_str().unwrap(), "--repo", &repo, "--cell", "df", "--key-file", k];

    let err = fails(&agent(&backup, &[]));
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(err.lines().filter(|l| !l.trim().is_empty()).count(), 1, "one line: {err}");
    let manifests = small.join("repo/manifests");
    let committed = std::fs::read_dir(&manifests).map(|d| d.count()).unwrap_or(0);
    assert_eq!(committed, 0, "a backup that did not fit committed a manifest");
    ok(&agent(&["repo", "verify", "--repo", &repo, "--key-file", k], &[]));

    fs.resize("64m");
    ok(&agent(&backup, &[]));
    let restored = scratch.path().join("restored");
    ok(&agent(&["files", "restore", "latest", restored.to_str().unwrap(), "--repo", &repo, "--cell", "df", "--key-file", k], &[]));
    assert_eq!(describe_tree(&restored), describe_tree(&source));
}

/// The agent's state directory full: a job submission is refused with the
/// system's words (the agent keeps serving), and once there is room the
/// same submission is accepted and runs.
#[test]
fn a_full_state_directory_refuses_jobs_and_the_agent_keeps_serving() {
    let a = lifeboat_restore_tests::pg::Archive::new();
    let scratch = tempfile::tempdir().unwrap();
    let state_fs = scratch.path().join("state-fs");
    let Some(_fs) = Tmpfs::mount(&state_fs, "1m") else {
        assert!(std::env::var("CI").is_err(), "CI runs as root: the disk-full test must run there");
        return;
    };
    // Token and state on the small file system (the token is written before it fills).
    let token = write_token(&state_fs.join("agent-token"));
    let args = agent_args(&a, "sf", &state_fs);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let served = Service::start(&args, &[], &token, &scratch.path().join("agent.log"));
    let filler = state_fs.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 1 << 20]); // fills what is left; the write itself fails short
    let (status, body) = served.submit("full-1", &serde_json::json!({"kind": "verify"}));
    assert!(status >= 500, "{status} {body}");
    assert!(body.to_string().contains("No space left on device"), "{body}");
    assert_eq!(served.get("/v1/health").0, 200, "the agent still serves");

    std::fs::remove_file(&filler).unwrap();
    let (status, job) = served.submit("full-1", &serde_json::json!({"kind": "verify"}));
    assert_eq!(status, 202, "{job}");
    let job = served.finish(job["id"].as_str().unwrap(), std::time::Duration::from_secs(60));
    assert_eq!(job["state"], "succeeded", "{job}");
}
