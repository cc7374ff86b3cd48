//! `repo init | ls | stats | verify | copy | retention | hold` (`locks`,
//! `unlock` and `sas` are in [`super::repo_access`]).

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde::Serialize;
use time::OffsetDateTime;

use lifeboat_repository::{copy, pipeline, retention, stats, verify, InitOptions, Repository};

use crate::context::{open_repo, store, Global, RepoArg};
use crate::output::{bytes, emit, retention_text};

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Create a repository in an empty location.
    Init(InitArgs),
    /// List backups per cell.
    Ls(LsArgs),
    /// Show what the repository holds and how well it dedups.
    Stats(StatsArgs),
    /// Read every object and check every hash and reference; exits 1 on any problem.
    Verify(VerifyArgs),
    /// Copy to a second location (geo-redundant copy): only what it lacks, verified, manifests last.
    Copy(CopyArgs),
    /// The marker the newest complete copy pass left in this (copy) location: when it started and
    /// finished, from where, and per cell the newest WAL segment, base backup and Kafka snapshot it
    /// brought. Exits 1 when no pass completed here.
    Copied(StatsArgs),
    /// Apply retention: show the deletion plan, then delete (unless --dry-run).
    Retention(RetentionArgs),
    /// Put a backup under legal hold (retention keeps it), or release it.
    Hold(HoldArgs),
    /// List locks: holder, operation, age by the store's clock, whether they verify.
    Locks(super::repo_access::LocksArgs),
    /// Remove a lock by hand (dry run unless --force); logged.
    Unlock(super::repo_access::UnlockArgs),
    /// Print an Azure SAS token for agents that may write but not delete (or, --with-delete, for retention).
    Sas(super::repo_access::SasArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Store data unencrypted (otherwise a key is required).
    #[arg(long)]
    pub insecure_no_encryption: bool,
    /// zstd level for new objects.
    #[arg(long, default_value_t = 1)]
    pub compression_level: i32,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Only this cell.
    #[arg(long, env = "LIFEBOAT_CELL")]
    pub cell: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub repo: RepoArg,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Verify this location too in the same pass (a copy; repeatable).
    #[arg(long, value_name = "URL")]
    pub also: Vec<String>,
    /// Read only the newest N objects of each location (the daily sampled
    /// pass); every manifest's references are still checked.
    #[arg(long, value_name = "N")]
    pub sample: Option<u32>,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Source repository URL.
    pub from: String,
    /// Destination URL (empty, or a copy of the same repository).
    pub to: String,
    /// Objects copied at once [default: 16 into S3 or Azure, 2 per core
    /// into file://].
    #[arg(long)]
    pub jobs: Option<usize>,
}

#[derive(Debug, Args)]
pub struct RetentionArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// Only this cell's backups (chunks are shared, so the sweep considers all cells).
    #[arg(long, env = "LIFEBOAT_CELL")]
    pub cell: Option<String>,
    /// Always keep this many newest backups per cell and kind.
    #[arg(long, default_value_t = 3)]
    pub keep_last: usize,
    /// Keep every backup younger than this (e.g. 35d, 7d, 12h).
    #[arg(long, default_value = "35d", value_parser = humantime::parse_duration)]
    pub keep_within: Duration,
    /// Show the plan only.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct HoldArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[arg(long, env = "LIFEBOAT_CELL")]
    pub cell: String,
    /// Backup id.
    pub backup: String,
    /// Why (recorded in the hold).
    #[arg(long, required_unless_present = "release")]
    pub reason: Option<String>,
    /// Remove the hold instead.
    #[arg(long)]
    pub release: bool,
}

#[derive(Serialize)]
struct LsRow {
    cell: String,
    id: String,
    kind: String,
    finished: String,
    files: u64,
    bytes: u64,
    new_stored_bytes: u64,
}

pub async fn run(global: &Global, cmd: RepoCommand) -> Result<ExitCode> {
    match cmd {
        RepoCommand::Init(a) => init(global, a).await,
        RepoCommand::Ls(a) => ls(global, a).await,
        RepoCommand::Stats(a) => stats(global, a).await,
        RepoCommand::Verify(a) => verify(global, a).await,
        RepoCommand::Copy(a) => copy(global, a).await,
        RepoCommand::Copied(a) => copied(global, a).await,
        RepoCommand::Retention(a) => retention(global, a).await,
        RepoCommand::Hold(a) => hold(global, a).await,
        RepoCommand::Locks(a) => super::repo_access::locks(global, a).await,
        RepoCommand::Unlock(a) => super::repo_access::unlock(global, a).await,
        RepoCommand::Sas(a) => super::repo_access::sas(a).await,
    }
}

