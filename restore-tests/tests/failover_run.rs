//! Scenario 1 of the platform's DR design, cold: a cell under a payments
//! workload loses its primary (`kill -9` of Postgres, its data directory
//! removed, its agent gone), and `lifeboat failover run` carries the
//! journaled failover out through a recovery site's `lifeboat-agent serve`
//! hosting the cell as a guest: the gate holds the fence until approved,
//! the driver is killed with `kill -9` in the middle of the restore and
//! `failover resume` finishes without repeating a job or a hook; the new
//! primary holds exactly the payments whose WAL was archived (checked
//! against the workload's own log), its Kafka topic is restored up to the
//! same cut (read back with kcat), and the old primary is fenced out of the
//! repository. A `--test` failover afterwards restores into throw-away
//! names, fences nothing, routes nothing and leaves nothing behind; a
//! `--dry-run` journals nothing.
//!
//! The recovery site's Kafka is the shared test broker, its guests'
//! topics under a prefix (the plan's `kafka.topic_prefix`).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use lifeboat_restore_tests::incident::{ids, instant, kill_primary, parse, stop_postgres, wait_until, StopServer};
use lifeboat_restore_tests::payments::PaymentsCell;
use lifeboat_restore_tests::pg::{free_port, free_ports, switch_and_wait, Archive, Cluster};
use lifeboat_restore_tests::plans::{payments_cell, two_regions, Site, QUIET_SCHEDULES};
use lifeboat_restore_tests::served::{agent_args, write_token, Service};
use lifeboat_restore_tests::{agent, lifeboat_bin, ok, unique};

struct Setup {
    plans: String,
    state: String,
    key: String,
    /// Where the failovers keep each cell's chain of reports.
    reports: String,
}

impl Setup {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(lifeboat_bin());
        c.args(["failover"]).args(args).env("RUST_LOG", "warn");
        c
    }

    /// `lifeboat failover ARGS --plans --state --signing-key --output json`.
    fn driven(&self, args: &[&str]) -> (bool, Value) {
        let drive =
            ["--plans", &self.plans, "--state", &self.state, "--signing-key", &self.key, "--reports", &self.reports, "--output", "json"];
        parse(&self.command(args).args(drive).output().unwrap())
    }

    /// `lifeboat failover ARGS --plans --state --signing-key`, expected to fail: its error.
    fn refused(&self, args: &[&str]) -> String {
        let out = self.command(args).args(["--plans", &self.plans, "--state", &self.state, "--signing-key", &self.key]).output().unwrap();
        assert!(!out.status.success(), "{args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `lifeboat failover ARGS --state --output json`.
    fn read(&self, args: &[&str]) -> (bool, Value) {
        parse(&self.command(args).args(["--state", &self.state, "--output", "json"]).output().unwrap())
    }
}

fn step<'a>(view: &'a Value, cell: &str, name: &str) -> Option<&'a Value> {
    view["steps"].as_array().unwrap().iter().find(|s| s["cell"] == cell && s["step"] == name)
}

