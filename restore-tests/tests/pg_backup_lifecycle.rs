//! Base backups under faults and over their lifetime: `kill -9` in the
//! middle of a base backup commits nothing and the rerun completes;
//! retention deletes old backups and only the WAL no retained backup needs.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lifeboat_restore_tests::pg::{bindir, switch_and_wait, Archive, Cluster};
use lifeboat_restore_tests::{agent, agent_bin, ok};

fn count(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.flatten().map(|e| if e.file_type().unwrap().is_dir() { count(&e.path()) } else { 1 }).sum()
}

fn latest_restore_matches(a: &Archive, cell: &str, name: &str, expected: &str) -> Cluster {
    let restored = Cluster::existing(&a.root.join(name));
    let data = restored.data();
    ok(&agent(
        &[
            "pg",
            "restore",
            "--repo",
            &a.repo,
            "--cell",
            cell,
            "--key-file",
            a.k(),
            "--to",
            data.to_str().unwrap(),
            "--latest",
            "--agent-path",
            a.bin.to_str().unwrap(),
        ],
        &[],
    ));
    // Without --archive-mode preserve the copy never archives into the cell's repository.
    let settings = std::fs::read_to_string(data.join("postgresql.auto.conf")).unwrap();
    assert!(settings.trim_end().ends_with("archive_mode = 'off'"), "{settings}");
    restored.start();
    restored.wait_for("select pg_is_in_recovery()", "f", Duration::from_secs(120));
    assert_eq!(restored.psql("select current_setting('archive_mode')"), "off");
    assert_eq!(restored.psql("select count(*) || ':' || sum(aid) from pgbench_accounts"), expected);
    restored
}

