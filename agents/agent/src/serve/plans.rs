//! Plans stored with the repositories: the coordinator hands each cell's
//! agent the plan it runs, every file of the plan directory signed with
//! the plan key, and the agent stores it, sealed and create-only, as
//! `plans/<cell>/<signed at, 20-digit Unix nanoseconds>-<sha256>.json`
//! (geo-copy carries it to every location), so a coordinator that takes
//! over from a surviving location can tell which plan was in force. A plan
//! is stored again only when the newest stored one is another (a plan put
//! back after a change is newest again). The agent stores only a plan its
//! `--plan-key` signed (its digest, name and signing time) whose files
//! have the digest it is named by.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use lifeboat_api::service::{is_plan_digest, PlanEntry, PlanList, ReportScope, StoredPlan};
use lifeboat_repository::{format, RepoError, Repository};
use lifeboat_secrets::signing::{plan_digest, plan_message};
use lifeboat_storage::ObjectPath;
use lifeboat_storage::PutMode;

use super::answer::error;
use super::Agent;

fn bad_digest(sha256: &str) -> Response {
    error(StatusCode::BAD_REQUEST, format!("`{sha256}` is not a plan digest (64 lowercase hex digits)"))
}

/// The stored plans of `cell`, oldest signed first (by their names).
async fn stored(repo: &Repository, cell: &str) -> Result<Vec<ObjectPath>, Response> {
    let prefix = format!("plans/{cell}/");
    let mut paths: Vec<ObjectPath> = match repo.store().list(&prefix).await {
        Ok(o) => o.into_iter().map(|o| o.path).filter(|p| p.as_str().ends_with(".json")).collect(),
        Err(e) => return Err(error(StatusCode::BAD_GATEWAY, format!("listing {prefix}: {e}"))),
    };
    paths.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Ok(paths)
}

/// `GET /v1/plans`: every plan stored for the scope's cell, oldest signed
/// first; one that cannot be read is logged and left out.
pub async fn list(State(agent): State<Arc<Agent>>, Query(scope): Query<ReportScope>) -> Response {
    let (repo, cell) = match super::reports::scoped(&agent, &scope).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let paths = match stored(&repo, &cell).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mut plans = Vec::new();
    for path in paths {
        match repo.read_object(&path).await.map(|b| serde_json::from_slice::<StoredPlan>(&b)) {
            Ok(Ok(p)) => plans.push(PlanEntry { plan: p.plan, sha256: p.sha256, signed_at: p.signed_at }),
            Ok(Err(e)) => tracing::warn!(%path, "not a stored plan: {e}"),
            Err(e) => tracing::warn!(%path, "reading a stored plan: {e}"),
        }
    }
    Json(PlanList { plans }).into_response()
}

/// `GET /v1/plans/{sha256}`: the newest stored signing of that plan.
pub async fn get(State(agent): State<Arc<Agent>>, Path(sha256): Path<String>, Query(scope): Query<ReportScope>) -> Response {
    if !is_plan_digest(&sha256) {
        return bad_digest(&sha256);
    }
    let (repo, cell) = match super::reports::scoped(&agent, &scope).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let newest = match stored(&repo, &cell).await {
        Ok(paths) => paths.into_iter().rfind(|p| p.as_str().ends_with(&format!("-{sha256}.json"))),
        Err(r) => return r,
    };
    let Some(path) = newest else { return error(StatusCode::NOT_FOUND, format!("no plan {sha256} stored for cell {cell}")) };
    match repo.read_object(&path).await {
        Ok(bytes) => ([(axum::http::header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("reading {path}: {e}")),
    }
}

/// `PUT /v1/plans/{sha256}`: store a plan the plan key signed (201; 200
/// when it is the newest stored already).
pub async fn put(State(agent): State<Arc<Agent>>, Path(sha256): Path<String>, Query(scope): Query<ReportScope>, body: Bytes) -> Response {
    if !is_plan_digest(&sha256) {
        return bad_digest(&sha256);
    }
    let plan: StoredPlan = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, format!("not a stored plan (JSON: plan, sha256, files, signed_at, signature): {e}"))
        }
    };
    if let Err((status, why)) = check(&agent, &sha256, &plan) {
        return error(status, why);
    }
    let (repo, cell) = match super::reports::scoped(&agent, &scope).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match stored(&repo, &cell).await {
        Ok(paths) if paths.last().is_some_and(|p| p.as_str().ends_with(&format!("-{sha256}.json"))) => {
            return StatusCode::OK.into_response()
        }
        Ok(_) => {}
        Err(r) => return r,
    }
    let path = format::path(&format!("plans/{cell}/{:020}-{sha256}.json", plan.signed_at.unix_timestamp_nanos()));
    let body = serde_json::to_vec(&plan).expect("a stored plan serialises");
    match repo.put_sealed(&path, &body, PutMode::Create).await {
        Ok(()) => {
            tracing::info!(plan = %plan.plan, %sha256, "plan stored");
            StatusCode::CREATED.into_response()
        }
        Err(RepoError::Store(e)) if e.is_already_exists() => StatusCode::OK.into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("storing {path}: {e}")),
    }
}

/// The plan is named by its files' digest and signed with the plan key
/// (the refusal's status and reason otherwise).
fn check(agent: &Agent, sha256: &str, plan: &StoredPlan) -> Result<(), (StatusCode, String)> {
    let digest = plan_digest(plan.files.iter().map(|(n, c)| (n.as_str(), c.as_str())));
    if digest != sha256 || plan.sha256 != sha256 {
        return Err((StatusCode::BAD_REQUEST, format!("the plan's files have digest {digest}, not {sha256}")));
    }
    let Some(key) = &agent.plan_key else {
        let why = "this agent has no --plan-key: it cannot tell a signed plan from another, so it stores none";
        return Err((StatusCode::FORBIDDEN, why.into()));
    };
    let message = plan_message(sha256, &plan.plan, plan.signed_at.unix_timestamp_nanos());
    if plan.signature.key_id != key.key_id || !key.verify(&message, &plan.signature.signature) {
        return Err((StatusCode::FORBIDDEN, format!("the plan is not signed with the plan key (key id {})", key.key_id)));
    }
    Ok(())
}
