//! The highest coordinator lease epoch this agent has seen. Coordinators
//! that share their state elect a leader through a lease whose epoch grows
//! each time it changes hands, and the leader sends it on every request
//! (`lifeboat-coordinator-epoch`). A request with a lower epoch comes from
//! a coordinator that lost the lease (paused past it, then woken): it is
//! refused with 409 and the highest epoch in the same header, before any
//! handler sees it. The highest is kept in `coordinator-epoch` in the state
//! directory (written before the request that raised it goes on), so a
//! restarted agent still refuses the old leader. Requests without the
//! header (one coordinator on SQLite, the operator CLI) pass.
//!
//! If a shared state is ever recreated (its epochs start again at 1),
//! delete `coordinator-epoch` in each agent's state directory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lifeboat_api::service::COORDINATOR_EPOCH_HEADER;

use super::answer::error;
use super::Agent;

pub struct Epochs {
    highest: Mutex<u64>,
    path: PathBuf,
}

impl Epochs {
    pub fn open(state_dir: &Path) -> Result<Epochs> {
        let path = state_dir.join("coordinator-epoch");
        let highest = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().with_context(|| {
                format!("{} does not hold a coordinator epoch (a number); delete it to accept any coordinator's again", path.display())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Epochs { highest: Mutex::new(highest), path })
    }

    /// Let a request with `epoch` through (remembering it when it is the
    /// highest yet), or the highest seen when it is lower.
    fn admit(&self, epoch: u64) -> Result<Result<(), u64>> {
        let mut highest = self.highest.lock().expect("coordinator epoch");
        if epoch < *highest {
            return Ok(Err(*highest));
        }
        if epoch > *highest {
            lifeboat_process::write_durably(&self.path, epoch.to_string().as_bytes())
                .with_context(|| format!("remembering coordinator epoch {epoch} in {}", self.path.display()))?;
            tracing::info!(epoch, was = *highest, "a coordinator leads with a new epoch");
            *highest = epoch;
        }
        Ok(Ok(()))
    }
}

pub async fn check(State(agent): State<Arc<Agent>>, req: Request, next: Next) -> Response {
    let Some(given) = req.headers().get(COORDINATOR_EPOCH_HEADER) else { return next.run(req).await };
    let Some(epoch) = given.to_str().ok().and_then(|v| v.parse::<u64>().ok()) else {
        return error(StatusCode::BAD_REQUEST, format!("{COORDINATOR_EPOCH_HEADER} must be a whole number"));
    };
    match agent.epochs.admit(epoch) {
        Ok(Ok(())) => next.run(req).await,
        Ok(Err(highest)) => {
            tracing::warn!(epoch, highest, method = %req.method(), path = req.uri().path(), "refused a coordinator that lost its lease");
            let message = format!(
                "coordinator epoch {epoch} is below {highest}, the highest this agent has seen: another coordinator leads now, and this one must step down"
            );
            let mut answer = error(StatusCode::CONFLICT, message);
            answer.headers_mut().insert(COORDINATOR_EPOCH_HEADER, HeaderValue::from(highest));
            answer
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")).into_response(),
    }
}
