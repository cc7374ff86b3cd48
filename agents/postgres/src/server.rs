//! Starting a restored cluster and waiting until it is promoted: how the
//! server listens, with what environment, as which user, and the point it
//! reached. A restore an operator starts listens on loopback TCP under its
//! own `pg_hba.conf`, a failover's new primary on every address under it
//! (and a private socket for the agent); a drill's scratch server listens only on a Unix
//! socket in a private directory with a `pg_hba.conf` of its own (the
//! restored one, often restrictive, never stalls a drill) and runs with an
//! environment the caller lists, nothing inherited. Every wait ends by a
//! deadline, and an authentication refusal ends it at once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::backup::{connect, PgError};
use crate::restore::{Reached, RestoreReport};

/// The longest Unix socket path the kernel takes (`sun_path`, less its NUL).
const SOCKET_PATH_MAX: usize = 107;

fn as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `pg_ctl` from `bindir`, run as the `postgres` user when we are root
/// (pg_ctl refuses to run as root).
pub fn pg_ctl(bindir: &Path) -> std::process::Command {
    let pg_ctl = bindir.join("pg_ctl");
    if as_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg_ctl);
        c
    } else {
        std::process::Command::new(pg_ctl)
    }
}

/// The log [`start_and_wait`] gives the server of `data`: next to it, `<name>.postgres.log`.
pub fn server_log(data: &Path) -> PathBuf {
    data.with_file_name(format!("{}.postgres.log", data.file_name().and_then(|n| n.to_str()).unwrap_or("restore")))
}

/// How a started server is reached.
#[derive(Debug, Clone)]
pub enum Listen {
    /// `127.0.0.1:port`, under the data directory's own `pg_hba.conf`.
    Loopback { port: u16 },
    /// Only the Unix socket in `dir` (created mode 0700), under
    /// `dir/pg_hba.conf`, which admits local connections and nothing else;
    /// no TCP, no SSL.
    Private { port: u16, dir: PathBuf },
    /// A failover's new primary: TCP on every address under the restored
    /// `pg_hba.conf` (the cell's own rules admit its clients), and a Unix
    /// socket in `dir` (mode 0700) for the agent's own sessions.
    Takeover { port: u16, dir: PathBuf },
    /// A cell's own server rebuilt at home (failback): `port`, everything
    /// else as its configuration says; reached with the agent's `conninfo`.
    Own { port: u16, conninfo: String },
}

impl Listen {
    /// The connection string for `user` on `database`.
    pub fn conninfo(&self, user: &str, database: &str) -> String {
        match self {
            Listen::Loopback { port } => format!("host=127.0.0.1 port={port} user={user} dbname={database} connect_timeout=10"),
            Listen::Private { port, dir } | Listen::Takeover { port, dir } => {
                format!("host={} port={port} user={user} dbname={database} connect_timeout=10", dir.display())
            }
            Listen::Own { conninfo, .. } => conninfo.clone(),
        }
    }

    /// The server options (`pg_ctl -o`, read by a shell), after creating
    /// what a private socket needs.
    fn options(&self) -> Result<String, PgError> {
        match self {
            Listen::Loopback { port } => Ok(format!("-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''")),
            Listen::Own { port, .. } => Ok(format!("-p {port}")),
            Listen::Takeover { port, dir } => {
                let shown = socket_dir(dir)?;
                Ok(format!("-p {port} -c listen_addresses='*' -c unix_socket_directories='{shown}' -c unix_socket_permissions=0700"))
            }
            Listen::Private { port, dir } => {
                let shown = socket_dir(dir)?;
                Ok(format!(
                    "-p {port} -c listen_addresses='' -c unix_socket_directories='{shown}' -c unix_socket_permissions=0700 -c hba_file='{shown}/pg_hba.conf' -c ssl=off"
                ))
            }
        }
    }
}

