//! Private PostgreSQL 15 clusters for tests, through `infra/pg-cluster.sh`
//! (run as the `postgres` user), queried with `psql`, the independent client.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::workspace_root;

fn script(args: &[&str]) -> String {
    let out =
        Command::new("bash").arg(workspace_root().join("infra/pg-cluster.sh")).args(args).output().expect("running infra/pg-cluster.sh");
    assert!(out.status.success(), "infra/pg-cluster.sh {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn free_port() -> u16 {
    script(&["free-port"]).parse().expect("a port number")
}

/// The first of `n` consecutive ports that are free now, for a recovery
/// site whose guests listen on its port and the ones after it. They are
/// taken below the kernel's ephemeral range (32768 and up), so no
/// outgoing connection picks one of them in the meantime, and each call
/// in this process gets a block of its own.
pub fn free_ports(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let free = |p: u16| std::net::TcpListener::bind(("0.0.0.0", p)).is_ok();
    for _ in 0..1000 {
        let offset = (std::process::id() % 100) * 100 + NEXT.fetch_add(u32::from(n), Ordering::Relaxed);
        let base = 20000 + (offset % 12000) as u16;
        if (base..base + n).all(free) {
            return base;
        }
    }
    panic!("no {n} consecutive free ports between 20000 and 32000")
}

pub fn bindir() -> PathBuf {
    let out = Command::new("pg_config").arg("--bindir").output().expect("pg_config");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A cluster folder (`DIR/data` is PGDATA) and its port. Stopped on drop.
#[derive(Debug)]
pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
}

impl Cluster {
    /// initdb a new cluster with extra postgresql.conf lines, and start it.
    pub fn create(dir: &Path, conf: &[&str]) -> Cluster {
        let port = free_port();
        let mut args = vec!["create", dir.to_str().unwrap()];
        let port_s = port.to_string();
        args.push(&port_s);
        args.extend_from_slice(conf);
        script(&args);
        let c = Cluster { dir: dir.to_path_buf(), port };
        c.start();
        c
    }

    /// A cluster around an existing `DIR/data` (e.g. a restore), not started.
    pub fn existing(dir: &Path) -> Cluster {
        Cluster { dir: dir.to_path_buf(), port: free_port() }
    }

    /// The libpq connection string of this cluster's `postgres` database, as superuser over TCP.
    pub fn conninfo(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port)
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn start(&self) {
        script(&["start", self.dir.to_str().unwrap(), &self.port.to_string()]);
    }

    pub fn stop(&self) {
        script(&["stop", self.dir.to_str().unwrap()]);
    }

    /// Run SQL with psql; returns unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(bindir().join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .output()
            .expect("running psql");
        assert!(out.status.success(), "psql {sql:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Poll `sql` until it returns `want` (or panic after `timeout`).
    pub fn wait_for(&self, sql: &str, want: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            let got = self.psql(sql);
            if got == want {
                return;
            }
            assert!(start.elapsed() < timeout, "{sql:?} still returns {got:?}, not {want:?}, after {timeout:?}; log:\n{}", self.log_tail());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `pgbench -i -s SCALE` against this cluster, then a checkpoint.
    pub fn pgbench_init(&self, scale: u32) {
        let status = Command::new(bindir().join("pgbench"))
            .args(["-i", "-q", "-s", &scale.to_string(), "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "postgres"])
            .stderr(std::process::Stdio::null())
            .status()
            .expect("running pgbench");
        assert!(status.success(), "pgbench -i -s {scale} failed");
        self.psql("checkpoint");
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
        log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(workspace_root().join("infra/pg-cluster.sh")).args(["stop", self.dir.to_str().unwrap()]).output();
    }
}

/// Copy the agent binary where the `postgres` user can run it (archive and
/// restore commands run as that user, and /root is closed to it).
pub fn agent_for_postgres(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("lifeboat-agent");
    std::fs::copy(crate::agent_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// Hand a path (recursively) to the `postgres` user.
pub fn give_to_postgres(path: &Path) {
    let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(path).status().unwrap().success();
    assert!(ok, "chown postgres {}", path.display());
}

/// Make a scratch directory reachable by the `postgres` user.
pub fn open_for_postgres(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A repository on `file://` that a cluster's archive and restore commands
/// (run as `postgres`) can use: the agent binary, a key file and the
/// repository directory, all reachable by that user.
pub struct Archive {
    _scratch: tempfile::TempDir,
    pub root: PathBuf,
    pub bin: PathBuf,
    pub key: PathBuf,
    pub repo_dir: PathBuf,
    pub repo: String,
}

impl Archive {
    pub fn new() -> Archive {
        Self::make(None)
    }

    /// An archive whose repository is at `url` (e.g. an `az://` location).
    pub fn on(url: &str) -> Archive {
        Self::make(Some(url))
    }

    fn make(url: Option<&str>) -> Archive {
        crate::services();
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().to_path_buf();
        open_for_postgres(&root);
        let bin = agent_for_postgres(&root.join("bin"));
        let key = root.join("key");
        crate::write_key(&key);
        // 0600 and the postgres user's: its archive and restore commands read it (and root, the agent).
        give_to_postgres(&key);
        let repo_dir = root.join("repo");
        let repo = url.map_or_else(|| format!("file://{}", repo_dir.display()), str::to_string);
        crate::ok(&crate::agent(&["repo", "init", "--repo", &repo, "--key-file", key.to_str().unwrap()], &[]));
        if url.is_none() {
            give_to_postgres(&repo_dir);
        }
        Archive { _scratch: scratch, root, bin, key, repo_dir, repo }
    }

    /// postgresql.conf lines that archive into this repository as `cell`.
    pub fn archive_conf(&self, cell: &str) -> [String; 2] {
        [
            "archive_mode = on".to_string(),
            format!(
                "archive_command = '{} wal-push %p --repo \"{}\" --cell {cell} --key-file {}'",
                self.bin.display(),
                self.repo,
                self.key.display()
            ),
        ]
    }

    pub fn restore_command(&self, cell: &str) -> String {
        format!(
            "restore_command = '{} wal-fetch %f %p --repo \"{}\" --cell {cell} --key-file {}'",
            self.bin.display(),
            self.repo,
            self.key.display()
        )
    }

    pub fn k(&self) -> &str {
        self.key.to_str().unwrap()
    }
}

impl Default for Archive {
    fn default() -> Self {
        Self::new()
    }
}

/// Switch to a new WAL segment and wait until the finished one is archived.
pub fn switch_and_wait(pg: &Cluster) -> String {
    let seg = pg.psql("select pg_walfile_name(pg_switch_wal())");
    pg.wait_for(&format!("select last_archived_wal >= '{seg}' from pg_stat_archiver"), "t", Duration::from_secs(60));
    seg
}
