//! Object stores as production runs them: behind a private CA, and Azure
//! through a Microsoft Entra ID (Azure AD) identity instead of a key.
//!
//! Azurite runs over HTTPS with a certificate from a test CA and accepts
//! bearer tokens (its OAuth mode checks audience, issuer and lifetime); a
//! stand-in for Entra ID's token endpoint (`fixtures/entra-token-server.py`,
//! HTTPS with the same CA) grants tokens for a client secret or a workload
//! identity's federated token. moto runs over HTTPS with the same CA, and a
//! drill restores from it trusting the CA through `LIFEBOAT_CA_FILE` alone.
//! curl, with its own token, is the reference for what landed in the
//! container.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use lifeboat_restore_tests::azurite::{wait_listening, PrivateAzurite};
use lifeboat_restore_tests::pg::{free_port, switch_and_wait, Archive, Cluster};
use lifeboat_restore_tests::served::{self_signed_named, server_cert};
use lifeboat_restore_tests::{agent, fails, ok, services, unique, workspace_root, write_key};

const TENANT: &str = "72f988bf-0000-4000-8000-00000000cafe";
const CLIENT: &str = "lifeboat-agent-app";
const SECRET: &str = "s3cret-from-the-app-registration";
const ASSERTION: &str = "federated-token-of-the-pod";

/// A child process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The test CA and a server certificate for 127.0.0.1 it signed: (CA file, cert, key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca = self_signed_named(dir, "ca", "/CN=Lifeboat test CA");
    let (cert, key) = server_cert(dir, "server", &ca);
    (ca.0, cert, key)
}

/// The Entra ID stand-in on a free port: (its authority URL, its request log, the process).
fn token_server(dir: &Path, cert: &Path, key: &Path) -> (String, PathBuf, Running) {
    let port = free_port();
    let log = dir.join("token-requests.jsonl");
    let script = workspace_root().join("restore-tests/fixtures/entra-token-server.py");
    let child = Command::new("python3")
        .arg(script)
        .args([&port.to_string(), cert.to_str().unwrap(), key.to_str().unwrap(), TENANT, CLIENT, SECRET, ASSERTION])
        .arg(&log)
        .stdin(Stdio::null())
        .spawn()
        .expect("starting the token endpoint");
    let running = Running(child);
    wait_listening(port, "the token endpoint");
    (format!("https://127.0.0.1:{port}"), log, running)
}

/// The blob names curl lists in `container` under `prefix`, with a token of its own.
fn listed_by_curl(authority: &str, endpoint: &str, ca: &Path, container: &str, prefix: &str) -> String {
    let form = format!("grant_type=client_credentials&client_id={CLIENT}&client_secret={SECRET}&scope=https://storage.azure.com/.default");
    let token = curl(ca, &["-d", &form, &format!("{authority}/{TENANT}/oauth2/v2.0/token")]);
    let token: serde_json::Value = serde_json::from_str(&token).unwrap();
    let bearer = format!("Authorization: Bearer {}", token["access_token"].as_str().unwrap());
    let url = format!("{endpoint}/{container}?restype=container&comp=list&prefix={prefix}");
    curl(ca, &["-H", &bearer, "-H", "x-ms-version: 2021-08-06", &url])
}

