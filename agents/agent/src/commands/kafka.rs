//! `kafka snapshot | restore | verify | ls`: Kafka topic snapshots.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use lifeboat_kafka::client::Brokers;
use lifeboat_kafka::restore::{self, RestoreRequest};
use lifeboat_kafka::snapshot::{self, SnapshotRequest};
use lifeboat_kafka::{stored, verify};

use crate::context::{open_repo, Global, RepoArg};
use lifeboat_repository::retention;

use crate::output::{bytes, emit, retention_text};

#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Kafka bootstrap brokers, host:port[,host:port...].
    #[arg(long, env = "LIFEBOAT_KAFKA_BROKERS")]
    brokers: String,
    /// Give up when the brokers do not answer (or records stop flowing) for this long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    broker_timeout: Duration,
}

impl BrokerArgs {
    fn brokers(&self) -> Result<Brokers> {
        Ok(Brokers::new(&self.brokers, self.broker_timeout)?)
    }
}

/// Which snapshot, which cut-off, which target names.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Snapshot id (default: the newest).
    #[arg(long, conflicts_with = "latest")]
    snapshot: Option<String>,
    /// The newest snapshot (the default).
    #[arg(long)]
    latest: bool,
    /// Per partition, only records stamped at or before this time (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// Restore topic FROM as TO (repeatable): --topic-map payments=payments-restored.
    #[arg(long = "topic-map", value_name = "FROM=TO")]
    topic_map: Vec<String>,
    /// Prefix for restored topic names not in --topic-map (scratch restores, drills).
    #[arg(long, default_value = "")]
    topic_prefix: String,
    /// Prefix for restored consumer groups (default: the topic prefix).
    #[arg(long)]
    group_prefix: Option<String>,
    /// When --until is before the snapshot's first record, create the topics
    /// (and translate the groups) with no record instead of refusing: a
    /// failover's cut at an instant Kafka had nothing yet.
    #[arg(long)]
    empty_ok: bool,
}

impl TargetArgs {
    fn request(&self, cell: &str, brokers: Brokers) -> Result<RestoreRequest> {
        let until = match &self.until {
            Some(t) => Some(
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .with_context(|| format!("--until {t:?} is not an RFC 3339 time such as 2026-11-26T10:15:00Z"))?,
            ),
            None => None,
        };
        let mut topic_map = Vec::new();
        for m in &self.topic_map {
            let Some((from, to)) = m.split_once('=').filter(|(f, t)| !f.is_empty() && !t.is_empty()) else {
                bail!("--topic-map {m:?}: write FROM=TO, e.g. payments=payments-restored");
            };
            topic_map.push((from.to_string(), to.to_string()));
        }
        Ok(RestoreRequest {
            cell: cell.to_string(),
            brokers,
            snapshot: self.snapshot.clone(),
            until,
            topic_map,
            topic_prefix: self.topic_prefix.clone(),
            group_prefix: self.group_prefix.clone(),
            empty_ok: self.empty_ok,
        })
    }
}

/// A restore (or its verification): repository, cell, brokers, target.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[arg(long, env = "LIFEBOAT_CELL")]
    cell: String,
    #[command(flatten)]
    brokers: BrokerArgs,
    #[command(flatten)]
    target: TargetArgs,
}

impl RestoreArgs {
    async fn open(&self, global: &Global) -> Result<(lifeboat_repository::Repository, RestoreRequest)> {
        let r = open_repo(global, &self.repo.url).await?;
        let req = self.target.request(&self.cell, self.brokers.brokers()?)?;
        Ok((r, req))
    }
}

#[derive(Debug, Subcommand)]
pub enum KafkaCommand {
    /// Snapshot matching topics: records since the previous snapshot (or the
    /// log start) up to each partition's high watermark, configs, group offsets.
    Snapshot(SnapshotArgs),
    /// Follow matching topics: seal what was read every --every (the
    /// continuous mode for Tier-1 cells), until SIGTERM or Ctrl-C; resumes
    /// where the newest seal ended. The scheduled snapshot folds the seals.
    Follow(FollowArgs),
    /// Restore a snapshot into topics; resumable; translates group offsets.
    Restore(RestoreArgs),
    /// Compare restored topics with their snapshot (counts, hashes, timestamps).
    Verify(RestoreArgs),
    /// Apply retention to a cell's snapshots (platform default: 7 days): shows
    /// the plan, then deletes (unless --dry-run). Snapshot manifests are
    /// self-contained, so no retained snapshot loses data it needs.
    Retention(RetentionArgs),
    /// List a cell's snapshots with their offset ranges.
    Ls(LsArgs),
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[arg(long, env = "LIFEBOAT_CELL")]
    pub cell: String,
    #[command(flatten)]
    pub brokers: BrokerArgs,
    /// Regular expression matched against whole topic names.
    #[arg(long)]
    pub topics: String,
}

