//! Restore drills (`lifeboat-agent drill run`) against a real PostgreSQL 15
//! cluster and the real Kafka broker: a cell with a payments workload
//! (each payment committed in Postgres, then published to Kafka, keyed by
//! its id) is backed up and snapshotted, then drilled. Drills that pass,
//! and drills that must fail and say why: a smoke check that does not
//! hold, a Kafka chain with a gap, a missing WAL segment, a corrupt chunk
//! (falling back to a geo-copy only when told to). Interrupted drills
//! (SIGTERM, and SIGKILL followed by `drill sweep`) leave no scratch
//! cluster, process, directory or topic behind.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};

use lifeboat_restore_tests::payments::PaymentsCell;
use lifeboat_restore_tests::pg::switch_and_wait;
use lifeboat_restore_tests::{agent, ok};

struct Cell {
    c: PaymentsCell,
}

impl std::ops::Deref for Cell {
    type Target = PaymentsCell;
    fn deref(&self) -> &PaymentsCell {
        &self.c
    }
}

impl Cell {
    fn spec(&self, checks: Value) -> Value {
        json!({ "target": { "random-recent": { "within": "1h" } }, "kafka": true, "checks": checks })
    }

    fn drill_command(&self, spec: &Value, extra: &[&str]) -> Command {
        // The agent copy the postgres user can run: the scratch server's restore_command runs it.
        let mut cmd = Command::new(&self.a.bin);
        cmd.args(["drill", "run", "--repo", &self.a.repo, "--cell", &self.name, "--key-file", self.a.k(), "--output", "json"])
            .args(["--restore-root", self.restore_root.to_str().unwrap(), "--brokers", &self.kafka.address])
            .args(["--spec", &spec.to_string()])
            .args(extra)
            .env("RUST_LOG", "warn");
        cmd
    }

    /// Run a drill to its end: (exit code, outcome).
    fn drill(&self, spec: &Value, extra: &[&str]) -> (i32, Value) {
        let out: Output = self.drill_command(spec, extra).output().unwrap();
        let outcome: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("no outcome ({e}), exit {}:\n{}", out.status, String::from_utf8_lossy(&out.stderr)));
        self.assert_no_drill_left();
        (out.status.code().unwrap_or(-1), outcome)
    }
}

fn step<'a>(outcome: &'a Value, name: &str) -> &'a Value {
    outcome["steps"]
        .as_array()
        .unwrap()
        .iter()
        .chain(outcome["checks"].as_array().unwrap())
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name:?} in {outcome:#}"))
}

fn outcomes(outcome: &Value) -> Vec<(String, String)> {
    outcome["steps"]
        .as_array()
        .unwrap()
        .iter()
        .chain(outcome["checks"].as_array().unwrap())
        .map(|s| (s["name"].as_str().unwrap().to_string(), s["outcome"].as_str().unwrap().to_string()))
        .collect()
}

fn checks() -> Value {
    json!([
        { "kind": "sql", "name": "ledger balances", "sql": "select sum(amount) = 0 from ledger", "expect": "t" },
        { "kind": "records-match-snapshot", "name": "records match the snapshot" },
        { "kind": "payments-have-events", "name": "every payment has its event", "sql": "select id::text, at from payments", "topic": "PLACEHOLDER", "grace": "5s" },
    ])
}

