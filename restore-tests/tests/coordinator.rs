//! The coordinator end to end, with real services: `lifeboat serve` on a
//! plan with two cells, each with its own Postgres cluster (archiving into a
//! file:// repository) and `lifeboat-agent serve` copying to Azurite (second
//! region) and moto (second cloud); cell A also has Kafka topics on the real
//! broker. Schedules fire every minute; the status is checked against the
//! repositories and Postgres itself; an agent stopping and WAL archiving
//! stopping turn cells at-risk then breached, the webhook hears it, and
//! recovery resolves it; restarts of the coordinator and of an agent in the
//! middle of a job neither duplicate nor lose runs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use lifeboat_restore_tests::kafka::{self as kafka, TestRecord};
use lifeboat_restore_tests::pg::{switch_and_wait, Archive, Cluster};
use lifeboat_restore_tests::plans::{write_one_cell, OneCell};
use lifeboat_restore_tests::served::{write_token, Service};
use lifeboat_restore_tests::{agent, fresh_url, lifeboat, lifeboat_bin, ok, unique, Backend};

/// An HTTP endpoint that records every JSON body POSTed to it (the alert webhook).
struct Webhook {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Webhook {
    fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/api/v2/alerts", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok() {
                    if let Ok(Value::Array(mut alerts)) = serde_json::from_slice(&body) {
                        // When it came, to tell firing (endsAt ahead) from resolved (endsAt now).
                        let received = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
                        alerts.iter_mut().for_each(|a| a["_received_nanos"] = json!(received as i64));
                        seen.lock().unwrap().push(Value::Array(alerts));
                    }
                }
                let _ = reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
        Webhook { url, bodies }
    }

    /// Every alert received, flattened.
    fn alerts(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().iter().flat_map(|b| b.as_array().cloned().unwrap_or_default()).collect()
    }

    fn has(&self, cell: &str, verdict: &str, resolved: bool) -> bool {
        let of = |a: &&Value| a["labels"]["cell"] == cell && a["labels"]["verdict"] == verdict;
        self.alerts().iter().filter(of).any(|a| firing(a) != resolved)
    }

    /// How many alerts of `cell`'s Postgres at `location` with `verdict`
    /// came after `after` (ns since the epoch), resolved or firing.
    fn count(&self, (cell, location): (&str, &str), verdict: &str, resolved: bool, after: i128) -> usize {
        let of = |a: &&Value| of_postgres(a, (cell, location)) && a["labels"]["verdict"] == verdict;
        let recent = |a: &&Value| a["_received_nanos"].as_i64().unwrap() as i128 > after;
        self.alerts().iter().filter(of).filter(recent).filter(|a| firing(a) != resolved).count()
    }

    /// The alerts of `cell`'s Postgres at `location`, for a failure's
    /// message: verdict, startsAt, endsAt and when each came.
    fn log(&self, (cell, location): (&str, &str)) -> String {
        let of = |a: &&Value| of_postgres(a, (cell, location));
        let line = |a: &Value| format!("{} {} {} came {}", a["labels"]["verdict"], a["startsAt"], a["endsAt"], a["_received_nanos"]);
        self.alerts().iter().filter(of).map(line).collect::<Vec<_>>().join("\n")
    }
}

/// An alert about `cell`'s Postgres at `location`.
fn of_postgres(a: &Value, (cell, location): (&str, &str)) -> bool {
    let l = &a["labels"];
    l["cell"] == cell && l["location"] == location && l["system"] == "postgres"
}

