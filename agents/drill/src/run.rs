//! One drill, step by step: choose the target instant, restore the base
//! backup into the scratch data directory, replay WAL to the target and
//! promote, restore Kafka up to the same instant into prefixed topics, run
//! the checks, then remove the scratch environment. Every step is timed;
//! a failed step fails the drill but never skips the cleanup.
//!
//! A failover's takeover is the same code path (as in AWS DRS, a drill is
//! a recovery that is thrown away): the newest consistent cut
//! ([`DrillTarget::Latest`]) into a kept environment, whose Kafka restore
//! journal and offset map stay in the repository. When the cell's standby
//! is kept there ([`crate::standby`]), the takeover promotes it instead of
//! restoring (its WAL was streamed up to the failure), and restores from
//! the repository only when the standby cannot be promoted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use lifeboat_api::drill::{self as wire, pg_time, KafkaPoint, PgPoint, RecoveryPoint};
use lifeboat_api::{DrillOutcome, DrillSpec, DrillTarget, Outcome, PgTarget, Step};
use lifeboat_kafka::client::Brokers;
use lifeboat_kafka::restore::{RestoreReport as KafkaRestored, RestoreRequest as KafkaRequest};
use lifeboat_postgres::restore::{self as pg, RestoreReport as PgRestored, RestoreRequest as PgRequest, Target};
use lifeboat_postgres::server::Launch;
use lifeboat_repository::Repository;

use crate::checks::{self, Restored};
use crate::scratch::Scratch;

/// A repository to restore from, as the agent names it.
pub struct Source {
    pub name: String,
    pub repo: Repository,
    /// Postgres' `restore_command` for this repository (`wal-fetch ...`).
    pub restore_command: String,
}

/// What the agent provides.
pub struct DrillEnv {
    pub cell: String,
    /// The location to restore from, then the fallback (when the spec names one).
    pub sources: Vec<Source>,
    pub brokers: Option<Brokers>,
    pub restore_root: PathBuf,
    pub pg_bindir: PathBuf,
    /// Give up on WAL replay after this long.
    pub replay_timeout: Duration,
    /// The scratch server's whole environment (see [`crate::confine::server_env`]).
    pub server_env: Vec<(String, String)>,
}

/// What Postgres logs when the archived WAL ends before a recovery target.
const NOT_REACHED: &str = "recovery ended before configured recovery target was reached";

