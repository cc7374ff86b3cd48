//! `lifeboat-agent check`: prove that a cell's protection works end to end,
//! as pgBackRest's `check` does. It opens every location's repository with
//! the key (format version, key, free space of `file://` locations),
//! reaches the Kafka brokers, connects to Postgres, makes it finish a WAL
//! segment and waits until that segment is stored in the cell's repository
//! and in every geo-copy location. Each part is reported; any failed part
//! exits 1 and names what failed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::context::{Global, RepoArg};
use crate::serve::config::parse_location;

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[arg(long, env = "LIFEBOAT_CELL")]
    cell: String,
    /// Geo-copy locations the segment must reach too, NAME=URL (repeatable).
    #[arg(long = "copy-to", value_name = "NAME=URL", value_parser = parse_location, env = "LIFEBOAT_COPY_TO", value_delimiter = ',')]
    copy_to: Vec<(String, String)>,
    /// libpq conninfo of the cell's Postgres (no password in it).
    #[arg(long, env = "LIFEBOAT_PG_CONN")]
    pg_conn: Option<String>,
    /// File holding the Postgres password.
    #[arg(long, env = "LIFEBOAT_PG_PASSWORD_FILE")]
    pg_password_file: Option<PathBuf>,
    /// Kafka bootstrap brokers of the cell.
    #[arg(long, env = "LIFEBOAT_KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// Regular expression of the topics snapshots take (at least one must exist).
    #[arg(long, env = "LIFEBOAT_KAFKA_TOPICS")]
    kafka_topics: Option<String>,
    /// How long the new WAL segment may take to reach every location
    /// (geo-copies follow the agent's --copy-interval).
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Least free space, in MiB, a file:// location must have.
    #[arg(long, default_value_t = 1024)]
    min_free_mib: u64,
}

/// One part of the check and how it went.
#[derive(Debug, Serialize)]
struct Part {
    part: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<String>,
    ok: bool,
    /// Not configured here, so not checked (counts as passed).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    skipped: bool,
    detail: String,
}

#[derive(Debug, Serialize)]
struct Report {
    cell: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<PathBuf>,
    /// The variables the config file set (those the environment did not).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    from_config: Vec<&'static str>,
    parts: Vec<Part>,
}

impl Part {
    fn new(part: &'static str, location: Option<&str>, outcome: Result<String>) -> Part {
        let (ok, detail) = match outcome {
            Ok(d) => (true, d),
            Err(e) => (false, format!("{e:#}")),
        };
        Part { part, location: location.map(str::to_string), ok, skipped: false, detail }
    }

    fn skipped(part: &'static str, setting: &str) -> Part {
        Part { part, location: None, ok: true, skipped: true, detail: format!("not configured ({setting}): not checked") }
    }
}

pub async fn run(global: &Global, args: CheckArgs) -> Result<std::process::ExitCode> {
    let mut locations = vec![("primary".to_string(), args.repo.url.clone())];
    locations.extend(args.copy_to.iter().cloned());
    let mut parts = Vec::new();
    let mut repos = Vec::new();
    for (name, url) in &locations {
        let opened = repository(global, url, args.min_free_mib).await;
        parts.push(Part::new(
            "repository",
            Some(name),
            opened.as_ref().map(|(_, d)| d.clone()).map_err(|e| anyhow::anyhow!("{url}: {e:#}")),
        ));
        if let Ok((repo, _)) = opened {
            repos.push((name.clone(), repo));
        }
    }
    match &args.kafka_brokers {
        Some(brokers) => parts.push(Part::new("kafka", None, kafka(brokers, args.kafka_topics.as_deref()).await)),
        None => parts.push(Part::skipped("kafka", "kafka.brokers")),
    }
    match crate::serve::config::pg_server(args.pg_conn.as_deref(), args.pg_password_file.as_deref()) {
        Err(e) => parts.push(Part::new("postgres", None, Err(e))),
        Ok(None) => parts.extend([Part::skipped("postgres", "postgres.conn"), Part::skipped("wal", "postgres.conn")]),
        Ok(Some(server)) => parts.extend(postgres(&server, &args, &repos, locations.len()).await),
    }
    let config = crate::config::loaded();
    let report = Report {
        cell: args.cell,
        ok: parts.iter().all(|p| p.ok),
        config: config.map(|c| c.path.clone()),
        from_config: config.map(|c| c.applied.iter().map(|(var, _)| *var).collect()).unwrap_or_default(),
        parts,
    };
    crate::output::emit(global, &report, render);
    Ok(if report.ok { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE })
}