#[derive(Debug, Args)]
pub struct FollowArgs {
    #[command(flatten)]
    pub snapshot: SnapshotArgs,
    /// Seal what was read this often.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub every: Duration,
    /// When nothing changed, seal anyway once the newest seal is this old
    /// (keeps an idle cell's recovery point current).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle: Duration,
}

#[derive(Debug, Args)]
pub struct RetentionArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[arg(long, env = "LIFEBOAT_CELL")]
    pub cell: String,
    /// Always keep this many newest snapshots (full and incremental alike).
    #[arg(long, default_value_t = 1)]
    pub keep_last: usize,
    /// Keep every snapshot younger than this.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub keep_within: Duration,
    /// Keep a seal a regular snapshot folded for this long after it was
    /// written (a restore that started from it may still read it).
    #[arg(long, default_value = "6h", value_parser = humantime::parse_duration)]
    pub keep_folded_seals: Duration,
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    #[arg(long, env = "LIFEBOAT_CELL")]
    pub cell: String,
}

pub async fn run(global: &Global, cmd: KafkaCommand) -> Result<ExitCode> {
    match cmd {
        KafkaCommand::Snapshot(a) => snapshot(global, a).await,
        KafkaCommand::Follow(a) => follow(global, a).await,
        KafkaCommand::Restore(a) => restore(global, a).await,
        KafkaCommand::Verify(a) => verify(global, a).await,
        KafkaCommand::Retention(a) => retention(global, a).await,
        KafkaCommand::Ls(a) => ls(global, a).await,
    }
}

async fn snapshot(global: &Global, a: SnapshotArgs) -> Result<ExitCode> {
    let SnapshotArgs { repo, cell, brokers, topics } = a;
    let r = open_repo(global, &repo.url).await?;
    let req = SnapshotRequest { cell, brokers: brokers.brokers()?, topics };
    let (m, d) = snapshot::snapshot(&r, &req).await?;
    /// The job's result, and the snapshot's details for scripts.
    #[derive(serde::Serialize)]
    struct Out<'a> {
        #[serde(flatten)]
        done: lifeboat_api::results::SnapshotDone,
        details: &'a lifeboat_kafka::details::SnapshotDetails,
    }
    let out = Out { done: snapshot::done(&m, &d), details: &d };
    emit(global, &out, |o| {
        let mut s = format!(
            "snapshot {} ({}) of cell {}: {} records from {} topics, {} new stored, {:.1}s\n",
            o.done.snapshot_id,
            o.done.kind,
            m.cell,
            o.done.records,
            d.topics.len(),
            bytes(o.done.stored_bytes),
            o.done.seconds
        );
        for g in &d.gaps {
            let _ = writeln!(
                s,
                "GAP: {}/{} offsets {}..{} ({} records) were deleted by retention before this snapshot read them",
                g.topic,
                g.partition,
                g.from,
                g.to,
                g.to - g.from
            );
        }
        s
    });
    Ok(ExitCode::SUCCESS)
}

/// One line per seal (JSON lines under `--output json`), until a signal.
async fn follow(global: &Global, a: FollowArgs) -> Result<ExitCode> {
    let FollowArgs { snapshot: SnapshotArgs { repo, cell, brokers, topics }, every, idle } = a;
    if every.is_zero() {
        bail!("--every must be more than 0s (e.g. 5s)");
    }
    let r = open_repo(global, &repo.url).await?;
    let req = SnapshotRequest { cell, brokers: brokers.brokers()?, topics };
    let json = matches!(global.output, crate::context::OutputFormat::Json);
    let report = |result: &lifeboat_kafka::Result<Option<stored::Snapshot>>| match result {
        Ok(Some(s)) => {
            let done = snapshot::done(&s.manifest, &s.details);
            if json {
                println!("{}", serde_json::to_string(&done).expect("results serialise"));
            } else {
                println!("sealed {} ({}): {} records, {} new stored", done.snapshot_id, done.kind, done.records, bytes(done.stored_bytes));
            }
        }
        Ok(None) => {}
        Err(e) => tracing::error!("sealing failed (retrying): {e}"),
    };
    let follower = lifeboat_kafka::follow::Follower::new(r, req, idle);
    let stop = async {
        let signal = lifeboat_process::shutdown_signal().await;
        tracing::info!(signal, "stopping: the newest seal is the recovery point");
    };
    lifeboat_kafka::follow::follow(follower, every, report, stop).await;
    Ok(ExitCode::SUCCESS)
}