fn rfc(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Steps so far and the clock of the current one.
struct Log {
    steps: Vec<Step>,
    clock: Instant,
}

impl Log {
    fn step(&mut self, name: &str, outcome: Outcome, message: Option<String>, evidence: serde_json::Value) {
        self.steps.push(Step::new(name, outcome, self.clock.elapsed().as_secs_f64(), message, evidence));
        self.clock = Instant::now();
    }
}

/// Run the drill `spec` in `scratch` (already created, so that whoever
/// interrupts this can remove it). Always returns an outcome; the caller
/// removes the scratch environment afterwards with [`finish`].
pub async fn run(env: &DrillEnv, spec: &DrillSpec, scratch: &Scratch) -> DrillOutcome {
    let started = Instant::now();
    let mut log = Log { steps: Vec::new(), clock: Instant::now() };
    let mut outcome = new_outcome(env, scratch);
    match choose_target(env, spec).await {
        Ok((target, evidence)) => {
            log.step("choose the target instant", Outcome::Passed, None, evidence);
            restore_and_check(env, spec, scratch, target, &mut log, &mut outcome).await;
        }
        Err(e) => log.step("choose the target instant", Outcome::Failed, Some(e), json!(null)),
    }
    outcome.rto_seconds = started.elapsed().as_secs_f64();
    outcome.steps = log.steps;
    outcome
}

/// An outcome with nothing done yet.
fn new_outcome(env: &DrillEnv, scratch: &Scratch) -> DrillOutcome {
    DrillOutcome {
        drill_id: scratch.id.clone(),
        target: None,
        source_location: env.sources[0].name.clone(),
        fell_back_to: None,
        scratch: wire::Scratch {
            id: scratch.id.clone(),
            directory: scratch.dir.display().to_string(),
            port: scratch.port,
            topic_prefix: scratch.prefix.clone(),
            kept: scratch.kept,
        },
        recovery_point: RecoveryPoint::default(),
        pg_rpo_seconds: None,
        kafka_rpo_seconds: None,
        rto_seconds: 0.0,
        replay_seconds: 0.0,
        steps: Vec::new(),
        checks: Vec::new(),
        cleaned_up: false,
    }
}

/// Postgres, then Kafka from the same location to the same instant, then
/// the checks; every figure and point goes into `outcome`.
async fn restore_and_check(
    env: &DrillEnv,
    spec: &DrillSpec,
    scratch: &Scratch,
    target: Option<OffsetDateTime>,
    log: &mut Log,
    outcome: &mut DrillOutcome,
) {
    let (pg_restored, used) = match spec.postgres {
        true if scratch.promote => promote_or_restore(env, scratch, log).await,
        true => restore_pg_from_sources(env, scratch, target, log).await,
        false => (None, 0),
    };
    let target = target.unwrap_or_else(|| cut_of(pg_restored.as_ref()));
    outcome.target = Some(target);
    let source = &env.sources[used];
    if used > 0 {
        outcome.fell_back_to = Some(source.name.clone());
    }
    let mut point = RecoveryPoint { target: Some(target), location: source.name.clone(), postgres: None, kafka: None };
    if let Some(r) = &pg_restored {
        let (pg_point, rpo) = pg_point(r, target);
        outcome.replay_seconds = r.reached.as_ref().map_or(0.0, |x| x.seconds_to_promote);
        outcome.pg_rpo_seconds = Some(rpo);
        point.postgres = Some(pg_point);
    }
    let mut kafka: Option<(KafkaRequest, KafkaRestored)> = None;
    // Kafka is cut at Postgres' point: without it there is no cut.
    if spec.kafka && (pg_restored.is_some() || !spec.postgres) {
        match restore_kafka(env, source, scratch, target, log).await {
            Ok((req, restored, snapshot_start)) => {
                outcome.kafka_rpo_seconds = Some((target - snapshot_start).as_seconds_f64().max(0.0));
                point.kafka = Some(KafkaPoint {
                    snapshot: restored.snapshot.clone(),
                    snapshot_start,
                    until: restored.until,
                    records: restored.records_produced,
                    offset_map: restored.offset_map.clone(),
                });
                kafka = Some((req, restored));
            }
            Err(e) => log.step("restore Kafka to the target", Outcome::Failed, Some(e), json!(null)),
        }
    }
    outcome.recovery_point = point;
    let pg = match &pg_restored {
        Some(_) => Some(checks_login(scratch, &spec.database, log).await),
        None => None,
    };
    let restored = Restored { pg, kafka: kafka.as_ref().map(|(req, r)| (&source.repo, req, r)), target };
    for check in &spec.checks {
        outcome.checks.push(checks::run(check, &restored).await);
    }
    if scratch.kept {
        if pg_restored.is_some() {
            let admin = scratch.listen().conninfo("postgres", "postgres");
            drop_checks_role(&admin, &crate::confine::checks_role(&scratch.id), log).await;
        }
        return;
    }
    if let Some((_, r)) = &kafka {
        // The restore's journal and offset map are the drill's, not the cell's.
        if let Err(e) = remove_restore_objects(&source.repo, &env.cell, &r.restore_key).await {
            log.step("remove the Kafka restore's journal", Outcome::Warning, Some(e), json!(null));
        }
    }
}

/// The instant of the newest cut: Postgres' last replayed transaction
/// (Kafka is restored up to it, never past it); when it replayed none (no
/// commit in the WAL after its base backup), the backup's start, as it
/// holds nothing committed later; now when Postgres was not restored.
fn cut_of(pg: Option<&PgRestored>) -> OffsetDateTime {
    let last = pg.and_then(|r| r.reached.as_ref()).and_then(|r| r.last_transaction_time.as_deref()).and_then(pg_time);
    let t = match pg {
        Some(r) => last.or(r.backup_started).unwrap_or_else(OffsetDateTime::now_utc),
        None => OffsetDateTime::now_utc(),
    };
    // Kafka timestamps are milliseconds; a record stamped in the same millisecond is kept.
    t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000).unwrap_or(t)
}