fn render(r: &Report) -> String {
    let mut out = String::new();
    if let Some(c) = &r.config {
        out += &format!("config {} (sets {})\n", c.display(), r.from_config.join(" "));
    }
    for p in &r.parts {
        let what = match &p.location {
            Some(l) => format!("{} {l}", p.part),
            None => p.part.to_string(),
        };
        let label = match (p.ok, p.skipped) {
            (_, true) => "skip",
            (true, false) => "ok",
            (false, false) => "FAIL",
        };
        out += &format!("{label:<5} {what}: {}\n", p.detail);
    }
    let failed: Vec<String> =
        r.parts.iter().filter(|p| !p.ok).map(|p| p.location.as_ref().map_or(p.part.to_string(), |l| format!("{} {l}", p.part))).collect();
    out += &if failed.is_empty() {
        format!("cell {}: every check passed", r.cell)
    } else {
        format!("cell {}: FAILED: {}", r.cell, failed.join(", "))
    };
    out
}

/// Open the repository at `url` with the key: its format, key and free space.
async fn repository(global: &Global, url: &str, min_free_mib: u64) -> Result<(lifeboat_repository::Repository, String)> {
    let location: lifeboat_storage::Location = url.parse()?;
    let repo = crate::context::open_repo(global, url).await?;
    let key = repo.key().map_or_else(|| "unencrypted".to_string(), |k| format!("key {}", k.id()));
    let mut detail = format!("format {}, {key}", repo.config().version);
    if let Some(dir) = location.file_dir() {
        let free = free_bytes(dir)?;
        detail += &format!(", {} free", crate::output::bytes(free));
        if free < min_free_mib << 20 {
            anyhow::bail!(
                "only {} free at {} (less than --min-free-mib {min_free_mib}); free space or move the repository",
                crate::output::bytes(free),
                dir.display()
            );
        }
    }
    Ok((repo, detail))
}