/// An alert that came firing: its `endsAt` still ahead when it came. A
/// resolved one's is the instant it was evaluated, before it was sent; a
/// firing one's is four `--alert-repeat`s (8 s) after that, so only a
/// delivery slower than 8 s could be mistaken (a margin of 2 s was once
/// overrun under a loaded CI run).
fn firing(a: &Value) -> bool {
    let ends = time::OffsetDateTime::parse(a["endsAt"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap();
    ends.unix_timestamp_nanos() > a["_received_nanos"].as_i64().unwrap() as i128
}

fn now_nanos() -> i128 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos()
}

fn wait_until<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn parse_time(s: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
}

/// A cell: its Postgres, repositories, and agent.
struct TestCell {
    name: String,
    archive: Archive,
    pg: Cluster,
    agent: Service,
    second: String,
    cross: String,
}

fn start_cell(name: &str, second: &str, token_file: &Path, scratch: &Path, kafka: Option<(&str, &str)>) -> TestCell {
    let archive = Archive::new();
    let conf = archive.archive_conf(name);
    let pg = Cluster::create(&archive.root.join("pg"), &[&conf[0], &conf[1], "archive_timeout = 5s"]);
    pg.psql("create table payments (id bigserial primary key, amount numeric not null)");
    pg.psql("insert into payments (amount) select g from generate_series(1, 100) g");
    let second_url = fresh_url(Backend::Azure, &format!("{name}-second"), scratch);
    let cross_url = fresh_url(Backend::S3, &format!("{name}-cross"), scratch);
    let token = std::fs::read_to_string(token_file).unwrap();
    let conn = pg.conninfo();
    let copy_second = format!("{second}={second_url}");
    let copy_cross = format!("cross={cross_url}");
    let state = scratch.join(format!("agent-{name}"));
    let mut args = vec![
        "--repo",
        &archive.repo,
        "--cell",
        name,
        "--key-file",
        archive.k(),
        "--token-file",
        token_file.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--pg-conn",
        &conn,
        "--copy-to",
        &copy_second,
        "--copy-to",
        &copy_cross,
        "--copy-interval",
        "2s",
        "--pg-switch-after",
        "5s",
    ];
    let topics;
    if let Some((brokers, prefix)) = kafka {
        topics = format!("{prefix}\\..*");
        args.extend(["--kafka-brokers", brokers, "--kafka-topics", &topics]);
    }
    let agent = Service::start(&args, &[], &token, &scratch.join(format!("agent-{name}.log")));
    TestCell { name: name.to_string(), archive, pg, agent, second: second_url, cross: cross_url }
}

fn plan(dir: &Path, a: &TestCell, b: &TestCell, tokens: [&Path; 2], kafka: (&str, &str)) {
    std::fs::create_dir_all(dir).unwrap();
    let cell = |c: &TestCell, token: &Path, region: &str, dr: &str, primary: &str, second: &str, extra: &str| {
        format!(
            r#"
[[cell]]
name = "{name}"
tier = "t1"
region = "{region}"
dr_cell = "{dr}"
tenants = ["tenant-{name}"]
agent = {{ url = "{url}", token = "file:{token}" }}
locations = ["{primary}", "{second}", "cross"]
postgres = {{ conninfo = "host=127.0.0.1 port={port} user=postgres dbname=postgres", archive_timeout = "5s" }}
failover = {{ sites = ["{name}-host"] }}
{extra}
"#,
            name = c.name,
            url = c.agent.url,
            token = token.display(),
            port = c.pg.port,
        )
    };
    let text = format!(
        r#"
[plan]
name = "e2e"
description = "coordinator end to end"

[defaults.schedules]
pg_full = "0 0 1 1 *"
pg_incremental = "* * * * *"
kafka_snapshot = "* * * * *"
drill = "0 3 1 * *"
retention = "0 0 1 1 *"

[[tier]]
name = "t1"
rpo = "30s"
rto = "15m"
kafka_rpo = "3m"
# Cold: a tier that keeps standbys has each cell at risk until its site
# keeps one (tests/failover_run.rs covers standbys).
strategy = "cold-standby"

[[region]]
name = "r-a"
cloud = "azure"

[[region]]
name = "r-b"
cloud = "azure"

[[region]]
name = "r-aws"
cloud = "aws"

[[location]]
name = "primary-a"
url = "file:///e2e/a"
region = "r-a"
role = "primary"

[[location]]
name = "primary-b"
url = "file:///e2e/b"
region = "r-b"
role = "primary"

[[location]]
name = "a-in-b"
url = "az://lifeboat-test/e2e-a"
region = "r-b"
role = "secondary-region"

[[location]]
name = "b-in-a"
url = "az://lifeboat-test/e2e-b"
region = "r-a"
role = "secondary-region"

[[location]]
name = "cross"
url = "s3://lifeboat-test/e2e"
region = "r-aws"
role = "cross-cloud"

# Each cell's agent hosts the other cell when it fails.
[[recovery_site]]
name = "{a_name}-host"
region = "r-b"
agent = {{ url = "{b_url}", token = "file:{b_token}" }}
kafka = {{ brokers = "{brokers}" }}

[[recovery_site]]
name = "{b_name}-host"
region = "r-a"
agent = {{ url = "{a_url}", token = "file:{a_token}" }}

[[scenario]]
name = "cell-failure"
scope = "cell"

[[scenario]]
name = "region-outage"
scope = "region"
parallelism = 2
{a}{b}"#,
        a_name = a.name,
        b_name = b.name,
        a_url = a.agent.url,
        b_url = b.agent.url,
        a_token = tokens[0].display(),
        b_token = tokens[1].display(),
        brokers = kafka.0,
        a = cell(
            a,
            tokens[0],
            "r-a",
            &b.name,
            "primary-a",
            "a-in-b",
            &format!("kafka = {{ brokers = \"{}\", topics = \"{}\\\\..*\" }}", kafka.0, kafka.1)
        ),
        b = cell(b, tokens[1], "r-b", &a.name, "primary-b", "b-in-a", ""),
    );
    std::fs::write(dir.join("plan.toml"), text).unwrap();
    let out = Command::new(lifeboat_bin()).args(["plan", "validate", dir.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "the test plan is invalid: {}", String::from_utf8_lossy(&out.stderr));
}

fn status(c: &Service) -> Value {
    let (code, s) = c.get("/v1/status");
    assert_eq!(code, 200, "{s}");
    s
}

/// A report name that climbs to the agent's job list, plain, encoded once
/// and twice, is answered 400 by the coordinator itself (an agent's answer
/// would come back as 502).
fn refuses_traversal(c: &Service) {
    for name in ["..%2F..%2Fv1%2Fjobs", "..%252F..%252Fv1%252Fjobs", "000001-x.txt"] {
        let (code, answer) = c.get(&format!("/reports/cell-a/{name}"));
        assert_eq!(code, 400, "{name}: {answer}");
    }
    // `..` plain and as `%2E%2E`, which HTTP clients would resolve, sent as is.
    use std::io::{Read as _, Write as _};
    for path in ["/reports/cell-a/../../v1/jobs", "/reports/cell-a/%2E%2E/%2e%2e/v1/jobs"] {
        let mut tcp = std::net::TcpStream::connect(c.url.trim_start_matches("http://")).unwrap();
        write!(tcp, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
    }
}

/// `failover plan` (a read: it starts nothing) says, per lost cell, where it would
/// be recovered and from which point: a lost region sends cell-a to cell-b's
/// agent from its copy in r-b, at the point status credits that copy with;
/// a lost cell recovers from the primary location. What fails must exist.
fn failover_plans(c: &Service, env: &[(&str, &str)]) {
    // The copy goes on meanwhile: the plan's point is the status's at some instant between two reads.
    let copy_point = || location(cell_of(&status(c), "cell-a"), "a-in-b")["postgres"]["recoverable_to"].as_str().unwrap().to_string();
    let before = copy_point();
    let (code, fp) = c.get("/v1/failover/plan?scenario=region-outage&failed=r-a");
    assert_eq!(code, 200, "{fp}");
    let after = copy_point();
    let fa = &fp["cells"][0];
    assert_eq!(fp["cells"].as_array().unwrap().len(), 1, "{fp}");
    assert_eq!((fa["cell"].as_str(), fa["site"].as_str(), fa["location"].as_str()), (Some("cell-a"), Some("cell-a-host"), Some("a-in-b")));
    assert_eq!((fa["standby"].as_str(), fa["wave"].as_u64()), (Some("none"), Some(0)), "{fp}");
    let planned = fa["postgres_point"].as_str().unwrap().to_string();
    assert!(before <= planned && planned <= after, "{before} <= {planned} <= {after}: {fp}");
    assert!(fa["projected_rpo_seconds"].as_f64().unwrap() >= 0.0, "{fp}");
    let steps: Vec<(&str, bool)> =
        fp["steps"].as_array().unwrap().iter().map(|s| (s["step"].as_str().unwrap(), s["gated"].as_bool().unwrap())).collect();
    assert_eq!(steps[..3], [("assess", false), ("fence", true), ("promote", false)], "fence waits for approval by default");
    let (code, unknown) = c.get("/v1/failover/plan?scenario=region-outage&failed=r-nowhere");
    assert_eq!(code, 422, "{unknown}");
    assert!(unknown["error"].as_str().unwrap().contains("no cell is lost"), "{unknown}");

    let out = lifeboat(&["failover", "plan", "--scenario", "cell-failure", "--failed", "cell-a", "--output", "json"], env);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!((plan["cells"][0]["location"].as_str(), plan["scope"].as_str()), (Some("primary-a"), Some("cell")), "{plan}");
    assert_eq!(out.status.success(), plan["problems"].as_array().unwrap().is_empty(), "exit 1 exactly when it lists problems: {plan}");
    let text = lifeboat(&["failover", "plan", "--scenario", "cell-failure", "--failed", "cell-a"], env);
    assert!(String::from_utf8_lossy(&text.stdout).contains("cell-a-host"), "{}", String::from_utf8_lossy(&text.stdout));
}

fn cell_of<'a>(status: &'a Value, cell: &str) -> &'a Value {
    status["cells"].as_array().unwrap().iter().find(|c| c["cell"] == cell).unwrap()
}

fn location<'a>(cell: &'a Value, name: &str) -> &'a Value {
    cell["locations"].as_array().unwrap().iter().find(|l| l["location"] == name).unwrap()
}

