//! `lifeboat failover ...`: the operator's failover commands. `plan` shows
//! what a scenario would do for what failed (from a coordinator, or from
//! the plan and the agents directly) and changes nothing.

use anyhow::{Context, Result};

use super::remote::Remote;
use super::{Done, Target};
use crate::clock;
use crate::failover::assess::{self, Assessment};
use crate::serve::load_plan;

/// `failover plan --scenario S --failed X`; exit 1 when it lists problems.
pub async fn plan(target: &Target, scenario: &str, failed: &str) -> Result<Done<Assessment>> {
    let assessment = match &target.coordinator {
        Some(base) => {
            let query = [("scenario", scenario.to_string()), ("failed", failed.to_string())];
            Remote::new(base, &target.credentials)?.get("/v1/failover/plan", &query).await?
        }
        None => {
            let plans = target.plans.as_ref().context("give --coordinator URL, or --plans DIR to ask the agents directly")?;
            let plan = load_plan(plans)?;
            let status = super::status::status(target).await?;
            assess::assess(&plan, &status, scenario, failed, clock::now())?
        }
    };
    let text = assess::render(&assessment);
    let ok = assessment.problems.is_empty();
    Ok(Done { value: assessment, text, ok })
}
