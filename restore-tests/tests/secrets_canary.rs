//! A password never leaves memory. A canary password, given to the agent
//! in a file, to the CLI in `PGPASSWORD`, in a pgpass file and inside
//! connection strings of both forms (right and wrong), goes through
//! backups (through a coordinator and directly), a restore, a drill and
//! failures; afterwards no log, journal, API answer, SQLite row, report,
//! repository object or restored file holds it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use lifeboat_restore_tests::agent;
use lifeboat_restore_tests::payments::PaymentsCell;
use lifeboat_restore_tests::plans::{write_one_cell, OneCell};
use lifeboat_restore_tests::served::{agent_args, write_token, Service};

const CANARY: &str = "Canary-pw-7f3a9c51e2";
const WRONG: &str = "Wrong-canary-0b44d1";

/// Every regular file under `dir` (but `skip`) whose bytes hold `needle`.
fn holding(dir: &Path, needle: &str, skip: &[&Path]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if skip.iter().any(|s| path.starts_with(s)) {
            continue;
        }
        if kind.is_dir() {
            found.extend(holding(&path, needle, skip));
        } else if kind.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(path);
            }
        }
    }
    found
}

fn secret_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn clean(what: &str, text: &str) {
    for needle in [CANARY, WRONG] {
        assert!(!text.contains(needle), "{what} holds the password: {text}");
    }
}

/// `pg backup` by the CLI with `conn` and `env`: its output, checked clean.
fn cli_backup(cell: &PaymentsCell, conn: &str, env: &[(&str, &str)]) -> (bool, String) {
    let args = ["pg", "backup", "--conn", conn, "--repo", &cell.a.repo, "--cell", &cell.name, "--key-file", cell.a.k(), "--output", "json"];
    let out = agent(&args, env);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    clean("pg backup's output", &text);
    (out.status.success(), text)
}

