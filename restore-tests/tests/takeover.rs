//! Scenario 3 of the platform's DR design: Azure is gone, and the
//! coordinator with it. Three cells keep their primary repositories (base
//! backups, WAL archive, Kafka snapshots, drill reports) on an Azurite of
//! the test's own and copy them across clouds to moto (S3); an AWS
//! recovery site's agent hosts each cell's cross-cloud copy as a guest.
//! Before the outage each cell is drilled (a signed report on its chain)
//! and the cloud scenario is tested once (`failover run --test`: a second
//! report, written at the site, and a journal mirrored there).
//!
//! Then Azurite is stopped, every primary agent and Postgres is killed,
//! and a new coordinator starts with `serve --takeover --from-location
//! cross-cloud` on an empty state directory. From moto alone, read through
//! the site, it lists every cell's recoverable points, verifies every
//! report chain it found, imports the mirrored journal, and shows the
//! Azure locations lost; then `azure-outage` runs through its API: every
//! cell restored at the site, holding exactly the payments the copy held
//! (checked against the workload's own log), Kafka record-exact to the
//! same cut (read back with kcat), each report chained on and verified.
//!
//! Then Azure returns: the failover is committed (each new primary
//! archives into the cross-cloud copy in AWS and gets a base backup
//! there), payments are written at the new primaries, and one cell is
//! failed back home on its own (`failover failback ID --cell C`): its
//! payments and ledger at home have the row counts and checksums they had
//! at the new primary, home takes writes, and the other cells stay in AWS.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use lifeboat_restore_tests::azurite::PrivateAzurite;
use lifeboat_restore_tests::incident::{ids, instant, kill_primary, parse, wait_until, StopServer};
use lifeboat_restore_tests::payments::PaymentsCell;
use lifeboat_restore_tests::pg::{free_ports, switch_and_wait, Archive, Cluster};
use lifeboat_restore_tests::plans::{payments_cell, Site, QUIET_SCHEDULES, TIER_T1};
use lifeboat_restore_tests::served::{agent_args, write_token, Service};
use lifeboat_restore_tests::{agent, fresh_url, lifeboat_bin, ok, unique, Backend};

