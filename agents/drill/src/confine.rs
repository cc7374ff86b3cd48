//! What a drill lets its scratch server and its checks do. The server
//! gets an environment listed here, nothing inherited: the locale, the
//! path, and only the read credentials of the locations it restores from
//! and the CA bundles that vouch for their stores (its `restore_command`
//! fetches WAL with them; the agent's other secrets, its token and its
//! other locations' keys, stay out). The smoke
//! checks run as a role made for the drill: no superuser, no
//! `pg_execute_server_program`, `pg_read_server_files` or
//! `pg_write_server_files` (so no `COPY ... PROGRAM` and no server files),
//! read-only transactions under a statement timeout, reading every table
//! through `pg_read_all_data` (PostgreSQL 14+) and past row-level security.

use std::time::Duration;

use lifeboat_postgres::backup::describe;
use lifeboat_storage::{Location, Scheme};

/// How long one check's statement may run.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(300);

/// Variables every scratch server keeps.
const BASE: &[&str] = &["PATH", "LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ"];

/// What an S3 or Azure store's certificate is checked against: a private
/// CA (`LIFEBOAT_CA_FILE`) and the system roots' overrides. Without them a
/// `restore_command` cannot reach a store behind a private CA.
const TRUST: &[&str] = &["LIFEBOAT_CA_FILE", "SSL_CERT_FILE", "SSL_CERT_DIR"];

/// The scratch server's environment when it restores from `locations`
/// (repository URLs): [`BASE`], and the credential variables of each
/// location's kind (`AWS_*` and `HOME` for S3, `AZURE_*` for Azure, none
/// for `file://`) with [`TRUST`] for either, taken from `from`.
pub fn server_env<'a>(locations: &[&str], from: impl Iterator<Item = (String, String)> + 'a) -> Vec<(String, String)> {
    let schemes: Vec<Scheme> = locations.iter().filter_map(|l| l.parse::<Location>().ok()).map(|l| l.scheme()).collect();
    let keep = |name: &str| {
        BASE.contains(&name)
            || schemes.iter().any(|s| match s {
                Scheme::File => false,
                Scheme::S3 => name.starts_with("AWS_") || name == "HOME" || TRUST.contains(&name),
                Scheme::Azure => name.starts_with("AZURE_") || TRUST.contains(&name),
            })
    };
    let mut env: Vec<(String, String)> = from.filter(|(k, _)| keep(k)).collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    }
    env
}

/// The role the checks of drill `id` run as (a fresh name per drill, so no
/// role of the restored cluster is reused).
pub fn checks_role(id: &str) -> String {
    format!("lifeboat_{}", id.replace(|c: char| !c.is_ascii_alphanumeric(), "_"))
}

/// Create `role` on the scratch server through the superuser connection
/// `admin`, then check it holds none of the roles that reach the host.
pub async fn create_checks_role(admin: &str, role: &str) -> Result<(), String> {
    let client = lifeboat_postgres::backup::connect(admin).await.map_err(|e| e.to_string())?;
    let timeout = STATEMENT_TIMEOUT.as_secs();
    let ddl = format!(
        "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION BYPASSRLS CONNECTION LIMIT 8;
         GRANT pg_read_all_data TO {role};
         ALTER ROLE {role} SET default_transaction_read_only = on;
         ALTER ROLE {role} SET statement_timeout = '{timeout}s';"
    );
    client.batch_execute(&ddl).await.map_err(|e| match e.as_db_error() {
        Some(db) if db.message().contains("pg_read_all_data") => {
            "the restored cluster lacks pg_read_all_data: SQL checks need PostgreSQL 14 or newer".to_string()
        }
        _ => format!("creating the checks' role {role}: {}", describe(&e)),
    })?;
    let row = client
        .query_one(
            "SELECT rolsuper OR pg_has_role(oid, 'pg_execute_server_program', 'MEMBER') OR pg_has_role(oid, 'pg_read_server_files', 'MEMBER')
                    OR pg_has_role(oid, 'pg_write_server_files', 'MEMBER')
             FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await
        .map_err(|e| format!("checking the role {role}: {}", describe(&e)))?;
    if row.get::<_, bool>(0) {
        return Err(format!("the role {role} reaches the server's programs or files; the checks will not run as it"));
    }
    Ok(())
}

/// A session for one check: connected as the checks' role, inside a
/// read-only transaction with the statement timeout.
pub async fn session(conninfo: &str) -> Result<tokio_postgres::Client, String> {
    let client = lifeboat_postgres::backup::connect(conninfo).await.map_err(|e| e.to_string())?;
    let begin = format!("BEGIN READ ONLY; SET LOCAL statement_timeout = '{}s'", STATEMENT_TIMEOUT.as_secs());
    client.batch_execute(&begin).await.map_err(|e| format!("starting a read-only transaction: {}", describe(&e)))?;
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> impl Iterator<Item = (String, String)> {
        ["PATH", "AWS_SECRET_ACCESS_KEY", "AZURE_STORAGE_KEY", "HOME", "LIFEBOAT_KEY_FILE", "LIFEBOAT_CA_FILE", "LANG"]
            .into_iter()
            .map(|k| (k.to_string(), "x".to_string()))
    }

    fn names(env: Vec<(String, String)>) -> Vec<String> {
        env.into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn the_scratch_server_gets_only_what_its_locations_need() {
        assert_eq!(names(server_env(&["file:///r"], vars())), ["PATH", "LANG"]);
        assert_eq!(names(server_env(&["s3://b/p"], vars())), ["PATH", "AWS_SECRET_ACCESS_KEY", "HOME", "LIFEBOAT_CA_FILE", "LANG"]);
        assert_eq!(names(server_env(&["file:///r", "az://c/p"], vars())), ["PATH", "AZURE_STORAGE_KEY", "LIFEBOAT_CA_FILE", "LANG"]);
        assert_eq!(names(server_env(&["file:///r"], std::iter::empty())), ["PATH"]);
    }

    #[test]
    fn role_names_are_identifiers() {
        assert_eq!(checks_role("drill-20261205t183210-ab12"), "lifeboat_drill_20261205t183210_ab12");
    }
}