/// Check and create a private socket directory; its path as the server options give it.
fn socket_dir(dir: &Path) -> Result<String, PgError> {
    let shown = dir.display().to_string();
    if shown.contains(|c: char| c == '\'' || c == ',' || c.is_whitespace()) {
        return Err(PgError::Config(format!("{shown}: a socket directory may not hold quotes, commas or spaces")));
    }
    if shown.len() + ".s.PGSQL.65535".len() + 1 > SOCKET_PATH_MAX {
        return Err(PgError::Config(format!(
            "{shown} is too long for a Unix socket path ({SOCKET_PATH_MAX} bytes); use a shorter restore root"
        )));
    }
    make_private_dir(dir)?;
    Ok(shown)
}

fn make_private_dir(dir: &Path) -> Result<(), PgError> {
    use std::os::unix::fs::PermissionsExt as _;
    let io = |what: &str, e: std::io::Error| PgError::Config(format!("{what} {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(|e| io("creating", e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| io("setting mode 0700 on", e))?;
    std::fs::write(
        dir.join("pg_hba.conf"),
        "# written by lifeboat: local connections only, to a socket only its owner reaches\nlocal all all trust\n",
    )
    .map_err(|e| io("writing pg_hba.conf in", e))?;
    if as_root() {
        hand_to_postgres(dir, false)?;
    }
    Ok(())
}

/// How to start a restored cluster.
#[derive(Debug, Clone)]
pub struct Launch {
    pub bindir: PathBuf,
    pub listen: Listen,
    /// The server's whole environment; `None` inherits this process's.
    pub env: Option<Vec<(String, String)>>,
    /// Give up waiting for promotion after this long.
    pub timeout: Duration,
}

fn hand_to_postgres(path: &Path, recursive: bool) -> Result<(), PgError> {
    let mut chown = std::process::Command::new("chown");
    if recursive {
        chown.arg("-R");
    }
    let status = chown.arg("postgres:postgres").arg(path).status();
    if !status.map(|s| s.success()).unwrap_or(false) {
        return Err(PgError::Config(format!("could not hand {} to the postgres user", path.display())));
    }
    Ok(())
}

/// Start the restored cluster with `pg_ctl` (as the `postgres` user when
/// run as root), wait for promotion, and report the point reached.
pub async fn start_and_wait(report: &mut RestoreReport, launch: &Launch) -> Result<(), PgError> {
    let started = Instant::now();
    start(Path::new(&report.data_directory), launch)?;
    wait_promoted(report, launch, started).await
}

/// Start the cluster of `data` with `pg_ctl` (as the `postgres` user when
/// run as root), not waiting for anything but the postmaster.
pub fn start(data: &Path, launch: &Launch) -> Result<(), PgError> {
    let data = data.to_path_buf();
    let log = server_log(&data);
    let opts = launch.listen.options()?;
    if as_root() {
        // The data directory, and the tablespaces its pg_tblspc links lead to.
        let mut owned = vec![data.clone()];
        if let Ok(links) = std::fs::read_dir(data.join("pg_tblspc")) {
            owned.extend(links.flatten().filter_map(|l| std::fs::read_link(l.path()).ok()));
        }
        for path in owned {
            hand_to_postgres(&path, true)?;
        }
        let _ = std::fs::File::create(&log);
        let _ = hand_to_postgres(&log, false);
    }
    let mut command = pg_ctl(&launch.bindir);
    if let Some(env) = &launch.env {
        command.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    }
    let out = command
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-o", &opts, "start"])
        .current_dir("/")
        .output()
        .map_err(|e| PgError::Config(format!("running {}: {e}", launch.bindir.join("pg_ctl").display())))?;
    if !out.status.success() {
        return Err(PgError::Config(format!("pg_ctl start failed: {}; see {}", why_stopped(&log), log.display())));
    }
    Ok(())
}

/// Wait until the server of `data` that `launch` reaches answers queries
/// (a standby: once consistent), it stops, or `launch.timeout` passes.
pub async fn wait_answering(data: &Path, launch: &Launch) -> Result<(), PgError> {
    let started = Instant::now();
    let conninfo = launch.listen.conninfo("postgres", "postgres");
    loop {
        let last = match connect(&conninfo).await {
            Ok(client) if client.query_one("select 1", &[]).await.is_ok() => return Ok(()),
            Ok(_) => "a query failed".to_string(),
            Err(e) => e.to_string(),
        };
        if !running(data) && started.elapsed() > Duration::from_secs(2) {
            return Err(PgError::Config(format!(
                "the server on {} stopped before it answered (a standby answers once consistent); see {}",
                data.display(),
                server_log(data).display()
            )));
        }
        if started.elapsed() > launch.timeout {
            return Err(PgError::Config(format!(
                "the server on {} did not answer within {}s (last: {last}); see {}",
                data.display(),
                launch.timeout.as_secs(),
                server_log(data).display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Stop the server of `data` cleanly (`pg_ctl stop -m fast`: its clients
/// are disconnected, a checkpoint is written), start it again as `launch`
/// says and wait until it answers.
pub async fn restart(data: &Path, launch: &Launch) -> Result<(), PgError> {
    stop_fast(data, &launch.bindir)?;
    start(data, launch)?;
    wait_answering(data, launch).await
}

/// `pg_ctl stop -m fast` on `data`, waiting (up to 2 min) for the shutdown
/// checkpoint; a server not running is left so.
pub fn stop_fast(data: &Path, bindir: &Path) -> Result<(), PgError> {
    if !running(data) {
        return Ok(());
    }
    let out = pg_ctl(bindir)
        .arg("-D")
        .arg(data)
        .args(["-m", "fast", "-w", "-t", "120", "stop"])
        .current_dir("/")
        .output()
        .map_err(|e| PgError::Config(format!("running {}: {e}", bindir.join("pg_ctl").display())))?;
    if !out.status.success() && running(data) {
        return Err(PgError::Config(format!(
            "pg_ctl stop -m fast on {} failed: {}",
            data.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// What `pg_controldata` says of a stopped cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlData {
    /// `Database cluster state` (`shut down` after a clean stop).
    pub state: String,
    /// `Latest checkpoint location`: after a clean stop, its shutdown checkpoint.
    pub checkpoint_lsn: String,
    pub timeline: u32,
}

/// Read the control file of `data` with `pg_controldata`.
pub fn control_data(bindir: &Path, data: &Path) -> Result<ControlData, PgError> {
    let out = std::process::Command::new(bindir.join("pg_controldata"))
        .arg("-D")
        .arg(data)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| PgError::Config(format!("running {}: {e}", bindir.join("pg_controldata").display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string());
    let missing =
        || PgError::Config(format!("pg_controldata -D {} answered no {}", data.display(), String::from_utf8_lossy(&out.stderr).trim()));
    Ok(ControlData {
        state: field("Database cluster state:").ok_or_else(missing)?,
        checkpoint_lsn: field("Latest checkpoint location:").ok_or_else(missing)?,
        timeline: field("Latest checkpoint's TimeLineID:").and_then(|t| t.parse().ok()).ok_or_else(missing)?,
    })
}

/// Whether a postmaster runs on `data` (its pid file names a live process).
pub fn running(data: &Path) -> bool {
    postmaster(data).is_some()
}

/// The pid of the postmaster running on `data`, from its pid file.
pub fn postmaster(data: &Path) -> Option<i32> {
    let pid = std::fs::read_to_string(data.join("postmaster.pid")).ok().and_then(|t| t.lines().next()?.trim().parse::<i32>().ok())?;
    // SAFETY: kill with signal 0 only checks that the process exists.
    (pid > 0 && unsafe { libc::kill(pid, 0) } == 0).then_some(pid)
}

/// Promote the standby `launch` reaches (Postgres first replays what the
/// archive and `pg_wal` hold), wait until it is out of recovery, and
/// report the point reached. A server already promoted is only read.
pub async fn promote(report: &mut RestoreReport, launch: &Launch) -> Result<(), PgError> {
    let started = Instant::now();
    let conninfo = launch.listen.conninfo("postgres", "postgres");
    let client = connect(&conninfo).await?;
    let in_recovery: bool = client
        .query_one("select pg_is_in_recovery()", &[])
        .await
        .map_err(|e| PgError::Query { context: "asking whether the standby is in recovery".into(), source: e })?
        .get(0);
    if in_recovery {
        // Postgres answers false when its wait ends before promotion does;
        // promotion goes on, and `wait_promoted` waits for it to the launch's deadline.
        let wait = i32::try_from(launch.timeout.as_secs().min(60)).unwrap_or(60);
        client
            .query_one("select pg_promote(true, $1)", &[&wait])
            .await
            .map_err(|e| PgError::Query { context: "promoting the standby".into(), source: e })?;
    }
    wait_promoted(report, launch, started).await
}

/// The server's FATAL line, or the end of its log.
fn why_stopped(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    match lines.iter().rev().find(|l| l.contains("FATAL")) {
        Some(fatal) => fatal.to_string(),
        None => lines[lines.len().saturating_sub(3)..].join(" / "),
    }
}

/// Poll until the server is out of recovery, it stops, it refuses us, or
/// the deadline passes; then record the point reached.
async fn wait_promoted(report: &mut RestoreReport, launch: &Launch, started: Instant) -> Result<(), PgError> {
    let data = PathBuf::from(&report.data_directory);
    let log = server_log(&data);
    let conninfo = launch.listen.conninfo("postgres", "postgres");
    let mut last_error = String::from("no connection tried yet");
    loop {
        if started.elapsed() > launch.timeout {
            return Err(PgError::Config(format!(
                "not promoted after {}s (last connection attempt: {last_error}); see {}",
                launch.timeout.as_secs(),
                log.display()
            )));
        }
        if !data.join("postmaster.pid").exists() && started.elapsed() > Duration::from_secs(2) {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let fatal = text.lines().rfind(|l| l.contains("FATAL") || l.contains("recovery ended")).unwrap_or("").to_string();
            return Err(PgError::Wal(format!(
                "Postgres stopped during recovery: {fatal}; the latest archived WAL is {}, so the latest reachable point is the end of that segment",
                report.latest_archived_wal
            )));
        }
        match connect(&conninfo).await {
            Ok(client) => {
                if let Some(reached) = promoted(&client, started).await? {
                    report.reached = Some(reached);
                    return Ok(());
                }
            }
            Err(PgError::Connect { message, refused: true, .. }) => {
                return Err(PgError::Config(format!(
                    "the restored server refuses the postgres user ({message}): its pg_hba.conf does not admit {conninfo}; \
                     start it yourself with a pg_hba.conf that does"
                )));
            }
            Err(e) => last_error = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The point reached once the server is out of recovery; `None` while it replays.
async fn promoted(client: &tokio_postgres::Client, started: Instant) -> Result<Option<Reached>, PgError> {
    let in_recovery: bool = match client.query_one("select pg_is_in_recovery()", &[]).await {
        Ok(row) => row.get(0),
        Err(_) => true,
    };
    if in_recovery {
        return Ok(None);
    }
    let row = client
        .query_one(
            "select pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp()::text, (select timeline_id from pg_control_checkpoint())",
            &[],
        )
        .await
        .map_err(|e| PgError::Query { context: "reading the point reached".into(), source: e })?;
    Ok(Some(Reached {
        lsn: row.get::<_, Option<String>>(0).unwrap_or_default(),
        last_transaction_time: row.get(1),
        timeline: row.get::<_, i32>(2) as u32,
        seconds_to_promote: started.elapsed().as_secs_f64(),
    }))
}
