//! An agent installed the way an SRE would: one `agent.toml`, Postgres'
//! `archive_command` naming only the file, `lifeboat-agent serve` started
//! from the file alone, and `lifeboat-agent check` proving that a new WAL
//! segment reaches every location — then failing, naming the part, when
//! the Kafka broker is down and when a copy location cannot be written.
//! Real Postgres, a real Kafka broker (a private one, so it can be
//! stopped), `file://` locations.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use lifeboat_restore_tests::agent;
use lifeboat_restore_tests::kafka::PrivateBroker;
use lifeboat_restore_tests::pg::{Archive, Cluster};
use lifeboat_restore_tests::served::{write_token, Service};

const CELL: &str = "cell-cfg";

fn config(archive: &Archive, pg: &Cluster, brokers: &str, copy: &Path, dir: &Path, listen: u16) -> String {
    format!(
        "# the whole of one cell's agent\n\
         cell = \"{CELL}\"\n\
         repository = \"{repo}\"\n\
         key_file = \"{key}\"\n\
         \n\
         [copies]\n\
         dr = \"file://{copy}\"\n\
         \n\
         [postgres]\n\
         conn = \"host=127.0.0.1 port={port} user=postgres dbname=postgres\"\n\
         \n\
         [kafka]\n\
         brokers = \"{brokers}\"\n\
         topics = \"payments\\\\..*\"\n\
         \n\
         [serve]\n\
         listen = \"127.0.0.1:{listen}\"\n\
         token_file = \"{token}\"\n\
         state_dir = \"{state}\"\n\
         copy_interval = \"1s\"\n",
        repo = archive.repo,
        key = archive.k(),
        copy = copy.display(),
        port = pg.port,
        token = dir.join("token").display(),
        state = dir.join("state").display(),
    )
}

fn check(config: &Path, extra: &[&str]) -> (Output, Value) {
    let mut args = vec!["check", "--config", config.to_str().unwrap(), "--output", "json"];
    args.extend_from_slice(extra);
    let out = agent(&args, &[]);
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, report)
}

/// The parts of a check report that failed, as "part location".
fn failed(report: &Value) -> Vec<String> {
    let parts = report["parts"].as_array().unwrap_or_else(|| panic!("no parts: {report}"));
    parts
        .iter()
        .filter(|p| p["ok"] == false)
        .map(|p| format!("{} {}", p["part"].as_str().unwrap(), p["location"].as_str().unwrap_or("")).trim().to_string())
        .collect()
}

#[test]
fn an_agent_from_its_config_file_alone_and_a_check_that_names_what_fails() {
    let archive = Archive::new();
    let dir = archive.root.join("agent");
    std::fs::create_dir_all(&dir).unwrap();
    let file = archive.root.join("agent.toml");
    // Postgres needs nothing but the file (readable by it: no secrets in it).
    let command = format!("archive_command = '{} wal-push %p --config {}'", archive.bin.display(), file.display());
    let pg = Cluster::create(&archive.root.join("pg"), &["archive_mode = on", &command]);
    let mut broker = PrivateBroker::start(&archive.root.join("kafka"));
    broker.client().create_topic("payments.ledger", 2, &[]);
    let copy = archive.root.join("dr");
    let listen = lifeboat_restore_tests::pg::free_port();
    std::fs::write(&file, config(&archive, &pg, &broker.address(), &copy, &dir, listen)).unwrap();
    let token = write_token(&dir.join("token"));

    // The service from the file alone.
    let served = Service::start(&["--config", file.to_str().unwrap()], &[], &token, &dir.join("agent.log"));
    assert_eq!(served.url, format!("http://127.0.0.1:{listen}"));
    let (status, health) = served.get("/v1/health");
    assert_eq!((status, health["cell"].as_str()), (200, Some(CELL)), "{health}");

    // check: every part passes; the segment it forced is in both locations.
    let (out, report) = check(&file, &["--timeout", "60s"]);
    assert!(out.status.success(), "check failed: {report}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(report["config"].as_str(), file.to_str(), "{report}");
    let parts: Vec<String> = report["parts"].as_array().unwrap().iter().map(|p| format!("{} {}", p["part"], p["location"])).collect();
    for want in [
        r#""repository" "primary""#,
        r#""repository" "dr""#,
        r#""kafka" null"#,
        r#""postgres" null"#,
        r#""wal" "primary""#,
        r#""wal" "dr""#,
    ] {
        assert!(parts.contains(&want.to_string()), "{want} missing: {report}");
    }
    let archived = pg.psql("select last_archived_wal from pg_stat_archiver");
    assert!(copy.join(format!("wal/{CELL}/{archived}")).exists(), "{archived} copied to dr: {report}");
    // A text report names each part.
    let text = agent(&["check", "--config", file.to_str().unwrap(), "--timeout", "60s"], &[]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(text.contains("ok    wal dr:") && text.contains("every check passed"), "{text}");

    // A flag wins over the file.
    let (out, report) = check(&file, &["--kafka-brokers", "127.0.0.1:1", "--timeout", "60s"]);
    assert_eq!((out.status.code(), failed(&report)), (Some(1), vec!["kafka".to_string()]), "{report}");
    assert!(report["parts"].to_string().contains("127.0.0.1:1"), "{report}");

    // A copy location that cannot be written (its WAL directory is a file):
    // the segment never reaches it, and check names it.
    let wal_dir = copy.join(format!("wal/{CELL}"));
    std::fs::remove_dir_all(&wal_dir).unwrap();
    std::fs::write(&wal_dir, "not a directory").unwrap();
    let (out, report) = check(&file, &["--timeout", "10s"]);
    assert_eq!((out.status.code(), failed(&report)), (Some(1), vec!["wal dr".to_string()]), "{report}");
    let dr = report["parts"].as_array().unwrap().iter().find(|p| p["location"] == "dr" && p["part"] == "wal").unwrap().clone();
    assert!(dr["detail"].as_str().unwrap().contains("00000001"), "names the segment: {dr}");
    std::fs::remove_file(&wal_dir).unwrap();

    // The broker down: kafka fails, naming the broker; the rest passes
    // (the copy location writable again).
    broker.kill();
    let (out, report) = check(&file, &["--timeout", "60s"]);
    assert_eq!((out.status.code(), failed(&report)), (Some(1), vec!["kafka".to_string()]), "{report}");
    assert!(report["parts"].to_string().contains(&broker.address()), "{report}");

    // A config file with a mistake: file:line, exit 2, nothing runs.
    let bad = archive.root.join("bad.toml");
    std::fs::write(&bad, "cell = \"x\"\n\n[serve]\ncopy_interval = \"every now and then\"\n").unwrap();
    let out = agent(&["check", "--config", bad.to_str().unwrap()], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{}:4: serve.copy_interval", bad.display())), "{stderr}");
    // Archiving, help and version go on without a file that does not check, and say so.
    let out = agent(&["--config", bad.to_str().unwrap(), "--version"], &[]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stderr).contains("going on without the file"), "{out:?}");
    drop(served);
}
