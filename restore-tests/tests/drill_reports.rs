//! Drills through the coordinator CLI and the agent service, with real
//! services: `lifeboat drill run` asks the cell's `lifeboat-agent serve` for
//! a drill, judges it against the tier's targets, signs the report onto the
//! cell's chain and stores it in the cell's repository (geo-copy carries it
//! to the copy). The chain verifies offline with the public key and names
//! tampering; the HTML page, opened in headless Chromium, shows the
//! verdict, the targets and the steps. An agent stopped in the middle of a
//! drill leaves nothing behind.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};

use lifeboat_restore_tests::payments::PaymentsCell;
use lifeboat_restore_tests::pg::switch_and_wait;
use lifeboat_restore_tests::plans::{payments_cell, two_regions};
use lifeboat_restore_tests::served::{agent_args, write_token, Service};
use lifeboat_restore_tests::{lifeboat_bin, ok};

fn lifeboat(args: &[&str]) -> Output {
    Command::new(lifeboat_bin()).args(args).env("RUST_LOG", "error").output().unwrap()
}

fn plan(dir: &Path, cell: &PaymentsCell, agent: &Service, token: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let text = format!(
        r#"
[plan]
name = "drills"
description = "drills end to end"

{regions}
[[location]]
name = "second"
url = "file:///drills/second"
region = "r-b"
role = "secondary-region"

{cell}"#,
        regions = two_regions("drills"),
        cell = payments_cell(cell, &agent.url, token, r#"["main", "second"]"#, ""),
    );
    std::fs::write(dir.join("plan.toml"), text).unwrap();
}

fn chromium(args: &[&str]) -> String {
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .args(args)
        .output()
        .expect("chromium (infra/services.sh install chromium)");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn drills_through_the_agent_service_leave_signed_chained_reports() {
    let cell = PaymentsCell::new("rep");
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let token_file = s.join("agent-token");
    let token = write_token(&token_file);
    let copy_dir = s.join("second");
    let copy = format!("second=file://{}", copy_dir.display());
    let topics = format!("{}\\..*", cell.name);
    let keys = s.join("keys");
    ok(&lifeboat(&["report", "keygen", "--out-dir", keys.to_str().unwrap()]));
    let key = keys.join("report-signing.key");
    let public = keys.join("report-signing.pub");
    let base = agent_args(&cell.a, &cell.name, s);
    let extra = [
        "--copy-to",
        &copy,
        "--copy-interval",
        "2s",
        "--pg-switch-after",
        "0s",
        "--kafka-brokers",
        &cell.kafka.address,
        "--kafka-topics",
        &topics,
        "--restore-root",
        cell.restore_root.to_str().unwrap(),
        "--plan-key",
        public.to_str().unwrap(),
    ];
    let args: Vec<&str> = base.iter().map(String::as_str).chain(extra).collect();
    // The copy the postgres user can run: the scratch server's restore_command runs the agent.
    let mut service = Service::start_bin(cell.a.bin.clone(), &args, &[], &token, &s.join("agent.log"));
    let plans = s.join("plan");
    plan(&plans, &cell, &service, &token_file);
    let v = lifeboat(&["plan", "validate", plans.to_str().unwrap()]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));

    cell.pay(10);
    cell.backup();
    cell.pay(20);
    // A consumer group that read part of the topic: the drill must translate it.
    cell.kafka.commit("billing", &cell.topic, &[(0, 2), (1, 1)]);
    cell.snapshot();
    cell.pay(5);
    switch_and_wait(&cell.pg);

    // The plan publishes the public key; a signer with another key is refused.
    std::fs::copy(&public, plans.join("report-signing.pub")).unwrap();
    let text = std::fs::read_to_string(plans.join("plan.toml")).unwrap().replacen(
        "description = ",
        "report_public_key = \"report-signing.pub\"\ndescription = ",
        1,
    ) + CONTROLS;
    std::fs::write(plans.join("plan.toml"), text).unwrap();
    ok(&lifeboat(&["plan", "validate", plans.to_str().unwrap()]));
    let other = s.join("other-keys");
    ok(&lifeboat(&["report", "keygen", "--out-dir", other.to_str().unwrap()]));
    let refused = lifeboat(&[
        "drill",
        "run",
        "--cell",
        &cell.name,
        "--plans",
        plans.to_str().unwrap(),
        "--signing-key",
        other.join("report-signing.key").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.contains("is not the key plan drills publishes"), "{err}");
    let reports = s.join("reports");
    let drill = |extra: &[&str]| -> (bool, Value) {
        let mut all = vec![
            "drill",
            "run",
            "--cell",
            &cell.name,
            "--plans",
            plans.to_str().unwrap(),
            "--signing-key",
            key.to_str().unwrap(),
            "--reports",
            reports.to_str().unwrap(),
            "--output",
            "json",
        ];
        all.extend_from_slice(extra);
        let out = lifeboat(&all);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.success(), v)
    };

    // 1: a passing drill from the primary.
    let (passed, d1) = drill(&["--initiator", "test"]);
    let r1 = &d1["report"];
    assert!(passed, "{r1:#}");
    assert_eq!(r1["verdict"], "passed");
    assert_eq!(r1["source_location"], "main");
    assert_eq!(r1["chain"]["sequence"], 1);
    assert_eq!(r1["initiator"], "test");
    assert_eq!(r1["targets"]["rto_seconds"], 900.0);
    assert!(r1["demonstrated"]["rto_seconds"].as_f64().unwrap() > 0.0);
    let groups = r1["checks"].as_array().unwrap().iter().find(|c| c["name"] == "consumer groups translated").unwrap();
    assert_eq!(groups["outcome"], "passed", "{groups}");
    assert_eq!(groups["evidence"]["offsets"].as_array().unwrap().len(), 2, "{groups}");
    cell.assert_no_drill_left();

    // 2: from the geo-copy, once it holds everything.
    let caught_up = (0..120).any(|_| {
        std::thread::sleep(Duration::from_secs(1));
        let (_, r) = service.get("/v1/recovery");
        let at = |loc: &str| r["locations"].as_array().and_then(|l| l.iter().find(|p| p["location"] == loc).cloned()).unwrap_or_default();
        let (primary, second) = (at("primary"), at("second"));
        !primary["postgres"]["last_segment"].is_null()
            && primary["postgres"]["last_segment"] == second["postgres"]["last_segment"]
            && primary["kafka"]["last_snapshot"] == second["kafka"]["last_snapshot"]
    });
    assert!(caught_up, "the geo-copy did not catch up");
    let (passed, d2) = drill(&["--from-location", "secondary"]);
    assert!(passed, "{:#}", d2["report"]);
    assert_eq!(d2["report"]["source_location"], "second");
    assert_eq!(d2["report"]["chain"]["sequence"], 2);
    assert_eq!(d2["report"]["chain"]["previous"].as_str().unwrap().len(), 64);

    refuses_sql_the_plan_key_did_not_sign(&service);

    // 3: a drill that fails (a target before every backup) still leaves a report on the chain.
    let (passed, d3) = drill(&["--target-time", "2001-01-01T00:00:00Z"]);
    assert!(!passed);
    let r3 = &d3["report"];
    assert_eq!(r3["verdict"], "failed");
    assert!(r3["errors"].as_u64().unwrap() >= 1);
    assert_eq!(r3["chain"]["sequence"], 3);

    // The chain, mirrored locally, verifies offline with the public key alone.
    let dir = reports.join(&cell.name);
    let out = ok(&lifeboat(&["report", "verify", dir.to_str().unwrap(), "--plans", plans.to_str().unwrap()]));
    assert!(out.contains("3 report(s)"), "{out}");
    // Stored in the repository, and geo-copied with it.
    let stored = |root: &Path| -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(root.join("reports").join(&cell.name))
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        n.sort();
        n
    };
    assert_eq!(stored(&cell.a.repo_dir).len(), 6, "{:?}", stored(&cell.a.repo_dir));
    let copied = (0..60).find(|_| {
        std::thread::sleep(Duration::from_secs(1));
        stored(&copy_dir.join(&cell.name)).len() == 6 || stored(&copy_dir).len() == 6
    });
    assert!(copied.is_some(), "the geo-copy never held the reports: {:?}", stored(&copy_dir));

    // report list / show read them back from the repository.
    let list: Value = serde_json::from_str(&ok(&lifeboat(&[
        "report",
        "list",
        "--cell",
        &cell.name,
        "--plans",
        plans.to_str().unwrap(),
        "--output",
        "json",
    ])))
    .unwrap();
    let verdicts: Vec<_> = list["reports"].as_array().unwrap().iter().map(|r| r["verdict"].as_str().unwrap().to_string()).collect();
    assert_eq!(verdicts, ["passed", "passed", "failed"]);
    let shown: Value = serde_json::from_str(&ok(&lifeboat(&[
        "report",
        "show",
        "2",
        "--cell",
        &cell.name,
        "--plans",
        plans.to_str().unwrap(),
        "--output",
        "json",
    ])))
    .unwrap();
    assert_eq!(shown["report_id"], d2["report"]["report_id"]);
    exports_a_bundle_that_verifies(&plans, &cell.name, s, d2["report"]["started"].as_str().unwrap());

    // Tampering is named: a verdict flipped (the signature no longer
    // matches), a word that is no verdict at all, then a removed report.
    let tampered = s.join("tampered");
    std::fs::create_dir_all(&tampered).unwrap();
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        std::fs::copy(e.path(), tampered.join(e.file_name())).unwrap();
    }
    let first = d1["json"].as_str().unwrap();
    let name1 = Path::new(first).file_name().unwrap();
    let original = std::fs::read_to_string(first).unwrap();
    for (flipped, named) in [("\"failed\"", "changed"), ("\"passex\"", "unknown variant `passex`")] {
        std::fs::write(tampered.join(name1), original.replacen("\"passed\"", flipped, 1)).unwrap();
        let out = lifeboat(&["report", "verify", tampered.to_str().unwrap(), "--public-key", public.to_str().unwrap()]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&*name1.to_string_lossy()) && err.contains(named), "{flipped}: {err}");
    }
    std::fs::remove_file(tampered.join(name1)).unwrap();
    let out = lifeboat(&["report", "verify", tampered.to_str().unwrap(), "--public-key", public.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("missing"), "{err}");

    // The HTML page in headless Chromium: verdict, targets, steps.
    let html = d1["html"].as_str().unwrap();
    let dom = chromium(&["--dump-dom", &format!("file://{html}")]);
    assert!(dom.contains("id=\"verdict\">passed</span>"), "{dom}");
    assert!(dom.contains("RTO (time to a restored, checked environment)") && dom.contains("900.0 s"), "{dom}");
    for step in [
        "restore the base backup from primary",
        "replay WAL to the target and promote",
        "restore Kafka to the target",
        "every payment has its event",
    ] {
        assert!(dom.contains(step), "the page lacks {step:?}");
    }
    // Auditors' page: controls from the plan, a timeline, evidence as tables, how to verify.
    for control in ["id=\"controls\"", "ISO 27001 A.8.13", "Information backup", "SOC 2 A1.3"] {
        assert!(dom.contains(control), "the page lacks {control:?}");
    }
    assert_eq!(r1["controls"].as_array().unwrap().len(), 3, "the signed report names its controls: {r1}");
    assert!(dom.contains("id=\"timeline\"") && dom.matches("<rect ").count() >= 3, "a timeline of the phases");
    for phase in ["phase-restore", "phase-replay", "phase-Kafka", "phase-checks"] {
        assert!(dom.contains(phase), "the timeline lacks {phase}");
    }
    assert!(dom.contains("<table class=\"evidence\">") && !dom.contains("<pre>{"), "evidence as tables, not raw JSON");
    let key_id = r1["signature"]["key_id"].as_str().unwrap();
    assert!(dom.contains("How to verify this report") && dom.contains(key_id), "the footer names the key {key_id}");
    let pdf = s.join("report.pdf");
    let printed = lifeboat(&["report", "show", d1["json"].as_str().unwrap(), "--pdf", pdf.to_str().unwrap()]);
    assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
    let bytes = std::fs::read(&pdf).unwrap();
    assert!(bytes.starts_with(b"%PDF") && bytes.len() > 10_000, "a PDF of {} bytes", bytes.len());
    let shot = s.join("report.png");
    chromium(&["--window-size=1100,1800", &format!("--screenshot={}", shot.display()), &format!("file://{html}")]);
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    if let Ok(keep) = std::env::var("LIFEBOAT_TEST_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }

    // Through the coordinator: the chain continues (report 4) from the
    // repository, and compliance, metrics and the page show the drill.
    let op_file = s.join("operator-token");
    let operator = write_token(&op_file);
    let state = s.join("coordinator.db");
    let coordinator_reports = s.join("coordinator-reports");
    let cargs = [
        "--plans",
        plans.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--operator-token-file",
        op_file.to_str().unwrap(),
        "--tick",
        "200ms",
        "--poll",
        "500ms",
        "--signing-key",
        key.to_str().unwrap(),
        "--reports",
        coordinator_reports.to_str().unwrap(),
    ];
    let coordinator = Service::coordinator(&cargs, &[], &operator, &s.join("coordinator.log"));
    let out = lifeboat(&[
        "drill",
        "run",
        "--cell",
        &cell.name,
        "--coordinator",
        &coordinator.url,
        "--token-file",
        op_file.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let d4: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d4["report"]["chain"]["sequence"], 4, "{d4:#}");
    assert!(d4["report"]["initiator"].as_str().unwrap().contains("coordinator"), "{d4:#}");
    let (_, status) = coordinator.get("/v1/status");
    let drills = &status["cells"][0]["drills"];
    assert_eq!(drills["last_verdict"], "passed", "{status:#}");
    assert_eq!(drills["success_rate"], 1.0, "{status:#}");
    assert_eq!(drills["verdict"], "ok", "{status:#}");
    assert!(drills["last_report"].as_str().unwrap().starts_with("000004-"), "{drills}");
    assert_eq!(status["drill_success_rate"], 1.0);
    let metrics = coordinator.metrics();
    assert!(metrics.contains(&format!("lifeboat_drill_verdict{{cell=\"{}\"}} 0", cell.name)), "{metrics}");
    assert!(metrics.contains("lifeboat_drill_demonstrated_rto_seconds"), "{metrics}");
    let (_, page) = coordinator.get("/");
    let page = page.as_str().unwrap().to_string();
    let link = format!("/reports/{}/{}", cell.name, drills["last_report"].as_str().unwrap().replace(".json", ".html"));
    assert!(page.contains(&link), "the page does not link {link}: {page}");
    let (code, html) = coordinator.get(&link);
    assert_eq!(code, 200);
    assert!(html.as_str().unwrap().contains("id=\"verdict\">passed</span>"));
    // The coordinator's mirror holds the whole chain, which verifies.
    let out = ok(&lifeboat(&[
        "report",
        "verify",
        coordinator_reports.join(&cell.name).to_str().unwrap(),
        "--public-key",
        public.to_str().unwrap(),
        "--expect-sequence",
        "4",
    ]));
    assert!(out.contains("4 report(s)"), "{out}");
    drop(coordinator);

    // The agent stopped in the middle of a drill: nothing is left behind.
    let spec = json!({ "kind": "drill", "target": { "random-recent": { "within": "1h" } }, "kafka": true, "checks": [] });
    let (code, job) = service.submit("drill-to-interrupt", &spec);
    assert!(code == 202, "{job}");
    for _ in 0..600 {
        if cell.scratch_server_running() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(cell.scratch_server_running(), "the drill never started its scratch server");
    service.terminate();
    cell.assert_no_drill_left();
    // After a restart the interrupted drill is recorded as failed.
    service.restart();
    let j = service.finish(job["id"].as_str().unwrap(), Duration::from_secs(30));
    assert_eq!(j["state"], "failed", "{j}");
}

/// The agent runs a drill's SQL only as the plan key signed it for this
/// cell: a token holder who changes the SQL, drops the signature or points
/// the checks at another database gets 403 and a line in the agent's log.
fn refuses_sql_the_plan_key_did_not_sign(service: &Service) {
    let (_, jobs) = service.get("/v1/jobs?kind=drill");
    let signed = jobs["jobs"][0]["spec"].clone();
    assert!(signed["checks_signature"]["signature"].is_string(), "{signed:#}");
    let mut tampered = signed.clone();
    tampered["checks"][0]["sql"] = json!("copy (select 1) to program 'id'");
    let mut unsigned = signed.clone();
    unsigned.as_object_mut().unwrap().remove("checks_signature");
    let mut elsewhere = signed.clone();
    elsewhere["database"] = json!("template1");
    for (i, (spec, says)) in [(tampered, "does not verify"), (unsigned, "no signature"), (elsewhere, "does not verify")].iter().enumerate()
    {
        let (status, answer) = service.submit(&format!("hostile-{i}"), spec);
        assert_eq!(status, 403, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains(says), "{answer}");
    }
    assert!(service.log_text().contains("refused a drill whose SQL checks the plan key did not sign"));
}

/// What the plan maps reports to: edited by compliance teams, signed into each report.
const CONTROLS: &str = r#"
[[plan.controls]]
id = "ISO 27001 A.8.13"
title = "Information backup"
operations = ["drill", "failover-test"]

[[plan.controls]]
id = "ISO 27001 A.5.30"
title = "ICT readiness for business continuity"

[[plan.controls]]
id = "SOC 2 A1.3"
title = "Recovery plan testing"
operations = ["drill", "failover-test"]
"#;

/// `report export`: reports from `since` on, with the chain before them,
/// their pages, the key and an index, made only when it verifies.
fn exports_a_bundle_that_verifies(plans: &Path, cell: &str, s: &Path, since: &str) {
    let bundle = s.join("audit-bundle");
    let export = |dir: &Path, extra: &[&str]| {
        let mut all =
            vec!["report", "export", dir.to_str().unwrap(), "--cell", cell, "--plans", plans.to_str().unwrap(), "--output", "json"];
        all.extend_from_slice(extra);
        lifeboat(&all)
    };
    let made: Value = serde_json::from_str(&ok(&export(&bundle, &["--since", since]))).unwrap();
    assert_eq!((made["reports"].as_u64(), made["in_period"].as_u64()), (Some(3), Some(2)), "{made}");
    let pages = std::fs::read_dir(&bundle).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "html")).count();
    assert_eq!(pages, 4, "three pages and the index");
    let index = std::fs::read_to_string(bundle.join("index.html")).unwrap();
    assert_eq!(index.matches("class=\"in-period\"").count(), 2, "{index}");
    let public = bundle.join("report-signing.pub");
    let out = ok(&lifeboat(&["report", "verify", bundle.to_str().unwrap(), "--public-key", public.to_str().unwrap()]));
    assert!(out.contains("3 report(s)"), "{out}");
    let again = export(&bundle, &[]);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("exists"));
    let none = export(&s.join("empty-bundle"), &["--until", "2001-01-01T00:00:00Z"]);
    assert!(!none.status.success() && String::from_utf8_lossy(&none.stderr).contains("no report started in the period"));
    assert!(!s.join("empty-bundle").exists() && !s.join("empty-bundle.partial").exists());
}