/// The WAL file name of an LSN on timeline 1.
fn segment_of(lsn: &str) -> String {
    let (hi, lo) = lsn.split_once('/').unwrap();
    let lsn = (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap();
    let segno = lsn / (16 << 20);
    format!("00000001{:08X}{:08X}", segno / 256, segno % 256)
}

#[test]
fn kill_9_mid_base_backup_commits_nothing_and_the_rerun_completes() {
    let a = Archive::new();
    let conf = a.archive_conf("kb");
    let primary = Cluster::create(&a.root.join("primary"), &[&conf[0], &conf[1]]);
    primary.pgbench_init(20);
    let expected = primary.psql("select count(*) || ':' || sum(aid) from pgbench_accounts");
    switch_and_wait(&primary);
    let conn = primary.conninfo();
    let args = ["pg", "backup", "--repo", &a.repo, "--cell", "kb", "--conn", &conn, "--key-file", a.k()];

    let chunks = a.repo_dir.join("chunks");
    let before = count(&chunks);
    let mut child = Command::new(agent_bin()).args(args).env("RUST_LOG", "error").stdout(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    while count(&chunks) < before + 20 {
        assert!(child.try_wait().unwrap().is_none(), "the backup finished before it could be killed");
        assert!(start.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(count(&a.repo_dir.join("manifests")), 0, "a killed base backup must not be committed");
    // Postgres ended the non-exclusive backup with the session; a new one can start.
    primary.psql("insert into pgbench_history (tid, bid, aid, delta, mtime) values (1, 1, 1, 1, now())");

    ok(&agent(&args, &[]));
    assert_eq!(count(&a.repo_dir.join("manifests")), 1);
    ok(&agent(&["repo", "verify", "--repo", &a.repo, "--key-file", a.k()], &[]));
    primary.stop();
    let _restored = latest_restore_matches(&a, "kb", "restored", &expected);
}

#[test]
fn retention_keeps_every_wal_file_a_retained_backup_needs() {
    let a = Archive::new();
    let conf = a.archive_conf("rt");
    let primary = Cluster::create(&a.root.join("primary"), &[&conf[0], &conf[1]]);
    primary.pgbench_init(1);
    let conn = primary.conninfo();
    let mut backups = Vec::new();
    for round in 0..3 {
        let out =
            ok(&agent(&["pg", "backup", "--repo", &a.repo, "--cell", "rt", "--conn", &conn, "--key-file", a.k(), "--output", "json"], &[]));
        let b: serde_json::Value = serde_json::from_str(&out).unwrap();
        backups.push(b);
        primary.psql(&format!("update pgbench_accounts set abalance = abalance + {round} where aid % 10 = 0"));
        switch_and_wait(&primary);
    }
    let expected = primary.psql("select count(*) || ':' || sum(aid) from pgbench_accounts");
    let balances = primary.psql("select sum(abalance) from pgbench_accounts");
    let wal_dir = a.repo_dir.join("wal/rt");
    let wal_before: Vec<String> =
        std::fs::read_dir(&wal_dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();

    let policy = ["--keep-last", "1", "--keep-within", "1s"];
    std::thread::sleep(Duration::from_secs(2));
    let dry: serde_json::Value = serde_json::from_str(&ok(&agent(
        &[&["pg", "retention", "--repo", &a.repo, "--cell", "rt", "--key-file", a.k(), "--dry-run", "--output", "json"][..], &policy[..]]
            .concat(),
        &[],
    )))
    .unwrap();
    assert_eq!(dry["delete"].as_array().unwrap().len(), 2, "{dry}");
    let keep_from = dry["keep_wal_from"].as_str().unwrap().to_string();
    assert_eq!(keep_from, segment_of(backups[2]["start_lsn"].as_str().unwrap()), "WAL is kept from the newest backup's start");
    let doomed: Vec<String> = dry["delete_wal"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert!(!doomed.is_empty());
    assert!(doomed.iter().all(|w| w.as_str() < keep_from.as_str()), "only WAL before {keep_from}: {doomed:?}");
    assert_eq!(std::fs::read_dir(&wal_dir).unwrap().count(), wal_before.len(), "a dry run deletes nothing");

    ok(&agent(&[&["pg", "retention", "--repo", &a.repo, "--cell", "rt", "--key-file", a.k()][..], &policy[..]].concat(), &[]));
    let wal_after: Vec<String> =
        std::fs::read_dir(&wal_dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    for w in &wal_before {
        let kept = wal_after.contains(w);
        assert_eq!(kept, !doomed.contains(w), "{w}: kept {kept}");
    }
    let check = ok(&agent(&["pg", "check", "--repo", &a.repo, "--cell", "rt", "--key-file", a.k()], &[]));
    assert!(!check.contains("GAP"), "{check}");
    ok(&agent(&["repo", "verify", "--repo", &a.repo, "--key-file", a.k()], &[]));
    primary.stop();
    let restored = latest_restore_matches(&a, "rt", "restored", &expected);
    assert_eq!(restored.psql("select sum(abalance) from pgbench_accounts"), balances, "every update after the kept backup replayed");
}

#[test]
fn incrementals_reuse_unchanged_files_and_restore_standalone() {
    let a = Archive::new();
    let conf = a.archive_conf("inc");
    let primary = Cluster::create(&a.root.join("primary"), &[&conf[0], &conf[1]]);
    primary.pgbench_init(5);
    std::thread::sleep(Duration::from_secs(2)); // files older than the full's start by more than a second
    let conn = primary.conninfo();
    let backup = |kind: &str| -> serde_json::Value {
        let out = ok(&agent(
            &["pg", "backup", "--repo", &a.repo, "--cell", "inc", "--conn", &conn, "--key-file", a.k(), "--kind", kind, "--output", "json"],
            &[],
        ));
        serde_json::from_str(&out).unwrap()
    };
    let full = backup("full");
    assert_eq!(full["kind"], "pg-full");

    // Append-heavy work: ~2 % more ledger rows.
    primary.psql("insert into pgbench_accounts select aid, 1, 0, '' from generate_series(500001, 510000) aid");
    primary.psql("checkpoint");
    let incr = backup("incremental");
    assert_eq!(incr["kind"], "pg-incr", "{incr}");
    assert_eq!(incr["parent"], full["backup_id"]);
    let reused = incr["totals"]["reused_files"].as_u64().unwrap();
    let files = incr["totals"]["files"].as_u64().unwrap();
    assert!(reused * 2 > files, "most files are reused unread: {reused} of {files}");
    let stored = incr["totals"]["new_stored_bytes"].as_u64().unwrap();
    let db = incr["totals"]["bytes"].as_u64().unwrap();
    assert!(stored * 10 < db, "an incremental stores only what changed: {stored} of {db} bytes");

    primary.psql("insert into pgbench_accounts select aid, 1, 0, '' from generate_series(510001, 511000) aid");
    switch_and_wait(&primary);
    let expected = primary.psql("select count(*) || ':' || sum(aid) from pgbench_accounts");
    primary.stop();

    // Standalone: without the full's manifest, the incremental restores alone.
    let full_id = full["backup_id"].as_str().unwrap();
    std::fs::remove_file(a.repo_dir.join("manifests/inc").join(full_id)).unwrap();
    ok(&agent(&["repo", "verify", "--repo", &a.repo, "--key-file", a.k()], &[]));
    let restored = latest_restore_matches(&a, "inc", "restored", &expected);
    drop(restored);
}

#[test]
fn a_base_backup_from_a_streaming_standby_restores() {
    let a = Archive::new();
    let conf = a.archive_conf("sb");
    // archive_timeout bounds how long the standby's stop segment waits for the primary's archiver.
    let primary = Cluster::create(&a.root.join("primary"), &[&conf[0], &conf[1], "archive_timeout = '1s'"]);
    primary.psql("create table ledger (id int primary key, note text)");
    primary.psql("insert into ledger select g, 'before' from generate_series(1, 1000) g");

    let standby = Cluster::existing(&a.root.join("standby"));
    let status = Command::new(bindir().join("pg_basebackup"))
        .args(["-h", "127.0.0.1", "-p", &primary.port.to_string(), "-U", "postgres", "-R", "-X", "stream", "-c", "fast", "-D"])
        .arg(standby.data())
        .status()
        .unwrap();
    assert!(status.success());
    standby.start();
    standby.wait_for("select count(*) from ledger", "1000", Duration::from_secs(60));
    assert_eq!(standby.psql("select pg_is_in_recovery()"), "t");

    let conn = standby.conninfo();
    ok(&agent(&["pg", "backup", "--repo", &a.repo, "--cell", "sb", "--conn", &conn, "--key-file", a.k(), "--wal-timeout", "60s"], &[]));
    let info: serde_json::Value =
        serde_json::from_str(&ok(&agent(&["pg", "info", "--repo", &a.repo, "--cell", "sb", "--key-file", a.k(), "--output", "json"], &[])))
            .unwrap();
    assert_eq!(info["backups"][0]["from_standby"], true, "{info}");

    primary.psql("insert into ledger select g, 'after' from generate_series(1001, 1500) g");
    switch_and_wait(&primary);
    let expected = primary.psql("select count(*) || ':' || sum(id) from ledger");
    standby.stop();
    primary.stop();

    let restored = Cluster::existing(&a.root.join("restored"));
    ok(&agent(
        &[
            "pg",
            "restore",
            "--repo",
            &a.repo,
            "--cell",
            "sb",
            "--key-file",
            a.k(),
            "--to",
            restored.data().to_str().unwrap(),
            "--latest",
            "--no-archive",
            "--agent-path",
            a.bin.to_str().unwrap(),
        ],
        &[],
    ));
    // The standby's primary_conninfo came along; with recovery.signal (not
    // standby.signal) Postgres does archive recovery only and ignores it.
    restored.start();
    restored.wait_for("select pg_is_in_recovery()", "f", Duration::from_secs(120));
    assert_eq!(restored.psql("select count(*) || ':' || sum(id) from ledger"), expected);
}
