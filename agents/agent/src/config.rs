//! `agent.toml`: one cell's settings in one file, so that Postgres'
//! `archive_command = 'lifeboat-agent wal-push %p'` and a bare
//! `lifeboat-agent serve` are enough. The file is `--config FILE`, else
//! `LIFEBOAT_CONFIG`, else `/etc/lifeboat/agent.toml` when it exists.
//!
//! Each setting stands for one `LIFEBOAT_*` variable (the table in
//! [`settings`]), and is applied as that variable when the environment
//! does not already set it, before the command line is read. So the order
//! is: a flag, then the environment, then the file, then the default — and
//! the commands the agent starts (jobs, the WAL spooler) see the same
//! settings. The file is checked whole first: an unknown key, a value of
//! the wrong type, a bad duration or repository URL is an error naming
//! `file:line`, and nothing runs.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use lifeboat_process::cli::line_of;
use serde::Deserialize;
use toml::Spanned;

/// Where the file is looked for when neither `--config` nor `LIFEBOAT_CONFIG` names one.
pub const DEFAULT_PATH: &str = "/etc/lifeboat/agent.toml";

type Text = Option<Spanned<String>>;
type Count = Option<Spanned<u32>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    cell: Text,
    /// The cell's own repository (its primary location).
    repository: Text,
    key_file: Text,
    log_format: Text,
    /// A PEM bundle of private CAs the S3 and Azure clients trust.
    ca_file: Text,
    /// Geo-copy locations: NAME = URL.
    #[serde(default)]
    copies: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    postgres: Postgres,
    #[serde(default)]
    kafka: Kafka,
    #[serde(default)]
    wal: Wal,
    #[serde(default)]
    serve: Serve,
    #[serde(default)]
    guest: Vec<Spanned<Guest>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Postgres {
    conn: Text,
    password_file: Text,
    data: Text,
    switch_after: Text,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kafka {
    brokers: Text,
    topics: Text,
    follow: Text,
    security_protocol: Text,
    sasl_mechanism: Text,
    sasl_username: Text,
    sasl_password_file: Text,
    ca_file: Text,
    cert_file: Text,
    key_file: Text,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wal {
    parallel: Count,
    spool_wait: Text,
    prefetch: Count,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Serve {
    listen: Text,
    token_file: Text,
    state_dir: Text,
    plan_key_file: Text,
    max_jobs: Count,
    restore_root: Text,
    copy_interval: Text,
    retention_floor: Text,
    retention_env_file: Text,
    tls_cert: Text,
    tls_key: Text,
    tls_client_ca: Text,
}

/// A cell this agent may restore and fence as a recovery site.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Guest {
    cell: String,
    location: String,
    url: String,
    key_file: Option<String>,
}

/// How a setting's value is checked before it is applied.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Duration,
    Url,
    Listen,
    LogFormat,
}

/// One setting: the variable it stands for, its value and where it is.
struct Setting {
    var: &'static str,
    key: String,
    value: String,
    at: Range<usize>,
    kind: Kind,
}

/// The file's settings, applied as `LIFEBOAT_*` variables.
#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    /// (variable, value) the file set: those the environment did not set already.
    pub applied: Vec<(&'static str, String)>,
}

static LOADED: std::sync::OnceLock<Config> = std::sync::OnceLock::new();

/// The config file this process applied, if any.
pub fn loaded() -> Option<&'static Config> {
    LOADED.get()
}

