//! The coordinator's HTTP API and status page. Who may call what is
//! [`super::access`]'s: reads need a viewer or operator token, starting a
//! run or acting on a failover ([`super::failovers`]) the operator token;
//! only the health check is open. What is served
//! carries names and times, never secrets or URLs with credentials.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use lifeboat_https::Peer;
use serde::Deserialize;

use super::Coordinator;
use crate::clock;
use crate::commands::runs::RunList;
use crate::runs::{RunKind, RunRequest, Trigger};
use crate::store::NewRun;

pub fn router(c: Arc<Coordinator>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/v1/health", get(health))
        .route("/healthz", get(health))
        .route("/v1/status", get(status))
        .route("/v1/runs", get(runs).post(start_run))
        .route("/v1/runs/{id}", get(run))
        .route("/reports/{cell}/{name}", get(stored_report))
        .route("/v1/failover/plan", get(failover_plan))
        .route("/v1/takeover", get(takeover))
        .route("/v1/leader", get(leader))
        .route("/v1/failovers", get(failovers).post(super::failovers::start))
        .route("/v1/failovers/{id}", get(failover))
        .route("/v1/failovers/{id}/{action}", post(super::failovers::act))
        .route("/metrics", get(metrics))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(c.clone(), followers_refuse))
        .layer(axum::middleware::from_fn_with_state(c.clone(), super::access::require))
        .layer(axum::middleware::from_fn(refuse_traversal))
        .with_state(c)
}

/// A coordinator that does not lead reads, never acts: 503, naming the
/// leader to send the command to.
async fn followers_refuse(State(c): State<Arc<Coordinator>>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD || c.leader.leading() {
        return next.run(req).await;
    }
    let leader = c.blocking(|c| c.store.leader()).await.ok().flatten().filter(|l| !l.expired);
    let whom =
        leader.map_or("none holds the lease now; try again within the lease".to_string(), |l| format!("the leader is {}", l.address));
    let mut answer = error(StatusCode::SERVICE_UNAVAILABLE, format!("this coordinator does not lead ({whom}): send the command there"));
    answer.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    answer
}

/// 400 for a path that climbs (`..`) or hides a separator or a dot behind
/// percent-encoding, however many times encoded, before any route sees it.
async fn refuse_traversal(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if climbs(req.uri().path()) {
        tracing::warn!(path = req.uri().path(), "refused a path that climbs out of its place");
        return error(StatusCode::BAD_REQUEST, "the path holds `..` or an encoded separator; name a report as NNNNNN-<id>.json or .html");
    }
    next.run(req).await
}

fn climbs(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    path.split('/').any(|s| s == "..") || ["%2f", "%5c", "%2e", "%25"].iter().any(|e| lower.contains(e))
}

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(lifeboat_api::ErrorBody { error: message.into() })).into_response()
}

pub(super) fn internal(e: anyhow::Error) -> Response {
    tracing::error!("{e:#}");
    error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
}

/// Open to all, so it says nothing but that the coordinator answers.
async fn health() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

async fn status(State(c): State<Arc<Coordinator>>) -> Response {
    match c.blocking(|c| c.status()).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => internal(e),
    }
}

#[derive(Deserialize)]
struct FailoverQuery {
    scenario: String,
    failed: String,
}

/// What a scenario would do for what failed; changes nothing.
async fn failover_plan(State(c): State<Arc<Coordinator>>, Query(q): Query<FailoverQuery>) -> Response {
    let status = match c.blocking(|c| c.status()).await {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    let standbys = crate::commands::failover::standbys_for(&c.plan, &q.scenario, &q.failed).await;
    match crate::failover::assess::assess(&c.plan, &status, &standbys, &q.scenario, &q.failed, clock::now()) {
        Ok(a) => Json(a).into_response(),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")),
    }
}

/// What a coordinator started with `--takeover` found in the location it
/// took over from (404 for one that did not take over).
async fn takeover(State(c): State<Arc<Coordinator>>) -> Response {
    match &c.takeover {
        Some(t) => Json(t.found()).into_response(),
        None => error(StatusCode::NOT_FOUND, "this coordinator did not take over (lifeboat serve --takeover --from-location NAME)"),
    }
}

/// Whether this coordinator leads, with which epoch, and who holds the lease.
async fn leader(State(c): State<Arc<Coordinator>>) -> Response {
    match c.blocking(|c| c.store.leader()).await {
        Ok(row) => Json(serde_json::json!({
            "shared": c.leader.shared,
            "leading": c.leader.leading(),
            "epoch": c.leader.epoch(),
            "holder": c.leader.holder,
            "lease_seconds": c.leader.lease.as_secs_f64(),
            "lease": row,
        }))
        .into_response(),
        Err(e) => internal(e),
    }
}

/// The failovers journaled in this coordinator's state database, newest first.
async fn failovers(State(c): State<Arc<Coordinator>>) -> Response {
    match c.blocking(|c| crate::failover::journal::Journal(&c.store).list()).await {
        Ok(all) => Json(serde_json::json!({ "failovers": all })).into_response(),
        Err(e) => internal(e),
    }
}

/// One failover: its steps, approvals and what each cell measured so far.
async fn failover(State(c): State<Arc<Coordinator>>, Path(id): Path<String>) -> Response {
    match c.blocking(move |c| crate::failover::view::view(&c.store, &id)).await {
        Ok(v) => Json(v).into_response(),
        Err(e) if e.to_string().starts_with("no failover") => error(StatusCode::NOT_FOUND, format!("{e:#}")),
        Err(e) => internal(e),
    }
}

async fn metrics(State(c): State<Arc<Coordinator>>) -> Response {
    match c.blocking(|c| c.status()).await {
        Ok(s) => c.metrics.status(&s),
        Err(e) => return internal(e),
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], c.metrics.render()).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    cell: Option<String>,
    limit: Option<usize>,
}

