//! What `lifeboat-agent serve` is started with: the one cell it serves, its
//! repository, what it protects (Postgres, Kafka), where it copies to, and
//! how it listens. Secrets (the API token, the Postgres password, the
//! repository key) are read from files, never taken on the command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::context::RepoArg;

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// The cell this agent serves.
    #[arg(long, env = "LIFEBOAT_CELL")]
    pub cell: String,
    /// Address to listen on; port 0 picks a free port (the address is printed).
    #[arg(long, default_value = "127.0.0.1:7400", env = "LIFEBOAT_AGENT_LISTEN")]
    pub listen: SocketAddr,
    /// File holding the API's bearer token (shared with the coordinator; 32+ characters).
    #[arg(long, env = "LIFEBOAT_AGENT_TOKEN_FILE")]
    pub token_file: PathBuf,
    /// Directory for the job journal and job logs (kept across restarts).
    #[arg(long, env = "LIFEBOAT_AGENT_STATE_DIR")]
    pub state_dir: PathBuf,
    /// The plan's public key (report-signing.pub from `lifeboat report keygen`):
    /// drills sent to this agent run SQL checks only when it signed them.
    #[arg(long, env = "LIFEBOAT_PLAN_KEY_FILE")]
    pub plan_key: Option<PathBuf>,
    /// Jobs running at once (never two of the same kind).
    #[arg(long, default_value_t = 2, env = "LIFEBOAT_AGENT_MAX_JOBS")]
    pub max_jobs: usize,
    /// libpq conninfo (key=value or postgresql:// URI) for base backups, without a password.
    #[arg(long, env = "LIFEBOAT_PG_CONN")]
    pub pg_conn: Option<String>,
    /// The cell's Postgres data directory on this host: what a failback
    /// rebuilds as a standby of the cell's new primary (the old one is kept aside).
    #[arg(long, env = "LIFEBOAT_PG_DATA")]
    pub pg_data: Option<PathBuf>,
    /// File holding the Postgres password, if the server wants one.
    #[arg(long, env = "LIFEBOAT_PG_PASSWORD_FILE")]
    pub pg_password_file: Option<PathBuf>,
    /// Switch WAL segments of an idle database whose newest archived segment is older than this (0: never).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration, env = "LIFEBOAT_PG_SWITCH_AFTER")]
    pub pg_switch_after: std::time::Duration,
    /// Kafka bootstrap brokers for snapshots and restores.
    #[arg(long, env = "LIFEBOAT_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Regular expression of the topics to snapshot.
    #[arg(long, env = "LIFEBOAT_KAFKA_TOPICS")]
    pub kafka_topics: Option<String>,
    /// Follow the topics continuously, sealing what was read this often
    /// (e.g. 5s: Kafka recoverable to seconds ago; 0: only snapshot jobs).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration, env = "LIFEBOAT_KAFKA_FOLLOW")]
    pub kafka_follow: std::time::Duration,
    /// A geo-copy location, NAME=URL (repeatable, or comma-separated): copy and verify jobs name it.
    #[arg(long = "copy-to", value_name = "NAME=URL", value_parser = parse_location, env = "LIFEBOAT_COPY_TO", value_delimiter = ',')]
    pub copy_to: Vec<(String, String)>,
    /// A guest cell's repository this agent may restore and fence as a
    /// recovery site: CELL@LOCATION=URL (repeatable; LOCATION is the plan's
    /// location name; or comma-separated).
    #[arg(long = "guest", value_name = "CELL@LOCATION=URL", value_parser = parse_guest, env = "LIFEBOAT_GUEST", value_delimiter = ',')]
    pub guests: Vec<Guest>,
    /// A guest cell's repository key file: CELL=PATH (default: --key-file).
    #[arg(long = "guest-key-file", value_name = "CELL=PATH", value_parser = parse_guest_key, env = "LIFEBOAT_GUEST_KEY_FILE", value_delimiter = ',')]
    pub guest_keys: Vec<(String, PathBuf)>,
    /// Seconds between continuous geo-copy passes to every --copy-to location (0: only copy jobs).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, env = "LIFEBOAT_COPY_INTERVAL")]
    pub copy_interval: std::time::Duration,
    /// Directory under which Postgres restore jobs may create data directories.
    #[arg(long, env = "LIFEBOAT_RESTORE_ROOT")]
    pub restore_root: Option<PathBuf>,
    /// Retention jobs may not keep less than this (keep_within and
    /// keep_incremental_within): whoever holds the API token cannot make
    /// retention delete recent backups. Three newest per series are kept anyway.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration, env = "LIFEBOAT_RETENTION_FLOOR")]
    pub retention_floor: std::time::Duration,
    /// KEY=VALUE lines (a secret file) set only for retention jobs: the
    /// credential that may delete, which other jobs never see.
    #[arg(long, env = "LIFEBOAT_RETENTION_ENV_FILE")]
    pub retention_env_file: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key", env = "LIFEBOAT_AGENT_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert", env = "LIFEBOAT_AGENT_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: every client (the coordinator) must present a
    /// certificate signed by this CA (PEM), besides the bearer token.
    #[arg(long, requires = "tls_cert", env = "LIFEBOAT_AGENT_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
}