fn curl(ca: &Path, args: &[&str]) -> String {
    let out = Command::new("curl").args(["-sS", "--fail", "--cacert", ca.to_str().unwrap()]).args(args).output().unwrap();
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn azure_through_entra_id_behind_a_private_ca() {
    services();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let (ca, cert, key) = certificates(dir);
    let azurite = PrivateAzurite::start_tls(&cert, &key);
    let (authority, log, _tokens) = token_server(dir, &cert, &key);
    let repo_key = dir.join("key");
    write_key(&repo_key);
    let repo_key = repo_key.to_str().unwrap();
    let prefix = unique("entra");
    let repo = format!("az://lifeboat-test/{prefix}?endpoint={}", azurite.endpoint());
    let ca_str = ca.to_str().unwrap();
    let entra = |extra: &[(&'static str, String)]| {
        let mut env = vec![
            ("AZURE_STORAGE_ACCOUNT", "devstoreaccount1".to_string()),
            ("AZURE_STORAGE_KEY", String::new()), // no shared key: the identity or nothing
            ("AZURE_STORAGE_SAS_TOKEN", String::new()),
            ("AZURE_TENANT_ID", TENANT.to_string()),
            ("AZURE_CLIENT_ID", CLIENT.to_string()),
            ("AZURE_AUTHORITY_HOST", authority.clone()),
            ("LIFEBOAT_CA_FILE", ca_str.to_string()),
        ];
        env.extend(extra.iter().cloned());
        env
    };
    let run = |args: &[&str], env: &[(&'static str, String)]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        agent(args, &env)
    };

    // A client secret (an app registration): init, back up, list, verify.
    let secret = entra(&[("AZURE_CLIENT_SECRET", SECRET.to_string())]);
    ok(&run(&["repo", "init", "--repo", &repo, "--key-file", repo_key], &secret));
    let files = dir.join("etc");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("payments.conf"), "max_connections = 300\n").unwrap();
    ok(&run(&["files", "backup", "--repo", &repo, "--key-file", repo_key, "--cell", "c1", files.to_str().unwrap()], &secret));
    let verified = ok(&run(&["repo", "verify", "--repo", &repo, "--key-file", repo_key], &secret));
    assert!(!verified.is_empty());
    let requests = std::fs::read_to_string(&log).unwrap();
    assert!(requests.contains(SECRET) && requests.contains("https://storage.azure.com/.default"), "{requests}");
    let listed = listed_by_curl(&authority, &azurite.endpoint(), &ca, "lifeboat-test", &prefix);
    assert!(listed.contains(&format!("{prefix}/manifests/c1/")), "the backup is not in the container: {listed}");

    // A workload identity (a pod's federated token file), no secret at all.
    let federated = dir.join("azure-identity-token");
    std::fs::write(&federated, ASSERTION).unwrap();
    let workload = entra(&[("AZURE_FEDERATED_TOKEN_FILE", federated.display().to_string())]);
    let listed = ok(&run(&["repo", "ls", "--repo", &repo, "--key-file", repo_key, "--output", "json"], &workload));
    assert!(listed.contains("c1"), "{listed}");
    assert!(std::fs::read_to_string(&log).unwrap().contains(ASSERTION), "the federated token was not used");

    // A wrong secret is refused, naming Entra ID and what to set.
    let wrong = entra(&[("AZURE_CLIENT_SECRET", "expired".to_string()), ("AZURE_CREDENTIAL_KIND", "clientsecret".to_string())]);
    let err = fails(&run(&["repo", "ls", "--repo", &repo, "--key-file", repo_key], &wrong));
    assert!(err.contains("Entra ID") && err.contains("AZURE_CLIENT_SECRET"), "{err}");

    // Without the private CA the store's certificate is not trusted; with
    // ca_file= on the location (not the environment) it is.
    let keyed = [("LIFEBOAT_CA_FILE", "")];
    let err = fails(&agent(&["repo", "ls", "--repo", &repo, "--key-file", repo_key], &keyed));
    assert!(err.contains("not trusted here") && err.contains("ca_file="), "{err}");
    let pinned = format!("{repo}&ca_file={ca_str}");
    ok(&agent(&["repo", "ls", "--repo", &pinned, "--key-file", repo_key], &keyed));
    let err = fails(&agent(
        &["repo", "ls", "--repo", &format!("{repo}&ca_file={}", cert.with_extension("key").display()), "--key-file", repo_key],
        &keyed,
    ));
    assert!(err.contains("holds no PEM certificate"), "{err}");
}

#[test]
fn s3_behind_a_private_ca() {
    services();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let (ca, cert, key) = certificates(dir);
    let port = free_port();
    let moto = lifeboat_restore_tests::cache_dir().join("venv/bin/moto_server");
    let child = Command::new(moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string(), "-c", cert.to_str().unwrap(), "-k", key.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting moto over HTTPS");
    let _moto = Running(child);
    wait_listening(port, "moto over HTTPS");
    let repo_key = dir.join("key");
    write_key(&repo_key);
    let repo_key = repo_key.to_str().unwrap();
    let repo = format!("s3://{}/cells?endpoint=https://127.0.0.1:{port}", unique("tls-bucket"));

    let err = fails(&agent(&["repo", "init", "--repo", &repo, "--key-file", repo_key], &[]));
    assert!(err.contains("UnknownIssuer") && err.contains("not trusted here"), "{err}");
    let pinned = format!("{repo}&ca_file={}", ca.display());
    ok(&agent(&["repo", "init", "--repo", &pinned, "--key-file", repo_key], &[]));
    let listed = ok(&agent(&["repo", "verify", "--repo", &repo, "--key-file", repo_key], &[("LIFEBOAT_CA_FILE", ca.to_str().unwrap())]));
    assert!(!listed.is_empty());
    drill_trusting_the_ca_by_environment(&repo.replacen("/cells?", "/pg?", 1), &ca);
}

/// A drill from `repo` (a store behind the CA `ca`) that trusts the CA
/// through `LIFEBOAT_CA_FILE` alone: its scratch server's `restore_command`
/// must get the variable too, or it cannot fetch a single WAL file.
fn drill_trusting_the_ca_by_environment(repo: &str, ca: &Path) {
    // The cluster archives through the location's own ca_file=: the drill is what is tested.
    let archive = Archive::on(&format!("{repo}&ca_file={}", ca.display()));
    let pg = Cluster::create(&archive.root.join("pg"), &archive.archive_conf("tls").each_ref().map(String::as_str));
    pg.psql("create table t (x int); insert into t select generate_series(1, 100)");
    let conn = pg.conninfo();
    ok(&agent(&["pg", "backup", "--repo", &archive.repo, "--cell", "tls", "--conn", &conn, "--key-file", archive.k()], &[]));
    pg.psql("insert into t select generate_series(101, 150)");
    switch_and_wait(&pg);
    let root = archive.root.join("drills");
    let spec = r#"{"target":"latest","kafka":false,"checks":[{"kind":"sql","name":"rows","sql":"select count(*) from t","expect":"150"}]}"#;
    let args = ["drill", "run", "--repo", repo, "--cell", "tls", "--key-file", archive.k(), "--restore-root", root.to_str().unwrap()];
    // The agent copy the postgres user can run: the scratch server's restore_command runs it.
    let out = Command::new(&archive.bin)
        .args(args)
        .args(["--spec", spec, "--output", "json"])
        .env("RUST_LOG", "error")
        .env("LIFEBOAT_CA_FILE", ca)
        .output()
        .expect("running the drill");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["checks"][0]["outcome"], "passed", "{report:#}");
}