async fn init(global: &Global, a: InitArgs) -> Result<ExitCode> {
    let InitArgs { repo, insecure_no_encryption, compression_level } = a;
    let key = global.key()?;
    if key.is_none() && !insecure_no_encryption {
        bail!("no key given: pass --key-file (make one with `lifeboat-agent key generate --out FILE`), or --insecure-no-encryption to store plaintext");
    }
    if key.is_some() && insecure_no_encryption {
        bail!("both a key and --insecure-no-encryption given; choose one");
    }
    let options = InitOptions { compression_level, ..Default::default() };
    let r = Repository::init(store(&repo.url).await?, key, options).await?;
    emit(global, r.config(), |c| {
        format!(
            "initialised repository {} at {} ({})",
            c.id,
            r.location(),
            match &c.encryption {
                Some(e) => format!("encrypted, key id {}", e.key_id),
                None => "NOT encrypted".into(),
            }
        )
    });
    Ok(ExitCode::SUCCESS)
}

async fn ls(global: &Global, a: LsArgs) -> Result<ExitCode> {
    let LsArgs { repo, cell } = a;
    let r = open_repo(global, &repo.url).await?;
    let mut rows = Vec::new();
    for b in r.list_backups(cell.as_deref()).await? {
        let m = r.read_manifest(&b.cell, &b.id).await?;
        rows.push(LsRow {
            cell: b.cell,
            id: b.id,
            kind: m.kind,
            finished: m.finished.replace_nanosecond(0)?.format(&time::format_description::well_known::Rfc3339)?,
            files: m.totals.files,
            bytes: m.totals.bytes,
            new_stored_bytes: m.totals.new_stored_bytes,
        });
    }
    emit(global, &rows, |rows| {
        let mut out = format!(
            "{:<16} {:<40} {:<8} {:<21} {:>7} {:>11} {:>11}\n",
            "CELL", "BACKUP", "KIND", "FINISHED", "FILES", "SIZE", "NEW STORED"
        );
        for r in rows {
            let _ = writeln!(
                out,
                "{:<16} {:<40} {:<8} {:<21} {:>7} {:>11} {:>11}",
                r.cell,
                r.id,
                r.kind,
                r.finished,
                r.files,
                bytes(r.bytes),
                bytes(r.new_stored_bytes)
            );
        }
        if rows.is_empty() {
            out.push_str("(no backups)\n");
        }
        out
    });
    Ok(ExitCode::SUCCESS)
}

async fn copied(global: &Global, a: StatsArgs) -> Result<ExitCode> {
    let r = open_repo(global, &a.repo.url).await?;
    let Some(marker) = lifeboat_repository::copy_marker::read(&r).await? else {
        anyhow::bail!("no copy pass completed into {} (a primary, or a copy that never finished a pass)", r.location());
    };
    emit(global, &marker, |m| {
        let ts = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let mut out = format!(
            "copied from {} by the pass of {} to {}: {} objects, {}\n",
            m.source,
            ts(m.started),
            ts(m.finished),
            m.objects_copied,
            crate::output::bytes(m.bytes_copied)
        );
        for (cell, c) in &m.cells {
            let show = |x: &Option<String>| x.clone().unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "  {cell}: WAL {}, base backup {}, Kafka {}\n",
                show(&c.newest_wal),
                show(&c.newest_pg_backup),
                show(&c.newest_kafka)
            ));
        }
        out
    });
    Ok(ExitCode::SUCCESS)
}

async fn stats(global: &Global, a: StatsArgs) -> Result<ExitCode> {
    let StatsArgs { repo } = a;
    let r = open_repo(global, &repo.url).await?;
    let s = stats::stats(&r).await?;
    emit(global, &s, |s| {
        let mut out = format!(
            "repository {} at {}\nformat v{}, {}\n{} backups, {} logical, {} chunks stored in {} (ratio {:.2})\n",
            s.repository_id,
            s.location,
            s.format_version,
            match &s.key_id {
                Some(k) => format!("encrypted with key {k}"),
                None => "not encrypted".into(),
            },
            s.manifests,
            bytes(s.logical_bytes),
            s.chunks,
            bytes(s.stored_chunk_bytes),
            s.dedup_compression_ratio
        );
        for (cell, c) in &s.cells {
            let _ = writeln!(out, "  cell {cell}: {} backups, {}", c.backups, bytes(c.logical_bytes));
        }
        out
    });
    Ok(ExitCode::SUCCESS)
}