#[test]
fn a_canary_password_is_found_nowhere() {
    let cell = PaymentsCell::new("canary");
    cell.pg.psql(&format!("create role backup login superuser password '{CANARY}'"));
    // The backup role must give its password over TCP (SCRAM); the first matching line wins.
    let hba = cell.pg.data().join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("host all backup 127.0.0.1/32 scram-sha-256\n{rules}")).unwrap();
    cell.pg.psql("select pg_reload_conf()");
    cell.pay(5);

    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let password_file = s.join("pg-password");
    secret_file(&password_file, CANARY);
    let pgpass = s.join("pgpass");
    secret_file(&pgpass, &format!("127.0.0.1:{}:*:backup:{CANARY}\n", cell.pg.port));
    let port = cell.pg.port;
    let conn = format!("host=127.0.0.1 port={port} user=backup dbname=postgres");

    // Directly: the password in a URI, in key=value, in PGPASSWORD, in a pgpass file.
    let uri = |pw: &str| format!("postgresql://backup:{pw}@127.0.0.1:{port}/postgres");
    for wrong in [uri(WRONG), format!("{conn} password='{WRONG}'")] {
        let (passed, text) = cli_backup(&cell, &wrong, &[]);
        assert!(!passed && text.contains("password authentication failed"), "{text}");
        assert!(text.contains("host=127.0.0.1 port=") && text.contains("user=backup"), "the error names the server: {text}");
    }
    let no_password = format!("postgresql://backup@127.0.0.1:{port}/postgres");
    for (conn, env) in [
        (uri(CANARY), vec![]),
        (no_password.clone(), vec![("PGPASSWORD", CANARY)]),
        (no_password.clone(), vec![("PGPASSFILE", pgpass.to_str().unwrap())]),
    ] {
        let (passed, text) = cli_backup(&cell, &conn, &env);
        assert!(passed, "{env:?}: {text}");
    }

    // An agent refuses a password inside --pg-conn, without echoing it.
    let tf = s.join("agent-token");
    let token = write_token(&tf);
    let mut base = agent_args(&cell.a, &cell.name, s);
    base.extend(["--restore-root".into(), cell.restore_root.display().to_string()]);
    let base: Vec<&str> = base.iter().map(String::as_str).collect();
    let refused = agent(&[&["serve", "--listen", "127.0.0.1:0", "--pg-conn", &uri(CANARY)], &base[..]].concat(), &[]);
    let text = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success() && text.contains("--pg-conn holds a password"), "{text}");
    clean("the refusal", &text);

    // Through an agent (password from its file) and a coordinator.
    let with_pg = [&base[..], &["--pg-conn", &conn, "--pg-password-file", password_file.to_str().unwrap()]].concat();
    let mut agent_svc = Service::start_bin(cell.a.bin.clone(), &with_pg, &[], &token, &s.join("agent.log"));
    let plans = s.join("plan");
    let one = OneCell {
        plan: "canary",
        cell: &cell.name,
        agent: &agent_svc.url,
        token: &tf,
        postgres_conninfo: &conn,
        defaults: "",
        cell_lines: "",
    };
    write_one_cell(&plans, &one);
    let c = Service::coordinator_on(&plans, s, &["--tick", "200ms", "--poll", "500ms", "--max-attempts", "1"]);
    let backup = || {
        let (code, run) = c.request("POST", "/v1/runs", Some(&c.bearer()), None, Some(&json!({"cell": cell.name, "kind": "pg-full"})));
        assert_eq!(code, 202, "{run}");
        c.finished_run(run["id"].as_i64().unwrap(), Duration::from_secs(120))
    };
    let run = backup();
    assert_eq!(run["state"], "succeeded", "{run}");

    // A restore and a drill of what was backed up.
    let (code, job) = agent_svc.submit("canary-restore", &json!({"kind": "pg-restore", "to": "r1", "target": "latest"}));
    assert_eq!(code, 202, "{job}");
    let job = agent_svc.finish(job["id"].as_str().unwrap(), Duration::from_secs(120));
    assert_eq!(job["state"], "succeeded", "{job}");
    // A restore through the API never archives into the cell's repository.
    let settings = std::fs::read_to_string(cell.restore_root.join("r1").join("postgresql.auto.conf")).unwrap();
    assert!(settings.trim_end().ends_with("archive_mode = 'off'"), "{settings}");
    let drill = json!({"kind": "drill", "target": {"random-recent": {"within": "1h"}}, "kafka": false, "checks": []});
    let (code, job) = agent_svc.submit("canary-drill", &drill);
    assert_eq!(code, 202, "{job}");
    agent_svc.finish(job["id"].as_str().unwrap(), Duration::from_secs(180));

    // A wrong password in the agent's file: the run fails, saying why.
    secret_file(&password_file, WRONG);
    agent_svc.restart();
    let run = backup();
    assert_eq!(run["state"], "failed", "{run}");
    assert!(run["error"].as_str().unwrap_or_default().contains("password authentication failed"), "{run}");

    // Every answer, then every file.
    for path in ["/v1/jobs", "/v1/recovery", "/metrics"] {
        clean(&format!("agent {path}"), &agent_svc.get(path).1.to_string());
    }
    for path in ["/v1/runs", "/v1/status", "/", "/metrics"] {
        clean(&format!("coordinator {path}"), &c.get(path).1.to_string());
    }
    for job in agent_svc.get("/v1/jobs").1["jobs"].as_array().unwrap() {
        let (_, shown) = agent_svc.get(&format!("/v1/jobs/{}", job["id"].as_str().unwrap()));
        clean("a job", &shown.to_string());
    }
    drop(c);
    drop(agent_svc);
    let given = [password_file.as_path(), pgpass.as_path()];
    assert_eq!(holding(s, WRONG, &[]), vec![password_file.clone()], "the search finds what it looks for");
    for needle in [CANARY, WRONG] {
        let mut found = holding(s, needle, &given);
        found.extend(holding(&cell.a.root, needle, &[&cell.pg.dir]));
        assert_eq!(found, Vec::<PathBuf>::new(), "files holding {needle:?}");
    }
}