/// The plan: cells in Azure region `azure-weu` with their primary `main`
/// there and a cross-cloud copy in AWS; one AWS recovery site for all three.
fn write_plan(dir: &Path, cells: &[(&PaymentsCell, &Service)], site: &Service, prefix: &str, port: u16) {
    let token_file = |s: &Service| PathBuf::from(&s.log).with_file_name("agent-token");
    std::fs::create_dir_all(dir).unwrap();
    let mut text = format!(
        r#"[plan]
name = "clouds"
description = "scenario 3"
report_public_key = "report-signing.pub"

{QUIET_SCHEDULES}
{TIER_T1}
[[region]]
name = "azure-weu"
cloud = "azure"

[[region]]
name = "aws-euc"
cloud = "aws"

[[location]]
name = "main"
url = "az://clouds/main"
region = "azure-weu"
role = "primary"

[[location]]
name = "cross-cloud"
url = "s3://clouds/cross"
region = "aws-euc"
role = "cross-cloud"

{site}"#,
        site = Site {
            name: "aws-1",
            region: "aws-euc",
            agent: site,
            token: &token_file(site),
            capacity: 3,
            brokers: &cells[0].0.kafka.address,
            prefix,
            port
        }
        .with_scenario("azure-outage", "cloud", r#"["t1"]"#, 3, "4h"),
    );
    for (cell, own) in cells {
        let table = payments_cell(cell, &own.url, &token_file(own), r#"["main", "cross-cloud"]"#, r#"failover = { sites = ["aws-1"] }"#);
        text.push('\n');
        text.push_str(&table.replacen("region = \"r-a\"", "region = \"azure-weu\"", 1));
    }
    std::fs::write(dir.join("plan.toml"), text).unwrap();
    let v = Command::new(lifeboat_bin()).args(["plan", "validate", dir.to_str().unwrap()]).output().unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

/// A cell's own agent, able to drill (its restore root, the plan key,
/// Kafka), reading its cross-cloud copy (copies are the test's to make).
fn own_agent(cell: &PaymentsCell, copy: &str, dir: &Path, public: &Path, extra: &[&str]) -> Service {
    std::fs::create_dir_all(dir).unwrap();
    let token_file = dir.join("agent-token");
    let token = std::fs::read_to_string(&token_file).unwrap_or_else(|_| write_token(&token_file));
    let mut args = agent_args(&cell.a, &cell.name, dir);
    args.extend(extra.iter().map(|s| s.to_string()));
    let (root, copy) = (cell.restore_root.to_str().unwrap(), format!("cross-cloud={copy}"));
    let extra = ["--kafka-brokers", &cell.kafka.address, "--restore-root", root, "--plan-key", public.to_str().unwrap()];
    args.extend(extra.into_iter().chain(["--copy-to", &copy, "--copy-interval", "0s"]).map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The copy the postgres user can run: a scratch server's restore_command runs the agent.
    Service::start_bin(cell.a.bin.clone(), &args, &[], &token, &dir.join("agent.log"))
}

/// The AWS site: hosts every cell's cross-cloud copy as a guest (its own
/// repository in `own`).
fn aws_site(cells: &[PaymentsCell], copies: &[String], own: &Archive, dir: &Path, public: &Path) -> Service {
    std::fs::create_dir_all(dir).unwrap();
    let token = write_token(&dir.join("agent-token"));
    let mut args = agent_args(own, &unique("aws"), dir);
    for (cell, copy) in cells.iter().zip(copies) {
        args.extend([
            "--guest".into(),
            format!("{}@cross-cloud={copy}", cell.name),
            "--guest-key-file".into(),
            format!("{}={}", cell.name, cell.a.k()),
        ]);
    }
    let root = cells[0].restore_root.to_str().unwrap();
    args.extend(
        ["--kafka-brokers", &cells[0].kafka.address, "--restore-root", root, "--plan-key", public.to_str().unwrap()].map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Service::start_bin(cells[0].a.bin.clone(), &args, &[], &token, &dir.join("site.log"))
}

/// Each cell drilled at once, straight through its agent: one signed
/// report on its chain (what the takeover must find; a drill that did
/// not pass still signs its report, and says why here).
fn drill_all(cells: &[PaymentsCell], plans: &Path, key: &Path) {
    let drills: Vec<_> = cells
        .iter()
        .map(|c| {
            let args = ["drill", "run", "--cell", &c.name, "--within", "1h", "--output", "json"];
            let mut cmd = Command::new(lifeboat_bin());
            cmd.args(args).arg("--plans").arg(plans).arg("--signing-key").arg(key).env("RUST_LOG", "warn");
            cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for d in drills {
        let out = d.wait_with_output().unwrap();
        let (passed, drilled) = parse(&out);
        assert_eq!(drilled["report"]["chain"]["sequence"], 1, "a signed report: {drilled}");
        if !passed {
            let items = ["steps", "checks"].iter().flat_map(|k| drilled["report"][k].as_array().cloned().unwrap_or_default());
            let failed: Vec<Value> = items.filter(|i| i["outcome"] != "passed").collect();
            eprintln!("a drill did not pass (its report is on the chain all the same): {failed:?}");
        }
    }
}

/// `lifeboat failover ARGS --plans --state --signing-key --reports --output json`.
fn failover(plans: &Path, state: &Path, key: &Path, reports: &Path, args: &[&str]) -> (bool, Value) {
    let mut cmd = Command::new(lifeboat_bin());
    cmd.arg("failover").args(args).env("RUST_LOG", "warn");
    for (flag, path) in [("--plans", plans), ("--state", state), ("--signing-key", key), ("--reports", reports)] {
        cmd.arg(flag).arg(path);
    }
    parse(&cmd.args(["--output", "json"]).output().unwrap())
}

#[test]
fn a_fresh_coordinator_takes_over_from_the_cross_cloud_copy_when_azure_is_lost() {
    let mut azure = PrivateAzurite::start();
    let cells: Vec<PaymentsCell> = ["z1", "z2", "z3"].iter().map(|p| PaymentsCell::on(p, &azure.url(p))).collect();
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let keys = s.join("keys");
    ok(&Command::new(lifeboat_bin()).args(["report", "keygen", "--out-dir", keys.to_str().unwrap()]).output().unwrap());
    let (key, public) = (keys.join("report-signing.key"), keys.join("report-signing.pub"));
    let copies: Vec<String> = cells.iter().map(|c| fresh_url(Backend::S3, &format!("{}-cross", c.name), s)).collect();

    let mut own: Vec<Service> = cells.iter().zip(&copies).map(|(c, to)| own_agent(c, to, &s.join(&c.name), &public, &[])).collect();
    let site_archive = Archive::new();
    let site = aws_site(&cells, &copies, &site_archive, &s.join("aws-1"), &public);
    let (prefix, port) = (format!("{}.", unique("aws")), free_ports(3));
    let plans = s.join("plans");
    std::fs::create_dir_all(&plans).unwrap();
    std::fs::copy(&public, plans.join("report-signing.pub")).unwrap();
    write_plan(&plans, &cells.iter().zip(&own).collect::<Vec<_>>(), &site, &prefix, port);
    let _stop: Vec<StopServer> =
        (0..3).map(|i| StopServer(cells[0].restore_root.join(format!("takeover-{}", port + i)).join("pgdata"))).collect();

    // Before the outage: the workload, a drill per cell, the geo-copy to moto.
    for cell in &cells {
        cell.pay(10);
        cell.backup();
        cell.pay(10);
        cell.snapshot();
        cell.pay(3);
        switch_and_wait(&cell.pg);
    }
    drill_all(&cells, &plans, &key);
    let store = ["plan", "store", "--plans", plans.to_str().unwrap(), "--signing-key", key.to_str().unwrap(), "--output", "json"];
    let (stored_ok, stored) = parse(&Command::new(lifeboat_bin()).args(store).output().unwrap());
    assert!(stored_ok && stored["failed"] == json!([]), "{stored}");
    let mut copied = Vec::new();
    for (cell, to) in cells.iter().zip(&copies) {
        ok(&agent(&["repo", "copy", &cell.a.repo, to, "--key-file", cell.a.k()], &[]));
        copied.push(ids(&cell.pg));
    }
    // The cloud scenario tested once by the old coordinator: a report and a journal at the site.
    let old = (s.join("old-state.db"), s.join("old-reports"));
    let (tested_ok, tested) = failover(&plans, &old.0, &key, &old.1, &["run", "--scenario", "azure-outage", "--failed", "azure", "--test"]);
    assert!(tested_ok && tested["failover"]["state"] == "done", "{tested}");
    let tested_id = tested["failover"]["id"].as_str().unwrap().to_string();

    // Payments whose WAL reaches Azure but never the copy; then Azure is gone.
    for cell in &cells {
        cell.pay(2);
        switch_and_wait(&cell.pg);
        kill_primary(&cell.pg);
    }
    for a in &mut own {
        a.kill();
    }
    azure.stop();
    assert!(!agent(&["repo", "ls", "--repo", &cells[0].a.repo, "--key-file", cells[0].a.k()], &[]).status.success(), "Azure is gone");

    // A new coordinator on an empty state directory takes over from moto.
    let fresh = s.join("new-coordinator");
    std::fs::create_dir_all(&fresh).unwrap();
    let reports = s.join("reports");
    let args =
        ["--takeover", "--from-location", "cross-cloud", "--signing-key", key.to_str().unwrap(), "--reports", reports.to_str().unwrap()];
    let coordinator = Service::coordinator_on(&plans, &fresh, &[&args[..], &["--standby-interval", "0"]].concat());
    let (code, found) = coordinator.get("/v1/takeover");
    assert_eq!(code, 200, "{found}");
    assert_eq!(found["lost_locations"], json!(["main"]), "{found}");
    assert_eq!(found["imported_failovers"], json!([tested_id]), "the tested failover's journal, read back from the mirror");
    assert_eq!(found["plan_sha256"], stored["sha256"], "{found}");
    for (i, cell) in cells.iter().enumerate() {
        let f = &found["cells"][i];
        assert_eq!(
            (f["cell"].as_str(), f["site"].as_str(), f["agent_lost"].as_bool()),
            (Some(cell.name.as_str()), Some("aws-1"), Some(true)),
            "{f}"
        );
        assert!(f["postgres_point"].is_string() && f["kafka_point"].is_string() && f["copied_through"].is_string(), "{f}");
        assert_eq!((f["reports"].as_u64(), f["newest_sequence"].as_u64()), (Some(2), Some(2)), "the drill's and the test's: {f}");
        assert_eq!(f["chain_verified"], true, "{f}");
        assert_eq!(
            (&f["stored_plan"]["sha256"], &f["stored_plan"]["verified"], &f["stored_plan"]["running"]),
            (&stored["sha256"], &json!(true), &json!(true)),
            "{f}"
        );
    }
    plans_refused_unless_signed(&site, &cells[0].name, stored["sha256"].as_str().unwrap());
    takeover_status(&coordinator, &cells, &found);
    let (_, listed) = coordinator.get("/v1/failovers");
    assert_eq!(listed["failovers"][0]["id"], tested_id.as_str(), "{listed}");

    let done = fail_over(&coordinator);
    for (i, (cell, expected)) in cells.iter().zip(&copied).enumerate() {
        restored_exactly(&done, i, cell, expected, &prefix, s);
        let chain = reports.join(&cell.name);
        let args = ["report", "verify", chain.to_str().unwrap(), "--public-key", public.to_str().unwrap(), "--expect-sequence", "3"];
        ok(&Command::new(lifeboat_bin()).args(args).output().unwrap());
    }

    // Azure returns. Commit: the new primaries archive into the copy in AWS.
    azure.restart();
    let id = done["failover"]["id"].as_str().unwrap();
    let (state, key) = (fresh.join("state.db"), key.as_path());
    let (committed_ok, committed) = failover(&plans, &state, key, &reports, &["commit", id]);
    assert!(committed_ok && committed["failover"]["state"] == "committed", "{committed}");
    // The first cell's team brings it home; its own agent is back with its server's data directory.
    let home = &cells[0];
    let new_primary = Cluster { dir: s.join("unused-home"), port: done["cells"][0]["postgres_port"].as_u64().unwrap() as u16 };
    home.pay_at(&new_primary, 4);
    let before = fingerprint(&new_primary);
    let data = home.pg.data();
    let listen = own[0].url.trim_start_matches("http://").trim_end_matches('/').to_string();
    let back_args = ["--listen", &listen, "--pg-conn", &home.conninfo(), "--pg-data", data.to_str().unwrap()];
    let _home_agent = own_agent(home, &copies[0], &s.join(&home.name), &public, &back_args);
    let (back_ok, back) = failover(&plans, &state, key, &reports, &["failback", id, "--cell", &home.name]);
    assert!(back_ok, "{back}");
    assert_eq!(back["failover"]["state"], "failing-back", "the other cells are still in AWS: {back}");
    let touched: Vec<&str> = back["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|st| st["step"].as_str().unwrap().starts_with("failback:"))
        .map(|st| st["cell"].as_str().unwrap())
        .collect();
    assert!(touched.len() == 7 && touched.iter().all(|c| *c == home.name), "only {}'s failback steps: {touched:?}", home.name);
    assert_eq!(home.pg.psql("select pg_is_in_recovery()"), "f", "home is the primary");
    assert_eq!(fingerprint(&home.pg), before, "{}: the same rows at home as at the new primary", home.name);
    eprintln!("failback of {} after the outage: {before}", home.name);
    home.pg.psql("insert into payments (amount) values (1.00)");
    let others = done["cells"].as_array().unwrap()[1..].iter().map(|c| c["postgres_port"].as_u64().unwrap() as u16);
    for (i, port) in others.enumerate() {
        let still = Cluster { dir: s.join(format!("unused-still-{i}")), port };
        assert_eq!(still.psql("select pg_is_in_recovery()"), "f", "the cells not failed back serve in AWS");
    }
}

/// Row counts and checksums of the payments and the ledger.
fn fingerprint(pg: &Cluster) -> String {
    pg.psql(
        "select (select count(*) || ' payments ' || md5(coalesce(string_agg(id || ':' || amount || ':' || at, ',' order by id), '')) from payments)
             || ', ' || (select count(*) || ' ledger rows ' || md5(coalesce(string_agg(payment_id || ':' || amount, ',' order by payment_id, amount), '')) from ledger)",
    )
}

/// The site stores no plan that is not the plan key's: not one whose files
/// lack its digest, nor one signed otherwise.
fn plans_refused_unless_signed(site: &Service, cell: &str, sha256: &str) {
    let (code, mut plan) = site.get(&format!("/v1/plans/{sha256}?cell={cell}&location=cross-cloud"));
    assert_eq!(code, 200, "{plan}");
    let bearer = site.bearer();
    let put = |body: &Value, sha: &str| {
        site.request("PUT", &format!("/v1/plans/{sha}?cell={cell}&location=cross-cloud"), Some(&bearer), None, Some(body))
    };
    let mut edited = plan.clone();
    edited["files"]["plan.toml"] = json!("# edited");
    let (code, answer) = put(&edited, sha256);
    assert_eq!(code, 400, "{answer}");
    let other = "0".repeat(64);
    plan["sha256"] = json!(other);
    assert_eq!(put(&plan, &other).0, 400, "named by another digest");
    plan["sha256"] = json!(sha256);
    let mut later = plan.clone();
    later["signed_at"] = json!("2099-01-01T00:00:00Z");
    assert_eq!(put(&later, sha256).0, 403, "an old plan cannot pass for a later one");
    plan["signature"]["signature"] = json!("00".repeat(64));
    let (code, answer) = put(&plan, sha256);
    assert!(code == 403 && answer["error"].as_str().unwrap().contains("not signed"), "{code} {answer}");
}

/// The status the new coordinator serves: every cell's points in the
/// cross-cloud copy (as the takeover found them), the Azure location lost.
fn takeover_status(coordinator: &Service, cells: &[PaymentsCell], found: &Value) {
    let (_, status) = coordinator.get("/v1/status");
    for (i, cell) in cells.iter().enumerate() {
        let c = status["cells"].as_array().unwrap().iter().find(|c| c["cell"] == cell.name.as_str()).unwrap();
        let at = |name: &str| c["locations"].as_array().unwrap().iter().find(|l| l["location"] == name).unwrap().clone();
        let (main, cross) = (at("main"), at("cross-cloud"));
        assert_eq!(main["lost"], true, "{c}");
        assert!(cross["lost"].is_null(), "{c}");
        assert_eq!(instant(&cross["postgres"]["recoverable_to"]), instant(&found["cells"][i]["postgres_point"]), "{c}");
        assert_eq!(instant(&cross["kafka"]["recoverable_to"]), instant(&found["cells"][i]["kafka_point"]), "{c}");
    }
}

/// `azure-outage` through the new coordinator's API, followed to its end.
fn fail_over(coordinator: &Service) -> Value {
    let operator = format!("Bearer {}", coordinator.token);
    let start = json!({ "scenario": "azure-outage", "failed": "azure", "by": "dana" });
    let (code, started) = coordinator.request("POST", "/v1/failovers", Some(&operator), None, Some(&start));
    assert_eq!(code, 202, "{started}");
    let id = started["failover"]["id"].as_str().unwrap().to_string();
    wait_until("the takeover's failover to end", Duration::from_secs(300), || {
        !matches!(coordinator.get(&format!("/v1/failovers/{id}")).1["failover"]["state"].as_str(), Some("running"))
    });
    let (_, done) = coordinator.get(&format!("/v1/failovers/{id}"));
    assert_eq!(done["failover"]["state"], "done", "{done}\n{}", coordinator.log_text());
    done
}

/// Cell `i` holds exactly what the copy held: its payments (the
/// workload's log up to the copy) and its topic up to the same cut.
fn restored_exactly(done: &Value, i: usize, cell: &PaymentsCell, expected: &std::collections::BTreeSet<i64>, prefix: &str, s: &Path) {
    let assessed = &done["failover"]["assessment"]["cells"][i];
    assert_eq!((assessed["cell"].as_str(), assessed["location"].as_str()), (Some(cell.name.as_str()), Some("cross-cloud")), "{assessed}");
    let measure = &done["cells"][i];
    let rto = measure["rto_seconds"].as_f64().unwrap();
    eprintln!("scenario 3: {} RTO {rto:.1} s against {} s", cell.name, assessed["rto_target_seconds"]);
    assert!(rto < assessed["rto_target_seconds"].as_f64().unwrap());
    let new_primary = Cluster { dir: s.join(format!("unused-{i}")), port: measure["postgres_port"].as_u64().unwrap() as u16 };
    assert_eq!(&ids(&new_primary), expected, "{}: exactly what the copy held", cell.name);
    let restore = done["steps"].as_array().unwrap().iter().find(|st| st["cell"] == cell.name.as_str() && st["step"] == "restore").unwrap();
    let until = instant(&restore["detail"]["recovery_point"]["kafka"]["until"]);
    let until_ms = (until.unix_timestamp_nanos() / 1_000_000) as i64;
    // The snapshot's 20 events up to the cut, read from the original with kcat.
    let original = cell.kafka.kcat_read(&cell.topic).into_values().flatten();
    let expected =
        original.filter(|r| r.record.key.as_deref().is_some_and(|k| k.parse::<usize>().unwrap() <= 20) && r.record.timestamp <= until_ms);
    let restored = cell.kafka.kcat_read(&format!("{prefix}{}.{}", cell.name, cell.topic)).into_values().flatten().count();
    assert_eq!(restored, expected.count(), "{}: the snapshot's events up to the cut", cell.name);
}
