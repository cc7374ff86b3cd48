//! Who may make this agent run SQL: a drill spec that carries SQL checks
//! is run only when the coordinator's plan key signed its checks for this
//! cell (`--plan-key`, the public half of the report-signing key the plan
//! publishes). Holding the agent's bearer token is not enough: a token
//! leaks more easily than the coordinator's signing key, and SQL run on a
//! restored copy of production reads payments. A refusal is a 403 and a
//! warning in the log; checks without SQL need no signature. A takeover
//! (a failover's restore that stays and serves) is refused unless signed
//! likewise, whatever its checks.

use lifeboat_api::JobSpec;

use super::Agent;

/// `Ok` when `spec` may run here; otherwise why not, for the 403.
pub fn authorize(agent: &Agent, spec: &JobSpec) -> Result<(), String> {
    let JobSpec::Drill(drill) = spec else { return Ok(()) };
    if !drill.runs_sql() && drill.takeover.is_none() {
        return Ok(());
    }
    let cell = drill.cell.as_deref().unwrap_or(&agent.config.cell);
    let refused = |why: String| {
        tracing::warn!(cell = %cell, reason = %why, "refused a drill whose SQL checks the plan key did not sign");
        Err(format!("{why}; SQL checks run only as the coordinator's plan signed them"))
    };
    let Some(key) = &agent.plan_key else {
        return refused("this agent has no --plan-key (the plan's report-signing public key), so it runs no SQL checks sent to it".into());
    };
    match &drill.checks_signature {
        None => refused("the drill's SQL checks carry no signature".into()),
        Some(s) if s.key_id != key.key_id => {
            refused(format!("the checks are signed by key {}, this agent trusts key {}", s.key_id, key.key_id))
        }
        Some(s) if !key.verify(&drill.signed_message(cell), &s.signature) => refused(
            "the checks' signature does not verify (they were changed after signing, or signed for another cell or database)".into(),
        ),
        Some(_) => Ok(()),
    }
}
