//! Lock holders whose clocks disagree by twenty minutes, as separate agent
//! processes (`faketime` shifts one ten minutes ahead and the other ten
//! behind): a backup's shared lock still keeps retention out, the lock is
//! listed live with its age by the store's clock, and retention runs as
//! soon as the backup ends.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use lifeboat_restore_tests::{agent_bin, fresh_url, ok, random_tree, write_key, Backend};

/// The agent with its clock shifted by `offset` (`+10m`, `-10m`).
fn skewed(offset: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("faketime");
    cmd.arg("-f").arg(offset).arg(agent_bin()).args(args).env("RUST_LOG", "error");
    cmd
}

fn run(offset: &str, args: &[&str]) -> Output {
    skewed(offset, args).output().expect("faketime (infra/services.sh install faketime)")
}

#[test]
fn holders_twenty_minutes_apart_still_exclude_each_other() {
    lifeboat_restore_tests::services();
    let scratch = tempfile::tempdir().unwrap();
    let key = scratch.path().join("key");
    write_key(&key);
    let k = key.to_str().unwrap();
    let repo = fresh_url(Backend::S3, "skew", scratch.path());
    ok(&run("+0m", &["repo", "init", "--repo", &repo, "--key-file", k]));
    let retention = ["repo", "retention", "--repo", &repo, "--key-file", k, "--keep-last", "1", "--keep-within", "0s"];
    for (seed, (holder, other)) in [("+10m", "-10m"), ("-10m", "+10m")].into_iter().enumerate() {
        let source = scratch.path().join(format!("tree-{seed}"));
        random_tree(&source, 64, seed as u64 + 11);
        let backup = ["files", "backup", source.to_str().unwrap(), "--repo", &repo, "--cell", "skew", "--key-file", k];
        let mut child = skewed(holder, &backup).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let started = Instant::now();
        let locks = loop {
            let out = ok(&run(other, &["repo", "locks", "--repo", &repo, "--key-file", k, "--output", "json"]));
            let locks: serde_json::Value = serde_json::from_str(&out).unwrap();
            if locks.as_array().is_some_and(|a| !a.is_empty()) {
                break locks;
            }
            assert!(child.try_wait().unwrap().is_none(), "the backup ended before its lock was seen; make the tree larger");
            assert!(started.elapsed() < Duration::from_secs(60), "no lock within a minute");
        };
        assert_eq!(locks[0]["live"], true, "clock {holder} seen from {other}: {locks}");

        let refused = run(other, &retention);
        let err = String::from_utf8_lossy(&refused.stderr).to_string();
        assert!(child.try_wait().unwrap().is_none(), "the backup ended before retention could be refused; make the tree larger");
        assert!(!refused.status.success() && err.contains("is locked") && err.contains("shared files backup"), "{holder}/{other}: {err}");

        assert!(child.wait().unwrap().success());
        ok(&run(other, &retention));
    }
}
