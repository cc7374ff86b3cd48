//! Fencing after a failover, against a real PostgreSQL 15 that keeps
//! running as the old primary: `fence raise` shows its plan, changes
//! nothing under `--dry-run`, raises a create-only epoch that a rerun finds
//! and keeps (and another failover cannot take), and from then on the
//! cell's repository refuses the old primary's WAL and base backups, saying
//! why in Postgres' own log while Postgres keeps the refused WAL. The new
//! primary's timeline is taken, and a geo-copy carries the fence.

use std::time::Duration;

use lifeboat_restore_tests::pg::{switch_and_wait, Archive, Cluster};
use lifeboat_restore_tests::{agent, fails, ok};

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap()
}

#[test]
fn the_old_primary_is_fenced_out_and_says_why() {
    let a = Archive::new();
    let conf = a.archive_conf("fc");
    let pg = Cluster::create(&a.root.join("primary"), &[&conf[0], &conf[1]]);
    pg.psql("create table t (id int)");
    pg.psql("insert into t select generate_series(1, 100)");
    switch_and_wait(&pg);
    let conn = pg.conninfo();
    let backup = ["pg", "backup", "--repo", &a.repo, "--cell", "fc", "--conn", &conn, "--key-file", a.k(), "--output", "json"];
    ok(&agent(&backup, &[]));

    let raise = |extra: &[&str]| {
        let base = ["fence", "raise", "--repo", &a.repo, "--cell", "fc", "--key-file", a.k()];
        agent(&[&base[..], extra].concat(), &[])
    };
    let show = || ok(&agent(&["fence", "show", "--repo", &a.repo, "--cell", "fc", "--key-file", a.k()], &[]));
    // A copy made before the failover: the old side, which never learns of the fence.
    let stale = format!("file://{}", a.root.join("stale").display());
    ok(&agent(&["repo", "copy", &a.repo, &stale, "--key-file", a.k()], &[]));
    let dry = raise(&["--reason", "cell lost (test)", "--dry-run"]);
    let plan = String::from_utf8_lossy(&dry.stderr);
    assert!(dry.status.success() && plan.contains("plan: fence cell fc at epoch 1") && plan.contains("before timeline 2"), "{plan}");
    assert!(show().contains("is not fenced"), "a dry run changes nothing");

    let raised = json(&ok(&raise(&["--reason", "cell lost (test)", "--epoch", "1", "--output", "json"])));
    assert_eq!((raised["locations"][0]["outcome"].as_str(), raised["postgres_timeline"].as_u64()), (Some("raised"), Some(2)));
    let again = json(&ok(&raise(&["--reason", "cell lost (test)", "--epoch", "1", "--output", "json"])));
    assert_eq!(again["locations"][0]["outcome"], "already-raised", "a rerun changes nothing: {again}");
    let other = fails(&raise(&["--reason", "a second failover", "--epoch", "1"]));
    assert!(other.contains("epoch 1 of cell fc was raised as \"cell lost (test)\""), "{other}");
    assert!(show().contains("fence epoch 1"), "{}", show());

    // The old primary keeps running: its next segment is refused, Postgres keeps it and says why.
    let failed_before = pg.psql("select failed_count from pg_stat_archiver");
    pg.psql("insert into t select generate_series(101, 200)");
    let seg = pg.psql("select pg_walfile_name(pg_switch_wal())");
    pg.wait_for(&format!("select failed_count > {failed_before} from pg_stat_archiver"), "t", Duration::from_secs(60));
    assert_eq!(pg.psql("select last_failed_wal from pg_stat_archiver"), seg);
    assert!(!a.repo_dir.join("wal/fc").join(&seg).exists(), "the refused segment is not in the repository");
    assert!(pg.data().join("pg_wal").join(&seg).exists(), "Postgres keeps the refused segment");
    let log = std::fs::read_to_string(pg.dir.join("postgres.log")).unwrap();
    assert!(log.contains("so it is no longer the cell's primary"), "Postgres' log says why:\n{}", pg.log_tail());

    // A base backup of it is refused before anything is committed.
    let refused = fails(&agent(&backup, &[]));
    assert!(refused.contains("refusing a base backup of cell fc") && refused.contains("timeline 2 or later"), "{refused}");
    let info = json(&ok(&agent(&["pg", "info", "--repo", &a.repo, "--cell", "fc", "--key-file", a.k(), "--output", "json"], &[])));
    assert_eq!(info["backups"].as_array().unwrap().len(), 1, "{info}");

    // The new primary's timeline is taken: its history file, then its segments.
    let new_wal = a.root.join("new-primary/pg_wal");
    std::fs::create_dir_all(&new_wal).unwrap();
    let history = new_wal.join("00000002.history");
    std::fs::write(&history, "1\t0/5000000\tno recovery target specified\n").unwrap();
    let push = |file: &std::path::Path| {
        agent(&["wal-push", file.to_str().unwrap(), "--repo", &a.repo, "--cell", "fc", "--key-file", a.k(), "--parallel", "1"], &[])
    };
    ok(&push(&history));
    assert!(a.repo_dir.join("wal/fc/00000002.history").exists());
    // Rerunning the fence now (the new timeline is archived) finishes it as it was raised.
    let rerun = json(&ok(&raise(&["--reason", "cell lost (test)", "--epoch", "1", "--output", "json"])));
    assert_eq!((rerun["locations"][0]["outcome"].as_str(), rerun["postgres_timeline"].as_u64()), (Some("already-raised"), Some(2)));

    // The old side takes the old primary's segment (it knows no fence), but
    // its geo-copy does not carry it into the fenced location.
    let old_wal = pg.data().join("pg_wal").join(&seg);
    ok(&agent(&["wal-push", old_wal.to_str().unwrap(), "--repo", &stale, "--cell", "fc", "--key-file", a.k(), "--parallel", "1"], &[]));
    let copied = agent(&["repo", "copy", &stale, &a.repo, "--key-file", a.k()], &[]);
    let said = String::from_utf8_lossy(&copied.stdout);
    assert!(!copied.status.success() && said.contains("the source is the old side of a failover"), "{said}");
    assert!(!a.repo_dir.join("wal/fc").join(&seg).exists(), "the old primary's segment stays out");

    // A geo-copy carries the fence.
    let copy = format!("file://{}", a.root.join("copy").display());
    ok(&agent(&["repo", "copy", &a.repo, &copy, "--key-file", a.k()], &[]));
    let at_copy = ok(&agent(&["fence", "show", "--repo", &copy, "--cell", "fc", "--key-file", a.k()], &[]));
    assert!(at_copy.contains("fence epoch 1"), "{at_copy}");
}
