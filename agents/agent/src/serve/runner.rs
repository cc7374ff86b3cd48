//! Running jobs: each job is a child `lifeboat-agent` process running the
//! same subcommand an operator would type, with `--output json`. A crash or
//! out-of-memory in a job never takes the service down, a job's memory is
//! returned when it ends, and the CLI and the API cannot drift apart.
//!
//! The child's stdout is its JSON result; its stderr goes to the job's log
//! file; it reports progress through the file named by
//! `LIFEBOAT_PROGRESS_FILE`. Children die with the agent (`PR_SET_PDEATHSIG`),
//! and a restarted agent marks jobs it finds "running" as failed, killing
//! any leftover child first.

use std::path::{Component, Path};
use std::sync::Arc;

use time::OffsetDateTime;

use super::jobs::{Job, JobSpec, PgTarget, Progress, RetentionOf, State};
use super::Agent;

/// The command line and extra environment for one job.
#[derive(Debug)]
pub struct Invocation {
    pub args: Vec<String>,
    /// Passed in the environment, not argv (which every local user can read).
    pub env: Vec<(&'static str, String)>,
}

/// Turn a job into the subcommand that does it, or say why this agent
/// cannot run it (checked when the job is submitted).
pub fn invocation(agent: &Agent, spec: &JobSpec) -> Result<Invocation, String> {
    let cfg = &agent.config;
    let repo = cfg.repo.url.as_str();
    let cell = cfg.cell.as_str();
    let mut args: Vec<String> = vec!["--output".into(), "json".into()];
    let mut env = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
    let kafka = || -> Result<(&str, &str), String> {
        let brokers = cfg.kafka_brokers.as_deref().ok_or("this agent has no Kafka configured; start it with --kafka-brokers")?;
        Ok((brokers, cfg.kafka_topics.as_deref().unwrap_or("")))
    };
    let location = |name: &str| -> Result<&str, String> {
        cfg.location(name).ok_or_else(|| {
            let known: Vec<&str> = cfg.copy_to.iter().map(|(n, _)| n.as_str()).collect();
            format!(
                "no location named `{name}`; this agent copies to: {}",
                if known.is_empty() { "(none)".into() } else { known.join(", ") }
            )
        })
    };
    match spec {
        JobSpec::PgBackup { incremental } => {
            let conn = agent.pg_conninfo.clone().ok_or("this agent has no Postgres configured; start it with --pg-conn")?;
            env.push(("LIFEBOAT_PG_CONN", conn));
            push(&["pg", "backup", "--repo", repo, "--cell", cell, "--kind", if *incremental { "incremental" } else { "full" }]);
        }
        JobSpec::KafkaSnapshot {} => {
            let (brokers, topics) = kafka()?;
            if topics.is_empty() {
                return Err("this agent has no topics to snapshot; start it with --kafka-topics".into());
            }
            push(&["kafka", "snapshot", "--repo", repo, "--cell", cell, "--brokers", brokers, "--topics", topics]);
        }
        JobSpec::Copy { location: name } => {
            let url = location(name)?;
            push(&["repo", "copy", repo, url]);
        }
        JobSpec::Verify { location: name } => {
            let url = match name {
                Some(name) => location(name)?,
                None => repo,
            };
            push(&["repo", "verify", "--repo", url]);
        }
        JobSpec::Retention { of, dry_run, keep_within } => {
            let what = match of {
                RetentionOf::Pg => "pg",
                RetentionOf::Kafka => "kafka",
            };
            push(&[what, "retention", "--repo", repo, "--cell", cell]);
            if let Some(k) = keep_within {
                humantime::parse_duration(k).map_err(|e| format!("keep_within `{k}`: {e}"))?;
                push(&["--keep-within", k]);
            }
            if *dry_run {
                push(&["--dry-run"]);
            }
        }
        JobSpec::PgRestore { to, target, delta } => {
            let root = cfg.restore_root.as_deref().ok_or("this agent takes no restores; start it with --restore-root")?;
            let dir = root.join(relative_dir(to)?);
            // Tablespaces stay under the restore root too: next to the data directory.
            let tablespaces = format!("{}.tablespaces", dir.display());
            push(&[
                "pg",
                "restore",
                "--repo",
                repo,
                "--cell",
                cell,
                "--to",
                &dir.display().to_string(),
                "--tablespaces-under",
                &tablespaces,
            ]);
            if *delta {
                push(&["--delta"]);
            }
            match target {
                PgTarget::Latest => push(&["--latest"]),
                PgTarget::Time(t) => push(&["--target-time", t]),
                PgTarget::Lsn(l) => push(&["--target-lsn", l]),
                PgTarget::Xid(x) => push(&["--target-xid", &x.to_string()]),
                PgTarget::Name(n) => push(&["--target-name", n]),
            }
        }
        JobSpec::KafkaRestore { topic_prefix, snapshot, until, group_prefix } => {
            let (brokers, _) = kafka()?;
            if topic_prefix.is_empty() {
                return Err("a Kafka restore through the API needs a topic_prefix, so it never writes into live topics".into());
            }
            push(&["kafka", "restore", "--repo", repo, "--cell", cell, "--brokers", brokers, "--topic-prefix", topic_prefix]);
            match snapshot {
                Some(id) => push(&["--snapshot", id]),
                None => push(&["--latest"]),
            }
            if let Some(t) = until {
                push(&["--until", t]);
            }
            if let Some(g) = group_prefix {
                push(&["--group-prefix", g]);
            }
        }
        JobSpec::Drill(drill) => {
            let root = cfg.restore_root.as_deref().ok_or("this agent runs no drills; start it with --restore-root")?;
            let wants_kafka = drill.kafka || drill.checks.iter().any(|c| c.needs_kafka());
            let source = match &drill.location {
                Some(name) => (name.as_str(), location(name)?),
                None => ("primary", repo),
            };
            push(&["drill", "run", "--repo", source.1, "--source-name", source.0, "--cell", cell]);
            push(&["--restore-root", &root.display().to_string()]);
            if let Some(name) = &drill.fallback_location {
                let url = location(name)?;
                push(&["--fallback", &format!("{name}={url}")]);
            }
            if wants_kafka {
                let (brokers, _) = kafka()?;
                push(&["--brokers", brokers]);
            }
            push(&["--spec", &serde_json::to_string(drill).expect("a drill spec serialises")]);
        }
    }
    Ok(Invocation { args, env })
}

/// A restore directory must stay under the restore root.
fn relative_dir(to: &str) -> Result<&Path, String> {
    let p = Path::new(to);
    if to.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("restore directory `{to}` must be a relative path without `..` (it is created under the restore root)"));
    }
    Ok(p)
}

