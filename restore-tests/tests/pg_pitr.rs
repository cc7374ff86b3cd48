//! Point-in-time recovery exactness with real PostgreSQL 15 clusters: a
//! workload commits numbered transactions for a minute (by default); for
//! random target times, LSNs, xids and named restore points, the restored
//! cluster holds exactly the transactions committed up to the target. The
//! reference is the source itself: commit timestamps
//! (`track_commit_timestamp`), xids and LSNs read from it, not the
//! workload's clock.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use time::format_description::well_known::Rfc3339;

use lifeboat_restore_tests::pg::{switch_and_wait, Archive, Cluster};
use lifeboat_restore_tests::{agent, fails, ok};

const CELL: &str = "pitr";

fn workload_seconds() -> u64 {
    std::env::var("LIFEBOAT_TEST_PITR_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(60)
}

struct Commit {
    seq: u32,
    /// Microseconds since the epoch, from pg_xact_commit_timestamp.
    commit_us: i64,
    xid: u64,
    /// pg_current_wal_lsn() right after the commit returned.
    lsn_after: String,
}

fn rfc3339_us(us: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1000).unwrap();
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

fn seqs_up_to(n: u32) -> String {
    (1..=n).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_restores_exactly_what_was_committed_up_to_the_target() {
    let a = Archive::new();
    let conf = a.archive_conf(CELL);
    let primary = Cluster::create(&a.root.join("primary"), &[&conf[0], &conf[1], "track_commit_timestamp = on"]);
    primary.psql("create table ledger (seq int primary key, amount bigint not null, note text not null)");
    let conn = primary.conninfo();

    let out =
        ok(&agent(&["pg", "backup", "--repo", &a.repo, "--cell", CELL, "--conn", &conn, "--key-file", a.k(), "--output", "json"], &[]));
    let backup: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(backup["backup_id"].as_str().unwrap().contains("-pg-full-"), "{backup}");

    // The workload: one numbered transaction at a time, restore points and segment switches among them.
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let mut lsn_after = Vec::new();
    let mut restore_points = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(workload_seconds());
    let mut seq = 0u32;
    while Instant::now() < deadline || seq < 50 {
        seq += 1;
        client
            .execute("insert into ledger values ($1, $2, $3)", &[&(seq as i32), &(seq as i64 * 100), &format!("payment {seq}")])
            .await
            .unwrap();
        let lsn: String = client.query_one("select pg_current_wal_lsn()::text", &[]).await.unwrap().get(0);
        lsn_after.push(lsn);
        if seq.is_multiple_of(37) {
            let name = format!("rp-{seq}");
            client.execute("select pg_create_restore_point($1)", &[&name]).await.unwrap();
            restore_points.push((name, seq));
        }
        if seq.is_multiple_of(150) {
            client.execute("select pg_switch_wal()", &[]).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    switch_and_wait(&primary);

    // The reference, from the source.
    let rows = primary
        .psql("select seq, (extract(epoch from pg_xact_commit_timestamp(xmin)) * 1000000)::bigint, xmin::text from ledger order by seq");
    let commits: Vec<Commit> = rows
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let seq: u32 = f[0].parse().unwrap();
            Commit { seq, commit_us: f[1].parse().unwrap(), xid: f[2].parse().unwrap(), lsn_after: lsn_after[seq as usize - 1].clone() }
        })
        .collect();
    assert_eq!(commits.len() as u32, seq);
    assert!(commits.windows(2).all(|w| w[0].commit_us < w[1].commit_us), "single-session commits are ordered");

    // Random targets: times between two commits, LSNs, xids, names; and latest.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x11fe_b0a7);
    let mut cases: Vec<(Vec<String>, u32)> = Vec::new();
    let n = commits.len();
    for _ in 0..4 {
        let i = rng.gen_range(1..n - 1);
        let mid = (commits[i - 1].commit_us + commits[i].commit_us) / 2; // after commit i, before i+1
        cases.push((vec!["--target-time".into(), rfc3339_us(mid)], commits[i - 1].seq));
    }
    for _ in 0..3 {
        let i = rng.gen_range(1..n);
        cases.push((vec!["--target-lsn".into(), commits[i - 1].lsn_after.clone()], commits[i - 1].seq));
    }
    for _ in 0..2 {
        let i = rng.gen_range(1..n);
        cases.push((vec!["--target-xid".into(), commits[i - 1].xid.to_string()], commits[i - 1].seq));
    }
    for (name, at) in restore_points.iter().take(2) {
        cases.push((vec!["--target-name".into(), name.clone()], *at));
    }
    cases.push((vec!["--latest".into()], n as u32));
    assert!(cases.len() >= 12);

    for (k, (target, expected_last)) in cases.iter().enumerate() {
        let dir = a.root.join(format!("r{k}"));
        let data = dir.join("data");
        let mut args = vec!["pg", "restore", "--repo", &a.repo, "--cell", CELL, "--key-file", a.k(), "--no-archive", "--output", "json"];
        let data_s = data.to_str().unwrap().to_string();
        let bin_s = a.bin.to_str().unwrap().to_string();
        args.extend(["--to", &data_s, "--agent-path", &bin_s]);
        args.extend(target.iter().map(String::as_str));
        let restored = Cluster::existing(&dir);
        let port = restored.port.to_string();
        // Every other case through --start, which reports the point reached.
        let via_start = k % 2 == 0;
        if via_start {
            args.extend(["--start", "--port", &port]);
        }
        let report: serde_json::Value = serde_json::from_str(&ok(&agent(&args, &[]))).unwrap();
        assert_reports_target(&report["target"], target);
        if !via_start {
            restored.start();
        }
        restored.wait_for("select pg_is_in_recovery()", "f", Duration::from_secs(120));
        let got = restored.psql("select coalesce(string_agg(seq::text, ',' order by seq), '') from ledger");
        assert_eq!(got, seqs_up_to(*expected_last), "target {target:?}: restored rows differ (report {report})");
        if via_start && target[0] == "--target-time" {
            let reached = report["reached"]["last_transaction_time"].as_str().unwrap_or_default().to_string();
            let want = restored.psql(&format!("select pg_xact_commit_timestamp(xmin)::text from ledger where seq = {expected_last}"));
            assert_eq!(reached, want, "the reported point is the last transaction replayed");
        }
        restored.stop();
    }

    // Targets the archive cannot reach are refused before anything is written.
    let early = rfc3339_us(commits[0].commit_us - 3_600_000_000);
    let dir = a.root.join("bad").join("data");
    let err = fails(&agent(
        &["pg", "restore", "--repo", &a.repo, "--cell", CELL, "--key-file", a.k(), "--to", dir.to_str().unwrap(), "--target-time", &early],
        &[],
    ));
    assert!(err.contains("before the end of the oldest backup") && err.contains("earliest recoverable"), "{err}");
    let err = fails(&agent(
        &["pg", "restore", "--repo", &a.repo, "--cell", CELL, "--key-file", a.k(), "--to", dir.to_str().unwrap(), "--target-lsn", "FF/0"],
        &[],
    ));
    assert!(err.contains("after the latest archived WAL"), "{err}");
    assert!(!dir.exists(), "nothing written for a refused restore");
    // A non-empty target directory.
    let occupied = a.root.join("r0").join("data");
    let err = fails(&agent(
        &["pg", "restore", "--repo", &a.repo, "--cell", CELL, "--key-file", a.k(), "--to", occupied.to_str().unwrap(), "--latest"],
        &[],
    ));
    assert!(err.contains("not empty"), "{err}");

    let info: serde_json::Value =
        serde_json::from_str(&ok(&agent(&["pg", "info", "--repo", &a.repo, "--cell", CELL, "--key-file", a.k(), "--output", "json"], &[])))
            .unwrap();
    assert_eq!(info["backups"].as_array().unwrap().len(), 1, "{info}");
    assert!(info["wal"]["timelines"][0]["gaps"].as_array().unwrap().is_empty());
}

#[test]
fn backup_refuses_clusters_that_cannot_be_recovered() {
    let a = Archive::new();
    let k = a.k();
    // Wrong conninfo.
    let err = fails(&agent(
        &["pg", "backup", "--repo", &a.repo, "--cell", CELL, "--key-file", k, "--conn", "host=127.0.0.1 port=1 user=postgres"],
        &[],
    ));
    assert!(err.contains("cannot connect to Postgres") && err.lines().count() == 1, "{err}");
    // archive_mode off.
    let off = Cluster::create(&a.root.join("off"), &["archive_mode = off"]);
    let conn = off.conninfo();
    let err = fails(&agent(&["pg", "backup", "--repo", &a.repo, "--cell", CELL, "--key-file", k, "--conn", &conn], &[]));
    assert!(err.contains("archive_mode is off"), "{err}");
    drop(off);
    // wal_level minimal.
    let minimal = Cluster::create(&a.root.join("minimal"), &["archive_mode = off", "wal_level = minimal", "max_wal_senders = 0"]);
    let conn = minimal.conninfo();
    let err = fails(&agent(&["pg", "backup", "--repo", &a.repo, "--cell", CELL, "--key-file", k, "--conn", &conn], &[]));
    assert!(err.contains("wal_level is minimal"), "{err}");
    // Nothing was committed by any of them.
    assert!(!a.repo_dir.join("manifests").exists() || std::fs::read_dir(a.repo_dir.join("manifests")).unwrap().count() == 0);
}

/// The restore names its target as data a script can read (it used to be a
/// Rust debug string, from which drills derived their RPO).
fn assert_reports_target(reported: &serde_json::Value, asked: &[String]) {
    let same_text = |v: &serde_json::Value, want: &str| v.as_str().is_some_and(|s| s.eq_ignore_ascii_case(want));
    let ok = match asked[0].as_str() {
        "--latest" => reported == "latest",
        "--target-time" => {
            reported["time"].as_str().and_then(|t| time::OffsetDateTime::parse(t, &Rfc3339).ok())
                == time::OffsetDateTime::parse(&asked[1], &Rfc3339).ok()
        }
        "--target-lsn" => same_text(&reported["lsn"], &asked[1]),
        "--target-xid" => reported["xid"].as_u64().map(|x| x.to_string()).as_deref() == Some(asked[1].as_str()),
        "--target-name" => reported["name"] == asked[1].as_str(),
        other => panic!("no such target option {other}"),
    };
    assert!(ok, "asked for {asked:?}, the restore reports target {reported}");
}
