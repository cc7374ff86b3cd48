//! Reports in the repository: the coordinator signs a drill's report and
//! hands it to the cell's agent, which stores it under `reports/<cell>/`
//! in its primary repository (sealed like every object, so geo-copy
//! carries it to every location and verifies it there). Stored reports are
//! never replaced: a second PUT of the same name must carry the same bytes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use lifeboat_repository::{format, RepoError};
use lifeboat_storage::PutMode;

use super::answer::error;
use super::Agent;

fn prefix(agent: &Agent) -> String {
    format!("reports/{}/", agent.config.cell)
}

use lifeboat_api::service::is_report_name as valid_name;

fn bad_name(name: &str) -> Response {
    error(StatusCode::BAD_REQUEST, format!("`{name}` is not a report name (NNNNNN-<id>.json or .html)"))
}

/// `GET /v1/reports`: the names stored for this cell, in chain order.
pub async fn list(State(agent): State<Arc<Agent>>) -> Response {
    let prefix = prefix(&agent);
    match agent.repo.store().list(&prefix).await {
        Ok(objects) => {
            let names: Vec<&str> = objects.iter().map(|o| &o.path.as_str()[prefix.len()..]).filter(|n| valid_name(n)).collect();
            Json(lifeboat_api::service::ReportList { reports: names.into_iter().map(String::from).collect() }).into_response()
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("listing reports: {e}")),
    }
}

/// `GET /v1/reports/{name}`: the report, its seal verified.
pub async fn get(State(agent): State<Arc<Agent>>, Path(name): Path<String>) -> Response {
    if !valid_name(&name) {
        return bad_name(&name);
    }
    let path = format::path(&format!("{}{name}", prefix(&agent)));
    match agent.repo.read_object(&path).await {
        Ok(bytes) => {
            let kind = if name.ends_with(".html") { "text/html; charset=utf-8" } else { "application/json" };
            ([(header::CONTENT_TYPE, kind)], bytes).into_response()
        }
        Err(lifeboat_repository::RepoError::Store(e)) if e.is_not_found() => {
            error(StatusCode::NOT_FOUND, format!("no report {name} for cell {}", agent.config.cell))
        }
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("reading report {name}: {e}")),
    }
}

/// `PUT /v1/reports/{name}`: store once (201); the same bytes again are
/// accepted (200); other bytes under a stored name are refused (409).
pub async fn put(State(agent): State<Arc<Agent>>, Path(name): Path<String>, body: Bytes) -> Response {
    if !valid_name(&name) {
        return bad_name(&name);
    }
    let path = format::path(&format!("{}{name}", prefix(&agent)));
    if name.ends_with(".json") {
        // One report per place in the chain: a second signer of the same
        // sequence must read the chain again.
        match agent.repo.store().list(&format!("{}{}", prefix(&agent), &name[..6])).await {
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
    match agent.repo.put_sealed(&path, &body, PutMode::Create).await {
        Ok(()) => {
            tracing::info!(report = %name, "report stored");
            StatusCode::CREATED.into_response()
        }
        Err(RepoError::Store(e)) if e.is_already_exists() => match agent.repo.read_object(&path).await {
            Ok(existing) if existing == body.as_ref() => StatusCode::OK.into_response(),
            Ok(_) => error(StatusCode::CONFLICT, format!("report {name} is already stored with other content; reports are never replaced")),
            Err(e) => error(StatusCode::BAD_GATEWAY, format!("reading the stored report {name}: {e}")),
        },
        Err(e) => error(StatusCode::BAD_GATEWAY, format!("storing report {name}: {e}")),
    }
}
