//! Operator commands: `backup run`, `snapshot run`, `status`, `runs list`,
//! `runs show`. Each works against a running coordinator (`--coordinator
//! URL`, recorded in its run history) or directly: runs and status straight
//! from the plan's agents (`--plans DIR`), run history straight from the
//! state database (`--state FILE`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::Args;
use serde_json::{json, Value};

use crate::agent_client::{AgentClient, Submitted};
use crate::compliance::{self, Status};
use crate::serve::{agent_clients, load_plan, scheduler};

#[derive(Debug, Args)]
pub struct Target {
    /// A running coordinator's URL (e.g. http://127.0.0.1:7300).
    #[arg(long, env = "LIFEBOAT_COORDINATOR", conflicts_with = "plans")]
    pub coordinator: Option<String>,
    /// The operator token file (for commands that start runs on a coordinator).
    #[arg(long, env = "LIFEBOAT_OPERATOR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Without a coordinator: the plan directory, to talk to the agents directly.
    #[arg(long, env = "LIFEBOAT_PLANS")]
    pub plans: Option<PathBuf>,
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("an HTTP client")
}

async fn coordinator_get(base: &str, path: &str) -> Result<Value> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let resp = http().get(&url).send().await.with_context(|| format!("asking the coordinator at {base}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("coordinator: {status}: {}", body["error"].as_str().unwrap_or("no reason given"));
    }
    Ok(body)
}

