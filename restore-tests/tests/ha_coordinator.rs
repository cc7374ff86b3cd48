//! Coordinators that share one Postgres state (`lifeboat serve --state
//! postgres://...`): exactly one leads and schedules; `kill -9` of the
//! leader hands the lease to the other within it, which finishes the run
//! the dead one had submitted (the same agent job, not a second one); a
//! leader paused (SIGSTOP) past its lease is refused by the agent when it
//! wakes (the request it had on the way is refused: its epoch is below
//! the new leader's) and steps down; what it would write to the shared
//! state after losing the lease is refused by the state's fence. Over the
//! whole run every scheduled occurrence ran exactly once at the agent.
//!
//! The schedule is fast (an incremental backup every 3 s, a cron with
//! seconds) so that well over ten scheduled occurrences pass in a minute
//! or two; the lease is 4 s.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use lifeboat_restore_tests::gate::Gate;
use lifeboat_restore_tests::incident::wait_until;
use lifeboat_restore_tests::payments::PaymentsCell;
use lifeboat_restore_tests::pg::Cluster;
use lifeboat_restore_tests::plans::{write_one_cell, OneCell};
use lifeboat_restore_tests::served::{write_token, Service};

const LEASE: &str = "4s";

/// The plan, its cell's agent at `agent_url`: an incremental backup every 3 s.
fn plan(dir: &Path, cell: &PaymentsCell, agent_url: &str, token: &Path) {
    let conninfo = cell.conninfo();
    let one = OneCell {
        plan: "ha",
        cell: &cell.name,
        agent: agent_url,
        token,
        postgres_conninfo: &conninfo,
        defaults: "",
        cell_lines: r#"schedules = { pg_incremental = "*/3 * * * * *" }"#,
    };
    write_one_cell(dir, &one);
}

fn leader(c: &Service) -> Value {
    let (code, body) = c.get("/v1/leader");
    assert_eq!(code, 200, "{body}");
    body
}

fn runs(c: &Service) -> Vec<Value> {
    c.get("/v1/runs?limit=1000").1["runs"].as_array().unwrap().clone()
}

fn succeeded(c: &Service) -> usize {
    runs(c).iter().filter(|r| r["trigger"] == "schedule" && r["state"] == "succeeded").count()
}

fn signal(c: &Service, sig: i32) {
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(c.pid() as i32, sig) }, 0);
}

/// The agent's jobs by idempotency key.
fn agent_jobs(agent: &Service) -> BTreeMap<String, Value> {
    let (code, body) = agent.get("/v1/jobs?limit=1000");
    assert_eq!(code, 200, "{body}");
    body["jobs"].as_array().unwrap().iter().map(|j| (j["idempotency_key"].as_str().unwrap().to_string(), j.clone())).collect()
}

