//! The agent's HTTP API (`lifeboat_api::openapi`, published as
//! docs/agent-api.json): health, version, jobs, recovery points, reports,
//! metrics. Handlers answer with the contract's wire types; they validate,
//! record in the journal and hand work to the runner, never running a job
//! themselves.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use time::OffsetDateTime;

use lifeboat_api::jobs::{JobKind, JobList, JobQuery};
use lifeboat_api::openapi as paths;
use lifeboat_api::service::{Health, Version};

use super::answer::error;
use super::jobs::{check_idempotency_key, queued, Job, JobSpec, State as JobState};
use super::{auth, runner, Agent};

pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route(paths::HEALTH, get(health))
        .route(paths::VERSION, get(version))
        .route(paths::JOBS, post(submit).get(list))
        .route(paths::JOB, get(show))
        .route(paths::RECOVERY, get(recovery))
        .route(paths::GUEST_RECOVERY, get(guest_recovery))
        .route(paths::REPORTS, get(super::reports::list))
        .route(paths::REPORT, get(super::reports::get).put(super::reports::put))
        .route(paths::PLANS, get(super::plans::list))
        .route(paths::PLAN, get(super::plans::get).put(super::plans::put))
        .route(paths::FAILOVER_JOURNALS, get(super::journals::list))
        .route(paths::FAILOVER_JOURNAL, get(super::journals::get).put(super::journals::put))
        .route(paths::METRICS, get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(agent.clone(), super::epoch::check))
        .layer(middleware::from_fn_with_state(agent.clone(), auth::require_token))
        .with_state(agent)
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint; see docs/agent-api.json")
}

async fn health(State(agent): State<Arc<Agent>>) -> Response {
    let (running, queued) = agent.journal().all().fold((0, 0), |(r, q), j| match j.state {
        JobState::Running => (r + 1, q),
        JobState::Queued => (r, q + 1),
        _ => (r, q),
    });
    Json(Health { status: "ok".into(), cell: agent.config.cell.clone(), jobs_running: running, jobs_queued: queued }).into_response()
}

async fn version(State(agent): State<Arc<Agent>>) -> Response {
    Json(Version {
        version: env!("CARGO_PKG_VERSION").into(),
        cell: agent.config.cell.clone(),
        job_kinds: JobKind::ALL.to_vec(),
        locations: agent.config.copy_to.iter().map(|(n, _)| n.clone()).collect(),
    })
    .into_response()
}

async fn recovery(State(agent): State<Arc<Agent>>) -> Response {
    Json(super::recovery::compute(&agent).await).into_response()
}

async fn guest_recovery(State(agent): State<Arc<Agent>>, Path(cell): Path<String>) -> Response {
    match super::recovery::compute_guest(&agent, &cell).await {
        Some(recovery) => Json(recovery).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("this agent hosts no guest cell {cell} (start it with --guest {cell}@LOCATION=URL)")),
    }
}

async fn metrics(State(agent): State<Arc<Agent>>) -> Response {
    agent.geo_copy.refresh(&agent.config.copy_to);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], agent.metrics.render()).into_response()
}

/// A job as the API shows it: the record, with live progress while it runs.
fn view(agent: &Agent, job: &Job) -> Job {
    let mut job = job.clone();
    if job.state == JobState::Running {
        if let Some(p) = runner::read_progress(&agent.journal().progress_path(&job.id)) {
            job.progress = Some(p);
        }
    }
    job
}

/// `POST /v1/jobs` with an `Idempotency-Key` header: the same key and body
/// return the job already made (200); the same key with another body is a
/// conflict (409); otherwise the job is queued (202).
async fn submit(State(agent): State<Arc<Agent>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing Idempotency-Key header: choose one key per intended run, so a retried request returns the same job",
        );
    };
    if let Err(e) = check_idempotency_key(key) {
        return error(StatusCode::BAD_REQUEST, e);
    }
    let spec: JobSpec = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("the job is not valid: {e}")),
    };
    if let Err(e) = super::drill_auth::authorize(&agent, &spec) {
        return error(StatusCode::FORBIDDEN, e);
    }
    if let Err(e) = super::invocation::invocation(&agent, &spec) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, e);
    }
    let job = {
        let mut journal = agent.journal();
        if let Some(existing) = journal.by_key(key) {
            return if existing.spec == spec {
                let job = existing.clone();
                drop(journal);
                (StatusCode::OK, Json(view(&agent, &job))).into_response()
            } else {
                error(
                    StatusCode::CONFLICT,
                    format!(
                        "idempotency key `{key}` already named job {} ({}); use a new key for a different job",
                        existing.id,
                        existing.spec.kind()
                    ),
                )
            };
        }
        let job = queued(key, spec, OffsetDateTime::now_utc());
        if let Err(e) = journal.put(job.clone()) {
            tracing::error!("recording a new job failed: {e:#}");
            return error(StatusCode::INTERNAL_SERVER_ERROR, format!("recording the job failed: {e:#}"));
        }
        job
    };
    tracing::info!(job = %job.id, kind = %job.spec.kind(), key, "job queued");
    tokio::spawn(runner::run(agent.clone(), job.id.clone()));
    let location = format!("/v1/jobs/{}", job.id);
    (StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(job)).into_response()
}

async fn show(State(agent): State<Arc<Agent>>, Path(id): Path<String>) -> Response {
    let job = agent.journal().get(&id).cloned();
    match job {
        Some(job) => Json(view(&agent, &job)).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no job {id} on this agent")),
    }
}

/// `GET /v1/jobs`: newest first, optionally by state and kind.
async fn list(State(agent): State<Arc<Agent>>, query: Result<Query<JobQuery>, axum::extract::rejection::QueryRejection>) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad query: {e}")),
    };
    let jobs: Vec<Job> = agent
        .journal()
        .all()
        .rev()
        .filter(|j| q.state.is_none_or(|s| j.state == s))
        .filter(|j| q.kind.is_none_or(|k| j.spec.kind() == k))
        .take(q.limit.unwrap_or(100))
        .cloned()
        .collect();
    let jobs: Vec<Job> = jobs.iter().map(|j| view(&agent, j)).collect();
    Json(JobList { jobs }).into_response()
}
