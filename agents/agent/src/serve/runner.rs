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

use std::path::Path;
use std::sync::Arc;

use time::OffsetDateTime;

use lifeboat_api::JobResult;

use super::jobs::{Job, JobKind, JobSpec, Progress, State};
use super::Agent;

/// Run one queued job to its end, in a `job` span carrying its id, kind
/// and cell (every line it logs can be followed).
pub async fn run(agent: Arc<Agent>, id: String) {
    use tracing::Instrument as _;
    let Some(kind) = agent.journal().get(&id).map(|j| j.spec.kind()) else { return };
    let span = tracing::info_span!("job", job = %id, %kind, cell = %agent.config.cell);
    run_job(agent, id).instrument(span).await
}

/// Wait for the job kind's lock and a slot (a failover's jobs wait for
/// neither: an incident does not queue behind backups), start the child,
/// record the outcome.
async fn run_job(agent: Arc<Agent>, id: String) {
    let Some(spec) = agent.journal().get(&id).map(|j| j.spec.clone()) else { return };
    let kind = spec.kind();
    let kind_lock = agent.kind_lock(kind);
    let (_kind, _slot) = match spec.is_failover() {
        true => (None, None),
        false => (Some(kind_lock.lock().await), Some(agent.slots.acquire().await.expect("the job semaphore is never closed"))),
    };
    let started = OffsetDateTime::now_utc();
    let outcome = execute(&agent, &id, &spec, started).await;
    let finished = OffsetDateTime::now_utc();
    if let (JobSpec::Drill(_), Some(root), false) = (&spec, &agent.config.restore_root, spec.is_failover()) {
        // The drill removes its scratch environment itself unless it was
        // killed. Not after a takeover: it runs beside a drill, whose
        // ledger a sweep would take for an interrupted drill's.
        super::sweep_drills(root).await;
    }
    let (state, exit_code, result, error) = match outcome {
        Ok((code, output)) => {
            let (result, unreadable) = read_result(kind, &output, &id);
            let failed = (code != 0).then(|| error_lines(&agent.journal().log_path(&id)));
            // A drill that ran and failed still reports its outcome.
            let state = if code == 0 { State::Succeeded } else { State::Failed };
            (state, Some(code), result, failed.or(unreadable))
        }
        Err(e) => (State::Failed, None, None, Some(format!("{e:#}"))),
    };
    agent.metrics.finished(kind.as_str(), state, (finished - started).as_seconds_f64());
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
        Ok(job) => tracing::info!(job = %id, %kind, state = ?job.state, seconds = job.duration_seconds(), "job finished"),
        Err(e) => tracing::error!(job = %id, "recording the end of the job failed: {e:#}"),
    }
}

/// The job's result from what its command printed (nothing: no result), or
/// why it could not be read: a contract break between this binary's
/// commands and its API, reported rather than hidden.
fn read_result(kind: JobKind, output: &[u8], id: &str) -> (Option<JobResult>, Option<String>) {
    if output.iter().all(u8::is_ascii_whitespace) {
        return (None, None);
    }
    match JobResult::from_output(kind, output) {
        Ok(result) => (Some(result), None),
        Err(e) => {
            tracing::error!(job = %id, %kind, "the job's output is not a {kind} result: {e}");
            (None, Some(format!("the job's output is not a {kind} result ({e}); its log has the details")))
        }
    }
}

async fn execute(agent: &Agent, id: &str, spec: &JobSpec, started: OffsetDateTime) -> anyhow::Result<(i32, Vec<u8>)> {
    use anyhow::Context as _;
    let inv = super::invocation::invocation(agent, spec).map_err(anyhow::Error::msg)?;
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
    if let Some(k) = inv.key_file.as_ref().or(agent.key_file.as_ref()) {
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
    agent.metrics.running(spec.kind().as_str(), 1);
    agent.journal().update(id, |j| {
        j.state = State::Running;
        j.started = Some(started);
        j.pid = pid;
    })?;
    tracing::info!(job = %id, kind = %spec.kind(), pid, "job started");
    let out = child.wait_with_output().await;
    agent.metrics.running(spec.kind().as_str(), -1);
    let out = out.context("waiting for the job's process")?;
    let code = out.status.code().unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&out.status).unwrap_or(0));
    Ok((code, out.stdout))
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
        agent.metrics.finished(job.spec.kind().as_str(), State::Failed, 0.0);
        tracing::warn!(job = %job.id, kind = %job.spec.kind(), "job interrupted by an agent restart, recorded as failed");
    }
    Ok(requeue)
}

/// Whether `pid` is the child of this job: its environment names the job's progress file.
fn is_job_process(pid: u32, progress_path: &Path) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { return false };
    let want = format!("LIFEBOAT_PROGRESS_FILE={}", progress_path.display());
    environ.split(|b| *b == 0).any(|kv| kv == want.as_bytes())
}