#[test]
fn two_coordinators_one_leads_a_killed_leader_is_replaced_and_a_paused_one_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let state_pg = Cluster::create(&s.join("state-pg"), &[]);
    let state = format!("postgres://postgres@127.0.0.1:{}/postgres", state_pg.port);

    let cell = PaymentsCell::new("ha");
    cell.pay(5);
    cell.backup();
    let agent_dir = s.join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    let conninfo = cell.conninfo();
    let agent = Service::agent_on(&cell.a, &cell.name, &agent_dir, &["--pg-conn", &conninfo]);
    // a and b reach the agent through a gate the test can close; c directly.
    let gate = Gate::start(agent.url.trim_start_matches("http://").trim_end_matches('/').parse().unwrap());
    let (plans, direct) = (s.join("plan"), s.join("plan-direct"));
    plan(&plans, &cell, &gate.url, &agent_dir.join("agent-token"));
    plan(&direct, &cell, &agent.url, &agent_dir.join("agent-token"));

    let op_file = s.join("operator-token");
    let operator = write_token(&op_file);
    let args = |plans: &Path| -> Vec<String> {
        let list = ["--plans", plans.to_str().unwrap(), "--state", &state, "--operator-token-file", op_file.to_str().unwrap()];
        let mut v: Vec<String> = list.iter().map(|a| a.to_string()).collect();
        v.extend(["--lease", LEASE, "--tick", "200ms", "--poll", "1s", "--retry-base", "1s"].map(String::from));
        v.extend(["--standby-interval".into(), "0".into()]);
        v
    };
    let start = |name: &str, plans: &Path| {
        let a = args(plans);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        Service::coordinator(&a, &[], &operator, &s.join(format!("coordinator-{name}.log")))
    };

    // One leads, the other follows and says who leads.
    let mut a = start("a", &plans);
    wait_until("coordinator a leads", Duration::from_secs(30), || leader(&a)["leading"] == true);
    let b = start("b", &plans);
    let (la, lb) = (leader(&a), leader(&b));
    assert_eq!((lb["leading"].clone(), lb["shared"].clone()), (json!(false), json!(true)), "{lb}");
    assert_eq!(lb["lease"]["holder"], la["holder"], "b names a as the holder: {lb}");
    let first_epoch = la["epoch"].as_u64().unwrap();
    assert!(first_epoch >= 1, "{la}");
    // A follower reads, and refuses what would act, naming the leader.
    let (code, answer) = b.request("POST", "/v1/runs", Some(&b.bearer()), None, Some(&json!({"cell": cell.name, "kind": "pg-full"})));
    assert_eq!(code, 503, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains(&a.url.trim_end_matches('/').to_string()), "{answer}");

    wait_until("five scheduled incrementals under a", Duration::from_secs(90), || succeeded(&b) >= 5);

    // kill -9 the leader while a run is at the agent: its requests held
    // first, so the run it submitted cannot end under it.
    let mut interrupted = Value::Null;
    wait_until("a run submitted to the agent", Duration::from_secs(60), || {
        gate.close();
        std::thread::sleep(Duration::from_millis(1500));
        interrupted = runs(&b).into_iter().find(|r| r["state"] == "submitted").unwrap_or(Value::Null);
        if interrupted.is_null() {
            gate.open();
        }
        !interrupted.is_null()
    });
    a.kill();
    gate.open();
    let killed = Instant::now();
    wait_until("b leads after a is killed", Duration::from_secs(30), || leader(&b)["leading"] == true);
    eprintln!("b led {:.1} s after a was killed (lease {LEASE})", killed.elapsed().as_secs_f64());
    let second_epoch = leader(&b)["epoch"].as_u64().unwrap();
    assert!(second_epoch > first_epoch, "a new leader, a new epoch: {first_epoch} then {second_epoch}");
    let id = interrupted["id"].as_i64().unwrap();
    let finished = b.finished_run(id, Duration::from_secs(60));
    assert_eq!(finished["state"], "succeeded", "{finished}");
    assert_eq!(
        (&finished["agent_job"], &finished["attempt"]),
        (&interrupted["agent_job"], &json!(1)),
        "resumed, not run again: {finished}"
    );

    let before = succeeded(&b);
    wait_until("five more scheduled incrementals under b", Duration::from_secs(90), || succeeded(&b) >= before + 5);

    // Pause b past its lease with a request of its on the way to the agent:
    // a new coordinator leads; the agent refuses b's late request; b steps down.
    gate.close();
    wait_until("a request of b held on its way to the agent", Duration::from_secs(30), || gate.held() > 0);
    signal(&b, libc::SIGSTOP);
    let c = start("c", &direct);
    wait_until("c leads while b is paused", Duration::from_secs(30), || leader(&c)["leading"] == true);
    let third_epoch = leader(&c)["epoch"].as_u64().unwrap();
    assert!(third_epoch > second_epoch, "{second_epoch} then {third_epoch}");
    let seen = || std::fs::read_to_string(agent_dir.join("agent-state/coordinator-epoch")).unwrap_or_default().trim().to_string();
    wait_until("the agent has seen c's epoch", Duration::from_secs(30), || seen() == third_epoch.to_string());
    gate.open();
    let refusal = format!("refused a coordinator that lost its lease epoch={second_epoch} highest={third_epoch}");
    wait_until("the agent refuses b's late request", Duration::from_secs(30), || agent.log_text().contains(&refusal));
    signal(&b, libc::SIGCONT);
    wait_until("b steps down after waking", Duration::from_secs(30), || leader(&b)["leading"] == false);
    // What b would send now, the agent refuses, naming the epoch it has seen.
    let refused = reqwest::blocking::Client::new()
        .get(format!("{}/v1/jobs", agent.url.trim_end_matches('/')))
        .bearer_auth(&agent.token)
        .header("lifeboat-coordinator-epoch", second_epoch)
        .send()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 409);
    assert_eq!(refused.headers()["lifeboat-coordinator-epoch"].to_str().unwrap(), third_epoch.to_string());
    let before = succeeded(&c);
    wait_until("scheduled incrementals under c", Duration::from_secs(60), || succeeded(&c) >= before + 3);
    assert_eq!(leader(&b)["leading"], false, "b stays a follower");

    // Every scheduled occurrence ran once: one run each, one agent job per run.
    let all: Vec<Value> = runs(&c).into_iter().filter(|r| r["trigger"] == "schedule").collect();
    let occurrences: BTreeSet<&str> = all.iter().map(|r| r["scheduled_for"].as_str().unwrap()).collect();
    assert_eq!(occurrences.len(), all.len(), "an occurrence recorded twice");
    assert!(all.len() >= 13, "{} scheduled runs", all.len());
    let jobs = agent_jobs(&agent);
    let mut per_run: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for key in jobs.keys() {
        let run: i64 = key.rsplit('-').nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("a job key {key} names no run"));
        per_run.entry(run).or_default().push(key);
    }
    for r in all.iter().filter(|r| r["state"] == "succeeded") {
        let id = r["id"].as_i64().unwrap();
        let keys = per_run.get(&id).cloned().unwrap_or_default();
        assert_eq!(keys.len(), r["attempt"].as_u64().unwrap() as usize, "run {id} ran {} times at the agent: {keys:?}", keys.len());
        assert_eq!(jobs[*keys.last().unwrap()]["id"], r["agent_job"], "{r}");
    }
    let log_b = b.log_text();
    for line in log_b.lines().filter(|l| l.contains("epoch") || l.contains("steps down") || l.contains("lease")) {
        eprintln!("b: {line}");
    }
    assert!(log_b.contains("an agent has seen a higher coordinator epoch"), "b's late request was refused and b knows it:\n{log_b}");
}