async fn restore(global: &Global, args: RestoreArgs) -> Result<ExitCode> {
    let (r, req) = args.open(global).await?;
    let report = restore::restore(&r, &req).await?;
    emit(global, &report, |rep| {
        let mut s = format!(
            "restored snapshot {}{}: {} records produced in {:.1}s{}\n",
            rep.snapshot,
            rep.until.as_ref().map(|u| format!(" up to {u}")).unwrap_or_default(),
            rep.records_produced,
            rep.seconds,
            if rep.resumed { " (resumed an interrupted run)" } else { "" }
        );
        for t in &rep.topics {
            let records: u64 = t.partitions.iter().map(|p| p.records).sum();
            let _ = writeln!(s, "  {} -> {}{}: {records} records", t.source, t.target, if t.created { " (created)" } else { "" });
        }
        for g in &rep.groups {
            let _ = writeln!(s, "  group {} -> {}: {} offsets translated", g.source_group, g.target_group, g.offsets.len());
        }
        let _ = writeln!(s, "offset map: {}", rep.offset_map);
        s
    });
    Ok(ExitCode::SUCCESS)
}

async fn verify(global: &Global, args: RestoreArgs) -> Result<ExitCode> {
    let (r, req) = args.open(global).await?;
    let report = verify::verify(&r, &req).await?;
    emit(global, &report, |rep| {
        let mut s = format!("verified {} partitions against snapshot {}\n", rep.partitions.len(), rep.snapshot);
        for p in &rep.problems {
            let _ = writeln!(s, "MISMATCH: {p}");
        }
        s
    });
    if !report.problems.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn retention(global: &Global, a: RetentionArgs) -> Result<ExitCode> {
    let RetentionArgs { repo, cell, keep_last, keep_within, keep_folded_seals, dry_run } = a;
    let r = open_repo(global, &repo.url).await?;
    lifeboat_repository::format::validate_cell(&cell)?;
    let policy = retention::Policy {
        keep_last,
        keep_within,
        kind_prefix: Some("kafka-".into()),
        one_series: true,
        folded_kind: Some(lifeboat_kafka::KIND_SEAL.into()),
        keep_within_kind: [(lifeboat_kafka::KIND_SEAL.to_string(), keep_folded_seals)].into(),
    };
    let now = time::OffsetDateTime::now_utc();
    let plan = if dry_run {
        retention::plan(&r, Some(&cell), &policy, now).await?
    } else {
        retention::execute(&r, Some(&cell), &policy, now).await?
    };
    emit(global, &plan, |p| retention_text(p, dry_run, ""));
    Ok(ExitCode::SUCCESS)
}

async fn ls(global: &Global, a: LsArgs) -> Result<ExitCode> {
    let LsArgs { repo, cell } = a;
    let r = open_repo(global, &repo.url).await?;
    let snapshots = stored::list(&r, &cell).await?;
    #[derive(serde::Serialize)]
    struct Row<'a> {
        id: &'a str,
        /// `kafka-full`, `kafka-incr` or `kafka-seal` (listed as what it restores).
        kind: &'a str,
        parent: &'a Option<String>,
        /// Segments and chunks the snapshot restores from.
        segments: usize,
        chunks: usize,
        finished: String,
        records: u64,
        topics: Vec<TopicRow<'a>>,
        gaps: &'a Vec<lifeboat_kafka::details::Gap>,
    }
    #[derive(serde::Serialize)]
    struct TopicRow<'a> {
        name: &'a str,
        /// `[partition, start, end, records]`
        ranges: Vec<[i64; 4]>,
    }
    let rows: Vec<Row<'_>> = snapshots
        .iter()
        .map(|s| Row {
            id: &s.manifest.id,
            kind: &s.manifest.kind,
            parent: &s.details.parent,
            segments: s.manifest.entries.len(),
            chunks: s.manifest.entries.iter().filter_map(|e| e.extent.as_ref()).map(|x| x.chunks.len()).sum(),
            finished: s.manifest.finished.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            records: s.details.records(),
            topics: s
                .details
                .topics
                .iter()
                .map(|t| TopicRow {
                    name: &t.name,
                    ranges: t.partitions.iter().map(|p| [p.partition as i64, p.start, p.end, p.records as i64]).collect(),
                })
                .collect(),
            gaps: &s.details.gaps,
        })
        .collect();
    emit(global, &rows, |rows| {
        let mut s = String::new();
        for row in rows {
            let _ = writeln!(s, "{}  {} records  {}", row.id, row.records, row.finished);
            for t in &row.topics {
                let ranges: Vec<String> = t.ranges.iter().map(|[p, a, b, _]| format!("{p}:{a}..{b}")).collect();
                let _ = writeln!(s, "    {}  {}", t.name, ranges.join(" "));
            }
        }
        if rows.is_empty() {
            s.push_str("no Kafka snapshots\n");
        }
        s
    });
    Ok(ExitCode::SUCCESS)
}