fn runs(c: &Service) -> Vec<Value> {
    c.get("/v1/runs?limit=1000").1["runs"].as_array().unwrap().clone()
}

#[test]
fn coordinator_end_to_end_schedules_status_alerts_and_restarts() {
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let k = kafka::shared();
    let prefix = unique("e2e");
    let topic = format!("{prefix}.payments");
    k.create_topic(&topic, 2, &[]);
    let base = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 - 60_000;
    let records: Vec<TestRecord> = (0..200)
        .map(|i| TestRecord {
            partition: (i % 2) as i32,
            key: Some(format!("k{i}")),
            value: Some(format!("payment {i}")),
            headers: vec![],
            timestamp: base + i,
        })
        .collect();
    k.produce(&topic, &records);

    let (ta, tb) = (s.join("token-a"), s.join("token-b"));
    let agent_tokens = [write_token(&ta), write_token(&tb)];
    let a = start_cell("cell-a", "a-in-b", &ta, s, Some((&k.address, &prefix)));
    let mut b = start_cell("cell-b", "b-in-a", &tb, s, None);
    let plan_dir = s.join("plan");
    plan(&plan_dir, &a, &b, [&ta, &tb], (&k.address, &prefix));

    let hook = Webhook::start();
    let op_file = s.join("operator-token");
    let operator = write_token(&op_file);
    let state = s.join("coordinator.db");
    let coordinator_args = [
        "--plans",
        plan_dir.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--operator-token-file",
        op_file.to_str().unwrap(),
        "--alert-webhook",
        &hook.url,
        "--tick",
        "200ms",
        "--poll",
        "1s",
        "--retry-base",
        "1s",
        "--alert-repeat",
        "2s",
    ];
    let mut c = Service::coordinator(&coordinator_args, &[], &operator, &s.join("coordinator.log"));

    // Operator commands need the operator token.
    let body = json!({"cell": "cell-a", "kind": "pg-full"});
    for auth in [None, Some("Bearer wrong-token-wrong-token-wrong-token")] {
        let (code, answer) = c.request("POST", "/v1/runs", auth, None, Some(&body));
        assert_eq!(code, 401, "{answer}");
    }
    assert!(runs(&c).is_empty(), "refused commands must not create runs");
    refuses_traversal(&c);

    // Full backups through the coordinator, from the CLI.
    let env = [("LIFEBOAT_COORDINATOR", c.url.as_str()), ("LIFEBOAT_TOKEN_FILE", op_file.to_str().unwrap())];
    for cell in ["cell-a", "cell-b"] {
        let out = lifeboat(&["backup", "run", "--cell", cell, "--kind", "full", "--output", "json"], &env);
        let run: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert!(out.status.success() && run["state"] == "succeeded", "{run} {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = lifeboat(&["backup", "run", "--cell", "cell-z"], &env);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no cell cell-z"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Scheduled runs fire at the minute, on time, once.
    let scheduled_ok = |c: &Service, kind: &str, after: Option<&str>| {
        runs(c).into_iter().find(|r| {
            r["trigger"] == "schedule"
                && r["cell"] == "cell-a"
                && r["kind"] == kind
                && r["state"] == "succeeded"
                && after.is_none_or(|t| r["scheduled_for"].as_str().unwrap() > t)
        })
    };
    let incr = wait_until("a scheduled incremental", Duration::from_secs(150), || scheduled_ok(&c, "pg-incremental", None));
    let snap = wait_until("a scheduled snapshot", Duration::from_secs(90), || scheduled_ok(&c, "kafka-snapshot", None));
    for r in [&incr, &snap] {
        let at = parse_time(r["scheduled_for"].as_str().unwrap());
        assert_eq!((at.second(), at.nanosecond()), (0, 0), "on the minute: {r}");
        let late = parse_time(r["submitted_at"].as_str().unwrap()) - at;
        assert!(late < time::Duration::seconds(5), "submitted {late} after its time: {r}");
    }

    // Kill -9 the coordinator and restart it on the same state: the history
    // is kept and the next minute's runs happen once.
    let before = runs(&c);
    c.restart();
    assert!(runs(&c).len() >= before.len(), "history lost over a restart");
    let first = incr["scheduled_for"].as_str().unwrap().to_string();
    wait_until("the next minute's incremental", Duration::from_secs(150), || scheduled_ok(&c, "pg-incremental", Some(&first)));
    let all = runs(&c);
    let mut occurrences: Vec<(String, String, String)> = all
        .iter()
        .filter(|r| r["trigger"] == "schedule")
        .map(|r| (r["cell"].to_string(), r["kind"].to_string(), r["scheduled_for"].to_string()))
        .collect();
    let n = occurrences.len();
    occurrences.sort();
    occurrences.dedup();
    assert_eq!(occurrences.len(), n, "a scheduled occurrence ran twice: {all:?}");
    assert!(all.iter().all(|r| r["state"] != "failed"), "{all:?}");

    // The status says what the repositories and Postgres say.
    switch_and_wait(&a.pg);
    // The status names the newest full and snapshot in the repository (a
    // scheduled run may finish between reading the status and listing the
    // repository: retry until both agree).
    let (ca, newest_full) = wait_until("cell-a ok, naming the newest full and snapshot", Duration::from_secs(90), || {
        let st = status(&c);
        let ca = cell_of(&st, "cell-a").clone();
        if ca["verdict"] != "ok" {
            return None;
        }
        let info: Value = serde_json::from_str(&ok(&agent(
            &["pg", "info", "--repo", &a.archive.repo, "--cell", "cell-a", "--key-file", a.archive.k(), "--output", "json"],
            &[],
        )))
        .unwrap();
        let newest_full = info["backups"].as_array().unwrap().iter().rev().find(|b| b["kind"] == "pg-full").unwrap().clone();
        let ls: Value = serde_json::from_str(&ok(&agent(
            &["kafka", "ls", "--repo", &a.archive.repo, "--cell", "cell-a", "--key-file", a.archive.k(), "--output", "json"],
            &[],
        )))
        .unwrap();
        let newest_snapshot = ls.as_array().or(ls["snapshots"].as_array()).unwrap().last().unwrap().clone();
        (ca["last_full"]["id"] == newest_full["id"] && ca["last_snapshot"]["id"] == newest_snapshot["id"]).then_some((ca, newest_full))
    });
    let ca = &ca;
    // Postgres' own record of its last archived segment dates the primary's
    // point (a scheduled backup may archive another segment in between: retry).
    let primary_point = wait_until("the primary's point to match pg_stat_archiver", Duration::from_secs(30), || {
        let archived = parse_time(
            &a.pg.psql("select to_char(last_archived_time at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') from pg_stat_archiver"),
        );
        std::thread::sleep(Duration::from_millis(1500)); // one poll of the agent
        let st = status(&c);
        let point = parse_time(location(cell_of(&st, "cell-a"), "primary-a")["postgres"]["recoverable_to"].as_str().unwrap());
        ((point - archived).abs() < time::Duration::seconds(2)).then_some(point)
    });
    // The copies hold what the status credits them with.
    for (loc, url) in [("a-in-b", &a.second), ("cross", &a.cross)] {
        let l = location(ca, loc);
        assert!(l["copy_lag_seconds"].as_f64().unwrap() < 30.0, "{l}");
        let copied: Value = serde_json::from_str(&ok(&agent(
            &["pg", "info", "--repo", url, "--cell", "cell-a", "--key-file", a.archive.k(), "--output", "json"],
            &[],
        )))
        .unwrap();
        assert!(copied["backups"].as_array().unwrap().iter().any(|b| b["id"] == newest_full["id"]), "{loc}: {copied}");
        assert!(parse_time(l["postgres"]["recoverable_to"].as_str().unwrap()) <= primary_point, "{l}");
    }
    let url = c.url.clone();
    failover_plans(&c, &[("LIFEBOAT_COORDINATOR", url.as_str()), ("LIFEBOAT_TOKEN_FILE", op_file.to_str().unwrap())]);
    let metrics = c.metrics();
    assert!(metrics.contains(r#"lifeboat_cell_rpo_exposure_seconds{cell="cell-a",location="a-in-b",system="postgres"}"#), "{metrics}");
    assert!(metrics.contains(r#"lifeboat_backup_last_success_timestamp_seconds{cell="cell-a",kind="pg-full"}"#), "{metrics}");
    assert!(metrics.contains(r#"lifeboat_geo_copy_lag_seconds{cell="cell-b",location="b-in-a"}"#), "{metrics}");
    for timestamp in [
        r#"lifeboat_cell_recoverable_timestamp_seconds{cell="cell-a",location="a-in-b",system="postgres"} 17"#,
        r#"lifeboat_geo_copy_last_success_timestamp_seconds{cell="cell-b",location="b-in-a"} 17"#,
        "lifeboat_coordinator_leading 1",
        r#"lifeboat_build_info{version="0.1.0",commit=""#,
    ] {
        assert!(metrics.contains(timestamp), "{timestamp}: {metrics}");
    }
    // The shipped alert rules and dashboard query only metrics the services export.
    let missing = lifeboat_restore_tests::deploy::missing_from(&metrics, false);
    assert!(missing.is_empty(), "the coordinator exports none of {missing:?}: {metrics}");
    let agent_metrics = a.agent.metrics();
    let missing = lifeboat_restore_tests::deploy::missing_from(&agent_metrics, true);
    assert!(missing.is_empty(), "the agent exports none of {missing:?}: {agent_metrics}");
    let page =
        reqwest::blocking::Client::new().get(format!("{}/", c.url)).basic_auth("auditor", Some(&c.token)).send().unwrap().text().unwrap();
    assert!(page.contains("<table>") && page.contains("cell-b") && page.contains("a-in-b"), "{page}");

    // Cell B's agent goes away: its exposure keeps growing from the last
    // points it gave; at-risk, then breached, and the webhook hears both.
    b.agent.kill();
    wait_until("cell-b breached", Duration::from_secs(90), || {
        let st = status(&c);
        let cb = cell_of(&st, "cell-b");
        (location(cb, "primary-b")["postgres"]["verdict"] == "breached").then_some(())
    });
    wait_until("breach alerts for cell-b", Duration::from_secs(30), || {
        (hook.has("cell-b", "at-risk", false) && hook.has("cell-b", "breached", false)).then_some(())
    });
    // While the breach lasts it is sent again every --alert-repeat (2 s), its end always ahead.
    let (breach, since) = (("cell-b", "primary-b"), now_nanos());
    std::thread::sleep(Duration::from_secs(6));
    let again = hook.count(breach, "breached", false, since);
    assert!(again >= 2, "the breach alert sent again at least twice over 3 intervals: {again}");
    assert_eq!(hook.count(breach, "breached", true, since), 0, "not resolved while it lasts");
    let st = status(&c);
    assert!(cell_of(&st, "cell-b")["agent_problem"].as_str().unwrap().contains("cannot connect"), "{st}");
    // Scripts see it in the exit code.
    let remote = [("LIFEBOAT_COORDINATOR", c.url.as_str()), ("LIFEBOAT_TOKEN_FILE", op_file.to_str().unwrap())];
    let judged = lifeboat(&["status", "--fail-on", "breached", "--output", "json"], &remote);
    assert_eq!(
        judged.status.code(),
        Some(3),
        "status --fail-on breached with a breached cell: {}",
        String::from_utf8_lossy(&judged.stderr)
    );
    let unreachable = lifeboat(&["status", "--coordinator", "http://127.0.0.1:9", "--output", "json"], &[]);
    let error: Value = serde_json::from_slice(&unreachable.stdout).unwrap_or(Value::Null);
    assert_eq!((unreachable.status.code(), error["error"]["exit"].as_u64()), (Some(1), Some(1)), "a JSON error on stdout: {error}");
    // Cell A is not affected: its agent answers and every location of it reads.
    // (Not its verdict: its own 30 s RPO against archive_timeout 5 s was once
    // missed by 3 s under a loaded CI run, which is about cell A, not B.)
    let ca = cell_of(&st, "cell-a");
    assert!(ca["agent_problem"].is_null(), "cell-a is not affected: {st}");
    assert!(ca["locations"].as_array().unwrap().iter().all(|l| l["problem"].is_null()), "cell-a is not affected: {st}");
    // It comes back: fresh points, the alert resolved.
    b.agent.restart();
    wait_until("cell-b ok again", Duration::from_secs(60), || (cell_of(&status(&c), "cell-b")["verdict"] == "ok").then_some(()));
    wait_until("resolved alerts for cell-b", Duration::from_secs(30), || hook.has("cell-b", "breached", true).then_some(()));
    let fired = hook.count(breach, "breached", false, since);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(hook.count(breach, "breached", true, since), 1, "resolved exactly once:\n{}", hook.log(breach));
    assert_eq!(hook.count(breach, "breached", false, since), fired, "not sent again once resolved:\n{}", hook.log(breach));

    // Cell A's WAL archiving stops (the agent is fine): the primary's point
    // stops moving, exposure crosses the RPO; archiving again clears it.
    a.pg.psql("alter system set archive_command = 'false'");
    a.pg.psql("select pg_reload_conf()");
    // Activity, so that archive_timeout (5 s) closes segments to archive.
    let switch_load = || {
        a.pg.psql("insert into payments (amount) values (1)");
    };
    wait_until("cell-a breached by stopped archiving", Duration::from_secs(120), || {
        switch_load();
        (location(cell_of(&status(&c), "cell-a"), "primary-a")["postgres"]["verdict"] == "breached").then_some(())
    });
    wait_until("breach alert for cell-a", Duration::from_secs(30), || hook.has("cell-a", "breached", false).then_some(()));
    let conf = a.archive.archive_conf("cell-a");
    let command = conf[1].trim_start_matches("archive_command = ").trim_matches('\'');
    a.pg.psql(&format!("alter system set archive_command = '{command}'"));
    a.pg.psql("select pg_reload_conf()");
    wait_until("cell-a ok again", Duration::from_secs(90), || {
        switch_load();
        (cell_of(&status(&c), "cell-a")["verdict"] == "ok").then_some(())
    });
    wait_until("resolved alert for cell-a", Duration::from_secs(30), || hook.has("cell-a", "breached", true).then_some(()));

    // Operator commands work without a coordinator too, straight to the agents.
    let direct = lifeboat(&["status", "--plans", plan_dir.to_str().unwrap(), "--output", "json"], &[]);
    let st: Value = serde_json::from_slice(&direct.stdout).unwrap_or(Value::Null);
    assert!(direct.status.success(), "{}", String::from_utf8_lossy(&direct.stderr));
    assert_eq!(cell_of(&st, "cell-b")["last_full"]["id"], cell_of(&status(&c), "cell-b")["last_full"]["id"], "{st}");
    let out = lifeboat(&["snapshot", "run", "--cell", "cell-a", "--plans", plan_dir.to_str().unwrap(), "--output", "json"], &[]);
    let job: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert!(out.status.success() && job["state"] == "succeeded", "{job} {}", String::from_utf8_lossy(&out.stderr));
    let snapshot_id = job["result"]["snapshot_id"].as_str().unwrap();
    let ls: Value = serde_json::from_str(&ok(&agent(
        &["kafka", "ls", "--repo", &a.archive.repo, "--cell", "cell-a", "--key-file", a.archive.k(), "--output", "json"],
        &[],
    )))
    .unwrap();
    assert!(ls.as_array().unwrap().iter().any(|s| s["id"] == snapshot_id), "{ls}");

    // Secrets: no token or key in the coordinator's log, status, runs, metrics or alerts.
    let mut said = std::fs::read_to_string(s.join("coordinator.log")).unwrap();
    said.push_str(&status(&c).to_string());
    said.push_str(&Value::Array(runs(&c)).to_string());
    said.push_str(&c.metrics());
    said.push_str(&Value::Array(hook.alerts()).to_string());
    let key = std::fs::read_to_string(a.archive.k()).unwrap();
    for (what, secret) in [
        ("agent token", &agent_tokens[0]),
        ("agent token", &agent_tokens[1]),
        ("operator token", &operator),
        ("repository key", &key.trim().to_string()),
    ] {
        assert!(!said.contains(secret.as_str()), "the {what} leaked");
    }
}

#[test]
fn restarts_mid_job_neither_duplicate_nor_lose_runs() {
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let a = Archive::new();
    // A "Postgres" that accepts and never answers: the backup job hangs.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let tf = s.join("token");
    let token = write_token(&tf);
    let conn = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");
    let state = s.join("agent");
    let mut agent_svc = Service::start(
        &[
            "--repo",
            &a.repo,
            "--cell",
            "cell-r",
            "--key-file",
            a.k(),
            "--token-file",
            tf.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "--pg-conn",
            &conn,
        ],
        &[],
        &token,
        &s.join("agent.log"),
    );
    let plan_dir = s.join("plan");
    let one = OneCell {
        plan: "restarts",
        cell: "cell-r",
        agent: &agent_svc.url,
        token: &tf,
        postgres_conninfo: &conn,
        defaults: "",
        cell_lines: "",
    };
    write_one_cell(&plan_dir, &one);
    let op_file = s.join("operator");
    let operator = write_token(&op_file);
    let db = s.join("state.db");
    let args = [
        "--plans",
        plan_dir.to_str().unwrap(),
        "--state",
        db.to_str().unwrap(),
        "--operator-token-file",
        op_file.to_str().unwrap(),
        "--tick",
        "200ms",
        "--poll",
        "500ms",
        "--retry-base",
        "1s",
        "--max-attempts",
        "2",
    ];
    let mut c = Service::coordinator(&args, &[], &operator, &s.join("coordinator.log"));
    let auth = format!("Bearer {operator}");
    let (code, run) = c.request("POST", "/v1/runs", Some(&auth), None, Some(&json!({"cell": "cell-r", "kind": "pg-full"})));
    assert_eq!(code, 202, "{run}");
    let id = run["id"].as_i64().unwrap();
    let agent_jobs = |a: &Service| a.get("/v1/jobs").1["jobs"].as_array().unwrap().clone();
    let job = wait_until("the job running on the agent", Duration::from_secs(30), || {
        let jobs = agent_jobs(&agent_svc);
        jobs.first().filter(|j| j["state"] == "running").cloned()
    });

    // The coordinator dies mid-job and comes back: same run, same job.
    c.kill();
    c.restart();
    std::thread::sleep(Duration::from_secs(3));
    let (_, r) = c.get(&format!("/v1/runs/{id}"));
    assert_eq!((r["state"].as_str(), r["agent_job"].as_str()), (Some("submitted"), job["id"].as_str()), "{r}");
    assert_eq!(agent_jobs(&agent_svc).len(), 1, "the restarted coordinator submitted the job again");

    // The agent dies mid-job: the job ends failed, the coordinator retries
    // once (a new attempt, a new key), the second attempt dies too, and the
    // run ends failed after its two attempts, nothing left running.
    agent_svc.restart();
    wait_until("the retry running", Duration::from_secs(30), || {
        let jobs = agent_jobs(&agent_svc);
        (jobs.len() == 2 && jobs[0]["state"] == "running").then_some(())
    });
    let (_, r) = c.get(&format!("/v1/runs/{id}"));
    assert_eq!((r["state"].as_str(), r["attempt"].as_i64()), (Some("submitted"), Some(2)), "{r}");
    agent_svc.restart();
    let r = wait_until("the run failed", Duration::from_secs(30), || {
        let (_, r) = c.get(&format!("/v1/runs/{id}"));
        (r["state"] == "failed").then_some(r)
    });
    assert!(r["error"].as_str().unwrap().contains("interrupted"), "{r}");
    let jobs = agent_jobs(&agent_svc);
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert!(jobs.iter().all(|j| j["state"] == "failed"), "a job left running: {jobs:?}");
    let all = c.get("/v1/runs").1["runs"].as_array().unwrap().clone();
    assert_eq!(all.len(), 1, "{all:?}");

    // The history is readable without the coordinator, from its database.
    c.kill();
    let out = lifeboat(&["runs", "show", &id.to_string(), "--state", db.to_str().unwrap(), "--output", "json"], &[]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((shown["state"].as_str(), shown["attempt"].as_i64()), (Some("failed"), Some(2)), "{shown}");
    drop(silent);
}

/// An agent for `cell` on `a`'s repository and a one-cell plan naming it
/// (in `dir/plan`), its Postgres unreachable: for tests of the coordinator
/// itself.
fn agent_and_plan(a: &Archive, plan: &str, cell: &str, dir: &Path, agent_flags: &[&str]) -> (Service, std::path::PathBuf) {
    let agent_svc = Service::agent_on(a, cell, dir, agent_flags);
    let plans = dir.join("plan");
    let conn = "host=127.0.0.1 port=1 user=postgres dbname=postgres";
    let one = OneCell {
        plan,
        cell,
        agent: &agent_svc.url,
        token: &dir.join("agent-token"),
        postgres_conninfo: conn,
        defaults: "",
        cell_lines: "",
    };
    write_one_cell(&plans, &one);
    (agent_svc, plans)
}

/// Who may call the coordinator. Without a token only the health check
/// answers (a report request is refused before any agent is asked); a
/// viewer reads, by bearer token or from a browser with Basic, and cannot
/// start runs; the operator can. The CLI sends the token it is given, over
/// HTTPS with the coordinator's private CA, and refuses to send one over
/// plain http to another host. A coordinator without any token does not
/// start.
#[test]
fn tokens_roles_and_https() {
    let a = Archive::new();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let (agent_svc, plans) = agent_and_plan(&a, "access", "cell-x", s, &[]);
    let viewer_file = s.join("viewer-token");
    let viewer = write_token(&viewer_file);
    let (cert, key) = lifeboat_restore_tests::served::self_signed(s);
    let tls =
        ["--viewer-token-file", viewer_file.to_str().unwrap(), "--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
    let mut c = Service::coordinator_on(&plans, s, &tls);
    assert!(c.url.starts_with("https://"), "{}", c.url);
    let ca = std::fs::read(&cert).unwrap();
    c.trust(&ca);

    let jobs_before = agent_svc.get("/v1/jobs").1["jobs"].as_array().unwrap().len();
    for path in ["/v1/status", "/v1/runs", "/v1/runs/1", "/", "/metrics", "/reports/cell-x/000001-x.json"] {
        for auth in [None, Some("Bearer wrong-token-wrong-token-wrong-token")] {
            let (code, answer) = c.request("GET", path, auth, None, None);
            assert_eq!(code, 401, "GET {path} with {auth:?}: {answer}");
        }
    }
    assert_eq!(c.request("GET", "/v1/health", None, None, None), (200, json!({"status": "ok"})));
    let body = json!({"cell": "cell-x", "kind": "pg-full"});
    let as_viewer = format!("Bearer {viewer}");
    assert_eq!(c.request("GET", "/v1/status", Some(&as_viewer), None, None).0, 200);
    let (code, answer) = c.request("POST", "/v1/runs", Some(&as_viewer), None, Some(&body));
    assert_eq!(code, 403, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("needs the operator token"), "{answer}");
    assert_eq!(c.get("/v1/runs").1["runs"], json!([]), "refused commands create no runs");
    assert_eq!(agent_svc.get("/v1/jobs").1["jobs"].as_array().unwrap().len(), jobs_before, "no agent was asked");
    let browser = reqwest::blocking::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap()).build().unwrap();
    let page = browser.get(format!("{}/", c.url)).send().unwrap();
    assert_eq!(page.status(), 401);
    assert!(page.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"), "a browser is asked for Basic");
    let page = browser.get(format!("{}/", c.url)).basic_auth("auditor", Some(&viewer)).send().unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().unwrap().contains("cell-x"));
    assert!(c.metrics().contains("lifeboat_http_unauthorized_requests_total 14"), "{}", c.metrics());

    // The CLI: a viewer token reads over HTTPS; it cannot start a run; no token says how to give one.
    let ca_file = cert.to_str().unwrap();
    let env = [("LIFEBOAT_COORDINATOR", c.url.as_str()), ("LIFEBOAT_COORDINATOR_CA_FILE", ca_file)];
    let with_viewer = [env[0], env[1], ("LIFEBOAT_TOKEN_FILE", viewer_file.to_str().unwrap())];
    let out = lifeboat(&["status", "--output", "json"], &with_viewer);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = lifeboat(&["backup", "run", "--cell", "cell-x", "--kind", "full"], &with_viewer);
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = lifeboat(&["runs", "list"], &env);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token-file"), "{}", String::from_utf8_lossy(&out.stderr));
    let to_elsewhere = [("LIFEBOAT_COORDINATOR", "http://192.0.2.1:7300"), with_viewer[2]];
    let out = lifeboat(&["status"], &to_elsewhere);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing to send a token over plain http"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The operator token starts a run.
    let (code, run) = c.request("POST", "/v1/runs", Some(&c.bearer()), None, Some(&body));
    assert_eq!(code, 202, "{run}");

    // No token configured at all: the coordinator refuses to start.
    c.kill();
    let db = s.join("state-2.db");
    let out = lifeboat(&["serve", "--plans", plans.to_str().unwrap(), "--state", db.to_str().unwrap(), "--listen", "127.0.0.1:0"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--viewer-token-file"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The coordinator schedules `repo verify` of each cell's primary and its
/// copies, weekly in full and daily sampled (an operator can start either
/// too); one that finds a damaged object fails, and the cell's status says
/// so and is at least at risk. A passing sampled verify does not clear a
/// failed full one.
#[test]
fn a_failed_verify_puts_the_cell_at_risk() {
    let a = Archive::new();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let copy_dir = s.join("copy");
    let copy_to = format!("second=file://{}", copy_dir.display());
    let (_agent_svc, plans) = agent_and_plan(&a, "verify", "cell-v", s, &["--copy-to", &copy_to, "--copy-interval", "1s"]);
    // Three attempts, 30 s apart: a verify that found problems must not use them.
    let c = Service::coordinator_on(&plans, s, &["--tick", "200ms", "--poll", "500ms"]);
    let run_of = |kind: &str| {
        let (code, run) = c.request("POST", "/v1/runs", Some(&c.bearer()), None, Some(&json!({"cell": "cell-v", "kind": kind})));
        assert_eq!(code, 202, "{run}");
        c.finished_run(run["id"].as_i64().unwrap(), Duration::from_secs(60))
    };
    let verify = || run_of("verify");
    let last_verify = || cell_of(&status(&c), "cell-v")["last_verify"].clone();
    assert_eq!(verify()["state"], "succeeded");
    let cell = wait_until("the verify in the status", Duration::from_secs(10), || {
        let st = status(&c);
        let cell = cell_of(&st, "cell-v").clone();
        (!cell["last_verify"].is_null()).then_some(cell)
    });
    assert_eq!(cell["last_verify"]["passed"], true, "{cell}");

    let chunk = a.repo_dir.join("chunks/ab").join("ab".repeat(32));
    std::fs::create_dir_all(chunk.parent().unwrap()).unwrap();
    std::fs::write(&chunk, b"not a sealed chunk").unwrap();
    let run = verify();
    assert_eq!((run["state"].as_str(), run["attempt"].as_i64()), (Some("failed"), Some(1)), "a finding is not retried: {run}");
    let st = status(&c);
    let cell = cell_of(&st, "cell-v");
    assert_eq!(cell["last_verify"]["passed"], false, "{cell}");
    assert!(cell["last_verify"]["problem"].as_str().unwrap().contains(&"ab".repeat(32)), "{cell}");
    assert_ne!(cell["verdict"], "ok", "{cell}");
    let text = String::from_utf8_lossy(
        &lifeboat(&["status", "--coordinator", &c.url, "--token-file", s.join("operator-token").to_str().unwrap()], &[]).stdout,
    )
    .to_string();
    assert!(text.contains("! verify") && text.contains("failed"), "{text}");

    // Damage in the copy: the sampled run reads the copy's newest objects and names it.
    std::fs::remove_file(&chunk).unwrap();
    wait_until("the agent's first copy", Duration::from_secs(30), || copy_dir.join("lifeboat.repo.json").exists().then_some(()));
    let in_copy = copy_dir.join("chunks/cd").join("cd".repeat(32));
    std::fs::create_dir_all(in_copy.parent().unwrap()).unwrap();
    std::fs::write(&in_copy, b"not a sealed chunk either").unwrap();
    let run = run_of("verify-sample");
    assert_eq!(run["state"], "failed", "{run}");
    let problem = last_verify()["problem"].as_str().unwrap().to_string();
    assert!(problem.contains(&format!("verify of file://{}", copy_dir.display())) && problem.contains(&"cd".repeat(32)), "{problem}");
    std::fs::remove_file(&in_copy).unwrap();
    assert_eq!(run_of("verify-sample")["state"], "succeeded");
    assert_eq!(last_verify()["passed"], false, "a sampled pass does not clear the failed full one: {}", last_verify());
    assert_eq!(verify()["state"], "succeeded");
    assert_eq!(last_verify()["passed"], true, "{}", last_verify());
}

/// An agent that requires client certificates (`serve --tls-client-ca`):
/// the coordinator presenting one from that CA (`LIFEBOAT_AGENT_CLIENT_CERT`
/// and `_KEY`) reads its recovery points; a coordinator without one is
/// refused in the TLS handshake, and its status says the agent is not
/// answering.
#[test]
fn agents_requiring_client_certificates_admit_only_the_coordinator() {
    use lifeboat_restore_tests::served::{client_cert, self_signed_named};
    let a = Archive::new();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let (server_cert, server_key) = lifeboat_restore_tests::served::self_signed(s);
    let ca = self_signed_named(s, "clients-ca", "/CN=lifeboat clients CA");
    let (client, client_key) = client_cert(s, "coordinator", &ca);
    let agent_tls = ["--tls-cert", server_cert.to_str().unwrap(), "--tls-key", server_key.to_str().unwrap()];
    let (_agent, plans) = agent_and_plan(&a, "mtls", "cell-m", s, &[&agent_tls[..], &["--tls-client-ca", ca.0.to_str().unwrap()]].concat());
    let trust = ("LIFEBOAT_AGENT_CA_FILE", server_cert.to_str().unwrap());
    let env =
        [trust, ("LIFEBOAT_AGENT_CLIENT_CERT", client.to_str().unwrap()), ("LIFEBOAT_AGENT_CLIENT_KEY", client_key.to_str().unwrap())];
    for d in ["with", "without"] {
        std::fs::create_dir(s.join(d)).unwrap();
    }
    let with_cert = Service::coordinator_with_env(&plans, &s.join("with"), &[], &env);
    let answered = wait_until("the agent to answer the coordinator", Duration::from_secs(30), || {
        let st = status(&with_cert);
        let cell = cell_of(&st, "cell-m");
        (!cell["agent_seen"].is_null()).then(|| cell.clone())
    });
    assert!(answered["agent_problem"].is_null(), "{answered}");

    let without = Service::coordinator_with_env(&plans, &s.join("without"), &[], &[trust]);
    let refused = wait_until("the coordinator to give up on the agent", Duration::from_secs(30), || {
        let st = status(&without);
        let cell = cell_of(&st, "cell-m");
        cell["agent_problem"].as_str().map(|p| (p.to_string(), cell["agent_seen"].clone()))
    });
    // The alert's text, or (TLS 1.3: the server may close before the request is sent) the hint.
    assert!(refused.0.contains("certificate required") || refused.0.contains("requires a client certificate"), "{refused:?}");
    assert!(refused.1.is_null(), "{refused:?}");
}
