//! The plan's retention reaches the agent and is carried out: a cell keeps
//! daily fulls 35 days and hourly incrementals only briefly (1 s here); the
//! coordinator's `pg-retention` run makes the agent delete the incrementals
//! that are too old while keeping every full, checked in the repository
//! with the CLI. (The plan's incremental age used to be parsed and then
//! dropped: incrementals were kept as long as fulls.)

use std::time::Duration;

use serde_json::{json, Value};

use lifeboat_restore_tests::pg::{switch_and_wait, Archive, Cluster};
use lifeboat_restore_tests::plans::{self, OneCell};
use lifeboat_restore_tests::served::Service;
use lifeboat_restore_tests::{agent, ok};

/// Backup kinds in the repository, oldest first, read with the CLI.
fn backups(a: &Archive) -> Vec<(String, String)> {
    let out = ok(&agent(&["pg", "info", "--repo", &a.repo, "--cell", "ret", "--key-file", a.k(), "--output", "json"], &[]));
    let info: Value = serde_json::from_str(&out).unwrap();
    info["backups"].as_array().unwrap().iter().map(|b| (b["id"].as_str().unwrap().into(), b["kind"].as_str().unwrap().into())).collect()
}

#[test]
fn the_plans_incremental_retention_reaches_the_agent() {
    let a = Archive::new();
    let conf = a.archive_conf("ret");
    let pg = Cluster::create(&a.root.join("pg"), &[&conf[0], &conf[1]]);
    pg.psql("create table t as select g as id from generate_series(1, 1000) g");
    switch_and_wait(&pg);
    let dir = tempfile::tempdir().unwrap();
    let conn = pg.conninfo();
    // The plan keeps incrementals 1 s: below the default floor of 24 h, so this agent's is lowered.
    let served = Service::agent_on(&a, "ret", dir.path(), &["--pg-conn", &conn, "--retention-floor", "1s"]);

    // One full and three incrementals, through the agent's API.
    for (n, incremental) in [false, true, true, true].into_iter().enumerate() {
        pg.psql(&format!("insert into t values ({})", 10_000 + n));
        let (status, job) = served.submit(&format!("backup-{n}"), &json!({ "kind": "pg-backup", "incremental": incremental }));
        assert_eq!(status, 202, "{job}");
        let done = served.finish(job["id"].as_str().unwrap(), Duration::from_secs(180));
        assert_eq!(done["state"], "succeeded", "{done}");
    }
    let before = backups(&a);
    let kinds: Vec<&str> = before.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(kinds, ["pg-full", "pg-incr", "pg-incr", "pg-incr"], "{before:?}");
    std::thread::sleep(Duration::from_secs(2)); // every incremental is now older than 1 s

    // The coordinator runs the plan's Postgres retention on the agent.
    let plans = dir.path().join("plans");
    let token = dir.path().join("agent-token");
    let defaults = "\n[defaults.retention]\npg_full = \"35d\"\npg_incremental = \"1s\"\n";
    let one =
        OneCell { plan: "retention", cell: "ret", agent: &served.url, token: &token, postgres_conninfo: &conn, defaults, cell_lines: "" };
    plans::write_one_cell(&plans, &one);
    let coordinator = Service::coordinator_on(&plans, dir.path(), &["--poll", "1s"]);
    let request = json!({ "cell": "ret", "kind": "pg-retention" });
    let (status, run) = coordinator.request("POST", "/v1/runs", Some(&coordinator.bearer()), None, Some(&request));
    assert_eq!(status, 202, "{run}");
    let run = coordinator.finished_run(run["id"].as_i64().unwrap(), Duration::from_secs(120));
    assert_eq!(run["state"], "succeeded", "{run}\n{}", served.log_text());

    // The agent was asked with both ages of the plan...
    let (_, jobs) = served.get("/v1/jobs?kind=retention");
    let spec = &jobs["jobs"][0]["spec"];
    assert_eq!((spec["keep_within"].as_str(), spec["keep_incremental_within"].as_str()), (Some("35d"), Some("1s")), "{jobs}");
    // ...and the repository shows them applied: the full stays (35 days),
    // the oldest incremental went (over 1 s, not among the newest two).
    let after = backups(&a);
    assert_eq!(after, [before[0].clone(), before[2].clone(), before[3].clone()], "before {before:?}");
    let deleted = &run["result"]["delete"];
    assert_eq!(deleted.as_array().map(Vec::len), Some(1), "{run}");
    assert_eq!(deleted[0]["id"].as_str(), Some(before[1].0.as_str()), "{run}");
    assert!(deleted[0]["reason"].as_str().unwrap().contains("older than 1s"), "{run}");
}