/// A takeover keeps no role of Lifeboat's in the cell's new primary.
async fn drop_checks_role(admin: &str, role: &str, log: &mut Log) {
    let dropped = match lifeboat_postgres::backup::connect(admin).await {
        Ok(client) => client.batch_execute(&format!("DROP ROLE IF EXISTS {role}")).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let (result, message) = match dropped {
        Ok(()) => (Outcome::Passed, None),
        // A login role that reads everything must not stay on a new primary.
        Err(e) => (Outcome::Failed, Some(format!("{e}; drop it by hand"))),
    };
    log.step("drop the checks' role", result, message, json!({ "role": role }));
}

/// The connection the checks use: as a role made for them (see
/// [`crate::confine`]); why not (and a failed step) when it cannot be made.
async fn checks_login(scratch: &Scratch, database: &str, log: &mut Log) -> Result<String, String> {
    let role = crate::confine::checks_role(&scratch.id);
    let listen = scratch.listen();
    match crate::confine::create_checks_role(&listen.conninfo("postgres", "postgres"), &role).await {
        Ok(()) => {
            log.step("create the checks' read-only role", Outcome::Passed, None, json!({ "role": role }));
            Ok(listen.conninfo(&role, database))
        }
        Err(e) => {
            log.step("create the checks' read-only role", Outcome::Failed, Some(e.clone()), json!({ "role": role }));
            Err(format!("the checks' role could not be made: {e}"))
        }
    }
}

/// Postgres, from the first source that restores (the fallback only when
/// asked for), and which source that was.
async fn restore_pg_from_sources(
    env: &DrillEnv,
    scratch: &Scratch,
    target: Option<OffsetDateTime>,
    log: &mut Log,
) -> (Option<PgRestored>, usize) {
    for (i, source) in env.sources.iter().enumerate() {
        match restore_pg(env, source, scratch, target, log).await {
            Ok(r) => return (Some(r), i),
            Err(e) if i + 1 < env.sources.len() => {
                let next = &env.sources[i + 1].name;
                let message = Some(format!("restoring from {} failed: {e}", source.name));
                log.step(&format!("fall back to location {next}"), Outcome::Warning, message, json!(null));
            }
            Err(_) => {}
        }
    }
    (None, 0)
}

/// Promote the cell's standby; when it cannot be, say why and restore
/// from the repository into its place instead.
async fn promote_or_restore(env: &DrillEnv, scratch: &Scratch, log: &mut Log) -> (Option<PgRestored>, usize) {
    match promote_standby(env, scratch).await {
        Ok((report, evidence)) => {
            log.step("promote the standby", Outcome::Passed, None, evidence);
            return (Some(report), 0);
        }
        Err(e) => log.step(
            "promote the standby",
            Outcome::Warning,
            Some(format!("{e}; restoring from the repository instead")),
            json!({ "directory": scratch.dir }),
        ),
    }
    // Its WAL may hold what no archive does: keep it, renamed, for an operator.
    match crate::standby::set_aside(&scratch.dir, &scratch.pg_bindir) {
        Ok(kept) => log.step("set the standby aside", Outcome::Passed, None, json!({ "kept_in": kept })),
        Err(e) => {
            log.step("set the standby aside", Outcome::Failed, Some(e), json!(null));
            return (None, 0);
        }
    }
    restore_pg_from_sources(env, scratch, None, log).await
}

/// Start the standby when it is down, promote it (Postgres replays what
/// the archive and its `pg_wal` hold first), and report the point reached.
async fn promote_standby(env: &DrillEnv, scratch: &Scratch) -> Result<(PgRestored, serde_json::Value), String> {
    let record = crate::standby::record(&scratch.dir).ok_or("no standby is kept there")?;
    let data = scratch.data_dir();
    let launch = launch(env, scratch);
    if !lifeboat_postgres::server::running(&data) {
        lifeboat_postgres::server::start(&data, &launch).map_err(|e| format!("starting the standby: {e}"))?;
        lifeboat_postgres::server::wait_answering(&data, &launch).await.map_err(|e| e.to_string())?;
    }
    let before = lifeboat_postgres::standby::state(&launch.listen.conninfo("postgres", "postgres")).await;
    let mut report = record.restore.clone();
    report.target = lifeboat_api::PgTarget::Latest;
    lifeboat_postgres::server::promote(&mut report, &launch).await.map_err(|e| format!("promoting the standby: {e}"))?;
    let reached = report.reached.as_ref();
    let evidence = json!({ "mode": record.mode, "bootstrapped_from": record.restore.backup_id, "bootstrapped_at": rfc(record.bootstrapped_at),
        "streaming_until_promotion": before.streaming, "received_lsn": before.receive_lsn, "replayed_lsn_before": before.replay_lsn,
        "reached_lsn": reached.map(|r| r.lsn.clone()), "last_transaction": reached.and_then(|r| r.last_transaction_time.clone()),
        "timeline": reached.map(|r| r.timeline), "port": scratch.port });
    Ok((report, evidence))
}

/// Remove the scratch environment and record it as the last step.
pub async fn finish(outcome: &mut DrillOutcome, scratch: &Scratch, root: &std::path::Path) {
    let clock = Instant::now();
    let problems = scratch.remove(root).await;
    outcome.cleaned_up = problems.is_empty();
    let (result, message) = if problems.is_empty() { (Outcome::Passed, None) } else { (Outcome::Failed, Some(problems.join("; "))) };
    outcome.steps.push(Step::new(
        "remove the scratch environment",
        result,
        clock.elapsed().as_secs_f64(),
        message,
        json!({ "directory": scratch.dir, "port": scratch.port, "topic_prefix": scratch.prefix }),
    ));
}

/// The Postgres point a restore reached, and the RPO it demonstrates
/// against `target`: none when replay stopped at the target; otherwise
/// (the archived WAL ended first) target minus the last transaction
/// replayed, unbounded when none was.
fn pg_point(r: &PgRestored, target: OffsetDateTime) -> (PgPoint, f64) {
    let reached = r.reached.as_ref();
    let last_transaction = reached.and_then(|x| x.last_transaction_time.clone());
    let stopped_at_target = matches!(r.target, PgTarget::Time(_));
    let rpo = if stopped_at_target {
        0.0
    } else {
        last_transaction.as_deref().and_then(pg_time).map_or(f64::INFINITY, |t| (target - t).as_seconds_f64().max(0.0))
    };
    let point = PgPoint {
        backup: r.backup_id.clone(),
        backup_stop_lsn: r.backup_stop_lsn.clone(),
        latest_archived_wal: r.latest_archived_wal.clone(),
        reached_lsn: reached.map(|x| x.lsn.clone()),
        last_transaction,
        timeline: reached.map(|x| x.timeline),
        stopped_at_target,
    };
    (point, rpo)
}

/// The instant to recover to; None: the newest cut (see [`cut_of`]).
async fn choose_target(env: &DrillEnv, spec: &DrillSpec) -> Result<(Option<OffsetDateTime>, serde_json::Value), String> {
    let within = match &spec.target {
        DrillTarget::Time(t) => return Ok((Some(*t), json!({ "requested": rfc(*t) }))),
        DrillTarget::Latest => return Ok((None, json!({ "requested": "latest" }))),
        DrillTarget::RandomRecent { within } => *within,
    };
    let source = &env.sources[0];
    let now = OffsetDateTime::now_utc();
    let mut earliest = now - within;
    let mut latest: Option<OffsetDateTime> = None;
    let mut evidence = json!({ "random_within": lifeboat_api::duration::format(within) });
    if spec.postgres {
        let backups = lifeboat_postgres::backup::list_backups(&source.repo, &env.cell).await.map_err(|e| e.to_string())?;
        let oldest = backups
            .first()
            .map(|(m, _)| m.finished)
            .ok_or_else(|| format!("cell {} has no Postgres backup in {}", env.cell, source.name))?;
        let times = lifeboat_postgres::recoverable::wal_times(&source.repo, &env.cell).await.map_err(|e| e.to_string())?;
        let rec = lifeboat_postgres::recoverable::recoverable(&source.repo, &env.cell, &times, None).await.map_err(|e| e.to_string())?;
        let pg_latest = rec
            .recoverable_to
            .ok_or_else(|| format!("no backup of cell {} in {} is restorable yet (its WAL is not all archived)", env.cell, source.name))?;
        earliest = earliest.max(oldest);
        latest = Some(pg_latest);
        evidence["postgres_recoverable_from"] = json!(rfc(oldest));
        evidence["postgres_recoverable_to"] = json!(rfc(pg_latest));
    }
    if spec.kafka {
        let snapshots = lifeboat_kafka::stored::list(&source.repo, &env.cell).await.map_err(|e| e.to_string())?;
        let newest = snapshots.last().ok_or_else(|| format!("cell {} has no Kafka snapshot in {}", env.cell, source.name))?;
        latest = Some(latest.map_or(newest.manifest.started, |l| l.min(newest.manifest.started)));
        evidence["kafka_snapshot_start"] = json!(rfc(newest.manifest.started));
        // A restore to before the first record restores nothing: Kafka's window starts there.
        let first = snapshots
            .iter()
            .flat_map(|s| s.details.topics.iter().flat_map(|t| t.partitions.iter().filter_map(|p| p.first_timestamp)))
            .min()
            .ok_or_else(|| format!("the Kafka snapshots of cell {} in {} hold no records", env.cell, source.name))?;
        let first = OffsetDateTime::from_unix_timestamp_nanos(i128::from(first) * 1_000_000).map_err(|e| e.to_string())?;
        earliest = earliest.max(first);
        evidence["kafka_first_record"] = json!(rfc(first));
    }
    let latest = latest.ok_or("the drill restores neither Postgres nor Kafka")?;
    if earliest >= latest {
        return Err(format!(
            "no instant within the last {} is covered by every system restored ({evidence}); take backups or snapshots, or widen the window",
            lifeboat_api::duration::format(within)
        ));
    }
    let span = (latest - earliest).whole_milliseconds() as u64;
    let t = earliest + Duration::from_millis(rand::random::<u64>() % span.max(1));
    // Kafka timestamps are milliseconds: a whole millisecond means the same instant to both systems.
    let t = t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000).unwrap_or(t);
    evidence["window_from"] = json!(rfc(earliest));
    evidence["window_to"] = json!(rfc(latest));
    evidence["chosen"] = json!(rfc(t));
    Ok((Some(t), evidence))
}