/// Even SQL the plan configured cannot reach the host, write, or smuggle
/// a second statement: the checks run as a read-only role without
/// superuser or the server-program and server-file roles. The scratch
/// server keeps its own pg_hba.conf: the restored one (which refuses every
/// local connection here) does not stall the drill.
fn confined_checks(cell: &Cell) {
    let canary = cell.restore_root.with_file_name("copy-to-program-ran");
    let hostile = json!([
        { "kind": "sql", "name": "copy to program", "sql": format!("copy (select 1) to program 'touch {}'", canary.display()), "expect": "1" },
        { "kind": "sql", "name": "read a server file", "sql": "select pg_read_file('/etc/hostname')", "expect": "x" },
        { "kind": "sql", "name": "write", "sql": "create table pwned (x int)", "expect": "x" },
        { "kind": "sql", "name": "two statements", "sql": "select 1; select 2", "expect": "1" },
        { "kind": "sql", "name": "still reads every table", "sql": "select count(*) > 0 from payments", "expect": "t" },
    ]);
    let spec = json!({ "target": { "random-recent": { "within": "1h" } }, "checks": hostile });
    let (code, o) = cell.drill(&spec, &[]);
    assert_eq!(code, 3, "{o:#}");
    for (name, says) in [
        ("copy to program", "pg_execute_server_program"),
        ("read a server file", "permission denied"),
        ("write", "read-only transaction"),
        ("two statements", "multiple commands"),
    ] {
        let s = step(&o, name);
        assert_eq!(s["outcome"], "failed", "{s}");
        assert!(s["message"].as_str().unwrap().contains(says), "{name}: {s}");
    }
    assert!(!canary.exists(), "COPY TO PROGRAM ran");
    assert_eq!(step(&o, "still reads every table")["outcome"], "passed", "{o:#}");
    assert_eq!(step(&o, "create the checks' read-only role")["outcome"], "passed");
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..600 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn drills_restore_check_report_and_clean_up() {
    let cell = Cell { c: PaymentsCell::new("drill") };
    // Production's pg_hba.conf refuses every local connection (this test
    // reaches it over TCP). Restored as is, it would govern the scratch
    // server, which listens on a socket only: the drill must bring its own.
    let hba = cell.pg.data().join("pg_hba.conf");
    let text = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("local all all reject\n{text}")).unwrap();
    cell.pg.psql("select pg_reload_conf()");
    cell.pay(20);
    cell.backup();
    cell.pay(40);
    cell.snapshot();
    cell.pay(10); // after the snapshot: a random recent target never reaches these
    switch_and_wait(&cell.pg);
    let mut checks = checks();
    checks[2]["topic"] = json!(cell.topic);

    // A drill that passes: Postgres and Kafka at one instant, every check holds.
    let (code, o) = cell.drill(&cell.spec(checks.clone()), &[]);
    assert_eq!(code, 0, "{o:#}");
    assert!(outcomes(&o).iter().all(|(_, r)| r == "passed"), "{:?}", outcomes(&o));
    let events = &step(&o, "every payment has its event")["evidence"];
    assert!(events["payments"].as_u64().unwrap() >= 20, "{events}");
    assert_eq!(events["missing_events"], 0);
    assert_eq!(events["events_without_payment"], 0);
    assert_eq!(o["pg_rpo_seconds"], 0.0);
    assert!(o["cleaned_up"].as_bool().unwrap());
    assert!(o["rto_seconds"].as_f64().unwrap() > o["replay_seconds"].as_f64().unwrap());
    // Restored records equal the snapshot's, and the target instant is the same for both systems.
    assert!(step(&o, "records match the snapshot")["evidence"]["records"].as_u64().unwrap() > 0);
    assert_eq!(o["recovery_point"]["kafka"]["until"], o["target"]);

    // A cell without Postgres drills Kafka alone.
    let kafka_only = json!({ "target": { "random-recent": { "within": "1h" } }, "postgres": false, "kafka": true, "checks": [checks[1]] });
    let (code, o) = cell.drill(&kafka_only, &[]);
    assert_eq!(code, 0, "{o:#}");
    assert!(o["pg_rpo_seconds"].is_null() && o["recovery_point"]["postgres"].is_null(), "{o:#}");
    assert!(!outcomes(&o).iter().any(|(n, _)| n.contains("WAL")), "{:?}", outcomes(&o));

    // A smoke check that does not hold fails the drill and says what it saw.
    let mut wrong = checks.clone();
    wrong
        .as_array_mut()
        .unwrap()
        .push(json!({ "kind": "sql", "name": "no payments", "sql": "select count(*) from payments", "expect": "0" }));
    let (code, o) = cell.drill(&cell.spec(wrong), &[]);
    assert_eq!(code, 3, "{o:#}");
    let failed = step(&o, "no payments");
    assert_eq!(failed["outcome"], "failed");
    assert!(failed["message"].as_str().unwrap().contains("expected 0"), "{failed}");
    assert_eq!(step(&o, "ledger balances")["outcome"], "passed");

    confined_checks(&cell);

    // SIGTERM while the scratch server runs: the drill removes everything and says so.
    let child = cell
        .drill_command(&cell.spec(checks.clone()), &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the scratch server", || cell.scratch_server_running());
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scratch environment was removed"), "{err}");
    cell.assert_no_drill_left();

    // SIGKILL leaves the scratch behind for `drill sweep` (the agent runs it at start, at exit and after each drill).
    let mut child = cell
        .drill_command(&cell.spec(checks.clone()), &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the scratch server", || cell.scratch_server_running());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(cell.scratch_server_running(), "a killed drill cannot stop its server; the sweep must");
    let swept: Value = serde_json::from_str(&ok(&agent(
        &["drill", "sweep", "--restore-root", cell.restore_root.to_str().unwrap(), "--output", "json"],
        &[],
    )))
    .unwrap();
    assert_eq!(swept.as_array().unwrap().len(), 1, "{swept}");
    cell.assert_no_drill_left();

    // A geo-copy, made while everything is intact.
    let copy_dir = cell.a.root.join("copy");
    let copy = format!("file://{}", copy_dir.display());
    ok(&agent(&["repo", "copy", &cell.a.repo, &copy, "--key-file", cell.a.k()], &[]));
    lifeboat_restore_tests::pg::give_to_postgres(&copy_dir);

    // Records lost to retention between two snapshots: the drill reports the gap.
    cell.pay(10);
    let end = cell.kafka.end_offset(&cell.topic, 0);
    cell.pay(10);
    cell.kafka.delete_before(&cell.topic, 0, end + 1);
    cell.snapshot();
    let (code, o) = cell.drill(&cell.spec(checks.clone()), &[]);
    assert_eq!(code, 3, "{o:#}");
    let gap = step(&o, "Kafka snapshots are gap-free");
    assert_eq!(gap["outcome"], "failed", "{gap}");
    assert!(gap["message"].as_str().unwrap().contains("lost to retention"), "{gap}");

    // A missing WAL segment after the backup: replay stops short of the
    // target, the drill recovers what there is and the RPO shows the loss.
    let seg = switch_and_wait(&cell.pg);
    let wal_dir = cell.a.repo_dir.join("wal").join(&cell.name);
    let target = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
    cell.pay(5);
    switch_and_wait(&cell.pg);
    let earlier = segment_before_newest(&wal_dir);
    std::fs::remove_file(wal_dir.join(&earlier)).unwrap();
    let spec = json!({ "target": { "time": target }, "checks": [checks[0]] });
    let (code, o) = cell.drill(&spec, &[]);
    assert_eq!(code, 3, "{o:#}");
    let replay = &o["steps"].as_array().unwrap().iter().rfind(|s| s["name"] == "replay WAL to the target and promote").unwrap().clone();
    assert_eq!(replay["outcome"], "failed", "{o:#}");
    assert!(replay["message"].as_str().unwrap().contains("ends before the target"), "{replay}");
    assert!(o["pg_rpo_seconds"].as_f64().unwrap() > 0.0, "{o:#} (removed {earlier}, newest {seg})");

    // Corrupt chunks (every one of the primary's): without a fallback the drill fails; with one it
    // restores from the geo-copy, and says so (and still fails: the primary is broken).
    for chunk in lifeboat_restore_tests::files_under(&cell.a.repo_dir.join("chunks")) {
        let mut bytes = std::fs::read(&chunk).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&chunk, bytes).unwrap();
    }
    let spec = json!({ "target": { "random-recent": { "within": "1h" } }, "checks": [checks[0]] });
    let (code, o) = cell.drill(&spec, &[]);
    assert_eq!(code, 3, "{o:#}");
    assert_eq!(step(&o, "restore the base backup from primary")["outcome"], "failed");
    assert!(o["fell_back_to"].is_null());
    let (code, o) = cell.drill(&spec, &["--fallback", &format!("copy={copy}")]);
    assert_eq!(code, 3, "{o:#}");
    assert_eq!(o["fell_back_to"], "copy");
    assert_eq!(step(&o, "fall back to location copy")["outcome"], "warning");
    assert_eq!(step(&o, "restore the base backup from copy")["outcome"], "passed");
    assert_eq!(step(&o, "ledger balances")["outcome"], "passed");
}

/// The segment before the newest one (the newest backup stopped long before).
fn segment_before_newest(wal_dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(wal_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24)
        .collect();
    names.sort();
    names[names.len() - 2].clone()
}
