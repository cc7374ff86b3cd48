//! Connection strings. Both forms libpq takes, `key=value` pairs and
//! `postgresql://` URIs, are parsed by `tokio_postgres::Config`; whatever
//! is shown (errors, logs, job results) is [`shown`], rebuilt from the
//! parsed fields without the password, never the text as given. A password
//! comes, in libpq's order: from the string itself, else `PGPASSWORD`, else
//! the pgpass file (`PGPASSFILE`, else `~/.pgpass`; ignored, as libpq
//! does, when its group or others may read it).

use std::path::{Path, PathBuf};

use tokio_postgres::config::{Config, Host};
use tokio_postgres::NoTls;

use crate::backup::{describe, PgError};

/// Parse either form. The error names the problem, never the text.
pub fn parse(text: &str) -> Result<Config, PgError> {
    text.parse::<Config>().map_err(|e| {
        let why = describe(&e);
        let hint = if why.contains("passfile") { "; name a password file with PGPASSFILE instead" } else { "" };
        PgError::Config(format!(
            "the Postgres connection string does not parse ({why}){hint}; give key=value pairs (host=... user=... dbname=...) or a postgresql:// URI"
        ))
    })
}

/// What may be shown of a connection string: hosts, ports, user, database.
pub fn shown(text: &str) -> String {
    let Ok(config) = text.parse::<Config>() else { return "a connection string that does not parse".into() };
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(dir) => dir.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    let mut out = Vec::new();
    for (key, value) in [("host", hosts.join(",")), ("port", ports.join(","))] {
        if !value.is_empty() {
            out.push(format!("{key}={value}"));
        }
    }
    for (key, value) in [("user", config.get_user()), ("dbname", config.get_dbname())] {
        if let Some(v) = value {
            out.push(format!("{key}={v}"));
        }
    }
    out.join(" ")
}

/// Whether the string itself holds a password, in either form.
pub fn holds_password(text: &str) -> Result<bool, PgError> {
    Ok(parse(text)?.get_password().is_some())
}

/// A cluster to connect to: a connection string, and a password given
/// apart from it (a file's content), which wins over the environment.
#[derive(Clone)]
pub struct Server {
    pub conninfo: String,
    pub password: Option<String>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Server({})", shown(&self.conninfo))
    }
}

impl Server {
    pub fn new(conninfo: &str) -> Server {
        Server { conninfo: conninfo.to_string(), password: None }
    }

    /// Connect, the connection driven on the runtime.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, PgError> {
        let config = self.config()?;
        let (client, connection) = config.connect(NoTls).await.map_err(|e| PgError::Connect {
            conninfo: shown(&self.conninfo),
            message: describe(&e),
            refused: refused_login(&e),
        })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "postgres connection ended");
            }
        });
        Ok(client)
    }

    fn config(&self) -> Result<Config, PgError> {
        let mut config = parse(&self.conninfo)?;
        if let Some(p) = &self.password {
            config.password(p);
        } else if config.get_password().is_none() {
            if let Some(p) = std::env::var_os("PGPASSWORD") {
                config.password(p.as_encoded_bytes());
            } else if let Some(p) = pgpass_file().and_then(|f| from_pgpass(&f, &config)) {
                config.password(p);
            }
        }
        Ok(config)
    }
}

/// Whether the server refused the login itself (SQLSTATE class 28:
/// pg_hba.conf or a wrong password), which no retry will change.
fn refused_login(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| db.code().code().starts_with("28"))
}

fn pgpass_file() -> Option<PathBuf> {
    std::env::var_os("PGPASSFILE").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass")))
}

/// The password of the first pgpass line matching the connection.
fn from_pgpass(file: &Path, config: &Config) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(file).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(file = %file.display(), "ignoring the password file: group or others may read it (chmod 600)");
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(_)) | None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432).to_string();
    let user = config.get_user().unwrap_or_default();
    let dbname = config.get_dbname().unwrap_or(user);
    let wanted = [host.as_str(), port.as_str(), dbname, user];
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let fields = pgpass_fields(line);
        let matches = fields.len() == 5 && fields[..4].iter().zip(wanted).all(|(f, w)| f == "*" || f == w);
        matches.then(|| fields[4].clone())
    })
}

/// A pgpass line's colon-separated fields; `\:` and `\\` are literal.
fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut().expect("one field").extend(chars.next()),
            ':' => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_are_shown_without_their_password() {
        let key_value = "host=db.internal port=5433 user=backup password='canary pw' dbname=payments";
        let uri = "postgresql://backup:canary%20pw@db.internal:5433/payments?password=other";
        for text in [key_value, uri] {
            assert_eq!(shown(text), "host=db.internal port=5433 user=backup dbname=payments", "{text}");
            assert!(holds_password(text).unwrap(), "{text}");
        }
        assert!(!holds_password("postgresql://backup@db.internal/payments").unwrap());
        assert!(!holds_password("host=/run/postgresql user=postgres").unwrap());
        assert_eq!(shown("host=h user=u x=secret"), "a connection string that does not parse");
    }

    #[test]
    fn a_string_that_does_not_parse_is_named_not_echoed() {
        let err = parse("host=h passfile=/secret/place password=canary").err().unwrap().to_string();
        assert!(err.contains("PGPASSFILE") && !err.contains("canary") && !err.contains("/secret/place"), "{err}");
    }

    #[test]
    fn pgpass_lines_match_with_wildcards_and_escapes() {
        assert_eq!(pgpass_fields(r"h:5432:*:u:pa\:ss\\word"), ["h", "5432", "*", "u", r"pa:ss\word"]);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "# comment\nother:5432:*:u:no\ndb:*:payments:backup:yes\n*:*:*:*:fallback\n").unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let config = |s: &str| s.parse::<Config>().unwrap();
        assert_eq!(from_pgpass(&file, &config("host=db port=6000 user=backup dbname=payments")).as_deref(), Some("yes"));
        assert_eq!(from_pgpass(&file, &config("host=elsewhere user=x")).as_deref(), Some("fallback"));
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        assert_eq!(from_pgpass(&file, &config("host=db user=backup dbname=payments")), None, "an open pgpass file is ignored");
    }
}
