//! Benchmark harness for the *peer* tool, OSO's kafka-backup engine (crate
//! `kafka-backup-core`), driven as a library so its backup and restore can be
//! timed against Lifeboat's on the same broker and storage. This is NOT part
//! of Lifeboat: it is its own Cargo workspace under `infra/bench`, and nothing
//! in the Lifeboat workspace depends on it.
//!
//! ```text
//! kafka-backup-peer backup  CONFIG.yaml   # one-shot backup (see backup.yaml.tmpl)
//! kafka-backup-peer restore CONFIG.yaml   # restore once  (see restore.yaml.tmpl)
//! ```
//!
//! CONFIG.yaml is the engine's own YAML. A key the engine does not know is an
//! error here (the engine itself only warns and ignores it, which would
//! silently change what is measured). Exit status: 0 on success, 1 with the
//! error chain on stderr on failure, 2 on bad usage. Engine logs go to stderr;
//! set RUST_LOG (default `warn`).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use kafka_backup_core::backup::BackupEngine;
use kafka_backup_core::restore::RestoreEngine;
use kafka_backup_core::Config;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    let args: Vec<String> = std::env::args().skip(1).collect();
    let [command, path] = args.as_slice() else {
        eprintln!("usage: kafka-backup-peer backup|restore CONFIG.yaml");
        return ExitCode::from(2);
    };
    if command != "backup" && command != "restore" {
        eprintln!("usage: kafka-backup-peer backup|restore CONFIG.yaml");
        return ExitCode::from(2);
    }
    match run(command, path).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kafka-backup-peer {command}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: &str, path: &str) -> Result<()> {
    let config = load(path)?;
    let started = Instant::now();
    if command == "backup" {
        // `mode: backup` is checked by the engine itself.
        let engine = BackupEngine::new(config).await.context("starting backup engine")?;
        engine.run().await.context("backup")?;
        println!("backup ok in {:.3}s", started.elapsed().as_secs_f64());
    } else {
        let engine = RestoreEngine::new(config).context("starting restore engine")?;
        let report = engine.run().await.context("restore")?;
        // Older engines collected per-topic failures here instead of failing the run.
        if !report.errors.is_empty() {
            bail!("restore reported errors: {}", report.errors.join("; "));
        }
        println!("restore ok: {} records in {:.3}s", report.records_restored, started.elapsed().as_secs_f64());
    }
    Ok(())
}

fn load(path: &str) -> Result<Config> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let (config, ignored) = Config::from_yaml_with_warnings(&text).with_context(|| format!("parsing {path}"))?;
    let unknown: Vec<String> = (&ignored).into_iter().map(|k| k.to_string()).collect();
    if !unknown.is_empty() {
        bail!("{path}: keys unknown to the engine: {}", unknown.join(", "));
    }
    Ok(config)
}