fn free_bytes(dir: &std::path::Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statvfs the call fills.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(anyhow::anyhow!("cannot read the free space of {}: {}", dir.display(), std::io::Error::last_os_error()));
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Reach the brokers; at least one topic matches `topics`.
async fn kafka(list: &str, topics: Option<&str>) -> Result<String> {
    let brokers = lifeboat_kafka::client::Brokers::new(list, Duration::from_secs(10))?;
    let topics = topics.map(topic_regex).transpose()?;
    lifeboat_kafka::client::blocking(move || -> Result<String> {
        let client = brokers.querier()?;
        let metadata = brokers.metadata(&client)?;
        let names: Vec<&str> = metadata.topics().iter().map(|t| t.name()).filter(|n| !n.starts_with("__")).collect();
        let detail = format!("{} broker(s) at {}", metadata.brokers().len(), brokers.list);
        let Some(re) = topics else { return Ok(detail) };
        let matched = names.iter().filter(|n| re.is_match(n)).count();
        if matched == 0 {
            anyhow::bail!("{detail}: no topic matches {}; check kafka.topics", re.as_str());
        }
        Ok(format!("{detail}, {matched} topic(s) to snapshot"))
    })
    .await
}

fn topic_regex(topics: &str) -> Result<regex::Regex> {
    Ok(lifeboat_kafka::snapshot::topic_pattern(topics, "--kafka-topics")?)
}

/// Connect, look at the archiving settings, finish a WAL segment and wait
/// until each opened repository holds it.
async fn postgres(
    server: &lifeboat_postgres::conninfo::Server,
    args: &CheckArgs,
    repos: &[(String, lifeboat_repository::Repository)],
    locations: usize,
) -> Vec<Part> {
    let client = match tokio::time::timeout(Duration::from_secs(15), server.connect()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return vec![Part::new("postgres", None, Err(e.into()))],
        Err(_) => return vec![Part::new("postgres", None, Err(anyhow::anyhow!("no answer from Postgres within 15 s")))],
    };
    let settings = archiving(&client).await;
    let failed = settings.is_err();
    let mut parts = vec![Part::new("postgres", None, settings)];
    if failed {
        return parts;
    }
    let segment = match switch(&client).await {
        Ok(s) => s,
        Err(e) => {
            parts.push(Part::new("wal", None, Err(e)));
            return parts;
        }
    };
    let started = Instant::now();
    for (name, repo) in repos {
        let stored = wait_for_segment(repo, &args.cell, &segment, started, args.timeout).await;
        let outcome = match stored {
            Ok(()) => Ok(format!("{segment} stored {:.1}s after the switch", started.elapsed().as_secs_f64())),
            Err(e) if name == "primary" => Err(anyhow::anyhow!("{e:#}{}", archiver_failure(&client).await)),
            Err(e) => Err(anyhow::anyhow!("{e:#}; is `lifeboat-agent serve` running with this location in its copies?")),
        };
        parts.push(Part::new("wal", Some(name), outcome));
    }
    if repos.len() < locations {
        parts.push(Part::new("wal", None, Err(anyhow::anyhow!("not checked at the locations whose repository did not open"))));
    }
    parts
}

async fn archiving(client: &tokio_postgres::Client) -> Result<String> {
    let row = client
        .query_one("select current_setting('archive_mode'), current_setting('archive_command'), pg_is_in_recovery(), version()", &[])
        .await?;
    let (mode, command, standby): (String, String, bool) = (row.get(0), row.get(1), row.get(2));
    if standby {
        anyhow::bail!("this cluster is a standby: run check against the primary");
    }
    if mode == "off" {
        anyhow::bail!("archive_mode is off: set archive_mode = on and restart Postgres");
    }
    if !(command.contains("lifeboat-agent") && command.contains("wal-push")) {
        anyhow::bail!(
            "archive_command `{command}` does not run lifeboat-agent wal-push; set archive_command = 'lifeboat-agent wal-push %p'"
        );
    }
    let version: String = row.get(3);
    Ok(format!("{}; archive_command `{command}`", version.split(" on ").next().unwrap_or(&version)))
}

/// Write a restore point (so the segment holds WAL) and switch: the name
/// of the segment Postgres now archives.
async fn switch(client: &tokio_postgres::Client) -> Result<String> {
    client.execute("select pg_create_restore_point('lifeboat-agent check')", &[]).await?;
    let row = client.query_one("select pg_walfile_name(pg_switch_wal())", &[]).await?;
    Ok(row.get(0))
}

async fn wait_for_segment(
    repo: &lifeboat_repository::Repository,
    cell: &str,
    segment: &str,
    since: Instant,
    timeout: Duration,
) -> Result<()> {
    let path = lifeboat_postgres::archive::object_path(cell, segment)?;
    loop {
        match repo.store().head(&path).await {
            Ok(Some(_)) => return Ok(()),
            Ok(None) if since.elapsed() < timeout => {}
            Ok(None) => anyhow::bail!("{segment} is not stored there {}s after the switch (--timeout)", timeout.as_secs()),
            Err(e) => anyhow::bail!("reading {path}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Postgres' own account of a failing archive_command, if it has one.
async fn archiver_failure(client: &tokio_postgres::Client) -> String {
    let row = client
        .query_one("select last_failed_wal, last_failed_time::text, failed_count from pg_stat_archiver where last_failed_time > coalesce(last_archived_time, '-infinity')", &[])
        .await;
    match row {
        Ok(r) => format!(
            "; archive_command fails (last failed {} at {}, {} failures): see the Postgres log",
            r.get::<_, Option<String>>(0).unwrap_or_default(),
            r.get::<_, Option<String>>(1).unwrap_or_default(),
            r.get::<_, i64>(2)
        ),
        Err(_) => String::new(),
    }
}
