//! `lifeboat-agent serve` against a real Postgres cluster and repository:
//! strangers are refused and logged; jobs are idempotent by key; a backup
//! and a geo-copy run through the API land in the repositories (checked with
//! the CLI, independently of the API); secrets never show up in logs, job
//! records or metrics; a job cut off by a restart ends "failed", never
//! "running" forever, and queued jobs run after the restart; TLS works.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use lifeboat_restore_tests::pg::{switch_and_wait, Archive, Cluster};
use lifeboat_restore_tests::served::{self_signed, write_token, Service};
use lifeboat_restore_tests::{agent, ok};

fn parse_time(s: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
}

fn cli_json(args: &[&str]) -> Value {
    let out = ok(&agent(args, &[]));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
}

/// Everything the agent left on disk and said, as one string to search.
fn everything_written(agent: &Service, state: &std::path::Path) -> String {
    let mut all = agent.log_text();
    for entry in lifeboat_restore_tests::files_under(state) {
        all.push_str(&String::from_utf8_lossy(&std::fs::read(entry).unwrap()));
    }
    all.push_str(&agent.metrics());
    all.push_str(&agent.get("/v1/jobs").1.to_string());
    all
}

#[test]
fn the_api_runs_jobs_once_per_key_and_refuses_strangers() {
    let a = Archive::new();
    let conf = a.archive_conf("api");
    let pg = Cluster::create(&a.root.join("pg"), &[&conf[0], &conf[1]]);
    // A backup role with a password, required over TCP: the password must
    // reach Postgres and nothing else.
    // Spaces and a quote: the conninfo must quote it, the logs must redact it whole.
    let password = format!("pw {:016x} it's", rand::random::<u64>());
    pg.psql(&format!("create role lifeboat_backup login superuser password '{}'", password.replace('\'', "''")));
    let hba = pg.data().join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("host all lifeboat_backup 127.0.0.1/32 scram-sha-256\n{rules}")).unwrap();
    pg.psql("select pg_reload_conf()");
    pg.psql("create table t as select g as id from generate_series(1, 1000) g");
    switch_and_wait(&pg);

    let dir = tempfile::tempdir().unwrap();
    let token = write_token(&dir.path().join("token"));
    let pw_file = dir.path().join("pg-password");
    std::fs::write(&pw_file, &password).unwrap();
    std::fs::set_permissions(&pw_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let state = dir.path().join("state");
    let copy_url = format!("file://{}", dir.path().join("second-region").display());
    let conn = format!("host=127.0.0.1 port={} user=lifeboat_backup dbname=postgres", pg.port);
    let tf = dir.path().join("token");
    let agent_log = dir.path().join("agent.log");
    let copy_arg = format!("second={copy_url}");
    let served = Service::start(
        &[
            "--repo",
            &a.repo,
            "--cell",
            "api",
            "--key-file",
            a.k(),
            "--token-file",
            tf.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "--pg-conn",
            &conn,
            "--pg-password-file",
            pw_file.to_str().unwrap(),
            "--copy-to",
            &copy_arg,
            "--copy-interval",
            "1s",
        ],
        &[],
        &token,
        &agent_log,
    );

    // Strangers: no token, a wrong token, a token for another scheme.
    let wrong = format!("Bearer {}", "0".repeat(64));
    for auth in [None, Some(wrong.as_str()), Some("Basic dXNlcjpwYXNz")] {
        for (method, path) in [("GET", "/v1/health"), ("GET", "/v1/jobs"), ("GET", "/metrics"), ("POST", "/v1/jobs"), ("GET", "/nope")] {
            let (status, body) = served.request(method, path, auth, Some("k"), Some(&json!({"kind": "pg-backup"})));
            assert_eq!(status, 401, "{method} {path} with {auth:?}: {body}");
        }
    }
    assert!(served.log_text().contains("refused an unauthenticated request"), "{}", served.log_text());
    assert!(served.metrics().contains("lifeboat_agent_unauthorized_requests_total 15"), "{}", served.metrics());
    assert_eq!(served.get("/v1/jobs").1["jobs"], json!([]), "refused requests must not create jobs");
    let (status, health) = served.get("/v1/health");
    assert_eq!((status, health["status"].as_str(), health["cell"].as_str()), (200, Some("ok"), Some("api")));

    // Bad requests name the problem.
    let (status, body) = served.request("POST", "/v1/jobs", Some(&format!("Bearer {token}")), None, Some(&json!({"kind": "pg-backup"})));
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("Idempotency-Key"), "{body}");
    let (status, body) = served.submit("x1", &json!({"kind": "pg-backpu"}));
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("unknown variant `pg-backpu`"), "{body}");
    let (status, body) = served.submit("x2", &json!({"kind": "kafka-snapshot"}));
    assert_eq!(status, 422);
    assert!(body["error"].as_str().unwrap().contains("--kafka-brokers"), "{body}");
    let (status, body) = served.submit("x3", &json!({"kind": "copy", "location": "moon"}));
    assert_eq!(status, 422);
    assert!(body["error"].as_str().unwrap().contains("second"), "{body}");
    let (status, body) = served.submit("x4", &json!({"kind": "pg-restore", "to": "../etc", "target": "latest"}));
    assert_eq!(status, 422, "{body}");
    // A token holder cannot make the agent run SQL: without --plan-key no SQL check is accepted.
    let hostile = json!({"kind": "drill", "target": {"random-recent": {"within": "1h"}},
        "checks": [{"kind": "sql", "name": "x", "sql": "copy (select 1) to program 'id'", "expect": "1"}]});
    let (status, body) = served.submit("x5", &hostile);
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("--plan-key"), "{body}");
    // Nor delete recent backups: retention below the agent's floor (24h by default) is refused.
    let low = [
        json!({"kind": "retention", "of": "pg", "keep_within": "0s"}),
        json!({"kind": "retention", "of": "pg", "keep_incremental_within": "1h"}),
    ];
    for (i, spec) in low.iter().enumerate() {
        let (status, body) = served.submit(&format!("x6-{i}"), spec);
        assert_eq!(status, 422, "{body}");
        assert!(body["error"].as_str().unwrap().contains("below this agent's retention floor of 1d"), "{body}");
    }

    // One backup per key, whatever the retries.
    let full = json!({"kind": "pg-backup"});
    let (status, job) = served.submit("backup:api:1", &full);
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let (status, again) = served.submit("backup:api:1", &full);
    assert_eq!((status, again["id"].as_str()), (200, Some(id.as_str())), "{again}");
    let (status, conflict) = served.submit("backup:api:1", &json!({"kind": "pg-backup", "incremental": true}));
    assert_eq!(status, 409, "{conflict}");
    assert!(conflict["error"].as_str().unwrap().contains(&id), "{conflict}");

    let done = served.finish(&id, Duration::from_secs(180));
    assert_eq!(done["state"], "succeeded", "{done}");
    let backup_id = done["result"]["backup_id"].as_str().unwrap().to_string();
    assert!(done["started"].is_string() && done["finished"].is_string() && done["exit_code"] == 0, "{done}");
    let p = &done["progress"];
    assert!(p.is_null() || p["done_bytes"] == p["total_bytes"], "{done}");

    // The repository says the same, read by the CLI.
    let info = cli_json(&["pg", "info", "--repo", &a.repo, "--cell", "api", "--key-file", a.k(), "--output", "json"]);
    let ids: Vec<&str> = info["backups"].as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [backup_id.as_str()], "{info}");

    // A geo-copy through the API, verified with the CLI at the destination.
    let (status, job) = served.submit("copy:api:1", &json!({"kind": "copy", "location": "second"}));
    assert_eq!(status, 202, "{job}");
    let done = served.finish(job["id"].as_str().unwrap(), Duration::from_secs(120));
    assert_eq!(done["state"], "succeeded", "{done}");
    ok(&agent(&["repo", "verify", "--repo", &copy_url, "--key-file", a.k()], &[]));
    let copied = cli_json(&["pg", "info", "--repo", &copy_url, "--cell", "api", "--key-file", a.k(), "--output", "json"]);
    assert_eq!(copied["backups"][0]["id"].as_str(), Some(backup_id.as_str()), "{copied}");

    // Recovery points per location, from the repositories: the primary has
    // the backup and WAL archived after it; the continuous copy catches up
    // and is never credited beyond its last complete pass.
    let before_switch = time::OffsetDateTime::now_utc();
    pg.psql("insert into t select 0");
    switch_and_wait(&pg);
    let start = Instant::now();
    let recovery = loop {
        let (status, r) = served.get("/v1/recovery");
        assert_eq!(status, 200, "{r}");
        let copy_point = r["locations"][1]["postgres"]["recoverable_to"].as_str().map(parse_time);
        if copy_point.is_some_and(|t| t >= before_switch - time::Duration::seconds(1)) {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the copy never caught up: {r}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let primary = &recovery["locations"][0];
    assert_eq!((primary["location"].as_str(), primary["role"].as_str()), (Some("primary"), Some("primary")), "{recovery}");
    assert_eq!(primary["postgres"]["last_full"]["id"].as_str(), Some(backup_id.as_str()), "{recovery}");
    let primary_point = parse_time(primary["postgres"]["recoverable_to"].as_str().unwrap());
    assert!(primary_point >= before_switch - time::Duration::seconds(1) && primary_point <= time::OffsetDateTime::now_utc(), "{recovery}");
    let copy = &recovery["locations"][1];
    assert_eq!(copy["location"], "second");
    let copied_through = parse_time(copy["copied_through"].as_str().unwrap());
    let copy_point = parse_time(copy["postgres"]["recoverable_to"].as_str().unwrap());
    assert!(copy_point <= copied_through && copy_point <= primary_point, "{recovery}");
    assert!(copy["error"].is_null(), "{recovery}");
    // The copy carries the marker of its last complete pass, readable from it alone.
    let marked = cli_json(&["repo", "copied", "--repo", &copy_url, "--key-file", a.k(), "--output", "json"]);
    let marked_start = parse_time(marked["started"].as_str().unwrap());
    assert!(marked_start >= copied_through && marked_start <= time::OffsetDateTime::now_utc(), "{marked} {recovery}");
    assert!(marked["cells"]["api"]["newest_wal"].as_str().is_some_and(|w| w.len() == 24), "{marked}");
    let primary_only = agent(&["repo", "copied", "--repo", &a.repo, "--key-file", a.k()], &[]);
    assert!(!primary_only.status.success() && String::from_utf8_lossy(&primary_only.stderr).contains("no copy pass completed"));
    let metrics = served.metrics();
    // When the newest complete pass started: a timestamp, at or after the copied-through point.
    let pass_at = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"lifeboat_agent_geo_copy_last_success_timestamp_seconds{location="second"} "#))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(pass_at.parse::<f64>().unwrap() >= copied_through.unix_timestamp() as f64 - 1.0, "{pass_at} {recovery}");
    assert!(metrics.contains(r#"lifeboat_agent_build_info{version="0.1.0",commit=""#), "{metrics}");
    assert!(metrics.contains(r#"lifeboat_agent_geo_copy_passes_total{location="second"}"#), "{metrics}");

    let (status, job) = served.submit("restore:1", &json!({"kind": "pg-restore", "to": "r1", "target": "latest"}));
    assert_eq!(status, 422, "no --restore-root: {job}");

    // A failing job reports the command's own error.
    pg.stop();
    let (status, job) = served.submit("backup:api:2", &json!({"kind": "pg-backup", "incremental": true}));
    assert_eq!(status, 202, "{job}");
    let failed = served.finish(job["id"].as_str().unwrap(), Duration::from_secs(120));
    assert_eq!(failed["state"], "failed", "{failed}");
    let error = failed["error"].as_str().unwrap();
    assert!(error.starts_with("error:") && error.to_lowercase().contains("connect"), "{failed}");
    assert_ne!(failed["exit_code"], 0, "{failed}");

    let (_, list) = served.get("/v1/jobs?state=succeeded");
    assert_eq!(list["jobs"].as_array().unwrap().len(), 2, "{list}");
    let (status, bad) = served.get("/v1/jobs?state=sleeping");
    assert_eq!(status, 400, "{bad}");
    let metrics = served.metrics();
    assert!(metrics.contains(r#"lifeboat_agent_jobs_total{kind="pg-backup",outcome="succeeded"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"lifeboat_agent_jobs_total{kind="copy",outcome="succeeded"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"lifeboat_agent_jobs_total{kind="pg-backup",outcome="failed"} 1"#), "{metrics}");

    // Secrets: the token, the Postgres password and the repository key
    // appear nowhere the agent writes or answers.
    let key_hex = std::fs::read_to_string(a.k()).unwrap().trim().to_string();
    let written = everything_written(&served, &state);
    for (what, secret) in [("token", &token), ("Postgres password", &password), ("repository key", &key_hex)] {
        assert!(!written.contains(secret.as_str()), "the {what} leaked into the agent's logs, journal, metrics or API");
    }
}

#[test]
fn a_job_cut_off_by_a_restart_ends_failed_and_queued_jobs_still_run() {
    let a = Archive::new();
    // A "Postgres" that accepts connections and never answers: the backup
    // job hangs in its first step until the agent is killed.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let conn = format!("host=127.0.0.1 port={} user=postgres dbname=postgres", silent.local_addr().unwrap().port());
    let dir = tempfile::tempdir().unwrap();
    let tf = dir.path().join("token");
    let token = write_token(&tf);
    let state = dir.path().join("state");
    let mut served = Service::start(
        &[
            "--repo",
            &a.repo,
            "--cell",
            "rs",
            "--key-file",
            a.k(),
            "--token-file",
            tf.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "--pg-conn",
            &conn,
            "--max-jobs",
            "1",
        ],
        &[],
        &token,
        &dir.path().join("agent.log"),
    );
    let (status, hung) = served.submit("hang", &json!({"kind": "pg-backup"}));
    assert_eq!(status, 202, "{hung}");
    let hung_id = hung["id"].as_str().unwrap().to_string();
    let running = served.wait_job(&hung_id, Duration::from_secs(30), |j| j["state"] == "running" && j["pid"].is_u64());
    let child = running["pid"].as_u64().unwrap() as i32;
    // With one slot taken, this one waits in the queue.
    let (status, queued) = served.submit("verify-after", &json!({"kind": "verify"}));
    assert_eq!(status, 202, "{queued}");
    let queued_id = queued["id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(served.get(&format!("/v1/jobs/{queued_id}")).1["state"], "queued");

    served.kill();
    // The job's process dies with the agent.
    let start = Instant::now();
    while std::path::Path::new(&format!("/proc/{child}")).exists() && !is_zombie(child) {
        assert!(start.elapsed() < Duration::from_secs(10), "job process {child} outlived its agent");
        std::thread::sleep(Duration::from_millis(50));
    }

    served.restart();
    let (_, job) = served.get(&format!("/v1/jobs/{hung_id}"));
    assert_eq!(job["state"], "failed", "{job}");
    assert!(job["error"].as_str().unwrap().contains("interrupted"), "{job}");
    assert!(job["finished"].is_string() && job["pid"].is_null(), "{job}");
    // A retry with the same key returns the same (failed) job, runs nothing.
    let (status, same) = served.submit("hang", &json!({"kind": "pg-backup"}));
    assert_eq!((status, same["state"].as_str()), (200, Some("failed")), "{same}");
    // The queued job ran after the restart.
    let done = served.finish(&queued_id, Duration::from_secs(60));
    assert_eq!(done["state"], "succeeded", "{done}");
    assert!(served.metrics().contains(r#"lifeboat_agent_jobs_total{kind="pg-backup",outcome="failed"} 1"#), "{}", served.metrics());

    // A second agent on the same state directory is refused.
    let out = agent(
        &[
            "serve",
            "--repo",
            &a.repo,
            "--cell",
            "rs",
            "--key-file",
            a.k(),
            "--token-file",
            tf.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another agent is running"), "{}", String::from_utf8_lossy(&out.stderr));

    // SIGTERM stops it cleanly.
    assert!(served.terminate().success());
    drop(silent);
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true)
}

#[test]
fn tls_serves_https_and_weak_tokens_or_open_token_files_are_refused() {
    let a = Archive::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let tf = dir.path().join("token");
    let token = write_token(&tf);
    let state = dir.path().join("state");
    let base = [
        "--repo",
        &a.repo,
        "--cell",
        "tls",
        "--key-file",
        a.k(),
        "--token-file",
        tf.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let mut args = base.to_vec();
    args.extend(["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    let mut served = Service::start(&args, &[], &token, &dir.path().join("agent.log"));
    assert!(served.url.starts_with("https://"), "{}", served.url);
    served.trust(&std::fs::read(&cert).unwrap());
    let (status, version) = served.get("/v1/version");
    assert_eq!(status, 200, "{version}");
    assert_eq!(version["cell"], "tls");
    assert_eq!(served.request("GET", "/v1/health", None, None, None).0, 401);
    drop(served);

    // A short token, and a token file others can read, are refused at start.
    std::fs::write(&tf, "short").unwrap();
    let mut args = base.to_vec();
    args.extend(["--listen", "127.0.0.1:0"]);
    let err = String::from_utf8_lossy(&agent(&[&["serve"], args.as_slice()].concat(), &[]).stderr).to_string();
    assert!(err.contains("at least 32"), "{err}");
    write_token(&tf);
    std::fs::set_permissions(&tf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = String::from_utf8_lossy(&agent(&[&["serve"], args.as_slice()].concat(), &[]).stderr).to_string();
    assert!(err.contains("readable by every user"), "{err}");
}

/// The published contract and the agent agree: every endpoint of
/// `lifeboat_api::openapi` is routed (none falls through to "no such
/// endpoint"), and the typed client reads every answer of a real agent.
#[test]
fn every_documented_endpoint_is_served_and_read_by_the_typed_client() {
    let a = Archive::new();
    let dir = tempfile::tempdir().unwrap();
    let served = Service::agent_on(&a, "contract", dir.path(), &[]);
    let token = served.token.clone();
    let http = reqwest::blocking::Client::new();
    for e in lifeboat_api::openapi::endpoints() {
        let path = e.path.replace("{id}", "j-none").replace("{name}", "000001-none.json").replace("{sha256}", &"0".repeat(64));
        let url = format!("{}{path}", served.url);
        let request = match e.method {
            "get" => http.get(&url),
            "post" => http.post(&url).header("Idempotency-Key", "contract-1").json(&json!({"kind": "verify"})),
            "put" => http.put(&url).body("{}"),
            other => panic!("method {other}"),
        };
        let resp = request.bearer_auth(&token).send().unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().unwrap();
        assert!(!body.contains("no such endpoint"), "{} {} is documented but not routed ({status}): {body}", e.method, e.path);
        assert!(
            e.responses.iter().any(|r| r.status == status),
            "{} {} answered {status}, which the contract does not list: {body}",
            e.method,
            e.path
        );
    }

    let client = lifeboat_client::AgentClient::new("contract", &served.url, token.clone());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        assert_eq!(client.health().await.unwrap().cell, "contract");
        let version = client.version().await.unwrap();
        assert_eq!(version.job_kinds, lifeboat_api::JobKind::ALL.to_vec());
        let recovery = client.recovery().await.unwrap();
        assert_eq!(recovery.locations[0].location, lifeboat_api::recovery::PRIMARY, "{recovery:?}");
        let verify = client.jobs(&Default::default()).await.unwrap();
        assert_eq!(verify.len(), 1, "the one job the POST above made: {verify:?}");
        let done = client.wait(&verify[0].id, Duration::from_millis(200)).await.unwrap();
        match &done.result {
            Some(lifeboat_api::JobResult::Verify(v)) => assert!(v.is_ok(), "{v:?}"),
            other => panic!("a verify job reports a verify result: {other:?} ({done:?})"),
        }
        assert!(matches!(client.job("j-none").await.unwrap(), lifeboat_client::JobLookup::Unknown));
        // The PUT above stored a (meaningless) report; it reads back as stored.
        assert_eq!(client.reports().await.unwrap(), ["000001-none.json"]);
        assert_eq!(client.report("000001-none.json").await.unwrap(), b"{}");
        let missing = client.report("000002-none.json").await.unwrap_err();
        assert!(matches!(missing, lifeboat_client::ClientError::Status { status: 404, .. }), "{missing}");
    });
}

/// Mutual TLS (`serve --tls-client-ca`): a client without a certificate,
/// or with one its CA did not sign, fails the handshake before any request
/// is read; the coordinator's client presenting a certificate from the CA
/// (and the token) is served. The token is still needed.
#[test]
fn mutual_tls_admits_only_clients_the_ca_signed() {
    use lifeboat_restore_tests::served::{client_cert, self_signed_named};
    let a = Archive::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = self_signed(d);
    let ca = self_signed_named(d, "clients-ca", "/CN=lifeboat clients CA");
    let admitted = client_cert(d, "coordinator", &ca);
    let rogue_ca = self_signed_named(d, "rogue-ca", "/CN=rogue CA");
    let rogue = client_cert(d, "rogue", &rogue_ca);
    let (cert, key, client_ca) = (server.0.to_str().unwrap(), server.1.to_str().unwrap(), ca.0.to_str().unwrap());
    let served = Service::agent_on(&a, "mtls", d, &["--tls-cert", cert, "--tls-key", key, "--tls-client-ca", client_ca]);

    let client = |identity: Option<&(std::path::PathBuf, std::path::PathBuf)>| {
        let mut options = lifeboat_client::Options::default().trusting(&server.0).unwrap();
        options.retry = lifeboat_client::RetryPolicy::none();
        if let Some((c, k)) = identity {
            options = options.presenting(&std::fs::read(c).unwrap(), &std::fs::read(k).unwrap()).unwrap();
        }
        lifeboat_client::AgentClient::with_options("mtls", &served.url, served.token.clone(), options).unwrap()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let version = runtime.block_on(client(Some(&admitted)).version()).unwrap();
    assert_eq!(version.cell, "mtls");
    for (who, identity) in [("no certificate", None), ("a certificate of another CA", Some(&rogue))] {
        let err = runtime.block_on(client(identity).version()).unwrap_err().to_string();
        // The alert's text, or (TLS 1.3: the server may close before the request is sent) the hint.
        let refused = ["certificate required", "unknown ca", "bad certificate", "requires a client certificate"]
            .iter()
            .any(|alert| err.contains(alert));
        assert!(refused, "{who}: the handshake is refused with a TLS alert: {err}");
    }
    let log = served.log_text();
    assert!(log.contains("TLS handshake failed"), "{log}");

    // The certificate does not replace the token.
    let mut options = lifeboat_client::Options::default().trusting(&server.0).unwrap();
    options = options.presenting(&std::fs::read(&admitted.0).unwrap(), &std::fs::read(&admitted.1).unwrap()).unwrap();
    let wrong = lifeboat_client::AgentClient::with_options("mtls", &served.url, "x".repeat(64), options).unwrap();
    let err = runtime.block_on(wrong.version()).unwrap_err().to_string();
    assert!(err.contains("401"), "{err}");
}