/// Restore and start Postgres from `source`. When the WAL ends before the
/// target, Postgres refuses to promote at a target it never saw; the drill
/// then recovers everything there is and the RPO shows the shortfall.
async fn restore_pg(
    env: &DrillEnv,
    source: &Source,
    scratch: &Scratch,
    target: Option<OffsetDateTime>,
    log: &mut Log,
) -> Result<PgRestored, String> {
    let mut attempt = target.map_or(Target::Latest, Target::Time);
    loop {
        let data = scratch.data_dir();
        for dir in [data.clone(), scratch.dir.join("tablespaces")] {
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| format!("clearing {}: {e}", dir.display()))?;
            }
        }
        let req = PgRequest {
            cell: env.cell.clone(),
            to: data,
            target: attempt.clone(),
            backup: None,
            restore_command: source.restore_command.clone(),
            // A takeover becomes the cell's primary: its WAL waits for re-protection.
            archiving: if scratch.kept { pg::Archiving::Held } else { pg::Archiving::Off },
            delta: false,
            tablespace_map: Vec::new(),
            tablespaces_under: Some(scratch.dir.join("tablespaces")),
        };
        let mut report = match pg::restore(&source.repo, &req).await {
            Ok(r) => r,
            Err(e) => {
                let e = e.to_string();
                log.step(&format!("restore the base backup from {}", source.name), Outcome::Failed, Some(e.clone()), json!(null));
                return Err(e);
            }
        };
        log.step(
            &format!("restore the base backup from {}", source.name),
            Outcome::Passed,
            None,
            json!({ "backup": report.backup_id, "files": report.files_written, "stop_lsn": report.backup_stop_lsn.to_string(),
                    "latest_archived_wal": report.latest_archived_wal }),
        );
        match lifeboat_postgres::server::start_and_wait(&mut report, &launch(env, scratch)).await {
            Ok(()) => {
                let reached = report.reached.as_ref();
                let last_tx = reached.and_then(|r| r.last_transaction_time.clone());
                let overshot = matches!(attempt, Target::Time(_))
                    && last_tx.as_deref().and_then(pg_time).zip(target).is_some_and(|(t, target)| t > target);
                let (result, message) = if overshot {
                    (
                        Outcome::Failed,
                        Some(format!("replay went past the target: last transaction {}", last_tx.clone().unwrap_or_default())),
                    )
                } else if matches!(attempt, Target::Latest) && target.is_some() {
                    (
                        Outcome::Failed,
                        Some(format!(
                            "the archived WAL ends before the target; recovered up to the last transaction at {}",
                            last_tx.clone().unwrap_or_else(|| "(none)".into())
                        )),
                    )
                } else {
                    (Outcome::Passed, None)
                };
                log.step(
                    "replay WAL to the target and promote",
                    result,
                    message,
                    json!({ "reached_lsn": reached.map(|r| r.lsn.clone()),
                    "last_transaction": last_tx, "timeline": reached.map(|r| r.timeline), "port": scratch.port }),
                );
                return Ok(report);
            }
            Err(e) if matches!(attempt, Target::Time(_)) && scratch.server_log().contains(NOT_REACHED) => {
                log.step(
                    "replay WAL to the target and promote",
                    Outcome::Warning,
                    Some(format!("{e}; recovering everything archived instead")),
                    json!(null),
                );
                // Postgres has stopped by itself; make sure before the data directory is replaced.
                if let Err(e) = scratch.stop_server() {
                    log.step("stop the scratch server", Outcome::Failed, Some(e.clone()), json!(null));
                    return Err(e);
                }
                attempt = Target::Latest;
            }
            Err(e) => {
                let e = e.to_string();
                log.step("replay WAL to the target and promote", Outcome::Failed, Some(e.clone()), json!(null));
                return Err(e);
            }
        }
    }
}

