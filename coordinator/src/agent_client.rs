//! The coordinator's side of the agent API (docs/agent-api.yaml): submit a
//! job under an idempotency key, read a job, read recovery points. Every
//! call carries the cell's token; errors say which agent and what failed,
//! never the token.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

#[derive(Clone)]
pub struct AgentClient {
    pub cell: String,
    pub url: String,
    token: String,
    http: reqwest::Client,
}

/// What an agent answered to a job submission.
pub enum Submitted {
    Job(Value),
    /// It will not run this job (bad request, not configured for it): retrying cannot help.
    Refused(String),
}

/// What an agent said about a job id.
pub enum JobLookup {
    Found(Value),
    /// The agent does not know it (it lost its journal): the attempt is lost.
    Unknown,
}

impl AgentClient {
    pub fn new(cell: &str, url: &str, token: String) -> AgentClient {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client");
        AgentClient { cell: cell.to_string(), url: url.trim_end_matches('/').to_string(), token, http }
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Result<(u16, Value)> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| anyhow!("agent of cell {} at {}: {what}: {}", self.cell, self.url, without_url(&e)))?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status == 401 {
            bail!("agent of cell {} at {} refused the token (401); check the plan's agent.token for this cell", self.cell, self.url);
        }
        Ok((status, body))
    }

    /// Start (or find, by key) a job. Err: the agent could not be asked.
    pub async fn submit(&self, key: &str, spec: &Value) -> Result<Submitted> {
        let req = self.http.post(format!("{}/v1/jobs", self.url)).header("Idempotency-Key", key).json(spec);
        match self.send(req, "submitting a job").await? {
            (200 | 202, job) => Ok(Submitted::Job(job)),
            (status @ 400..=499, body) => {
                Ok(Submitted::Refused(format!("{status}: {}", body["error"].as_str().unwrap_or("no reason given"))))
            }
            (status, body) => bail!("agent of cell {}: submitting a job gave {status}: {body}", self.cell),
        }
    }

    /// `submit`, with the instant the answer arrived (for scheduling latency).
    pub async fn submit_at(&self, key: String, spec: &Value) -> (Result<Submitted>, chrono::DateTime<chrono::Utc>) {
        let answer = self.submit(&key, spec).await;
        (answer, chrono::Utc::now())
    }

    pub async fn job(&self, id: &str) -> Result<JobLookup> {
        match self.send(self.http.get(format!("{}/v1/jobs/{id}", self.url)), "reading a job").await? {
            (200, job) => Ok(JobLookup::Found(job)),
            (404, _) => Ok(JobLookup::Unknown),
            (status, body) => bail!("agent of cell {}: reading job {id} gave {status}: {body}", self.cell),
        }
    }

    pub async fn recovery(&self) -> Result<Value> {
        match self.send(self.http.get(format!("{}/v1/recovery", self.url)), "reading recovery points").await? {
            (200, body) => Ok(body),
            (status, body) => bail!("agent of cell {}: recovery points gave {status}: {body}", self.cell),
        }
    }

    /// Names of the cell's stored reports, in chain order.
    pub async fn reports(&self) -> Result<Vec<String>> {
        match self.send(self.http.get(format!("{}/v1/reports", self.url)), "listing reports").await? {
            (200, body) => Ok(serde_json::from_value(body["reports"].clone()).context("the agent's report list")?),
            (status, body) => bail!("agent of cell {}: listing reports gave {status}: {body}", self.cell),
        }
    }

    /// One stored report's bytes.
    pub async fn report(&self, name: &str) -> Result<Vec<u8>> {
        let resp = self
            .http
            .get(format!("{}/v1/reports/{name}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| anyhow!("agent of cell {} at {}: reading report {name}: {}", self.cell, self.url, without_url(&e)))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| anyhow!("agent of cell {}: reading report {name}: {}", self.cell, without_url(&e)))?;
        if status != 200 {
            bail!("agent of cell {}: reading report {name} gave {status}: {}", self.cell, String::from_utf8_lossy(&bytes));
        }
        Ok(bytes.to_vec())
    }

    /// Store a report in the cell's repository (never replacing one).
    pub async fn put_report(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        match self.send(self.http.put(format!("{}/v1/reports/{name}", self.url)).body(bytes), "storing a report").await? {
            (200 | 201, _) => Ok(()),
            (status, body) => bail!(
                "agent of cell {}: storing report {name} gave {status}: {}",
                self.cell,
                body["error"].as_str().unwrap_or("no reason given")
            ),
        }
    }

    /// Poll a job until it ends.
    pub async fn wait(&self, id: &str, every: Duration) -> Result<Value> {
        loop {
            match self.job(id).await.context("waiting for the job")? {
                JobLookup::Found(job) if job["state"] == "succeeded" || job["state"] == "failed" => return Ok(job),
                JobLookup::Found(_) => tokio::time::sleep(every).await,
                JobLookup::Unknown => bail!("agent of cell {} no longer knows job {id}", self.cell),
            }
        }
    }
}

/// Every agent's recovery points, all asked at once, by cell.
pub async fn recovery_of_all<'a>(agents: impl IntoIterator<Item = &'a AgentClient>) -> Vec<(String, Result<Value>)> {
    let reads = agents.into_iter().map(|agent| async move { (agent.cell.clone(), agent.recovery().await) });
    futures::future::join_all(reads).await
}

/// reqwest's error text without the URL (the URL is said once, by the caller).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "cannot connect (is the agent running?)"
    } else if e.is_timeout() {
        "timed out"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}
