//! `backup run`, `snapshot run`, `runs list`, `runs show`: start a run now
//! through a running coordinator (recorded in its history), or straight on
//! the cell's agent (`--plans`); read run history from a coordinator or
//! from its state database (`--state`).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use lifeboat_api::{JobResult, JobState};
use lifeboat_client::{AgentClient, Submitted};

use super::remote::Remote;
use super::{Done, HistorySource, Target};
use crate::clock;
use crate::runs::{job_spec, RunKind, RunRequest, RunResult, RunState};
use crate::serve::load_plan;
use crate::store::{Run, Store};

/// A run started straight on the cell's agent (no coordinator to record it).
#[derive(Debug, Serialize)]
pub struct DirectRun {
    pub cell: String,
    pub kind: RunKind,
    /// `operator (direct)`.
    pub trigger: &'static str,
    pub agent_job: String,
    pub state: JobState,
    pub error: Option<String>,
    pub result: Option<JobResult>,
    #[serde(with = "clock::ms::option")]
    pub started: Option<OffsetDateTime>,
    #[serde(with = "clock::ms::option")]
    pub finished: Option<OffsetDateTime>,
}

/// A run started now: recorded by a coordinator, or direct.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Started {
    Recorded(Box<Run>),
    Direct(Box<DirectRun>),
}

/// Start a run of `kind` for `cell`, wait for it (unless `wait` is false
/// and a coordinator runs it), and say what happened.
pub async fn start(target: &Target, cell: &str, kind: RunKind, wait: bool) -> Result<Done<Started>> {
    let started = match &target.coordinator {
        Some(base) => Started::Recorded(Box::new(on_coordinator(base, target, cell, kind, wait).await?)),
        None => Started::Direct(Box::new(direct(target, cell, kind).await?)),
    };
    let (text, ok) = match &started {
        Started::Recorded(r) => (render_run(r), !wait || r.state == RunState::Succeeded),
        Started::Direct(d) => (render_direct(d), d.state == JobState::Succeeded),
    };
    Ok(Done { value: started, text, ok })
}