/// How the scratch server starts: on its private socket, with the listed environment.
fn launch(env: &DrillEnv, scratch: &Scratch) -> Launch {
    Launch { bindir: env.pg_bindir.clone(), listen: scratch.listen(), env: Some(env.server_env.clone()), timeout: env.replay_timeout }
}

async fn restore_kafka(
    env: &DrillEnv,
    source: &Source,
    scratch: &Scratch,
    target: OffsetDateTime,
    log: &mut Log,
) -> Result<(KafkaRequest, KafkaRestored, OffsetDateTime), String> {
    let brokers = env.brokers.clone().ok_or("this agent has no Kafka brokers configured")?;
    // One listing serves both the restore (the newest snapshot) and the gap check (its chain).
    let snapshots = lifeboat_kafka::stored::list(&source.repo, &env.cell).await.map_err(|e| e.to_string())?;
    let snapshot = snapshots.last().ok_or_else(|| format!("cell {} has no Kafka snapshot in {}", env.cell, source.name))?;
    let req = KafkaRequest {
        cell: env.cell.clone(),
        brokers,
        snapshot: Some(snapshot.manifest.id.clone()),
        until: Some(target),
        topic_map: Vec::new(),
        topic_prefix: scratch.prefix.clone(),
        group_prefix: None,
        // A takeover's cut may come before Kafka's first record: its topics must exist all the same.
        empty_ok: scratch.kept,
    };
    let restored = lifeboat_kafka::restore::restore(&source.repo, &req).await.map_err(|e| e.to_string())?;
    log.step(
        "restore Kafka to the target",
        Outcome::Passed,
        None,
        json!({ "snapshot": restored.snapshot, "records": restored.records_produced,
                "topics": restored.topics.iter().map(|t| json!({ "source": t.source, "target": t.target,
                    "partitions": t.partitions.iter().map(|p| json!({ "partition": p.partition, "records": p.records })).collect::<Vec<_>>() })).collect::<Vec<_>>() }),
    );
    // Records lost to retention between snapshots: the chain is incomplete.
    let gaps: Vec<_> =
        snapshots.iter().flat_map(|s| s.details.gaps.iter().map(move |g| json!({ "snapshot": s.manifest.id, "gap": g }))).collect();
    let (result, message) = if gaps.is_empty() {
        (Outcome::Passed, None)
    } else {
        (Outcome::Failed, Some(format!("{} gaps: records were lost to retention between snapshots and are not in the restore", gaps.len())))
    };
    log.step("Kafka snapshots are gap-free", result, message, json!({ "gaps": gaps }));
    Ok((req, restored, snapshot.manifest.started))
}