/// Run one queued job to its end: wait for its kind's lock and a slot,
/// start the child, record the outcome.
pub async fn run(agent: Arc<Agent>, id: String) {
    let Some(spec) = agent.journal().get(&id).map(|j| j.spec.clone()) else { return };
    let kind = spec.kind();
    let kind_lock = agent.kind_lock(kind);
    let _kind = kind_lock.lock().await;
    let _slot = agent.slots.acquire().await.expect("the job semaphore is never closed");
    let started = OffsetDateTime::now_utc();
    let outcome = execute(&agent, &id, &spec, started).await;
    let finished = OffsetDateTime::now_utc();
    if let (JobSpec::Drill(_), Some(root)) = (&spec, &agent.config.restore_root) {
        // The drill removes its scratch environment itself unless it was killed.
        super::sweep_drills_async(root).await;
    }
    let (state, exit_code, result, error) = match outcome {
        Ok((code, result)) if code == 0 => (State::Succeeded, Some(code), result, None),
        // A drill that ran and failed still reports its outcome.
        Ok((code, result)) => (State::Failed, Some(code), result, Some(error_lines(&agent.journal().log_path(&id)))),
        Err(e) => (State::Failed, None, None, Some(format!("{e:#}"))),
    };
    agent.metrics.finished(kind, state, (finished - started).as_seconds_f64());
    let _ = std::fs::remove_file(agent.journal().progress_path(&id));
    let recorded = agent.journal().update(&id, |j| {
        j.state = state;
        j.started.get_or_insert(started);
        j.finished = Some(finished);
        j.pid = None;
        j.exit_code = exit_code;
        j.result = result;
        j.error = error;
        if state == State::Succeeded {
            if let Some(p) = &mut j.progress {
                p.done_bytes = p.total_bytes;
            }
        }
    });
    match recorded {
        Ok(job) => tracing::info!(job = %id, kind, state = ?job.state, seconds = job.duration_seconds(), "job finished"),
        Err(e) => tracing::error!(job = %id, "recording the end of the job failed: {e:#}"),
    }
}

