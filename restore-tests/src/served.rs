//! `lifeboat-agent serve` and `lifeboat serve` under test: start one on a
//! free port, talk to its HTTP API with a real HTTP client (reqwest), kill
//! and restart it, and read what it logged.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `lifeboat-agent serve` or `lifeboat serve`, killed on drop.
pub struct Service {
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    pub url: String,
    pub token: String,
    /// Everything the agent wrote to stderr (logs), across restarts.
    pub log: PathBuf,
    client: reqwest::blocking::Client,
}

/// Write a fresh random token to `path` (mode 0600) and return it.
pub fn write_token(path: &Path) -> String {
    let token = format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>());
    std::fs::write(path, &token).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    token
}

/// Run openssl in `dir`; panics with its stderr when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let made = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    assert!(made.status.success(), "openssl {}: {}", args.join(" "), String::from_utf8_lossy(&made.stderr));
}

const NEW_EC_KEY: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/// A self-signed server certificate for 127.0.0.1 and localhost (a day
/// long): `(dir/cert.pem, dir/cert.key)`, made by openssl. An end-entity
/// certificate (`CA:FALSE`), as rustls wants a pinned server certificate.
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let mut args = vec!["req", "-x509"];
    args.extend(NEW_EC_KEY);
    args.extend(["-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]);
    args.extend(["-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth"]);
    args.extend(["-keyout", "cert.key", "-out", "cert.pem"]);
    openssl(dir, &args);
    (dir.join("cert.pem"), dir.join("cert.key"))
}

/// A self-signed certificate (`dir/NAME.pem`, key `dir/NAME.key`, PKCS#8)
/// for 127.0.0.1 and localhost with subject `subject`, a day long; it can
/// sign others (a CA).
pub fn self_signed_named(dir: &Path, name: &str, subject: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
    let mut args = vec!["req", "-x509"];
    args.extend(NEW_EC_KEY);
    args.extend(["-days", "1", "-subj", subject, "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", &key, "-out", &cert]);
    openssl(dir, &args);
    (dir.join(cert), dir.join(key))
}

/// A client certificate (`dir/NAME.pem`, key `dir/NAME.key`, PKCS#8, mode
/// 0600) signed by the CA `ca` (`(cert, key)`), for client authentication.
pub fn client_cert(dir: &Path, name: &str, ca: &(PathBuf, PathBuf)) -> (PathBuf, PathBuf) {
    signed_cert(dir, name, ca, "/CN=lifeboat-coordinator", "extendedKeyUsage=clientAuth\n")
}

/// A server certificate for 127.0.0.1 and localhost (`dir/NAME.pem`, key
/// `dir/NAME.key`, PKCS#8) signed by the CA `ca`.
pub fn server_cert(dir: &Path, name: &str, ca: &(PathBuf, PathBuf)) -> (PathBuf, PathBuf) {
    signed_cert(dir, name, ca, "/CN=localhost", "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
}

fn signed_cert(dir: &Path, name: &str, ca: &(PathBuf, PathBuf), subject: &str, extensions: &str) -> (PathBuf, PathBuf) {
    let (cert, key, csr, ext) = (format!("{name}.pem"), format!("{name}.key"), format!("{name}.csr"), format!("{name}.ext"));
    let mut args = vec!["req"];
    args.extend(NEW_EC_KEY);
    args.extend(["-subj", subject, "-keyout", &key, "-out", &csr]);
    openssl(dir, &args);
    std::fs::write(dir.join(&ext), extensions).unwrap();
    let (ca_cert, ca_key) = (ca.0.to_str().unwrap(), ca.1.to_str().unwrap());
    openssl(
        dir,
        &["x509", "-req", "-in", &csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial", "-days", "1", "-extfile", &ext, "-out", &cert],
    );
    std::fs::set_permissions(dir.join(&key), std::fs::Permissions::from_mode(0o600)).unwrap();
    (dir.join(cert), dir.join(key))
}

/// `--repo --cell --key-file` of `archive` and `cell`, `--token-file
/// dir/agent-token`, `--state-dir dir/agent-state`: what every agent under
/// test is started with.
pub fn agent_args(archive: &crate::pg::Archive, cell: &str, dir: &Path) -> Vec<String> {
    let (token, state) = (dir.join("agent-token"), dir.join("agent-state"));
    let args = ["--repo", &archive.repo, "--cell", cell, "--key-file", archive.k()];
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.extend(["--token-file".into(), token.display().to_string(), "--state-dir".into(), state.display().to_string()]);
    args
}

impl Service {
    /// Start `lifeboat-agent serve ARGS` (which must include --token-file
    /// and --state-dir; --listen defaults to a free port).
    pub fn start(args: &[&str], env: &[(&str, &str)], token: &str, log: &Path) -> Service {
        Self::start_bin(crate::agent_bin(), args, env, token, log)
    }

    /// Start `lifeboat serve ARGS` (the coordinator); `token` is the operator token.
    pub fn coordinator(args: &[&str], env: &[(&str, &str)], token: &str, log: &Path) -> Service {
        Self::start_bin(crate::lifeboat_bin(), args, env, token, log)
    }

    pub fn start_bin(bin: PathBuf, args: &[&str], env: &[(&str, &str)], token: &str, log: &Path) -> Service {
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        // A config file (agent.toml) gives its own address.
        if !args.iter().any(|a| a == "--listen" || a == "--config") {
            // A fixed free port, so that a restart keeps the address others were given.
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            args.extend(["--listen".to_string(), format!("127.0.0.1:{port}")]);
        }
        let mut agent = Service {
            bin,
            args,
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            child: None,
            url: String::new(),
            token: token.to_string(),
            log: log.to_path_buf(),
            client: reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
        };
        agent.launch();
        agent
    }

    /// `lifeboat-agent serve` for `cell` on `archive`'s repository, with a
    /// fresh token in `dir/agent-token`, state in `dir/agent-state`, its log
    /// in `dir/agent.log`, and `extra` flags.
    pub fn agent_on(archive: &crate::pg::Archive, cell: &str, dir: &Path, extra: &[&str]) -> Service {
        let token = write_token(&dir.join("agent-token"));
        let mut args = agent_args(archive, cell, dir);
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::start(&args, &[], &token, &dir.join("agent.log"))
    }

    /// `lifeboat serve` on the plan in `plans`, its state in `dir/state.db`
    /// (unless `extra` gives a `--state`),
    /// a fresh operator token in `dir/operator-token`, its log in
    /// `dir/coordinator.log`, and `extra` flags.
    pub fn coordinator_on(plans: &Path, dir: &Path, extra: &[&str]) -> Service {
        Self::coordinator_with_env(plans, dir, extra, &[])
    }

    /// [`Service::coordinator_on`] with `env` set for the coordinator.
    pub fn coordinator_with_env(plans: &Path, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Service {
        let token_file = dir.join("operator-token");
        let token = write_token(&token_file);
        let db = dir.join("state.db");
        let mut args = vec!["--plans", plans.to_str().unwrap()];
        if !extra.contains(&"--state") {
            args.extend(["--state", db.to_str().unwrap()]);
        }
        args.extend(["--operator-token-file", token_file.to_str().unwrap()]);
        args.extend_from_slice(extra);
        Self::coordinator(&args, env, &token, &dir.join("coordinator.log"))
    }

    /// A coordinator run, polled until it has ended.
    pub fn finished_run(&self, id: i64, timeout: Duration) -> Value {
        let start = Instant::now();
        loop {
            let (status, run) = self.get(&format!("/v1/runs/{id}"));
            assert_eq!(status, 200, "{run}");
            if run["state"] == "succeeded" || run["state"] == "failed" {
                return run;
            }
            assert!(start.elapsed() < timeout, "run {id} still {run} after {timeout:?}\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The token the service was started with, as an Authorization value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// Use a client that trusts `ca_pem` (for --tls-cert agents).
    pub fn trust(&mut self, ca_pem: &[u8]) {
        let cert = reqwest::Certificate::from_pem(ca_pem).unwrap();
        self.client = reqwest::blocking::Client::builder().add_root_certificate(cert).timeout(Duration::from_secs(30)).build().unwrap();
    }

    fn launch(&mut self) {
        crate::services();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve").args(&self.args).env("RUST_LOG", "info").stdout(Stdio::piped()).stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting lifeboat-agent serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().rsplit(' ').next().unwrap_or_default().to_string();
        assert!(url.starts_with("http"), "{} serve did not start: {line:?}\n{}", self.bin.display(), self.log_text());
        self.url = url;
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL the agent (no chance to clean up).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM the agent and wait for it to exit; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().unwrap()
    }

    /// Start again with the same arguments (and state directory).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A request with an explicit Authorization value (None: none at all).
    pub fn request(&self, method: &str, path: &str, auth: Option<&str>, key: Option<&str>, body: Option<&Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let mut req = match method {
            "GET" => self.client.get(&url),
            "POST" => self.client.post(&url),
            "PUT" => self.client.put(&url),
            other => panic!("method {other}"),
        };
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b.to_string());
        }
        let resp = req.send().unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.request("GET", path, Some(&format!("Bearer {}", self.token)), None, None)
    }

    pub fn metrics(&self) -> String {
        match self.get("/metrics") {
            (200, Value::String(s)) => s,
            other => panic!("GET /metrics: {other:?}"),
        }
    }

    /// Submit a job; returns (status, job or error).
    pub fn submit(&self, key: &str, job: &Value) -> (u16, Value) {
        self.request("POST", "/v1/jobs", Some(&format!("Bearer {}", self.token)), Some(key), Some(job))
    }

    /// Poll a job until `done(job)` holds.
    pub fn wait_job(&self, id: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let (status, job) = self.get(&format!("/v1/jobs/{id}"));
            assert_eq!(status, 200, "{job}");
            if done(&job) {
                return job;
            }
            assert!(start.elapsed() < timeout, "job {id} still {job} after {timeout:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Poll a job until it succeeded or failed.
    pub fn finish(&self, id: &str, timeout: Duration) -> Value {
        self.wait_job(id, timeout, |j| j["state"] == "succeeded" || j["state"] == "failed")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}
