//! What both Lifeboat binaries do as processes, once: logs on stderr
//! (level from `RUST_LOG`, default info; plain for people, JSON for log
//! collectors), the signals that stop them, lock files and time-stamped
//! names.

pub mod cli;
pub mod shared;

use std::io::IsTerminal as _;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

/// Send `tracing` events to stderr in `format`.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on the first SIGINT or SIGTERM, naming it.
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// Take an exclusive lock on `path` (created if missing) without waiting:
/// the open file, which holds the lock until it is closed, or `None` when
/// another process holds it.
pub fn try_lock_file(path: &std::path::Path) -> std::io::Result<Option<std::fs::File>> {
    use std::os::fd::AsRawFd as _;
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    // SAFETY: flock on a descriptor we own.
    match unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } {
        0 => Ok(Some(file)),
        _ => Ok(None),
    }
}

/// Replace `path` with `bytes` durably: a temporary file beside it,
/// synced, renamed over it, and the directory synced. A crash leaves the
/// old contents or the new, never a mix.
pub fn write_durably(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// `PREFIX-YYYYMMDDtHHMMSS-xxxx` for `now` and a random `suffix`: a name
/// that sorts by time and does not repeat within a second.
pub fn stamped_id(prefix: &str, now: time::OffsetDateTime, suffix: u16) -> String {
    format!(
        "{prefix}-{:04}{:02}{:02}t{:02}{:02}{:02}-{suffix:04x}",
        now.year(),
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}
