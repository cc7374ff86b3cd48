//! `lifeboat status`: every cell's recoverable points, RPO exposure and
//! verdict per location, from a coordinator or straight from the agents.

use std::collections::HashMap;

use anyhow::{Context, Result};

use super::remote::Remote;
use super::{Done, Target};
use crate::clock;
use crate::compliance::{self, CellInput, Status};
use crate::serve::{agent_clients, load_plan};

pub async fn run(target: &Target) -> Result<Done<Status>> {
    let status = status(target).await?;
    let text = compliance::render(&status);
    Ok(Done::ok(status, text))
}

pub async fn status(target: &Target) -> Result<Status> {
    if let Some(base) = &target.coordinator {
        return Remote::new(base, &target.credentials)?.get("/v1/status", &[]).await;
    }
    let plans = target.plans.as_ref().context("give --coordinator URL, or --plans DIR to ask the agents directly")?;
    let plan = load_plan(plans)?;
    let agents = agent_clients(&plan)?;
    let mut answers: HashMap<_, _> = lifeboat_client::recovery_of_all(agents.values()).await.into_iter().collect();
    let now = clock::now();
    compliance::status(&plan, now, |cell| {
        Ok(match answers.remove(&cell.name).expect("one answer per cell") {
            Ok(recovery) => CellInput { recovery: Some((now, recovery)), problem: None, drills: None, verify: None },
            Err(e) => CellInput { recovery: None, problem: Some(e.to_string()), drills: None, verify: None },
        })
    })
}
