//! Postgres recovery beyond the happy path: across a timeline switch after
//! a failover, and from the S3 (moto) and Azure (Azurite) geo-copies after
//! the primary repository is destroyed.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use lifeboat_restore_tests::pg::{switch_and_wait, Archive, Cluster};
use lifeboat_restore_tests::{agent, fresh_url, ok, Backend};

fn restore(a: &Archive, repo: &str, agent_path: &str, to: &std::path::Path, target: &[&str], extra: &[&str]) -> serde_json::Value {
    let mut args =
        vec!["pg", "restore", "--repo", repo, "--cell", "tl", "--key-file", a.k(), "--output", "json", "--agent-path", agent_path];
    let to_s = to.to_str().unwrap().to_string();
    args.extend(["--to", &to_s]);
    args.extend_from_slice(target);
    args.extend_from_slice(extra);
    serde_json::from_str(&ok(&agent(&args, &[]))).unwrap()
}

fn ids(pg: &Cluster) -> String {
    pg.psql("select coalesce(string_agg(id::text, ',' order by id), '') from ledger")
}

fn range(from: u32, to: u32) -> Vec<String> {
    (from..=to).map(|i| i.to_string()).collect()
}

#[test]
fn pitr_across_a_timeline_switch() {
    let a = Archive::new();
    let conf = a.archive_conf("tl");
    let primary = Cluster::create(&a.root.join("primary"), &[&conf[0], &conf[1], "track_commit_timestamp = on"]);
    primary.psql("create table ledger (id int primary key, note text)");
    let conn = primary.conninfo();
    ok(&agent(&["pg", "backup", "--repo", &a.repo, "--cell", "tl", "--conn", &conn, "--key-file", a.k()], &[]));
    primary.psql("insert into ledger select g, 'timeline 1' from generate_series(1, 100) g");
    switch_and_wait(&primary);
    primary.stop(); // the failover: the old primary is gone

    // Promote a restore of it: timeline 2, archiving into the same cell
    // (the restore takes production's place, so it keeps archiving).
    let bin = a.bin.to_str().unwrap().to_string();
    let failover = Cluster::existing(&a.root.join("failover"));
    restore(&a, &a.repo, &bin, &failover.data(), &["--latest"], &["--archive-mode", "preserve"]);
    failover.start();
    failover.wait_for("select pg_is_in_recovery()", "f", Duration::from_secs(60));
    assert_eq!(failover.psql("select timeline_id from pg_control_checkpoint()"), "2");
    for i in 101..=150 {
        failover.psql(&format!("insert into ledger values ({i}, 'timeline 2')"));
    }
    switch_and_wait(&failover);
    let commit_us: Vec<i64> = failover
        .psql("select (extract(epoch from pg_xact_commit_timestamp(xmin)) * 1000000)::bigint from ledger where id > 100 order by id")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();

    let check = ok(&agent(&["pg", "check", "--repo", &a.repo, "--cell", "tl", "--key-file", a.k(), "--output", "json"], &[]));
    let check: serde_json::Value = serde_json::from_str(&check).unwrap();
    let timelines: Vec<u64> = check["timelines"].as_array().unwrap().iter().map(|t| t["timeline"].as_u64().unwrap()).collect();
    assert_eq!(timelines, [1, 2], "{check}");
    assert_eq!(check["timelines"][1]["has_history"], true, "{check}");

    // From the timeline-1 backup, through the switch, to a time on timeline 2.
    let mid = (commit_us[24] + commit_us[25]) / 2;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(mid as i128 * 1000).unwrap();
    let t = t.format(&time::format_description::well_known::Rfc3339).unwrap();
    let pitr = Cluster::existing(&a.root.join("pitr"));
    restore(&a, &a.repo, &bin, &pitr.data(), &["--target-time", &t], &["--no-archive"]);
    pitr.start();
    pitr.wait_for("select pg_is_in_recovery()", "f", Duration::from_secs(60));
    assert_eq!(ids(&pitr), range(1, 125).join(","), "PITR across the timeline switch");
    pitr.stop();

    // And to the end of timeline 2.
    let latest = Cluster::existing(&a.root.join("latest"));
    restore(&a, &a.repo, &bin, &latest.data(), &["--latest"], &["--no-archive"]);
    latest.start();
    latest.wait_for("select pg_is_in_recovery()", "f", Duration::from_secs(60));
    assert_eq!(ids(&latest), range(1, 150).join(","));
}