/// The hook calls the command hooks logged: (step, idempotency key) per call.
fn hook_calls(log: &Path) -> Vec<(String, String, Value)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (v["step"].as_str().unwrap().to_string(), v["idempotency_key"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

/// How a scenario-1 plan varies: the cell's `failover` line, the scenario's gates and its test schedule.
struct Variant<'a> {
    failover: &'a str,
    approve: &'a str,
    test: &'a str,
}

/// Cold, gated, and tested every minute by a served coordinator.
const COLD: Variant<'static> =
    Variant { failover: r#"failover = { sites = ["site-b"] }"#, approve: r#"["fence"]"#, test: r#"test = { schedule = "* * * * *" }"# };

#[allow(clippy::too_many_arguments)]
fn write_plan(
    dir: &Path,
    cell: &PaymentsCell,
    dead_agent: &str,
    site: &Service,
    site_token: &Path,
    prefix: &str,
    port: u16,
    hooks: &Path,
    variant: &Variant<'_>,
) {
    std::fs::create_dir_all(dir).unwrap();
    let hook = |name: &str| {
        format!(
            "[[hook]]\nname = \"{name}\"\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"cat >> {log}; echo >> {log}\"]\ntimeout = \"10s\"\n",
            log = hooks.display()
        )
    };
    let text = format!(
        r#"[plan]
name = "failover"
description = "scenario 1, cold"
report_public_key = "report-signing.pub"

{quiet}
{regions}
{cell}
[[recovery_site]]
name = "site-b"
region = "r-b"
agent = {{ url = "{site_url}", token = "file:{site_token}" }}
kafka = {{ brokers = "{brokers}", topic_prefix = "{prefix}" }}
postgres = {{ port = {port} }}

{fence}
{route}
{verify}
{notify}
[[scenario]]
name = "cell-failure"
scope = "cell"
approve = {approve}
{test}
hooks = {{ fence = "stop-old-primary", route = "switch-routing", verify = "probe-tenants", notify = "page" }}
rto = "15m"
"#,
        quiet = QUIET_SCHEDULES,
        regions = two_regions("failover"),
        cell = payments_cell(cell, dead_agent, site_token, r#"["main"]"#, variant.failover),
        approve = variant.approve,
        test = variant.test,
        brokers = cell.kafka.address,
        site_url = site.url,
        site_token = site_token.display(),
        fence = hook("stop-old-primary"),
        route = hook("switch-routing"),
        verify = hook("probe-tenants"),
        notify = hook("page"),
    );
    std::fs::write(dir.join("plan.toml"), text).unwrap();
    let v = Command::new(lifeboat_bin()).args(["plan", "validate", dir.to_str().unwrap()]).output().unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

/// Scenario 1's world: the recovery site (another cell's agent hosting
/// `cell` as a guest), the plan key, the plan, and the driver's setup.
struct World {
    site: Service,
    /// Where the plan says the cell's own agent is (nothing answers there until a test starts one).
    home_url: String,
    setup: Setup,
    public: std::path::PathBuf,
    port: u16,
    prefix: String,
    hooks: std::path::PathBuf,
    _scratch: tempfile::TempDir,
}

fn world(cell: &PaymentsCell, variant: &Variant<'_>) -> World {
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let keys = s.join("keys");
    ok(&Command::new(lifeboat_bin()).args(["report", "keygen", "--out-dir", keys.to_str().unwrap()]).output().unwrap());

    // The recovery site: another cell's agent hosting this cell as a guest.
    let site_archive = Archive::new();
    let site_cell = unique("site");
    let site_token_file = s.join("agent-token");
    let site_token = write_token(&site_token_file);
    let guest = format!("{}@main={}", cell.name, cell.a.repo);
    let guest_key = format!("{}={}", cell.name, cell.a.k());
    let base = agent_args(&site_archive, &site_cell, s);
    let public = keys.join("report-signing.pub");
    let extra = [
        "--guest",
        &guest,
        "--guest-key-file",
        &guest_key,
        "--kafka-brokers",
        &cell.kafka.address,
        "--restore-root",
        cell.restore_root.to_str().unwrap(),
        "--plan-key",
        public.to_str().unwrap(),
    ];
    let args: Vec<&str> = base.iter().map(String::as_str).chain(extra).collect();
    // The copy of the agent the postgres user can run: the restored server's restore_command runs it.
    let site = Service::start_bin(cell.a.bin.clone(), &args, &[], &site_token, &s.join("site.log"));
    let dead_agent = format!("http://127.0.0.1:{}", free_port());
    let prefix = format!("{}.", unique("dr"));
    let port = free_port();
    let hooks = s.join("hooks.log");
    let plans = s.join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    std::fs::copy(&public, plans.join("report-signing.pub")).unwrap();
    write_plan(&plans, cell, &dead_agent, &site, &site_token_file, &prefix, port, &hooks, variant);
    let setup = Setup {
        plans: plans.display().to_string(),
        state: s.join("state.db").display().to_string(),
        key: keys.join("report-signing.key").display().to_string(),
        reports: s.join("reports").display().to_string(),
    };
    World { site, home_url: dead_agent, setup, public, port, prefix, hooks, _scratch: scratch }
}

#[test]
fn a_cell_fails_over_to_its_recovery_site_once_through_a_crash_of_the_driver() {
    let cell = PaymentsCell::new("fo");
    let World { site, setup, public, port, prefix, hooks, _scratch, .. } = world(&cell, &COLD);
    let s = _scratch.path();

    // The workload: backed up, snapshotted, archived; then payments whose WAL never leaves the primary.
    cell.pay(10);
    cell.backup();
    cell.pay(20);
    cell.kafka.commit("billing", &cell.topic, &[(0, 2), (1, 1)]);
    cell.snapshot();
    cell.pay(5);
    switch_and_wait(&cell.pg);
    let archived = ids(&cell.pg);
    cell.pay(3);
    let all = ids(&cell.pg);
    assert_eq!(all.len(), archived.len() + 3);
    kill_primary(&cell.pg);
    let failed_at = time::OffsetDateTime::now_utc();
    let takeover_dir = |port: u16| cell.restore_root.join(format!("takeover-{port}")).join("pgdata");

    // Dry run: the plan, nothing journaled.
    let (dry_ok, dry) = setup.driven(&["run", "--scenario", "cell-failure", "--failed", &cell.name, "--dry-run"]);
    assert!(dry_ok, "{dry}");
    assert_eq!(dry["failover"]["assessment"]["cells"][0]["site"], "site-b", "{dry}");
    assert!(
        dry["failover"]["assessment"]["cells"][0]["postgres_point"].is_string(),
        "the site read the lost cell's points from its repository: {dry}"
    );
    assert!(!Path::new(&setup.state).exists(), "a dry run journals nothing");

    // The gate: nothing is fenced or restored before approval.
    let (_, waiting) = setup.driven(&["run", "--scenario", "cell-failure", "--failed", &cell.name, "--by", "carol"]);
    assert_eq!(waiting["failover"]["state"], "waiting", "{waiting}");
    let id = waiting["failover"]["id"].as_str().unwrap().to_string();
    let _stop = StopServer(takeover_dir(port));
    assert!(waiting["next"].as_str().unwrap().contains(&format!("approve {id}")), "{waiting}");
    assert!(step(&waiting, &cell.name, "fence").is_none(), "{waiting}");
    let fence = || ok(&agent(&["fence", "show", "--repo", &cell.a.repo, "--cell", &cell.name, "--key-file", cell.a.k()], &[]));
    assert!(fence().contains("is not fenced"));
    let calls = hook_calls(&hooks);
    assert_eq!(calls.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(), ["notify"], "only the page went out");

    // Approve, and kill the driver with SIGKILL while the site restores.
    let mut approve = setup
        .command(&["approve", &id, "--by", "alice", "--plans", &setup.plans, "--state", &setup.state, "--signing-key", &setup.key])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the restore to start", Duration::from_secs(120), || {
        let (_, v) = setup.read(&["status", &id]);
        step(&v, &cell.name, "restore").is_some()
    });
    approve.kill().unwrap();
    approve.wait().unwrap();
    let (_, cut) = setup.read(&["status", &id]);
    assert_eq!(step(&cut, &cell.name, "restore").unwrap()["state"], "intent", "killed mid-restore: {cut}");
    assert!(fence().contains("epoch 1"), "fenced before the restore");

    let (resumed_ok, done) = setup.driven(&["resume", &id]);
    assert!(resumed_ok, "{done}");
    assert_eq!(done["failover"]["state"], "done", "{done}");
    assert_eq!(done["approvals"][0]["by"], "alice");
    let rto = done["cells"][0]["rto_seconds"].as_f64().unwrap();
    let last_tx = done["cells"][0]["last_transaction"].as_str().unwrap().to_string();
    eprintln!("failover {id}: RTO {rto:.1} s from the failover's start (approval wait and driver crash included); last transaction {last_tx}; failed at {failed_at}");

    // Exactly once: one fence job and one restore on the site's agent, each hook once per key.
    let (_, jobs) = site.get("/v1/jobs");
    let kinds: Vec<&str> = jobs["jobs"].as_array().unwrap().iter().map(|j| j["spec"]["kind"].as_str().unwrap()).collect();
    assert_eq!((kinds.iter().filter(|k| **k == "fence").count(), kinds.iter().filter(|k| **k == "drill").count()), (1, 1), "{jobs}");
    let calls = hook_calls(&hooks);
    let keys: BTreeSet<&String> = calls.iter().map(|c| &c.1).collect();
    assert_eq!(keys.len(), calls.len(), "no hook was called twice: {calls:?}");
    let steps: Vec<&str> = calls.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(steps, ["notify", "fence", "route", "verify", "notify-done"]);
    let fenced = &step(&done, &cell.name, "fence").unwrap()["detail"]["locations"][0];
    assert_eq!((fenced["location"].as_str(), fenced["outcome"].as_str()), (Some("main"), Some("raised")), "the location restored from");

    // The signed report, chained in the repository the cell was restored from, verifies offline.
    let chain = Path::new(&setup.reports).join(&cell.name);
    let verify = |expect: &str| {
        let args = ["report", "verify", chain.to_str().unwrap(), "--public-key", public.to_str().unwrap(), "--expect-sequence", expect];
        ok(&Command::new(lifeboat_bin()).args(args).output().unwrap())
    };
    verify("1");
    let report: Value = serde_json::from_slice(&std::fs::read(chain.join(format!("000001-{id}-{}.json", cell.name))).unwrap()).unwrap();
    assert_eq!((report["operation"].as_str(), report["verdict"].as_str()), (Some("failover"), Some("passed")), "{report}");
    let rpo = report["demonstrated"]["rpo_seconds"].as_f64().unwrap();
    assert!(rpo > 0.0 && rpo < 120.0, "lost: the unarchived payments' seconds before the failure ({rpo} s)");
    let items: Vec<&str> = report["steps"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert!(items.contains(&"approval of fence by alice") && items.contains(&"failover step hook:route"), "{items:?}");
    let route = &calls[2].2;
    let cell_prefix = format!("{prefix}{}.", cell.name);
    assert_eq!(
        (route["detail"]["postgres"]["port"].as_u64(), route["detail"]["kafka"]["topic_prefix"].as_str()),
        (Some(port as u64), Some(cell_prefix.as_str()))
    );

    // The new primary: every archived payment, none of the unarchived ones; writable; the ledger balances.
    let new_primary = Cluster { dir: s.join("unused"), port };
    assert_eq!(ids(&new_primary), archived, "exactly the payments whose WAL was archived (lost: {:?})", all.difference(&archived));
    assert_eq!(new_primary.psql("select coalesce(sum(amount), 0) = 0 from ledger"), "t");
    assert_eq!(new_primary.psql("select pg_is_in_recovery()"), "f");
    new_primary.psql("insert into payments (amount) values (1.00)");
    assert_eq!(new_primary.psql("select count(*) from pg_roles where rolname like 'lifeboat_%'"), "0", "no checks role left behind");

    // Kafka at the site: the snapshot's records up to the cut, keys and values as produced (read with kcat).
    let original: Vec<_> = cell.kafka.kcat_read(&cell.topic).into_values().flatten().collect();
    let restored: Vec<_> = cell.kafka.kcat_read(&format!("{prefix}{}.{}", cell.name, cell.topic)).into_values().flatten().collect();
    let snapshotted: BTreeSet<_> = original
        .iter()
        .filter(|r| r.record.key.as_deref().is_some_and(|k| k.parse::<i64>().unwrap() <= 30))
        .map(|r| (r.record.key.clone(), r.record.value.clone()))
        .collect();
    let got: BTreeSet<_> = restored.iter().map(|r| (r.record.key.clone(), r.record.value.clone())).collect();
    assert_eq!(got, snapshotted, "the snapshot's 30 payment events, nothing else");

    // Resuming a finished failover does nothing; the journal keeps it.
    assert!(setup.refused(&["resume", &id]).contains("is done; nothing to resume"));
    let (_, list) = setup.read(&["list"]);
    assert_eq!(list[0]["id"], id.as_str());

    // The quarterly test: restores at the site into throw-away names, no fence, no route, nothing left.
    let before = hook_calls(&hooks).len();
    let (test_ok, test) = setup.driven(&["run", "--scenario", "cell-failure", "--failed", &cell.name, "--test"]);
    assert!(test_ok, "{test}");
    assert_eq!(test["failover"]["state"], "done", "a test has no gate before a fence it does not raise: {test}");
    assert!(step(&test, &cell.name, "fence").is_none() && step(&test, &cell.name, "hook:route").is_none(), "{test}");
    assert_eq!(step(&test, &cell.name, "smoke").unwrap()["state"], "done", "{test}");
    let test_calls: Vec<String> = hook_calls(&hooks)[before..].iter().map(|c| c.0.clone()).collect();
    assert_eq!(test_calls, ["notify", "notify-done"]);
    assert!(fence().contains("epoch 1"), "a test raises no fence");
    verify("2");
    let tested: Value = serde_json::from_slice(
        &std::fs::read(chain.join(format!("000002-{}-{}.json", test["failover"]["id"].as_str().unwrap(), cell.name))).unwrap(),
    )
    .unwrap();
    assert_eq!(tested["operation"], "failover-test");
    let mut left: Vec<_> = std::fs::read_dir(&cell.restore_root).unwrap().flatten().map(|e| e.file_name().into_string().unwrap()).collect();
    left.sort();
    assert_eq!(
        left,
        [format!("takeover-{port}"), format!("takeover-{port}.lock")],
        "only the takeover (and its lock) stays under the restore root"
    );
    let marker = std::fs::read_to_string(cell.restore_root.join(format!("takeover-{port}/takeover.name"))).unwrap();
    assert_eq!(marker, format!("{id}-{}", cell.name));

    // An abort stops a failover at its gate; it cannot be approved after.
    let (_, third) = setup.driven(&["run", "--scenario", "cell-failure", "--failed", &cell.name]);
    let third_id = third["failover"]["id"].as_str().unwrap().to_string();
    let overlap = setup.refused(&["run", "--scenario", "cell-failure", "--failed", &cell.name]);
    assert!(overlap.contains(&format!("failover {third_id} (waiting) is unfinished for {}", cell.name)), "{overlap}");
    let (_, aborted) = setup.driven(&["abort", &third_id]);
    assert_eq!(aborted["failover"]["state"], "aborted");
    // Its report says what was done and what was not: failed, chained like the others.
    verify("3");
    let name = format!("000003-{third_id}-{}.json", cell.name);
    let report: Value = serde_json::from_slice(&std::fs::read(chain.join(name)).unwrap()).unwrap();
    let items: Vec<&str> = report["steps"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!((report["verdict"].as_str(), items.contains(&"the failover was aborted")), (Some("failed"), true), "{report}");
    assert!(setup.refused(&["approve", &third_id]).contains("is aborted"), "an aborted failover is not carried on");
    assert!(fence().contains("epoch 1"), "the aborted failover fenced nothing");

    // The coordinator on the same state database shows the journal to the status page.
    let coordinator = Service::coordinator_on(Path::new(&setup.plans), s, &["--signing-key", &setup.key, "--reports", &setup.reports]);
    let (code, list) = coordinator.get("/v1/failovers");
    let states: Vec<&str> = list["failovers"].as_array().unwrap().iter().map(|f| f["state"].as_str().unwrap()).collect();
    assert_eq!((code, &states[states.len() - 3..]), (200, &["aborted", "done", "done"][..]), "{list}");
    let (code, one) = coordinator.get(&format!("/v1/failovers/{id}"));
    assert_eq!(
        (code, one["failover"]["state"].as_str(), one["cells"][0]["postgres_port"].as_u64()),
        (200, Some("done"), Some(port as u64))
    );
    assert_eq!(coordinator.get("/v1/failovers/fo-unknown").0, 404);

    // The scenario's test schedule (every minute here): the coordinator runs a --test failover on its own.
    let scheduled = || {
        let (_, list) = coordinator.get("/v1/failovers");
        list["failovers"].as_array().unwrap().iter().find(|f| f["initiator"] == "scheduled test (lifeboat serve)").cloned()
    };
    wait_until("a scheduled test failover to finish", Duration::from_secs(150), || scheduled().is_some_and(|f| f["state"] != "running"));
    let f = scheduled().unwrap();
    assert_eq!((f["state"].as_str(), f["test"].as_bool()), (Some("done"), Some(true)), "{f}\n{}", coordinator.log_text());
    verify("4");
    assert!(fence().contains("epoch 1"), "a scheduled test fences nothing");
    let passed = format!("lifeboat_failover_test_passed{{scenario=\"cell-failure\",failed=\"{}\"}} 1", cell.name);
    wait_until("the test's metric", Duration::from_secs(30), || coordinator.metrics().contains(&passed));
}

/// Scenario 1, hot: the site keeps a standby of the cell (`lifeboat
/// standby ensure`, bootstrapped from the repository, streaming from the
/// primary); the primary is killed with payments whose WAL was streamed
/// but never archived, and the failover promotes the standby in place:
/// every payment the standby had received is on the new primary, and
/// (the cell's Kafka followed, sealed every second) every payment's event.
#[test]
fn a_hot_standby_is_promoted_with_every_streamed_transaction() {
    let cell = PaymentsCell::new("hot");
    let hot = Variant { failover: r#"failover = { sites = ["site-b"], standby = "stream" }"#, approve: "[]", test: "" };
    let World { site, setup, port, prefix, _scratch, home_url, public, hooks, .. } = world(&cell, &hot);
    let _stop = StopServer(cell.restore_root.join(format!("takeover-{port}")).join("pgdata"));
    cell.pay(10);
    cell.backup();
    cell.kafka.commit("billing", &cell.topic, &[(0, 2)]);
    cell.snapshot();
    let follower = cell.follow();

    // The standby: bootstrapped once, found running after.
    let ensure = || {
        let out = Command::new(lifeboat_bin())
            .args(["standby", "ensure", "--plans", &setup.plans, "--signing-key", &setup.key, "--output", "json"])
            .output()
            .unwrap();
        parse(&out)
    };
    let (ensured, first) = ensure();
    assert!(ensured, "{first}");
    assert_eq!((first[0]["standby"]["action"].as_str(), first[0]["standby"]["port"].as_u64()), (Some("bootstrapped"), Some(port as u64)));
    let (_, again) = ensure();
    assert_eq!(again[0]["standby"]["action"], "running", "{again}");
    let standby = Cluster { dir: _scratch.path().join("unused"), port };
    assert_eq!(standby.psql("select pg_is_in_recovery()"), "t");

    // The site's host restarts: the served coordinator starts the standby again.
    stop_postgres(&_stop.0);
    let coordinator_args = ["--signing-key", &setup.key, "--standby-interval", "1s", "--reports", &setup.reports];
    let _coordinator = Service::coordinator_on(Path::new(&setup.plans), _scratch.path(), &coordinator_args);
    wait_until("the coordinator to start the standby again", Duration::from_secs(60), || {
        site.get(&format!("/v1/guests/{}/recovery", cell.name)).1["standby"]["state"]["in_recovery"] == true
    });
    wait_until("the status to show the standby streaming", Duration::from_secs(60), || {
        let standby = &_coordinator.get("/v1/status").1["cells"][0]["standby"];
        standby["streaming"] == true && standby["verdict"] == "ok"
    });

    wait_until("the standby's metrics", Duration::from_secs(40), || {
        site.metrics().contains(&format!("lifeboat_agent_standby_streaming{{cell=\"{}\"}} 1", cell.name))
    });
    let (_, recovery) = site.get(&format!("/v1/guests/{}/recovery", cell.name));
    assert_eq!(recovery["standby"]["state"]["streaming"], true, "{recovery}");

    // Payments whose WAL is streamed, never archived.
    cell.pay(6);
    let all = ids(&cell.pg);
    wait_until("the standby to replay every payment", Duration::from_secs(60), || ids(&standby) == all);
    wait_until("the follower to seal every payment's event", Duration::from_secs(60), || cell.kafka_sealed() == 16);
    kill_primary(&cell.pg);
    let failed_at = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();

    let (planned_ok, planned) = setup.driven(&["run", "--scenario", "cell-failure", "--failed", &cell.name, "--dry-run"]);
    assert!(planned_ok, "{planned}");
    let assessed = &planned["failover"]["assessment"]["cells"][0];
    assert!(assessed["standby_state"]["state"]["in_recovery"] == true, "the plan promotes the standby: {assessed}");
    let done = through_the_api(&_coordinator, &cell.name, &failed_at);
    let restore = step(&done, &cell.name, "restore").unwrap();
    let promoted = restore["detail"]["steps"].as_array().unwrap().iter().find(|s| s["name"] == "promote the standby").unwrap();
    assert_eq!(promoted["outcome"], "passed", "{restore}");
    assert!(
        !restore["detail"]["steps"].as_array().unwrap().iter().any(|s| s["name"].as_str().unwrap().starts_with("restore the base backup")),
        "promoted, not restored: {restore}"
    );

    // The new primary: every payment, the streamed ones too; writable on a new timeline; no checks role left.
    let new_primary = standby;
    assert_eq!(ids(&new_primary), all, "every payment the standby received");
    assert_eq!(new_primary.psql("select pg_is_in_recovery()"), "f");
    assert_eq!(new_primary.psql("select coalesce(sum(amount), 0) = 0 from ledger"), "t");
    new_primary.psql("insert into payments (amount) values (1.00)");
    assert_eq!(new_primary.psql("select count(*) from pg_roles where rolname like 'lifeboat_%'"), "0");
    let id = done["failover"]["id"].as_str().unwrap();
    mirrored_at_the_site(&site, &setup, &cell.name, &done);
    let report = Path::new(&setup.reports).join(&cell.name).join(format!("000001-{id}-{}.json", cell.name));
    let report: Value = serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    let rpo = report["demonstrated"]["rpo_seconds"].as_f64().unwrap();
    eprintln!("hot failover {id}: RTO {:?} s, Postgres RPO {rpo:.2} s", done["cells"][0]["rto_seconds"].as_f64());
    assert!(rpo < 10.0, "the last payment was streamed seconds before the kill: {rpo} s");
    // Kafka from the newest seal (seconds old), up to the cut: Postgres'
    // last transaction. The events published after it (the last payment's,
    // published after its commit) are left out: no event of a payment the
    // new primary may lack. Read from the original with kcat.
    let kafka_rpo = report["demonstrated"]["kafka_rpo_seconds"].as_f64().unwrap();
    eprintln!("hot failover {id}: Kafka RPO {kafka_rpo:.2} s");
    assert!(kafka_rpo < 15.0, "the follower sealed every few seconds: Kafka RPO {kafka_rpo} s");
    drop(follower);
    let until = instant(&restore["detail"]["recovery_point"]["kafka"]["until"]);
    let until_ms = (until.unix_timestamp_nanos() / 1_000_000) as i64;
    let original = cell.kafka.kcat_read(&cell.topic).into_values().flatten();
    let expected: BTreeSet<_> = original.filter(|r| r.record.timestamp <= until_ms).map(|r| r.record.key).collect();
    let restored = cell.kafka.kcat_read(&format!("{prefix}{}.{}", cell.name, cell.topic));
    let got: BTreeSet<_> = restored.into_values().flatten().map(|r| r.record.key).collect();
    assert_eq!(got, expected, "every event up to the cut");
    assert!(got.len() >= 15, "the followed events too, not only the snapshot's 10: {}", got.len());
    commit_reprotects(&setup, &site, &cell, id, &new_primary);
    // A standby is never bootstrapped over the new primary, and the coordinator leaves the cell alone.
    let (kept_ok, kept) = ensure();
    assert!(!kept_ok && kept[0]["error"].as_str().unwrap().contains("the cell's primary since a failover"), "{kept}");
    std::thread::sleep(Duration::from_secs(3));
    let (_, jobs) = site.get("/v1/jobs");
    let standby_jobs = jobs["jobs"].as_array().unwrap().iter().filter(|j| j["spec"]["kind"] == "standby").count();
    assert_eq!(standby_jobs, 4, "two ensures, one restart by the coordinator, the refused ensure; none from the coordinator after: {jobs}");

    let home = home_agent(&cell, &home_url, &public, _scratch.path());
    fails_back(&setup, &cell, id, &new_primary, &hooks);
    drop(home);
    // Home again: the served coordinator keeps a standby for the cell at its site again.
    wait_until("the coordinator to bootstrap the standby again", Duration::from_secs(90), || {
        site.get(&format!("/v1/guests/{}/recovery", cell.name)).1["standby"]["state"]["streaming"] == true
    });
}

/// The platform's monthly chaos drill, unattended: the served coordinator
/// crashes a hot cell's primary (through its own agent), fails it over to
/// its standby past the fence gate it approves itself, commits, and fails
/// it back home. Every payment committed before the crash (streamed to the
/// standby) is at home again, which is the primary; the route hook sent
/// the tenants away and back once each. The coordinator keeps its state
/// in Postgres, as coordinators sharing one do (its writes fenced by the lease).
#[test]
fn a_chaos_drill_fails_a_cell_over_and_back_unattended() {
    let cell = PaymentsCell::new("chaos");
    // Every minute: the coordinator is stopped as soon as the first drill
    // ends (the next pass is 30 s after a drill).
    let chaos = r#"chaos = { schedule = "* * * * *" }"#;
    let hot = Variant { failover: r#"failover = { sites = ["site-b"], standby = "stream" }"#, approve: r#"["fence"]"#, test: chaos };
    let World { site, setup, port, _scratch, home_url, public, hooks, .. } = world(&cell, &hot);
    let _stop = StopServer(cell.restore_root.join(format!("takeover-{port}")).join("pgdata"));
    let _home = home_agent(&cell, &home_url, &public, _scratch.path());
    cell.pay(5);
    cell.backup();
    cell.snapshot();
    let ensured = Command::new(lifeboat_bin()).args(["standby", "ensure", "--plans", &setup.plans, "--signing-key", &setup.key]).output();
    ok(&ensured.unwrap());
    let standby = Cluster { dir: _scratch.path().join("unused"), port };
    cell.pay(5);
    let all = ids(&cell.pg);
    wait_until("the standby to replay every payment", Duration::from_secs(60), || ids(&standby) == all);

    // Its state in a Postgres (as coordinators that share one keep it): the
    // drill's journal, its lock and every write go through the lease.
    let state_pg = Cluster::create(&_scratch.path().join("state-pg"), &[]);
    let state = format!("postgres://postgres@127.0.0.1:{}/postgres", state_pg.port);
    let extra = ["--signing-key", &setup.key, "--state", &state, "--lease", "5s"];
    let mut coordinator = Service::coordinator_on(Path::new(&setup.plans), _scratch.path(), &extra);
    let drill = || {
        let (_, list) = coordinator.get("/v1/failovers");
        list["failovers"].as_array().unwrap().iter().find(|f| f["initiator"] == "chaos drill (lifeboat serve)").cloned()
    };
    let ended = |f: &Value| matches!(f["state"].as_str(), Some("failed-back" | "failed")) || !f["error"].is_null();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !drill().is_some_and(|f| ended(&f)) {
        assert!(Instant::now() < deadline, "the chaos drill did not end: {:?}\n{}", drill(), coordinator.log_text());
        std::thread::sleep(Duration::from_millis(500));
    }
    let f = drill().unwrap();
    assert_eq!(f["state"], "failed-back", "{f}");
    wait_until("the drill's metrics", Duration::from_secs(40), || {
        coordinator.metrics().contains(&format!("lifeboat_chaos_drill_passed{{scenario=\"cell-failure\",failed=\"{}\"}} 1", cell.name))
    });
    coordinator.kill();
    wait_until("the site's jobs to end", Duration::from_secs(120), || {
        site.get("/v1/jobs").1["jobs"].as_array().unwrap().iter().all(|j| !matches!(j["state"].as_str(), Some("queued" | "running")))
    });

    assert_eq!(cell.pg.psql("select pg_is_in_recovery()"), "f", "home is the primary again");
    assert_eq!(ids(&cell.pg), all, "every payment committed before the crash");
    cell.pg.psql("insert into payments (amount) values (1.00)");
    let steps: Vec<String> = hook_calls(&hooks).into_iter().map(|(step, _, _)| step).filter(|s| s.contains("route")).collect();
    assert_eq!(steps, ["route", "failback-route"], "sent away and back once each");
}

/// The cell's own agent, back after the incident, where the plan says it
/// is: it knows the cell's server and data directory, and trusts the plan key.
fn home_agent(cell: &PaymentsCell, url: &str, public: &Path, dir: &Path) -> Service {
    let token_file = dir.join("agent-token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    let listen = url.trim_start_matches("http://");
    let (state, data) = (dir.join("home-state"), cell.pg.data());
    let args = [
        "--repo",
        &cell.a.repo,
        "--cell",
        &cell.name,
        "--key-file",
        cell.a.k(),
        "--token-file",
        token_file.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--listen",
        listen,
        "--pg-conn",
        &cell.conninfo(),
        "--pg-data",
        data.to_str().unwrap(),
        "--plan-key",
        public.to_str().unwrap(),
    ];
    Service::start_bin(cell.a.bin.clone(), &args, &[], &token, &dir.join("home.log"))
}

/// `failover failback`: the home (its data directory gone with the
/// incident) is rebuilt as a standby of the new primary, the new primary
/// is stopped once its WAL is archived and streamed, fenced, and the home
/// promoted past its last WAL: every payment, also those written on the
/// new primary just before, is at home, which takes writes and archives
/// on a timeline of its own; the route hook is called once for it.
fn fails_back(setup: &Setup, cell: &PaymentsCell, id: &str, new_primary: &Cluster, hooks: &Path) {
    let (planned_ok, planned) = setup.driven(&["failback", id, "--dry-run"]);
    assert!(planned_ok && planned["failover"]["state"] == "committed", "a dry run changes nothing: {planned}");
    new_primary.psql("insert into payments (amount) values (3.00), (4.00)");
    let want = ids(new_primary);
    let (ok_back, back) = setup.driven(&["failback", id]);
    assert!(ok_back, "{back}");
    assert_eq!(back["failover"]["state"], "failed-back", "{back}");
    let rebuilt = &step(&back, &cell.name, "failback:rebuild").unwrap()["detail"];
    assert_eq!(rebuilt["action"], "rebuilt", "{rebuilt}");
    let promoted = &step(&back, &cell.name, "failback:promote").unwrap()["detail"];
    let handed = &step(&back, &cell.name, "failback:handback").unwrap()["detail"];
    eprintln!("failback: takeover's last WAL {}, home promoted at {}", handed["final_lsn"], promoted["reached"]["lsn"]);
    assert_eq!(cell.pg.psql("select pg_is_in_recovery()"), "f");
    assert_eq!(ids(&cell.pg), want, "every payment of the new primary is at home, none lost");
    let timeline: u64 = cell.pg.psql("select timeline_id from pg_control_checkpoint()").parse().unwrap();
    assert!(timeline > handed["timeline"].as_u64().unwrap(), "the home runs a timeline of its own");
    cell.pg.psql("insert into payments (amount) values (5.00)");
    switch_and_wait(&cell.pg);
    let routed: Vec<_> = hook_calls(hooks).into_iter().filter(|(step, _, _)| step == "failback-route").collect();
    assert_eq!(routed.len(), 1, "the route hook sends the tenants home once: {routed:?}");
    let (again_ok, again) = setup.driven(&["failback", id]);
    assert!(again_ok && again["failover"]["state"] == "failed-back", "{again}");
}

/// `failover commit`: the new primary archives its timeline into the cell's
/// repository (from its first segment: its WAL was held since the
/// promotion) and gets a base backup there; a restore of that repository
/// to its latest point, started apart, holds every payment the new primary
/// has, also those written after the commit. A second commit repeats nothing.
fn commit_reprotects(setup: &Setup, site: &Service, cell: &PaymentsCell, id: &str, new_primary: &Cluster) {
    let (committed_ok, committed) = setup.driven(&["commit", id]);
    assert!(committed_ok, "{committed}");
    assert_eq!(committed["failover"]["state"], "committed", "{committed}");
    let reprotect = &step(&committed, &cell.name, "reprotect").unwrap()["detail"];
    assert_eq!(reprotect["archiving_change"], "reloaded", "a takeover's WAL is held for it, no restart: {reprotect}");
    let timeline = reprotect["timeline"].as_u64().unwrap();
    assert!(timeline >= 2 && reprotect["backup"]["timeline"] == timeline, "a backup on the new timeline: {reprotect}");
    new_primary.psql("insert into payments (amount) values (2.00)");
    switch_and_wait(new_primary);
    let want = ids(new_primary);

    let dir = cell.a.root.join("after-commit");
    let restored = Cluster::existing(&dir);
    let (data, port, bin) = (dir.join("data"), restored.port.to_string(), cell.a.bin.display().to_string());
    let args = ["pg", "restore", "--repo", &cell.a.repo, "--cell", &cell.name, "--key-file", cell.a.k(), "--latest", "--no-archive"];
    let start = ["--to", data.to_str().unwrap(), "--agent-path", &bin, "--start", "--port", &port, "--output", "json"];
    let report: Value = serde_json::from_str(&ok(&agent(&[&args[..], &start[..]].concat(), &[]))).unwrap();
    assert_eq!(report["backup_id"], reprotect["backup"]["backup_id"], "the newest backup is the commit's: {report}");
    assert_eq!(ids(&restored), want, "the repository holds every payment of the new primary");
    restored.stop();

    let (again_ok, again) = setup.driven(&["commit", id]);
    assert!(again_ok && again["failover"]["state"] == "committed", "{again}");
    let (_, jobs) = site.get("/v1/jobs");
    let reprotects = jobs["jobs"].as_array().unwrap().iter().filter(|j| j["spec"]["kind"] == "reprotect").count();
    assert_eq!(reprotects, 1, "committed once: {jobs}");
}

/// The hot failover run through the served coordinator's API, as a status
/// page would: a viewer or no token is refused, a dry run changes nothing,
/// the run answers 202 once journaled and is followed to its end, acting
/// on it again is refused with the reason. Returns the done failover.
fn through_the_api(coordinator: &Service, cell: &str, failed_at: &str) -> Value {
    let operator = format!("Bearer {}", coordinator.token);
    let post = |path: &str, body: Value| coordinator.request("POST", path, Some(&operator), None, Some(&body));
    let start = serde_json::json!({ "scenario": "cell-failure", "failed": cell, "failed_at": failed_at, "by": "carol" });
    let (status, _) = coordinator.request("POST", "/v1/failovers", None, None, Some(&start));
    assert_eq!(status, 401, "no token, no failover");
    let (status, dry) = post("/v1/failovers", serde_json::json!({ "scenario": "cell-failure", "failed": cell, "dry_run": true }));
    assert_eq!(status, 200, "{dry}");
    assert!(dry["assessment"]["cells"][0]["standby_state"]["state"]["in_recovery"] == true, "{dry}");
    assert_eq!(coordinator.get("/v1/failovers").1["failovers"].as_array().unwrap().len(), 0, "a dry run journals nothing");
    let (status, bad) = post("/v1/failovers", serde_json::json!({ "scenario": "no-such", "failed": cell }));
    assert_eq!(status, 422, "{bad}");

    let (status, started) = post("/v1/failovers", start);
    assert_eq!(status, 202, "{started}");
    let id = started["failover"]["id"].as_str().unwrap().to_string();
    wait_until("the API's failover to end", Duration::from_secs(180), || {
        !matches!(coordinator.get(&format!("/v1/failovers/{id}")).1["failover"]["state"].as_str(), Some("running"))
    });
    let (_, done) = coordinator.get(&format!("/v1/failovers/{id}"));
    assert_eq!(done["failover"]["state"], "done", "{done}\n{}", coordinator.log_text());
    assert_eq!(done["failover"]["initiator"], "carol");
    let (status, again) = post(&format!("/v1/failovers/{id}/resume"), serde_json::json!({}));
    assert!(status == 409 && again["error"].as_str().unwrap().contains("nothing to resume"), "{status} {again}");
    let (status, unknown) = post("/v1/failovers/fo-none/approve", serde_json::json!({ "by": "carol" }));
    assert_eq!(status, 404, "{unknown}");
    done
}

/// The journal of the done failover `done`, mirrored by the recovery site
/// into the location the cell is recovered from: every step as the
/// coordinator journaled it, read from the site's API and with `lifeboat
/// failover mirrored` (no state database needed).
fn mirrored_at_the_site(site: &Service, setup: &Setup, cell: &str, done: &Value) {
    let id = done["failover"]["id"].as_str().unwrap();
    let path = format!("/v1/failover-journals/{id}?cell={cell}&location=main");
    // Mirrored right after the state changed: the coordinator's answer may come first.
    wait_until("the mirror to show the failover done", Duration::from_secs(30), || site.get(&path).1["failover"]["state"] == "done");
    let (_, journal) = site.get(&path);
    assert_eq!(journal["steps"], done["steps"], "the mirror holds every step, keys and all");
    let (status, _) = site.get(&format!("/v1/failover-journals/{id}?cell=no-such&location=main"));
    assert_eq!(status, 404);
    let out = Command::new(lifeboat_bin())
        .args(["failover", "mirrored", id, "--cell", cell, "--plans", &setup.plans, "--output", "json"])
        .output()
        .unwrap();
    let (read_ok, read) = parse(&out);
    assert!(read_ok, "{read}");
    assert_eq!((read[0]["site"].as_str(), read[0]["location"].as_str()), (Some("site-b"), Some("main")), "{read}");
    assert_eq!(read[0]["journal"]["steps"], done["steps"]);
}

/// The plan of scenario 2: `cells` (tier t1, t2, t3 in that order) in
/// region r-a with a secondary-region copy in r-b, and one recovery site in
/// r-b that takes all three, two at a time, without a gate.
fn write_region_plan(dir: &Path, cells: &[&PaymentsCell], site: &Service, token: &Path, prefix: &str, port: u16) {
    std::fs::create_dir_all(dir).unwrap();
    let mut text = format!(
        r#"[plan]
name = "region"
description = "scenario 2, cold"
report_public_key = "report-signing.pub"

{quiet}
{regions}
[[tier]]
name = "t2"
rpo = "15m"
rto = "30m"
kafka_rpo = "90m"
strategy = "cold-standby"

[[tier]]
name = "t3"
rpo = "4h"
rto = "4h"
kafka_rpo = "4h"
strategy = "cold-standby"

[[location]]
name = "second"
url = "file:///region/second"
region = "r-b"
role = "secondary-region"

{site}"#,
        quiet = QUIET_SCHEDULES,
        regions = two_regions("region"),
        site = Site { name: "dr-region", region: "r-b", agent: site, token, capacity: 3, brokers: &cells[0].kafka.address, prefix, port }
            .with_scenario("region-outage", "region", r#"["t1", "t2", "t3"]"#, 2, "45m"),
    );
    let dead_agent = format!("http://127.0.0.1:{}", free_port());
    // Tier 2 keeps a warm standby at the site, replaying the secondary-region copy.
    let failover = [r#"failover = { sites = ["dr-region"] }"#, r#"failover = { sites = ["dr-region"], standby = "archive" }"#];
    for (i, (tier, cell)) in ["t1", "t2", "t3"].iter().zip(cells).enumerate() {
        let table = payments_cell(cell, &dead_agent, token, r#"["main", "second"]"#, failover[usize::from(i == 1)]);
        text.push('\n');
        text.push_str(&table.replacen("tier = \"t1\"", &format!("tier = \"{tier}\""), 1));
    }
    std::fs::write(dir.join("plan.toml"), text).unwrap();
    let v = Command::new(lifeboat_bin()).args(["plan", "validate", dir.to_str().unwrap()]).output().unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

/// Scenario 2: region r-a (three cells of three tiers) is lost; every cell
/// is recovered in the DR region from its secondary-region copy, Tier 1 in
/// the first wave (with Tier 2: parallelism 2), Tier 3 after; each within
/// its tier's RTO, each holding exactly the payments the copy held. Tier 1
/// and 3 are restored cold; Tier 2's warm standby, bootstrapped from the
/// copy and replaying what later copy passes bring, is promoted.
#[test]
fn a_region_fails_over_from_its_secondary_copies_tier_by_tier() {
    let cells = [PaymentsCell::new("r1"), PaymentsCell::new("r2"), PaymentsCell::new("r3")];
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let keys = s.join("keys");
    ok(&Command::new(lifeboat_bin()).args(["report", "keygen", "--out-dir", keys.to_str().unwrap()]).output().unwrap());
    let copies: Vec<String> = cells.iter().map(|c| format!("file://{}", c.a.root.join("second").display())).collect();

    // The DR region's site hosts all three from their copies.
    let site_archive = Archive::new();
    let site_token_file = s.join("agent-token");
    let site_token = write_token(&site_token_file);
    let mut args = agent_args(&site_archive, &unique("dr"), s);
    for (cell, copy) in cells.iter().zip(&copies) {
        args.extend([
            "--guest".into(),
            format!("{}@second={copy}", cell.name),
            "--guest-key-file".into(),
            format!("{}={}", cell.name, cell.a.k()),
        ]);
    }
    let public = keys.join("report-signing.pub");
    let root = cells[0].restore_root.to_str().unwrap();
    args.extend(
        ["--kafka-brokers", &cells[0].kafka.address, "--restore-root", root, "--plan-key", public.to_str().unwrap()].map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let site = Service::start_bin(cells[0].a.bin.clone(), &args, &[], &site_token, &s.join("site.log"));
    let prefix = format!("{}.", unique("dr"));
    let port = free_ports(3);
    let plans = s.join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    std::fs::copy(&public, plans.join("report-signing.pub")).unwrap();
    write_region_plan(&plans, &cells.iter().collect::<Vec<_>>(), &site, &site_token_file, &prefix, port);
    let setup = Setup {
        plans: plans.display().to_string(),
        state: s.join("state.db").display().to_string(),
        key: keys.join("report-signing.key").display().to_string(),
        reports: s.join("reports").display().to_string(),
    };
    let root = &cells[0].restore_root;
    let _stop: Vec<StopServer> = (0..3).map(|i| StopServer(root.join(format!("takeover-{}", port + i)).join("pgdata"))).collect();

    let copy = |cell: &PaymentsCell, to: &str| ok(&agent(&["repo", "copy", &cell.a.repo, to, "--key-file", cell.a.k()], &[]));
    let mut copied = Vec::new();
    for (i, (cell, to)) in cells.iter().zip(&copies).enumerate() {
        cell.pay(10);
        cell.backup();
        cell.pay(10);
        cell.snapshot();
        cell.pay(3);
        switch_and_wait(&cell.pg);
        // The geo-copy into the other region, then payments the copy never sees.
        copy(cell, to);
        if i == 1 {
            // The warm standby starts from this copy and follows the next pass.
            let ensure = ["standby", "ensure", "--cell", &cell.name, "--plans", &setup.plans, "--signing-key", &setup.key];
            ok(&Command::new(lifeboat_bin()).args(ensure).output().unwrap());
            cell.pay(4);
            cell.snapshot();
            switch_and_wait(&cell.pg);
            copy(cell, to);
        }
        copied.push(ids(&cell.pg));
        cell.pay(2);
        switch_and_wait(&cell.pg);
        kill_primary(&cell.pg);
    }

    let (done_ok, done) = setup.driven(&["run", "--scenario", "region-outage", "--failed", "r-a"]);
    assert!(done_ok, "{done}");
    assert_eq!(done["failover"]["state"], "done", "{done}");
    let assessed = &done["failover"]["assessment"]["cells"];
    let waves: Vec<(String, u64, &str)> = (0..3)
        .map(|i| {
            (
                assessed[i]["cell"].as_str().unwrap().to_string(),
                assessed[i]["wave"].as_u64().unwrap(),
                assessed[i]["location"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        waves,
        [(cells[0].name.clone(), 0, "second"), (cells[1].name.clone(), 0, "second"), (cells[2].name.clone(), 1, "second")],
        "tier order, two at a time, from the secondary-region copy"
    );
    let restore = |c: &PaymentsCell| step(&done, &c.name, "restore").unwrap().clone();
    let (r1, r2) = (restore(&cells[0]), restore(&cells[1]));
    assert!(instant(&r1["started"]) < instant(&r2["finished"]) && instant(&r2["started"]) < instant(&r1["finished"]), "wave 1 ran at once");
    let wave_one_done = instant(&r1["finished"]).max(instant(&r2["finished"]));
    assert!(instant(&step(&done, &cells[2].name, "fence").unwrap()["started"]) >= wave_one_done, "Tier 3 waited for wave 1");

    let promoted: Vec<bool> = cells
        .iter()
        .map(|c| {
            restore(c)["detail"]["steps"].as_array().unwrap().iter().any(|s| s["name"] == "promote the standby" && s["outcome"] == "passed")
        })
        .collect();
    assert_eq!(promoted, [false, true, false], "Tier 2's warm standby was promoted, the others restored");
    for (i, (cell, expected)) in cells.iter().zip(&copied).enumerate() {
        let measure = &done["cells"][i];
        let rto = measure["rto_seconds"].as_f64().unwrap();
        let target = assessed[i]["rto_target_seconds"].as_f64().unwrap();
        eprintln!("scenario 2: {} (tier t{}) RTO {rto:.1} s against {target} s", cell.name, i + 1);
        assert!(rto < target, "{} took {rto} s, over its tier's {target} s", cell.name);
        let port = measure["postgres_port"].as_u64().unwrap() as u16;
        let new_primary = Cluster { dir: s.join(format!("unused-{i}")), port };
        assert_eq!(&ids(&new_primary), expected, "{}: exactly what the copy held", cell.name);
        let restored = cell.kafka.kcat_read(&format!("{prefix}{}.{}", cell.name, cell.topic)).into_values().flatten().count();
        // The newest snapshot's events up to the cut (Postgres' last transaction), read from the original with kcat.
        let (snapshotted, until) = ([20, 27, 20][i], instant(&restore(cell)["detail"]["recovery_point"]["kafka"]["until"]));
        let until_ms = (until.unix_timestamp_nanos() / 1_000_000) as i64;
        let expected = cell
            .kafka
            .kcat_read(&cell.topic)
            .into_values()
            .flatten()
            .filter(|r| {
                r.record.key.as_deref().is_some_and(|k| k.parse::<usize>().unwrap() <= snapshotted) && r.record.timestamp <= until_ms
            })
            .count();
        assert_eq!(restored, expected, "{}: the newest snapshot's events up to the cut", cell.name);
        let chain = Path::new(&setup.reports).join(&cell.name);
        let args = ["report", "verify", chain.to_str().unwrap(), "--public-key", public.to_str().unwrap(), "--expect-sequence", "1"];
        ok(&Command::new(lifeboat_bin()).args(args).output().unwrap());
    }
}