/// Start a run of `kind` for `cell`, wait for it (unless `wait` is false
/// and a coordinator runs it), and return what happened.
pub async fn run_now(target: &Target, cell: &str, kind: &str, wait: bool) -> Result<Value> {
    if let Some(base) = &target.coordinator {
        let token_file = target
            .token_file
            .as_ref()
            .context("--token-file (or LIFEBOAT_OPERATOR_TOKEN_FILE) is needed to start runs on a coordinator")?;
        let token = crate::secrets::resolve(&format!("file:{}", token_file.display()), "operator token")?;
        let resp = http()
            .post(format!("{}/v1/runs", base.trim_end_matches('/')))
            .bearer_auth(token)
            .json(&json!({ "cell": cell, "kind": kind }))
            .send()
            .await
            .with_context(|| format!("asking the coordinator at {base}"))?;
        let status = resp.status();
        let run: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("coordinator refused the run ({status}): {}", run["error"].as_str().unwrap_or("no reason given"));
        }
        let id = run["id"].as_i64().context("the coordinator answered without a run id")?;
        eprintln!("run {id} queued on the coordinator: {kind} for cell {cell}");
        if !wait {
            return Ok(run);
        }
        loop {
            let run = coordinator_get(base, &format!("/v1/runs/{id}")).await?;
            if run["state"] == "succeeded" || run["state"] == "failed" {
                return Ok(run);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    let plans = target.plans.as_ref().context("give --coordinator URL, or --plans DIR to ask the cell's agent directly")?;
    let plan = load_plan(plans)?;
    let cell_plan = plan.cells.iter().find(|c| c.name == cell).with_context(|| format!("no cell {cell} in plan {}", plan.name))?;
    if kind == "drill" {
        bail!("without a coordinator, run drills with `lifeboat drill run --plans DIR --signing-key KEY`: the report must be signed");
    }
    let spec = scheduler::job_spec(&plan, kind, cell_plan).with_context(|| format!("unknown run kind {kind}"))?;
    let token = crate::secrets::resolve(&cell_plan.agent_token, &format!("agent token of cell {cell}"))?;
    let agent = AgentClient::new(cell, &cell_plan.agent_url, token);
    let key = format!("lifeboat-cli-{}-{:08x}", Utc::now().format("%Y%m%dT%H%M%S"), rand::random::<u32>());
    let job = match agent.submit(&key, &spec).await? {
        Submitted::Job(job) => job,
        Submitted::Refused(reason) => bail!("the agent of cell {cell} refused the job: {reason}"),
    };
    let id = job["id"].as_str().context("the agent answered without a job id")?.to_string();
    eprintln!("job {id} started on the agent of cell {cell}: {kind}");
    let job = agent.wait(&id, Duration::from_millis(500)).await?;
    Ok(json!({
        "cell": cell, "kind": kind, "trigger": "operator (direct)", "agent_job": id,
        "state": job["state"], "error": job["error"], "result": job["result"],
        "started": job["started"], "finished": job["finished"],
    }))
}

/// The compliance status, from a coordinator or straight from the agents.
pub async fn status(target: &Target) -> Result<Value> {
    if let Some(base) = &target.coordinator {
        return coordinator_get(base, "/v1/status").await;
    }
    let plans = target.plans.as_ref().context("give --coordinator URL, or --plans DIR to ask the agents directly")?;
    let plan = load_plan(plans)?;
    let agents = agent_clients(&plan)?;
    let mut answers: std::collections::HashMap<String, Result<Value>> =
        crate::agent_client::recovery_of_all(agents.values()).await.into_iter().collect();
    let now = Utc::now();
    let status = compliance::status(&plan, now, |cell| {
        Ok(match answers.remove(&cell.name).expect("one answer per cell") {
            Ok(body) => compliance::CellInput { recovery: Some((now, body)), problem: None, drills: None },
            Err(e) => compliance::CellInput { recovery: None, problem: Some(format!("{e:#}")), drills: None },
        })
    })?;
    Ok(serde_json::to_value(status)?)
}

#[derive(Debug, Args)]
pub struct HistorySource {
    #[arg(long, env = "LIFEBOAT_COORDINATOR", conflicts_with = "state")]
    pub coordinator: Option<String>,
    /// Without a coordinator: its state database.
    #[arg(long, env = "LIFEBOAT_STATE")]
    pub state: Option<PathBuf>,
}

pub async fn runs(src: &HistorySource, cell: Option<&str>, limit: usize) -> Result<Value> {
    if let Some(base) = &src.coordinator {
        let mut path = format!("/v1/runs?limit={limit}");
        if let Some(c) = cell {
            path.push_str(&format!("&cell={c}"));
        }
        return coordinator_get(base, &path).await;
    }
    let state = src.state.as_ref().context("give --coordinator URL or --state FILE")?;
    let store = open_existing(state)?;
    Ok(json!({ "runs": store.runs(cell, limit)? }))
}

pub async fn run_show(src: &HistorySource, id: i64) -> Result<Value> {
    if let Some(base) = &src.coordinator {
        return coordinator_get(base, &format!("/v1/runs/{id}")).await;
    }
    let state = src.state.as_ref().context("give --coordinator URL or --state FILE")?;
    let run = open_existing(state)?.run(id)?.with_context(|| format!("no run {id} in {}", state.display()))?;
    Ok(serde_json::to_value(run)?)
}

fn open_existing(path: &std::path::Path) -> Result<crate::store::Store> {
    if !path.exists() {
        bail!("no state database at {}", path.display());
    }
    crate::store::Store::open(path)
}

/// A run (or direct job) for people.
pub fn render_run(r: &Value) -> String {
    let mut out = format!(
        "{} {} for cell {}: {}",
        r["id"].as_i64().map(|i| format!("run {i}:")).unwrap_or_else(|| "job".into()),
        r["kind"].as_str().unwrap_or("?"),
        r["cell"].as_str().unwrap_or("?"),
        r["state"].as_str().unwrap_or("?"),
    );
    if let Some(a) = r["attempt"].as_i64() {
        out.push_str(&format!(" (attempt {a})"));
    }
    if r["overdue"] == true {
        out.push_str(", overdue");
    }
    if let Some(id) = r["result"]["backup_id"].as_str().or(r["result"]["snapshot_id"].as_str()) {
        out.push_str(&format!("; {id}"));
    }
    let report = &r["result"]["report"];
    if let (Some(verdict), Some(seq)) = (report["verdict"].as_str(), report["chain"]["sequence"].as_u64()) {
        out.push_str(&format!("; drill {verdict}, report {seq:06}-{}", report["report_id"].as_str().unwrap_or("?")));
    }
    if let Some(e) = r["error"].as_str() {
        out.push_str(&format!("\n  error: {e}"));
    }
    out
}

pub fn render_runs(v: &Value) -> String {
    let mut out = format!(
        "{:<6} {:<12} {:<16} {:<9} {:<10} {:<3} {:<24} {}\n",
        "RUN", "CELL", "KIND", "TRIGGER", "STATE", "TRY", "SCHEDULED/CREATED", "FINISHED"
    );
    for r in v["runs"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<6} {:<12} {:<16} {:<9} {:<10} {:<3} {:<24} {}\n",
            r["id"].as_i64().unwrap_or_default(),
            r["cell"].as_str().unwrap_or(""),
            r["kind"].as_str().unwrap_or(""),
            r["trigger"].as_str().unwrap_or(""),
            format!("{}{}", r["state"].as_str().unwrap_or(""), if r["overdue"] == true { "!" } else { "" }),
            r["attempt"].as_i64().unwrap_or_default(),
            r["scheduled_for"].as_str().or(r["created"].as_str()).unwrap_or(""),
            r["finished"].as_str().unwrap_or("")
        ));
    }
    out
}

/// Exit status of a finished run for scripts.
pub fn succeeded(r: &Value) -> bool {
    r["state"] == "succeeded"
}

pub fn render_status(v: &Value) -> Result<String> {
    let s: Status = serde_json::from_value(v.clone()).context("the status answer has an unexpected shape")?;
    Ok(compliance::render(&s))
}