async fn execute(agent: &Agent, id: &str, spec: &JobSpec, started: OffsetDateTime) -> anyhow::Result<(i32, Option<serde_json::Value>)> {
    use anyhow::Context as _;
    let inv = invocation(agent, spec).map_err(anyhow::Error::msg)?;
    let (log_path, progress_path) = {
        let j = agent.journal();
        (j.log_path(id), j.progress_path(id))
    };
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating the job log {}", log_path.display()))?;
    let mut cmd = tokio::process::Command::new(&agent.exe);
    cmd.args(&inv.args)
        .envs(inv.env)
        .env("LIFEBOAT_PROGRESS_FILE", &progress_path)
        .env_remove("LIFEBOAT_OUTPUT")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log)
        .kill_on_drop(true);
    if let Some(k) = &agent.key_file {
        cmd.env("LIFEBOAT_KEY_FILE", k);
    }
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to signal
    // the child when the agent's thread that spawned it exits.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let child = cmd.spawn().with_context(|| format!("starting {}", agent.exe.display()))?;
    let pid = child.id();
    agent.metrics.running(spec.kind(), 1);
    agent.journal().update(id, |j| {
        j.state = State::Running;
        j.started = Some(started);
        j.pid = pid;
    })?;
    tracing::info!(job = %id, kind = spec.kind(), pid, "job started");
    let out = child.wait_with_output().await;
    agent.metrics.running(spec.kind(), -1);
    let out = out.context("waiting for the job's process")?;
    let code = out.status.code().unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&out.status).unwrap_or(0));
    let result = serde_json::from_slice(&out.stdout).ok();
    Ok((code, result))
}

/// The lines of a job's log that say what went wrong: the final `error:`
/// lines if any, otherwise the last lines.
fn error_lines(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error:")).collect();
    let picked: Vec<&str> = if errors.is_empty() {
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(10)..].to_vec()
    } else {
        errors
    };
    let joined = picked.join("\n");
    if joined.is_empty() {
        "the job's process failed without a message".into()
    } else if joined.len() > 4000 {
        joined[joined.len() - 4000..].to_string()
    } else {
        joined
    }
}

/// The progress a running job last reported.
pub fn read_progress(path: &Path) -> Option<Progress> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace().map(|n| n.parse::<u64>());
    Some(Progress { done_bytes: it.next()?.ok()?, total_bytes: it.next()?.ok()? })
}

/// At start: a job recorded as running was cut off by the agent's stop.
/// Kill its process if it somehow survived, and record it as failed; jobs
/// still queued are returned to be run now.
pub fn recover(agent: &Agent) -> anyhow::Result<Vec<String>> {
    let mut journal = agent.journal();
    let stale: Vec<Job> = journal.all().filter(|j| !j.state.is_final()).cloned().collect();
    let mut requeue = Vec::new();
    for job in stale {
        if job.state == State::Queued {
            requeue.push(job.id.clone());
            continue;
        }
        let progress_path = journal.progress_path(&job.id);
        let mut note = String::new();
        if let Some(pid) = job.pid {
            if is_job_process(pid, &progress_path) {
                // SAFETY: sending a signal to a process we started (checked by its environment).
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                note = format!("; its process {pid} was still running and was killed");
            }
        }
        let _ = std::fs::remove_file(&progress_path);
        let now = OffsetDateTime::now_utc();
        journal.update(&job.id, |j| {
            j.state = State::Failed;
            j.finished = Some(now);
            j.pid = None;
            j.error = Some(format!(
                "interrupted: the agent stopped while this job was running{note}. Nothing it had not committed counts; \
                 submit it again (with a new idempotency key) to run it again"
            ));
        })?;
        agent.metrics.finished(job.spec.kind(), State::Failed, 0.0);
        tracing::warn!(job = %job.id, kind = job.spec.kind(), "job interrupted by an agent restart, recorded as failed");
    }
    Ok(requeue)
}

/// Whether `pid` is the child of this job: its environment names the job's progress file.
fn is_job_process(pid: u32, progress_path: &Path) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { return false };
    let want = format!("LIFEBOAT_PROGRESS_FILE={}", progress_path.display());
    environ.split(|b| *b == 0).any(|kv| kv == want.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_dirs_stay_under_the_root() {
        assert!(relative_dir("drill-1/data").is_ok());
        assert!(relative_dir("../etc").is_err());
        assert!(relative_dir("/etc").is_err());
        assert!(relative_dir("a/../../b").is_err());
        assert!(relative_dir("").is_err());
    }
}