/// Queue the run on a coordinator, and follow it until it ends.
pub async fn on_coordinator(base: &str, target: &Target, cell: &str, kind: RunKind, wait: bool) -> Result<Run> {
    if target.credentials.token_file.is_none() {
        bail!("--token-file F (or LIFEBOAT_TOKEN_FILE) with the operator token is needed to start runs on a coordinator");
    }
    let coordinator = Remote::new(base, &target.credentials)?;
    let request = RunRequest { cell: cell.to_string(), kind };
    let run: Run = coordinator.post("/v1/runs", &request).await.context("the coordinator refused the run")?;
    eprintln!("run {} queued on the coordinator: {kind} for cell {cell}", run.id);
    if !wait {
        return Ok(run);
    }
    loop {
        let run: Run = coordinator.get(&format!("/v1/runs/{}", run.id), &[]).await?;
        if run.state.is_final() {
            return Ok(run);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Ask the cell's agent straight away and wait for its job.
async fn direct(target: &Target, cell: &str, kind: RunKind) -> Result<DirectRun> {
    let plans = target.plans.as_ref().context("give --coordinator URL, or --plans DIR to ask the cell's agent directly")?;
    let plan = load_plan(plans)?;
    let cell_plan = plan.cells.iter().find(|c| c.name == cell).with_context(|| format!("no cell {cell} in plan {}", plan.name))?;
    if kind == RunKind::Drill {
        bail!("without a coordinator, run drills with `lifeboat drill run --plans DIR --signing-key KEY`: the report must be signed");
    }
    let spec = job_spec(&plan, kind, cell_plan, None)?;
    let token = crate::secrets::resolve(&cell_plan.agent_token, &format!("agent token of cell {cell}"))?;
    let agent = AgentClient::with_options(cell, &cell_plan.agent_url, token, crate::serve::agent_options()?).map_err(anyhow::Error::msg)?;
    let key = format!("lifeboat-cli-{}-{:08x}", clock::now().unix_timestamp(), rand::random::<u32>());
    let job = match agent.submit(&key, &spec).await? {
        Submitted::Job(job) => job,
        Submitted::Refused(reason) => bail!("the agent of cell {cell} refused the job: {reason}"),
    };
    eprintln!("job {} started on the agent of cell {cell}: {kind}", job.id);
    let job = agent.wait(&job.id, Duration::from_millis(500)).await?;
    Ok(DirectRun {
        cell: cell.to_string(),
        kind,
        trigger: "operator (direct)",
        agent_job: job.id,
        state: job.state,
        error: job.error,
        result: job.result,
        started: job.started,
        finished: job.finished,
    })
}

/// `GET /v1/runs`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunList {
    pub runs: Vec<Run>,
}

pub async fn list(src: &HistorySource, cell: Option<&str>, limit: usize) -> Result<Done<RunList>> {
    let list = match &src.coordinator {
        Some(base) => {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(cell.map(|c| ("cell", c.to_string())));
            Remote::new(base, &src.credentials)?.get("/v1/runs", &query).await?
        }
        None => RunList { runs: open_existing(src)?.runs(cell, limit)? },
    };
    let text = render_runs(&list.runs);
    Ok(Done::ok(list, text))
}

pub async fn show(src: &HistorySource, id: i64) -> Result<Done<Run>> {
    let run = match &src.coordinator {
        Some(base) => Remote::new(base, &src.credentials)?.get(&format!("/v1/runs/{id}"), &[]).await?,
        None => open_existing(src)?.run(id)?.with_context(|| format!("no run {id} in the state database"))?,
    };
    let text = render_run(&run);
    Ok(Done::ok(run, text))
}

fn open_existing(src: &HistorySource) -> Result<Store> {
    let path = src.state.as_ref().context("give --coordinator URL or --state FILE")?;
    if !path.exists() {
        bail!("no state database at {}", path.display());
    }
    Store::open(path)
}

/// A run for people.
pub fn render_run(r: &Run) -> String {
    let mut out = format!("run {}: {} for cell {}: {} (attempt {})", r.id, r.kind, r.cell, r.state.as_str(), r.attempt);
    if r.overdue {
        out.push_str(", overdue");
    }
    match &r.result {
        Some(RunResult::Drill { report, .. }) => {
            out.push_str(&format!("; drill {}, report {:06}-{}", report.verdict.as_str(), report.chain.sequence, report.report_id));
        }
        Some(result) => {
            if let Some(id) = result.made() {
                out.push_str(&format!("; {id}"));
            }
        }
        None => {}
    }
    if let Some(e) = &r.error {
        out.push_str(&format!("\n  error: {e}"));
    }
    out
}

fn render_direct(d: &DirectRun) -> String {
    let mut out = format!("job {} for cell {}: {}", d.kind, d.cell, d.state.as_str());
    if let Some(id) = d.result.clone().map(RunResult::Job).as_ref().and_then(RunResult::made) {
        out.push_str(&format!("; {id}"));
    }
    if let Some(e) = &d.error {
        out.push_str(&format!("\n  error: {e}"));
    }
    out
}

pub fn render_runs(runs: &[Run]) -> String {
    let line = |cols: [&str; 8]| {
        format!(
            "{:<6} {:<12} {:<16} {:<9} {:<10} {:<3} {:<24} {}\n",
            cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7]
        )
    };
    let mut out = line(["RUN", "CELL", "KIND", "TRIGGER", "STATE", "TRY", "SCHEDULED/CREATED", "FINISHED"]);
    for r in runs {
        let state = format!("{}{}", r.state.as_str(), if r.overdue { "!" } else { "" });
        let when = clock::ts(r.scheduled_for.unwrap_or(r.created));
        let finished = r.finished.map(clock::ts).unwrap_or_default();
        out.push_str(&line([
            &r.id.to_string(),
            &r.cell,
            r.kind.as_str(),
            r.trigger.as_str(),
            &state,
            &r.attempt.to_string(),
            &when,
            &finished,
        ]));
    }
    out
}