async fn runs(State(c): State<Arc<Coordinator>>, q: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>) -> Response {
    let Ok(Query(q)) = q else { return error(StatusCode::BAD_REQUEST, "query parameters: cell, limit") };
    match c.blocking(move |c| c.store.runs(q.cell.as_deref(), q.limit.unwrap_or(100))).await {
        Ok(runs) => Json(RunList { runs }).into_response(),
        Err(e) => internal(e),
    }
}

async fn run(State(c): State<Arc<Coordinator>>, Path(id): Path<i64>) -> Response {
    match c.blocking(move |c| c.store.run(id)).await {
        Ok(Some(r)) => Json(r).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no run {id}")),
        Err(e) => internal(e),
    }
}

/// `POST /v1/runs {"cell", "kind"}` (the operator token, checked by the
/// access layer): queue a run now.
async fn start_run(State(c): State<Arc<Coordinator>>, Extension(Peer(peer)): Extension<Peer>, body: Bytes) -> Response {
    let req: RunRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("expected {{\"cell\": ..., \"kind\": one of {}}}: {e}", RunKind::names())),
    };
    let Some(cell) = c.plan.cells.iter().find(|x| x.name == req.cell) else {
        let names: Vec<&str> = c.plan.cells.iter().map(|x| x.name.as_str()).collect();
        return error(StatusCode::NOT_FOUND, format!("no cell {} in plan {}; cells: {}", req.cell, c.plan.name, names.join(", ")));
    };
    let kind = req.kind;
    if !super::scheduler::duties(cell).iter().any(|(k, _)| *k == kind) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, format!("cell {} has no {kind} in its plan", cell.name));
    }
    let name = cell.name.clone();
    let recorded = c.blocking(move |c| -> anyhow::Result<Option<crate::store::Run>> {
        let new = NewRun { cell: &name, kind, trigger: Trigger::Operator, scheduled_for: None, deadline: None };
        let Some(id) = c.store.insert_run(&new, clock::now())? else { return Ok(None) };
        tracing::info!(cell = %name, %kind, run = id, %peer, "operator run");
        c.store.run(id)
    });
    match recorded.await {
        Ok(Some(r)) => (StatusCode::ACCEPTED, Json(r)).into_response(),
        Ok(None) => error(StatusCode::INTERNAL_SERVER_ERROR, "the run was not recorded"),
        Err(e) => internal(e),
    }
}

/// A stored report (JSON or its HTML page), read from the cell's
/// repository through its agent. The name is checked first: nothing that
/// is not a report name (a path, in any encoding) reaches the agent.
async fn stored_report(State(c): State<Arc<Coordinator>>, Path((cell, name)): Path<(String, String)>) -> Response {
    if !lifeboat_api::service::is_report_name(&name) {
        return error(StatusCode::BAD_REQUEST, "not a report name (NNNNNN-<id>.json or .html)");
    }
    let Some(agent) = c.agents.get(&cell) else {
        return error(StatusCode::NOT_FOUND, format!("no cell {cell} in plan {}", c.plan.name));
    };
    match agent.report(&name).await {
        Ok(bytes) => {
            let kind = if name.ends_with(".html") { "text/html; charset=utf-8" } else { "application/json" };
            ([(header::CONTENT_TYPE, kind)], bytes).into_response()
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("{e:#}")),
    }
}

async fn page(State(c): State<Arc<Coordinator>>) -> Response {
    match c.blocking(|c| c.status().and_then(|s| Ok((s, super::page::drills(c)?)))).await {
        Ok((s, drills)) => Html(super::page::render(&s, &drills)).into_response(),
        Err(e) => internal(e),
    }
}
