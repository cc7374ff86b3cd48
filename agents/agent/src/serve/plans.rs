//! Plans stored with the repositories: the coordinator hands each cell's
//! agent the plan it runs, every file of the plan directory signed with
//! the plan key, and the agent stores it, sealed and create-only, as
//! `plans/<cell>/<sha256>.json` (geo-copy carries it to every location), so
//! a coordinator that takes over from a surviving location can tell which
//! plan was in force. The agent stores only a plan its `--plan-key`
//! signed whose files have the digest it is named by.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use lifeboat_api::service::{is_plan_digest, PlanEntry, PlanList, ReportScope, StoredPlan};
use lifeboat_repository::{format, RepoError};
use lifeboat_secrets::signing::{plan_digest, plan_message};
use lifeboat_storage::PutMode;

use super::answer::error;
use super::Agent;

fn bad_digest(sha256: &str) -> Response {
    error(StatusCode::BAD_REQUEST, format!("`{sha256}` is not a plan digest (64 lowercase hex digits)"))
}

/// `GET /v1/plans`: every plan stored for the scope's cell, oldest signed first.
pub async fn list(State(agent): State<Arc<Agent>>, Query(scope): Query<ReportScope>) -> Response {
    let (repo, cell) = match super::reports::scoped(&agent, &scope).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let prefix = format!("plans/{cell}/");
    let objects = match repo.store().list(&prefix).await {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_GATEWAY, format!("listing {prefix}: {e}")),
    };
    let mut plans = Vec::new();
    for o in objects.iter().filter(|o| o.path.as_str().ends_with(".json")) {
        let stored = match repo.read_object(&o.path).await.map(|b| serde_json::from_slice::<StoredPlan>(&b)) {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return error(StatusCode::BAD_GATEWAY, format!("{} is not a stored plan: {e}", o.path)),
            Err(e) => return error(StatusCode::BAD_GATEWAY, format!("reading {}: {e}", o.path)),
        };
        plans.push(PlanEntry { plan: stored.plan, sha256: stored.sha256, signed_at: stored.signed_at });
    }
    plans.sort_by_key(|p| p.signed_at);
    Json(PlanList { plans }).into_response()
}

/// `GET /v1/plans/{sha256}`: one stored plan.
pub async fn get(State(agent): State<Arc<Agent>>, Path(sha256): Path<String>, Query(scope): Query<ReportScope>) -> Response {
    if !is_plan_digest(&sha256) {
        return bad_digest(&sha256);
    }
    let (repo, cell) = match super::reports::scoped(&agent, &scope).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let path = format::path(&format!("plans/{cell}/{sha256}.json"));
    match repo.read_object(&path).await {
        Ok(bytes) => ([(axum::http::header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(RepoError::Store(e)) if e.is_not_found() => error(StatusCode::NOT_FOUND, format!("no plan {sha256} stored for cell {cell}")),
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("reading {path}: {e}")),
    }
}

/// `PUT /v1/plans/{sha256}`: store a plan the plan key signed (201; 200
/// when it is already there).
pub async fn put(
    State(agent): State<Arc<Agent>>,
    Path(sha256): Path<String>,
    Query(scope): Query<ReportScope>,
    Json(plan): Json<StoredPlan>,
) -> Response {
    if !is_plan_digest(&sha256) {
        return bad_digest(&sha256);
    }
    if let Err((status, why)) = check(&agent, &sha256, &plan) {
        return error(status, why);
    }
    let (repo, cell) = match super::reports::scoped(&agent, &scope).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let path = format::path(&format!("plans/{cell}/{sha256}.json"));
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
    if plan.signature.key_id != key.key_id || !key.verify(&plan_message(sha256), &plan.signature.signature) {
        return Err((StatusCode::FORBIDDEN, format!("the plan is not signed with the plan key (key id {})", key.key_id)));
    }
    Ok(())
}
