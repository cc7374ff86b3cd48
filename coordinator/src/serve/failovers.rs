//! Operating failovers through the served coordinator's API, with the
//! operator token: `POST /v1/failovers` assesses and (unless `dry_run`)
//! journals and starts one; `POST /v1/failovers/{id}/{action}` approves,
//! resumes, aborts, commits or fails one back. The same checks as
//! `lifeboat failover` (`crate::commands::failover_run`), the same
//! per-failover lock (one a `lifeboat failover` process drives is refused
//! with 409 and left alone) and the same engine, on a thread of its own:
//! the answer (202) comes once the intent is journaled, and
//! `GET /v1/failovers/{id}` shows the progress. Who acted is the request's
//! `by` (default: the operator token and the caller's address).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use lifeboat_https::Peer;
use serde::Deserialize;

use super::exercises::{carry_out_locked, Act};
use super::http::error;
use super::Coordinator;
use crate::clock;
use crate::commands::failover_run::{self as run, assessed};
use crate::failover::journal::Journal;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Start {
    scenario: String,
    failed: String,
    #[serde(default)]
    test: bool,
    #[serde(default)]
    dry_run: bool,
    by: Option<String>,
    /// RFC 3339; default now.
    failed_at: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ActBody {
    by: Option<String>,
    /// For approve: the gated step (default: the one it waits for).
    step: Option<String>,
    /// For failback: only this cell (default: every cell).
    cell: Option<String>,
}

/// Held while a new failover is checked against the unfinished ones and journaled.
static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn who(by: Option<String>, peer: std::net::SocketAddr) -> String {
    by.filter(|b| !b.trim().is_empty()).unwrap_or_else(|| format!("operator token from {}", peer.ip()))
}

/// 404 for an unknown failover, 409 for a refusal of what it is now.
fn refused(e: anyhow::Error) -> Response {
    let text = format!("{e:#}");
    let status = if text.starts_with("no failover") { StatusCode::NOT_FOUND } else { StatusCode::CONFLICT };
    error(status, text)
}

fn no_signer() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "this coordinator runs without --signing-key: failovers need it (their smoke checks, jobs and reports are signed); restart it with one",
    )
}

/// 202 with the failover as journaled now, and where to follow it.
async fn accepted(c: &Arc<Coordinator>, id: String) -> Response {
    let location = format!("/v1/failovers/{id}");
    match c.blocking(move |c| crate::failover::view::view(&c.store, &id)).await {
        Ok(v) => (StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(v)).into_response(),
        Err(e) => super::http::internal(e),
    }
}

/// `POST /v1/failovers {"scenario", "failed", "test"?, "dry_run"?, "by"?, "failed_at"?}`.
pub async fn start(State(c): State<Arc<Coordinator>>, Extension(Peer(peer)): Extension<Peer>, body: Bytes) -> Response {
    let req: Start = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let want = "{\"scenario\": S, \"failed\": CELL|REGION|CLOUD, \"test\"?: bool, \"dry_run\"?: bool, \"by\"?: NAME, \"failed_at\"?: RFC 3339}";
            return error(StatusCode::BAD_REQUEST, format!("expected {want}: {e}"));
        }
    };
    let now = clock::now();
    let failed_at = match run::failed_at(req.failed_at.as_deref(), "failed_at", now) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")),
    };
    let (assessment, blocking) = match assessed(&c.plan, &req.scenario, &req.failed, now).await {
        Ok(a) => a,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")),
    };
    if req.dry_run {
        let text = crate::failover::assess::render(&assessment);
        return Json(serde_json::json!({ "assessment": assessment, "blocking": blocking, "text": text })).into_response();
    }
    if c.cfg.signer.is_none() {
        return no_signer();
    }
    if !blocking.is_empty() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, format!("this failover cannot be carried out: {}", blocking.join("; ")));
    }
    let mut f = run::new_failover(assessment, req.test, who(req.by, peer), now);
    f.failed_at = failed_at;
    let id = f.id.clone();
    let journaled = c.blocking(move |c| -> anyhow::Result<crate::store::FailoverLock> {
        // Two requests at once (a double click) must not both pass the overlap check.
        let _one_at_a_time = STARTING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        run::admit(&c.store, &f.assessment, &[], f.test)?;
        let held = run::lock(&c.store, &c.cfg.state, &f.id)?;
        Journal(&c.store).create(&f)?;
        Ok(held)
    });
    let held = match journaled.await {
        Ok(h) => h,
        Err(e) => return error(StatusCode::CONFLICT, format!("{e:#}")),
    };
    tracing::info!(failover = %id, scenario = %req.scenario, failed = %req.failed, test = req.test, %peer, "failover started through the API");
    spawn(&c, held, &id, vec![Act::Drive]);
    accepted(&c, id).await
}

