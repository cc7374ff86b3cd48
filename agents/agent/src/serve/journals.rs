//! Failover journals mirrored into the repositories: the coordinator hands
//! a recovery site (or a cell's own agent) a failover's journal after each
//! change, and the agent stores it, sealed and create-only, as
//! `failovers/<cell>/<failover id>/<time, 20-digit Unix nanoseconds>.json`
//! in the repository the scope names, so it survives the coordinator's
//! host and travels with geo-copy. Older versions stay: the mirror is the
//! failover's history, and a later writer cannot rewrite an earlier one.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use lifeboat_api::service::{is_failover_id, FailoverJournalList, ReportScope};
use lifeboat_repository::format;
use lifeboat_storage::PutMode;

use super::answer::error;
use super::Agent;

fn bad_id(id: &str) -> Response {
    error(StatusCode::BAD_REQUEST, format!("`{id}` is not a failover id (fo-<lowercase letters, digits and ->)"))
}

/// `GET /v1/failover-journals`: the ids of the failovers mirrored here.
pub async fn list(State(agent): State<Arc<Agent>>, Query(scope): Query<ReportScope>) -> Response {
    let (repo, cell) = match super::reports::scoped(&agent, &scope).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let prefix = format!("failovers/{cell}/");
    let objects = match repo.store().list(&prefix).await {
        Ok(objects) => objects,
        Err(e) => return error(StatusCode::BAD_GATEWAY, format!("listing {prefix}: {e}")),
    };
    let ids: std::collections::BTreeSet<String> = objects
        .iter()
        .filter_map(|o| o.path.as_str().strip_prefix(&prefix)?.split_once('/').map(|(id, _)| id.to_string()))
        .filter(|id| is_failover_id(id))
        .collect();
    Json(FailoverJournalList { failovers: ids.into_iter().collect() }).into_response()
}

/// `GET /v1/failover-journals/{id}`: the newest mirrored version.
pub async fn get(State(agent): State<Arc<Agent>>, Path(id): Path<String>, Query(scope): Query<ReportScope>) -> Response {
    if !is_failover_id(&id) {
        return bad_id(&id);
    }
    let (repo, cell) = match super::reports::scoped(&agent, &scope).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let prefix = format!("failovers/{cell}/{id}/");
    let newest = match repo.store().list(&prefix).await {
        Ok(objects) => {
            objects.into_iter().map(|o| o.path).filter(|p| p.as_str().ends_with(".json")).max_by(|a, b| a.as_str().cmp(b.as_str()))
        }
        Err(e) => return error(StatusCode::BAD_GATEWAY, format!("listing {prefix}: {e}")),
    };
    let Some(path) = newest else { return error(StatusCode::NOT_FOUND, format!("no journal of failover {id} under {prefix}")) };
    match repo.read_object(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("reading {path}: {e}")),
    }
}

/// `PUT /v1/failover-journals/{id}`: store a new version (201).
pub async fn put(State(agent): State<Arc<Agent>>, Path(id): Path<String>, Query(scope): Query<ReportScope>, body: Bytes) -> Response {
    if !is_failover_id(&id) {
        return bad_id(&id);
    }
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&body) {
        return error(StatusCode::BAD_REQUEST, format!("a failover journal is JSON: {e}"));
    }
    let (repo, cell) = match super::reports::scoped(&agent, &scope).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    let path = format::path(&format!("failovers/{cell}/{id}/{stamp:020}.json"));
    match repo.put_sealed(&path, &body, PutMode::Create).await {
        Ok(()) => {
            tracing::debug!(failover = %id, %cell, "failover journal mirrored");
            StatusCode::CREATED.into_response()
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("storing {path}: {e}")),
    }
}