/// The config file named by `args` (`--config`), `LIFEBOAT_CONFIG` or the
/// default path; None when none is named and the default does not exist.
pub fn locate(args: &[String]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    if let Some(p) = std::env::var_os("LIFEBOAT_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    Path::new(DEFAULT_PATH).exists().then(|| PathBuf::from(DEFAULT_PATH))
}

/// Commands that must run whatever the file says: WAL archiving (Postgres
/// retries it forever, and its flags may be complete), help, version,
/// completions and man pages. For them a file that does not read or check
/// is a warning, and they go on without it.
pub fn lenient(args: &[String]) -> bool {
    args.iter()
        .take_while(|a| *a != "--")
        .any(|a| matches!(a.as_str(), "wal-push" | "wal-fetch" | "--help" | "-h" | "help" | "--version" | "-V" | "completions" | "man"))
}

/// Read and check the file at `path`, then apply what the environment
/// does not set. Call before any thread starts (it sets variables).
pub fn apply(path: &Path) -> Result<&'static Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!("{}: cannot read the agent's config file: {e}; give another with --config or LIFEBOAT_CONFIG", path.display())
    })?;
    let settings = parse(&text).map_err(|(at, message)| format!("{}:{}: {message}", path.display(), line_of(&text, at.start)))?;
    let mut applied = Vec::new();
    // Children (jobs, the WAL spooler) read the same file.
    if std::env::var_os("LIFEBOAT_CONFIG").is_none() {
        std::env::set_var("LIFEBOAT_CONFIG", path);
    }
    for s in settings {
        // A secret the environment gives itself wins over the file's path to one.
        let given = |var: &str| std::env::var_os(var).is_some_and(|v| !v.is_empty());
        let shadowed =
            (s.var == "LIFEBOAT_KEY_FILE" && given("LIFEBOAT_KEY")) || (s.var == "LIFEBOAT_PG_PASSWORD_FILE" && given("PGPASSWORD"));
        if std::env::var_os(s.var).is_none() && !shadowed {
            // Sound: called from main before the runtime or any thread starts.
            std::env::set_var(s.var, &s.value);
            applied.push((s.var, s.value));
        }
    }
    Ok(LOADED.get_or_init(|| Config { path: path.to_path_buf(), applied }))
}

/// The settings of a config file's text, each checked; or where the first
/// problem is and what it is.
fn parse(text: &str) -> Result<Vec<Setting>, (Range<usize>, String)> {
    let doc: Doc = toml::from_str(text).map_err(|e| (e.span().unwrap_or(0..0), e.message().trim().replace('\n', " ")))?;
    let settings = settings(doc)?;
    for s in &settings {
        check(s).map_err(|m| (s.at.clone(), format!("{}: {m}", s.key)))?;
    }
    Ok(settings)
}

fn text(out: &mut Vec<Setting>, key: &str, value: Text, var: &'static str, kind: Kind) {
    if let Some(v) = value {
        out.push(Setting { var, key: key.into(), at: v.span(), value: v.into_inner(), kind });
    }
}

fn count(out: &mut Vec<Setting>, key: &str, value: Count, var: &'static str) {
    if let Some(v) = value {
        out.push(Setting { var, key: key.into(), at: v.span(), value: v.into_inner().to_string(), kind: Kind::Text });
    }
}