/// Carry `acts` out in the background under `held`; its end is journaled.
fn spawn(c: &Arc<Coordinator>, held: crate::store::FailoverLock, id: &str, acts: Vec<Act>) {
    let (c, id) = (c.clone(), id.to_string());
    tokio::spawn(async move {
        match carry_out_locked(&c, held, &id, acts).await {
            Ok(f) => tracing::info!(failover = %id, state = f.state.as_str(), "failover carried out as far as it goes"),
            Err(e) => tracing::error!(failover = %id, "carrying the failover out: {e:#}"),
        }
    });
}

/// `POST /v1/failovers/{id}/approve|resume|abort|commit|failback {"by"?, "step"?, "cell"?}`.
pub async fn act(
    State(c): State<Arc<Coordinator>>,
    Extension(Peer(peer)): Extension<Peer>,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let body: ActBody = match body.is_empty() {
        true => ActBody::default(),
        false => match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("expected {{\"by\"?: NAME, \"step\"?: STEP, \"cell\"?: CELL}}: {e}")),
        },
    };
    let by = who(body.by, peer);
    if action == "abort" {
        return abort(&c, id, by).await;
    }
    let acts = match action.as_str() {
        "approve" | "resume" => vec![Act::Drive],
        "commit" => vec![Act::Commit],
        "failback" => vec![Act::Failback(body.cell.clone())],
        _ => return error(StatusCode::NOT_FOUND, format!("no action {action:?}: approve, resume, abort, commit or failback")),
    };
    if c.cfg.signer.is_none() {
        return no_signer();
    }
    let (step, cell, id2) = (body.step, body.cell, id.clone());
    let ready = c.blocking(move |c| -> anyhow::Result<crate::store::FailoverLock> {
        // What the failover is now decides first; then who drives it.
        let f = Journal(&c.store).get(&id2)?;
        match action.as_str() {
            "approve" if f.state.is_final() => anyhow::bail!("failover {id2} is {}; there is nothing to approve", f.state.as_str()),
            "resume" => run::resumable(&f)?,
            "commit" => crate::failover::commit::committable(&f)?,
            "failback" => {
                crate::failover::failback::can_fail_back(&f)?;
                crate::failover::failback::moved(&f, cell.as_deref())?
            }
            _ => {}
        }
        let held = run::lock(&c.store, &c.cfg.state, &id2)?;
        match action.as_str() {
            "approve" => run::record_approval(&c.store, &id2, step, &by).map(drop)?,
            "resume" => run::reopen(&c.store, &id2).map(drop)?,
            _ => {}
        }
        tracing::info!(failover = %id2, action, by, %peer, "failover action through the API");
        Ok(held)
    });
    match ready.await {
        Ok(held) => {
            spawn(&c, held, &id, acts);
            accepted(&c, id).await
        }
        Err(e) => refused(e),
    }
}

/// Abort: no further step starts (the process driving it stops before its
/// next one); with the signing key and nobody driving it, the cells'
/// reports are written in the background.
async fn abort(c: &Arc<Coordinator>, id: String, by: String) -> Response {
    let id2 = id.clone();
    let aborted = c.blocking(move |c| -> anyhow::Result<Option<crate::store::FailoverLock>> {
        run::mark_aborted(&c.store, &id2, false, &by)?;
        tracing::info!(failover = %id2, by, "failover aborted through the API");
        Ok(c.cfg.signer.as_ref().and_then(|_| run::lock(&c.store, &c.cfg.state, &id2).ok()))
    });
    match aborted.await {
        Ok(Some(held)) => spawn(c, held, &id, vec![Act::Report]),
        Ok(None) => {}
        Err(e) => return refused(e),
    }
    match c.blocking(move |c| crate::failover::view::view(&c.store, &id)).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => super::http::internal(e),
    }
}