async fn verify(global: &Global, a: VerifyArgs) -> Result<ExitCode> {
    let VerifyArgs { repo, also, sample } = a;
    let sample = sample.map(|n| n as usize);
    let mut report = verify::verify_sampled(&open_repo(global, &repo.url).await?, pipeline::default_workers(), sample).await?;
    for url in &also {
        report.also.push(verify::verify_sampled(&open_repo(global, url).await?, pipeline::default_workers(), sample).await?);
    }
    let ok = report.is_ok();
    emit(global, &report, |v| v.each().map(verify_text).collect());
    for r in report.each().filter(|r| !r.problems.is_empty()) {
        // On stderr too: what a job's error (and a run's) shows.
        let first = &r.problems[0];
        eprintln!("error: verify of {} found {} problem(s), first {}: {}", r.location, r.problems.len(), first.object, first.detail);
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// One location's verify, for people.
fn verify_text(v: &verify::VerifyReport) -> String {
    let mut out = String::new();
    for p in &v.problems {
        let _ = writeln!(
            out,
            "{:?}: {}: {} (breaks: {})",
            p.kind,
            p.object,
            p.detail,
            if p.breaks.is_empty() { "no backup".into() } else { p.breaks.join(", ") }
        );
    }
    let _ = writeln!(
        out,
        "{} {}: {} manifests, {} chunks and {} other objects ({}) checked{}, {} unreferenced chunks{}, {} problems",
        if v.problems.is_empty() { "OK" } else { "FAILED" },
        v.location,
        v.manifests,
        v.chunks_checked,
        v.other_objects_checked,
        bytes(v.bytes_checked),
        v.sampled.map(|n| format!(" (a sample: the newest {n} objects)")).unwrap_or_default(),
        v.unreferenced_chunks,
        match v.leftover_temporaries {
            0 => String::new(),
            n => format!(", {n} temporary files of interrupted writes (retention removes them)"),
        },
        v.problems.len()
    );
    out
}

async fn copy(global: &Global, a: CopyArgs) -> Result<ExitCode> {
    let CopyArgs { from, to, jobs } = a;
    let src = open_repo(global, &from).await?;
    let jobs = jobs.unwrap_or_else(|| copy::default_jobs(&to));
    let report = copy::copy(&src, store(&to).await?, jobs.max(1)).await?;
    let ok = report.failures.is_empty();
    emit(global, &report, |c| {
        let mut out = String::new();
        for f in &c.failures {
            let _ = writeln!(out, "not copied: {f}");
        }
        let _ = writeln!(
            out,
            "{}: copied {} objects ({}, {} manifests), {} already present, {} read at the destination to check, {} replaced",
            if ok { "OK" } else { "INCOMPLETE" },
            c.objects_copied,
            bytes(c.bytes_copied),
            c.manifests_copied,
            c.objects_already_present,
            c.checked_at_destination,
            c.repaired
        );
        out
    });
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn retention(global: &Global, a: RetentionArgs) -> Result<ExitCode> {
    let RetentionArgs { repo, cell, keep_last, keep_within, dry_run } = a;
    let r = open_repo(global, &repo.url).await?;
    // A Kafka seal not folded yet holds the newest records: never taken here either.
    let folded_kind = Some(lifeboat_kafka::KIND_SEAL.to_string());
    let policy = retention::Policy { keep_last, keep_within, folded_kind, ..Default::default() };
    let now = OffsetDateTime::now_utc();
    let plan = if dry_run {
        retention::plan(&r, cell.as_deref(), &policy, now).await?
    } else {
        retention::execute(&r, cell.as_deref(), &policy, now).await?
    };
    emit(global, &plan, |p| retention_text(p, dry_run, ""));
    Ok(ExitCode::SUCCESS)
}

async fn hold(global: &Global, a: HoldArgs) -> Result<ExitCode> {
    let HoldArgs { repo, cell, backup, reason, release } = a;
    let r = open_repo(global, &repo.url).await?;
    if release {
        retention::remove_hold(&r, &cell, &backup).await?;
        eprintln!("released hold on {cell}/{backup}");
    } else {
        retention::add_hold(&r, &cell, &backup, reason.as_deref().unwrap_or_default()).await?;
        eprintln!("{cell}/{backup} is under legal hold");
    }
    Ok(ExitCode::SUCCESS)
}