/// Every setting of `doc` with the variable it stands for.
fn settings(doc: Doc) -> Result<Vec<Setting>, (Range<usize>, String)> {
    use Kind::*;
    let mut out = Vec::new();
    let s = &mut out;
    text(s, "cell", doc.cell, "LIFEBOAT_CELL", Text);
    text(s, "repository", doc.repository, "LIFEBOAT_REPO", Url);
    text(s, "key_file", doc.key_file, "LIFEBOAT_KEY_FILE", Text);
    text(s, "log_format", doc.log_format, "LIFEBOAT_LOG_FORMAT", LogFormat);
    text(s, "ca_file", doc.ca_file, "LIFEBOAT_CA_FILE", Text);
    let p = doc.postgres;
    text(s, "postgres.conn", p.conn, "LIFEBOAT_PG_CONN", Text);
    text(s, "postgres.password_file", p.password_file, "LIFEBOAT_PG_PASSWORD_FILE", Text);
    text(s, "postgres.data", p.data, "LIFEBOAT_PG_DATA", Text);
    text(s, "postgres.switch_after", p.switch_after, "LIFEBOAT_PG_SWITCH_AFTER", Duration);
    let k = doc.kafka;
    text(s, "kafka.brokers", k.brokers, "LIFEBOAT_KAFKA_BROKERS", Text);
    text(s, "kafka.topics", k.topics, "LIFEBOAT_KAFKA_TOPICS", Text);
    text(s, "kafka.follow", k.follow, "LIFEBOAT_KAFKA_FOLLOW", Duration);
    text(s, "kafka.security_protocol", k.security_protocol, "LIFEBOAT_KAFKA_SECURITY_PROTOCOL", Text);
    text(s, "kafka.sasl_mechanism", k.sasl_mechanism, "LIFEBOAT_KAFKA_SASL_MECHANISM", Text);
    text(s, "kafka.sasl_username", k.sasl_username, "LIFEBOAT_KAFKA_SASL_USERNAME", Text);
    text(s, "kafka.sasl_password_file", k.sasl_password_file, "LIFEBOAT_KAFKA_SASL_PASSWORD_FILE", Text);
    text(s, "kafka.ca_file", k.ca_file, "LIFEBOAT_KAFKA_CA_FILE", Text);
    text(s, "kafka.cert_file", k.cert_file, "LIFEBOAT_KAFKA_CERT_FILE", Text);
    text(s, "kafka.key_file", k.key_file, "LIFEBOAT_KAFKA_KEY_FILE", Text);
    let w = doc.wal;
    count(s, "wal.parallel", w.parallel, "LIFEBOAT_WAL_PARALLEL");
    text(s, "wal.spool_wait", w.spool_wait, "LIFEBOAT_WAL_SPOOL_WAIT", Duration);
    count(s, "wal.prefetch", w.prefetch, "LIFEBOAT_WAL_PREFETCH");
    let v = doc.serve;
    text(s, "serve.listen", v.listen, "LIFEBOAT_AGENT_LISTEN", Listen);
    text(s, "serve.token_file", v.token_file, "LIFEBOAT_AGENT_TOKEN_FILE", Text);
    text(s, "serve.state_dir", v.state_dir, "LIFEBOAT_AGENT_STATE_DIR", Text);
    text(s, "serve.plan_key_file", v.plan_key_file, "LIFEBOAT_PLAN_KEY_FILE", Text);
    count(s, "serve.max_jobs", v.max_jobs, "LIFEBOAT_AGENT_MAX_JOBS");
    text(s, "serve.restore_root", v.restore_root, "LIFEBOAT_RESTORE_ROOT", Text);
    text(s, "serve.copy_interval", v.copy_interval, "LIFEBOAT_COPY_INTERVAL", Duration);
    text(s, "serve.retention_floor", v.retention_floor, "LIFEBOAT_RETENTION_FLOOR", Duration);
    text(s, "serve.retention_env_file", v.retention_env_file, "LIFEBOAT_RETENTION_ENV_FILE", Text);
    text(s, "serve.tls_cert", v.tls_cert, "LIFEBOAT_AGENT_TLS_CERT", Text);
    text(s, "serve.tls_key", v.tls_key, "LIFEBOAT_AGENT_TLS_KEY", Text);
    text(s, "serve.tls_client_ca", v.tls_client_ca, "LIFEBOAT_AGENT_TLS_CLIENT_CA", Text);
    lists(s, doc.copies, doc.guest)?;
    Ok(out)
}

/// `[copies]` and `[[guest]]`: repeatable flags, applied as one variable
/// each whose values are separated by commas (so no value may hold one).
fn lists(
    s: &mut Vec<Setting>,
    copies: BTreeMap<String, Spanned<String>>,
    guests: Vec<Spanned<Guest>>,
) -> Result<(), (Range<usize>, String)> {
    let mut copy_to = Vec::new();
    for (name, url) in copies {
        let at = url.span();
        let url = url.into_inner();
        crate::serve::config::parse_location(&format!("{name}={url}")).map_err(|e| (at.clone(), format!("copies.{name}: {e}")))?;
        copy_to.push((format!("{name}={url}"), at));
    }
    join(s, "copies", "LIFEBOAT_COPY_TO", copy_to)?;
    let (mut places, mut keys) = (Vec::new(), Vec::new());
    for g in guests {
        let at = g.span();
        let g = g.into_inner();
        let place = format!("{}@{}={}", g.cell, g.location, g.url);
        crate::serve::config::parse_guest(&place).map_err(|e| (at.clone(), format!("guest: {e}")))?;
        if let Some(key) = g.key_file {
            keys.push((format!("{}={key}", g.cell), at.clone()));
        }
        places.push((place, at));
    }
    join(s, "guest", "LIFEBOAT_GUEST", places)?;
    join(s, "guest.key_file", "LIFEBOAT_GUEST_KEY_FILE", keys)
}