/// A guest cell's repository in one location.
#[derive(Debug, Clone)]
pub struct Guest {
    pub cell: String,
    pub location: String,
    pub url: String,
}

fn is_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(crate) fn parse_location(s: &str) -> Result<(String, String), String> {
    let (name, url) = s.split_once('=').ok_or_else(|| format!("`{s}` is not NAME=URL"))?;
    if !is_name(name) {
        return Err(format!("location name `{name}` must be letters, digits, - or _"));
    }
    url.parse::<lifeboat_storage::Location>().map_err(|e| format!("location {name}: {e}"))?;
    Ok((name.to_string(), url.to_string()))
}

pub(crate) fn parse_guest(s: &str) -> Result<Guest, String> {
    let bad = || format!("`{s}` is not CELL@LOCATION=URL (e.g. weu-1@weu-dr=az://lifeboat-neu-dr/weu/weu-1)");
    let (at, url) = s.split_once('=').ok_or_else(bad)?;
    let (cell, location) = at.split_once('@').filter(|(c, l)| is_name(c) && is_name(l)).ok_or_else(bad)?;
    url.parse::<lifeboat_storage::Location>().map_err(|e| format!("guest {at}: {e}"))?;
    Ok(Guest { cell: cell.to_string(), location: location.to_string(), url: url.to_string() })
}

fn parse_guest_key(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((cell, path)) if is_name(cell) && !path.is_empty() => Ok((cell.to_string(), PathBuf::from(path))),
        _ => Err(format!("`{s}` is not CELL=PATH")),
    }
}

/// Read a secret file: trimmed, non-empty, and not readable by others.
impl ServeArgs {
    pub fn token(&self) -> Result<lifeboat_secrets::Token> {
        lifeboat_secrets::Token::from_file(&self.token_file, "API token")
    }

    /// The cluster backup jobs connect to. Its conninfo, in either form,
    /// must not hold a password (it would show in `ps` of the jobs and in
    /// errors); the password comes from `--pg-password-file`, else from
    /// `PGPASSWORD` or the pgpass file when a job connects.
    pub fn pg_server(&self) -> Result<Option<lifeboat_postgres::conninfo::Server>> {
        pg_server(self.pg_conn.as_deref(), self.pg_password_file.as_deref())
    }

    /// The variables of `--retention-env-file`: `KEY=VALUE` lines, `#`
    /// comments and blank lines skipped; a secret file.
    pub fn retention_env(&self) -> Result<Vec<(String, String)>> {
        let Some(path) = &self.retention_env_file else { return Ok(Vec::new()) };
        let text = lifeboat_secrets::read_file(path, "retention environment")?;
        let mut vars = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#')) {
            let Some((key, value)) = line.split_once('=').filter(|(k, _)| is_env_name(k.trim())) else {
                bail!("{}:{}: expected KEY=VALUE (e.g. AZURE_STORAGE_SAS_TOKEN=...)", path.display(), i + 1);
            };
            vars.push((key.trim().to_string(), value.to_string()));
        }
        Ok(vars)
    }

    pub fn location(&self, name: &str) -> Option<&str> {
        self.copy_to.iter().find(|(n, _)| n == name).map(|(_, u)| u.as_str())
    }

    /// Every location this agent has for guest `cell`, in the order given.
    pub fn guest_locations(&self, cell: &str) -> Vec<&Guest> {
        self.guests.iter().filter(|g| g.cell == cell).collect()
    }

    /// The key file for guest `cell`'s repositories.
    pub fn guest_key(&self, cell: &str) -> Option<&PathBuf> {
        self.guest_keys.iter().find(|(c, _)| c == cell).map(|(_, p)| p)
    }
}

/// The cluster at `conn` (no password in it) with the password of `password_file`.
pub fn pg_server(conn: Option<&str>, password_file: Option<&std::path::Path>) -> Result<Option<lifeboat_postgres::conninfo::Server>> {
    let Some(conn) = conn else { return Ok(None) };
    if lifeboat_postgres::conninfo::holds_password(conn).context("--pg-conn")? {
        bail!("--pg-conn holds a password; put it in a file (mode 600) and pass --pg-password-file, or use PGPASSFILE");
    }
    let password = match password_file {
        Some(path) => Some(lifeboat_secrets::read_file(path, "Postgres password")?),
        None => None,
    };
    Ok(Some(lifeboat_postgres::conninfo::Server { conninfo: conn.to_string(), password }))
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') && !name.as_bytes()[0].is_ascii_digit()
}