#[test]
fn restore_from_s3_and_azure_copies_after_the_primary_repository_is_destroyed() {
    let a = Archive::new();
    let conf = a.archive_conf("tl");
    let primary = Cluster::create(&a.root.join("primary"), &[&conf[0], &conf[1]]);
    primary.psql("create table ledger (id int primary key, note text)");
    let conn = primary.conninfo();
    ok(&agent(&["pg", "backup", "--repo", &a.repo, "--cell", "tl", "--conn", &conn, "--key-file", a.k()], &[]));
    primary.psql("insert into ledger select g, 'after the backup' from generate_series(1, 500) g");
    switch_and_wait(&primary);
    primary.stop();

    let s3 = fresh_url(Backend::S3, "pg-geo", &a.root);
    let azure = fresh_url(Backend::Azure, "pg-geo", &a.root);
    for dest in [&s3, &azure] {
        ok(&agent(&["repo", "copy", &a.repo, dest, "--key-file", a.k()], &[]));
    }
    std::fs::remove_dir_all(&a.repo_dir).unwrap(); // the primary region is gone

    // restore_command runs as postgres, without this process' environment:
    // a wrapper gives it the cloud credentials, as a service unit would.
    let wrapper = a.root.join("bin/agent-with-cloud-env");
    let mut script = String::from("#!/bin/sh\n");
    for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY"] {
        script.push_str(&format!("export {var}='{}'\n", std::env::var(var).unwrap()));
    }
    script.push_str(&format!("exec '{}' \"$@\"\n", a.bin.display()));
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let wrapper = wrapper.to_str().unwrap().to_string();

    for (name, repo) in [("s3", &s3), ("azure", &azure)] {
        let restored = Cluster::existing(&a.root.join(format!("from-{name}")));
        restore(&a, repo, &wrapper, &restored.data(), &["--latest"], &["--no-archive"]);
        restored.start();
        restored.wait_for("select pg_is_in_recovery()", "f", Duration::from_secs(120));
        assert_eq!(ids(&restored), range(1, 500).join(","), "restore from the {name} copy");
        let log = std::fs::read_to_string(restored.dir.join("postgres.log")).unwrap();
        assert!(log.contains("restored log file"), "{name}: WAL came through wal-fetch");
    }
}

/// `pg restore --delta` over a data directory that ran on and diverged:
/// refused while the server runs, then most files are kept by hash and the
/// restored cluster holds exactly what the backup plus WAL hold.
#[test]
fn delta_restore_over_a_diverged_data_directory() {
    let a = Archive::new();
    let conf = a.archive_conf("tl");
    let primary = Cluster::create(&a.root.join("primary"), &[&conf[0], &conf[1]]);
    primary.psql("create table ledger (id int primary key, note text)");
    primary.psql("create table big as select g as id, repeat('x', 200) as pad from generate_series(1, 50000) g");
    let conn = primary.conninfo();
    ok(&agent(&["pg", "backup", "--repo", &a.repo, "--cell", "tl", "--conn", &conn, "--key-file", a.k()], &[]));
    primary.psql("insert into ledger select g, 'archived' from generate_series(1, 200) g");
    switch_and_wait(&primary);
    primary.stop();

    let bin = a.bin.to_str().unwrap().to_string();
    let copy = Cluster::existing(&a.root.join("copy"));
    restore(&a, &a.repo, &bin, &copy.data(), &["--latest"], &["--no-archive"]);
    copy.start();
    copy.wait_for("select pg_is_in_recovery()", "f", Duration::from_secs(60));
    // The copy runs on: new rows, a new table, a changed one.
    copy.psql("insert into ledger select g, 'diverged' from generate_series(201, 300) g");
    copy.psql("create table scratch as select 1 as x");
    copy.psql("update big set pad = 'y' where id % 1000 = 0");
    copy.psql("checkpoint");

    let data = copy.data();
    let data_s = data.to_str().unwrap().to_string();
    let mut args =
        vec!["pg", "restore", "--repo", &a.repo, "--cell", "tl", "--key-file", a.k(), "--agent-path", &bin, "--latest", "--no-archive"];
    args.extend(["--to", &data_s]);
    let refused = lifeboat_restore_tests::fails(&agent(&args, &[]));
    assert!(refused.contains("not empty") && refused.contains("--delta"), "{refused}");
    args.push("--delta");
    let running = lifeboat_restore_tests::fails(&agent(&args, &[]));
    assert!(running.contains("postmaster.pid"), "{running}");
    copy.stop();

    args.extend(["--output", "json"]);
    let report: serde_json::Value = serde_json::from_str(&ok(&agent(&args, &[]))).unwrap();
    let reused = report["files_reused"].as_u64().unwrap();
    let written = report["files_written"].as_u64().unwrap();
    assert!(reused > 500 && reused > 5 * written, "most files should be kept: {report}");
    assert!(!data.join(".lifeboat-delta-restore-incomplete").exists());
    copy.start();
    copy.wait_for("select pg_is_in_recovery()", "f", Duration::from_secs(60));
    assert_eq!(ids(&copy), range(1, 200).join(","), "the delta restore holds what was archived, not the divergence");
    assert_eq!(copy.psql("select count(*) from big where pad = 'y'"), "0");
    assert_eq!(copy.psql("select count(*) from pg_class where relname = 'scratch'"), "0");
}