fn join(s: &mut Vec<Setting>, key: &str, var: &'static str, values: Vec<(String, Range<usize>)>) -> Result<(), (Range<usize>, String)> {
    if let Some((v, at)) = values.iter().find(|(v, _)| v.contains(',')) {
        return Err((
            at.clone(),
            format!("{key}: `{v}` holds a comma, which cannot be passed on (the list is comma-separated); rename the location or path"),
        ));
    }
    let Some(at) = values.first().map(|(_, at)| at.clone()) else { return Ok(()) };
    let value = values.into_iter().map(|(v, _)| v).collect::<Vec<_>>().join(",");
    s.push(Setting { var, key: key.into(), value, at, kind: Kind::Text });
    Ok(())
}

fn check(s: &Setting) -> Result<(), String> {
    let v = s.value.as_str();
    match s.kind {
        Kind::Text if v.trim().is_empty() => Err("is empty; remove the line to use the default".into()),
        Kind::Text => Ok(()),
        Kind::Duration => humantime::parse_duration(v).map(drop).map_err(|e| format!("`{v}` is not a duration ({e}); e.g. 30s, 5m, 1h")),
        Kind::Url => v.parse::<lifeboat_storage::Location>().map(drop).map_err(|e| format!("`{v}`: {e}")),
        Kind::Listen => v.parse::<std::net::SocketAddr>().map(drop).map_err(|e| format!("`{v}` is not an address:port ({e})")),
        Kind::LogFormat => match v {
            "plain" | "json" => Ok(()),
            _ => Err(format!("`{v}` is not a log format: give plain or json")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> (usize, String) {
        match parse(text) {
            Ok(_) => panic!("{text:?} was taken"),
            Err((at, m)) => (line_of(text, at.start), m),
        }
    }

    #[test]
    fn every_setting_stands_for_its_variable() {
        let text = "cell = \"weu-1\"\nrepository = \"file:///srv/repo\"\n[copies]\nweu-dr = \"file:///srv/dr\"\nus = \"s3://b/p\"\n\
                    [serve]\nmax_jobs = 3\ncopy_interval = \"10s\"\n[[guest]]\ncell = \"neu-2\"\nlocation = \"neu-dr\"\nurl = \"file:///g\"\nkey_file = \"/k\"\n";
        let got: Vec<(&str, String)> = parse(text).unwrap().into_iter().map(|s| (s.var, s.value)).collect();
        assert_eq!(
            got,
            [
                ("LIFEBOAT_CELL", "weu-1".to_string()),
                ("LIFEBOAT_REPO", "file:///srv/repo".into()),
                ("LIFEBOAT_AGENT_MAX_JOBS", "3".into()),
                ("LIFEBOAT_COPY_INTERVAL", "10s".into()),
                ("LIFEBOAT_COPY_TO", "us=s3://b/p,weu-dr=file:///srv/dr".into()),
                ("LIFEBOAT_GUEST", "neu-2@neu-dr=file:///g".into()),
                ("LIFEBOAT_GUEST_KEY_FILE", "neu-2=/k".into()),
            ]
        );
    }

    #[test]
    fn problems_name_their_line() {
        assert_eq!(problem("cell = \"a\"\n[serve]\ncopy_interval = \"often\"\n").0, 3);
        let (line, m) = problem("cell = \"a\"\n\n[postgres]\nconnn = \"x\"\n");
        assert_eq!(line, 4);
        assert!(m.contains("unknown field `connn`"), "{m}");
        let (line, m) = problem("repository = \"ftp://x\"\n");
        assert_eq!(line, 1);
        assert!(m.starts_with("repository: "), "{m}");
        assert_eq!(problem("[wal]\nparallel = \"three\"\n").0, 2);
        assert_eq!(problem("[copies]\nbad name = \"file:///x\"\n").0, 2);
        assert!(problem("cell = \"\"\n").1.contains("is empty"));
    }
}
