//! Reports in the repository: the coordinator signs a drill's report and
//! hands it to the cell's agent, which stores it under `reports/<cell>/`
//! in its primary repository (sealed like every object, so geo-copy
//! carries it to every location and verifies it there). Stored reports are
//! never replaced: a second PUT of the same name must carry the same bytes.
//!
//! A recovery site also keeps a guest cell's chain (`?cell=&location=`,
//! [`ReportScope`]): a failover's report goes after the newest report in
//! the location the cell was restored from.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use lifeboat_api::service::ReportScope;
use lifeboat_repository::{format, RepoError, Repository};
use lifeboat_storage::PutMode;

use super::answer::error;
use super::Agent;

/// The repository and report prefix `scope` names (see [`scoped`]).
async fn place(agent: &Agent, scope: &ReportScope) -> Result<(Repository, String), Response> {
    let (repo, cell) = scoped(agent, scope).await?;
    Ok((repo, format!("reports/{cell}/")))
}

/// The repository and cell `scope` names: the agent's own, or a guest's at
/// one of its locations (404 for one this agent does not host).
pub(super) async fn scoped(agent: &Agent, scope: &ReportScope) -> Result<(Repository, String), Response> {
    let cell = match scope.cell.as_deref() {
        None => return Ok((agent.repo.clone(), agent.config.cell.clone())),
        Some(c) if c == agent.config.cell && scope.location.is_none() => return Ok((agent.repo.clone(), c.to_string())),
        Some(c) => c,
    };
    let guests = agent.config.guest_locations(cell);
    let found = match scope.location.as_deref() {
        Some(l) => guests.iter().find(|g| g.location == l),
        None => guests.first(),
    };
    let Some(g) = found else {
        let at = scope.location.as_deref().map(|l| format!(" at location {l}")).unwrap_or_default();
        return Err(error(StatusCode::NOT_FOUND, format!("this agent hosts no guest cell {cell}{at} (--guest {cell}@LOCATION=URL)")));
    };
    match super::recovery::open_guest(agent, cell, &g.url).await {
        Ok(repo) => Ok((repo, cell.to_string())),
        Err(e) => Err(error(StatusCode::BAD_GATEWAY, format!("opening guest cell {cell}'s repository at {}: {e:#}", g.location))),
    }
}

use lifeboat_api::service::is_report_name as valid_name;

fn bad_name(name: &str) -> Response {
    error(StatusCode::BAD_REQUEST, format!("`{name}` is not a report name (NNNNNN-<id>.json or .html)"))
}

/// `GET /v1/reports`: the names stored for this cell, in chain order.
pub async fn list(State(agent): State<Arc<Agent>>, Query(scope): Query<ReportScope>) -> Response {
    let (repo, prefix) = match place(&agent, &scope).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match repo.store().list(&prefix).await {
        Ok(objects) => {
            let names: Vec<&str> = objects.iter().map(|o| &o.path.as_str()[prefix.len()..]).filter(|n| valid_name(n)).collect();
            Json(lifeboat_api::service::ReportList { reports: names.into_iter().map(String::from).collect() }).into_response()
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("listing reports: {e}")),
    }
}

/// `GET /v1/reports/{name}`: the report, its seal verified.
pub async fn get(State(agent): State<Arc<Agent>>, Path(name): Path<String>, Query(scope): Query<ReportScope>) -> Response {
    if !valid_name(&name) {
        return bad_name(&name);
    }
    let (repo, prefix) = match place(&agent, &scope).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let path = format::path(&format!("{prefix}{name}"));
    match repo.read_object(&path).await {
        Ok(bytes) => {
            let kind = if name.ends_with(".html") { "text/html; charset=utf-8" } else { "application/json" };
            ([(header::CONTENT_TYPE, kind)], bytes).into_response()
        }
        Err(lifeboat_repository::RepoError::Store(e)) if e.is_not_found() => {
            error(StatusCode::NOT_FOUND, format!("no report {name} under {prefix}"))
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("reading report {name}: {e}")),
    }
}

/// `PUT /v1/reports/{name}`: store once (201); the same bytes again are
/// accepted (200); other bytes under a stored name are refused (409).
pub async fn put(State(agent): State<Arc<Agent>>, Path(name): Path<String>, Query(scope): Query<ReportScope>, body: Bytes) -> Response {
    if !valid_name(&name) {
        return bad_name(&name);
    }
    let (repo, prefix) = match place(&agent, &scope).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let path = format::path(&format!("{prefix}{name}"));
    if name.ends_with(".json") {
        // One report per place in the chain: a second signer of the same
        // sequence must read the chain again.
        match repo.store().list(&format!("{prefix}{}", &name[..6])).await {
            Ok(taken) => {
                if let Some(other) = taken.iter().map(|o| o.path.as_str()).find(|p| p.ends_with(".json") && !p.ends_with(&name)) {
                    return error(
                        StatusCode::CONFLICT,
                        format!("place {} of the chain is taken by {other}; read the chain again and seal after it", &name[..6]),
                    );
                }
            }
            Err(e) => return error(StatusCode::BAD_GATEWAY, format!("listing reports: {e}")),
        }
    }
    match repo.put_sealed(&path, &body, PutMode::Create).await {
        Ok(()) => {
            tracing::info!(report = %name, "report stored");
            StatusCode::CREATED.into_response()
        }
        Err(RepoError::Store(e)) if e.is_already_exists() => match repo.read_object(&path).await {
            Ok(existing) if existing == body.as_ref() => StatusCode::OK.into_response(),
            Ok(_) => error(StatusCode::CONFLICT, format!("report {name} is already stored with other content; reports are never replaced")),
            Err(e) => error(StatusCode::BAD_GATEWAY, format!("reading the stored report {name}: {e}")),
        },
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("storing report {name}: {e}")),
    }
}