async fn remove_restore_objects(repo: &Repository, cell: &str, key: &str) -> Result<(), String> {
    let prefix = format!("kafka/{cell}/restores/{key}/");
    let objects = repo.store().list(&prefix).await.map_err(|e| e.to_string())?;
    for o in objects {
        repo.store().delete(&o.path).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restored(last_transaction: Option<&str>, backup_started: Option<OffsetDateTime>) -> PgRestored {
        PgRestored {
            backup_id: "b".into(),
            backup_stop_lsn: "0/2000100".into(),
            backup_started,
            target: lifeboat_api::PgTarget::Latest,
            data_directory: "/d".into(),
            latest_archived_wal: "000000010000000000000002".into(),
            files_written: 1,
            files_reused: 0,
            bytes_reused: 0,
            reached: Some(lifeboat_api::results::PgReached {
                lsn: "0/3000000".into(),
                last_transaction_time: last_transaction.map(str::to_string),
                timeline: 2,
                seconds_to_promote: 1.0,
            }),
        }
    }

    #[test]
    fn kafka_is_cut_where_postgres_stands_never_past_it() {
        let started = time::macros::datetime!(2026-12-06 10:00:00.123456 UTC);
        let replayed = restored(Some("2026-12-06 10:05:00.987654+00"), Some(started));
        assert_eq!(cut_of(Some(&replayed)), time::macros::datetime!(2026-12-06 10:05:00.987 UTC), "the last transaction, to the ms");
        // Nothing committed after the base backup reached the archive: the backup's start, not now.
        assert_eq!(cut_of(Some(&restored(None, Some(started)))), time::macros::datetime!(2026-12-06 10:00:00.123 UTC));
        let before = OffsetDateTime::now_utc() - time::Duration::milliseconds(1);
        assert!(cut_of(None) >= before, "no Postgres: now");
    }
}
