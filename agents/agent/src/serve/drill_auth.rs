//! Who may make this agent run SQL: a drill spec that carries SQL checks
//! is run only when the coordinator's plan key signed its checks for this
//! cell (`--plan-key`, the public half of the report-signing key the plan
//! publishes). Holding the agent's bearer token is not enough: a token
//! leaks more easily than the coordinator's signing key, and SQL run on a
//! restored copy of production reads payments. A refusal is a 403 and a
//! warning in the log; checks without SQL need no signature. A takeover
//! (a failover's restore that stays and serves) is refused unless signed
//! likewise, whatever its checks, and so is a standby (what a failover
//! promotes into production, streaming from the primary it names) and a
//! failback's rebuild (it replaces the cell's own data directory).

use lifeboat_api::{ChecksSignature, JobSpec};

use super::Agent;

/// `Ok` when `spec` may run here; otherwise why not, for the 403.
pub fn authorize(agent: &Agent, spec: &JobSpec) -> Result<(), String> {
    match spec {
        JobSpec::Drill(drill) if drill.runs_sql() || drill.takeover.is_some() => {
            let cell = drill.cell.as_deref().unwrap_or(&agent.config.cell);
            let refused = |why: String| {
                tracing::warn!(cell = %cell, reason = %why, "refused a drill whose SQL checks the plan key did not sign");
                Err(format!("{why}; SQL checks run only as the coordinator's plan signed them"))
            };
            check(agent, drill.checks_signature.as_ref(), &drill.signed_message(cell), "the drill's checks").or_else(refused)
        }
        JobSpec::Standby(s) => check(agent, s.signature.as_ref(), &s.signed_message(), "the standby").map_err(|why| {
            tracing::warn!(cell = %s.cell, reason = %why, "refused a standby the plan key did not sign");
            format!("{why}; a standby is kept only as the coordinator's plan signed it")
        }),
        JobSpec::Crash(c) => check(agent, c.signature.as_ref(), &c.signed_message(), "the crash").map_err(|why| {
            tracing::warn!(cell = %c.cell, reason = %why, "refused a crash the plan key did not sign");
            format!("{why}; the cell's server is crashed only by a chaos drill the coordinator's plan signed")
        }),
        JobSpec::Rebuild(r) => check(agent, r.signature.as_ref(), &r.signed_message(), "the rebuild").map_err(|why| {
            tracing::warn!(cell = %r.cell, reason = %why, "refused a rebuild the plan key did not sign");
            format!("{why}; the cell's data directory is rebuilt only as the coordinator's plan signed it")
        }),
        _ => Ok(()),
    }
}

/// Whether `signature` is the plan key's over `message`; why not otherwise.
fn check(agent: &Agent, signature: Option<&ChecksSignature>, message: &[u8], what: &str) -> Result<(), String> {
    let Some(key) = &agent.plan_key else {
        return Err(format!(
            "this agent has no --plan-key (the plan's report-signing public key), so it runs nothing that must be signed, such as {what}"
        ));
    };
    match signature {
        None => Err(format!("no signature on {what}")),
        Some(s) if s.key_id != key.key_id => Err(format!("{what}: signed by key {}, this agent trusts key {}", s.key_id, key.key_id)),
        Some(s) if !key.verify(message, &s.signature) => {
            Err(format!("the signature of {what} does not verify (changed after signing, or signed for another cell or database)"))
        }
        Some(_) => Ok(()),
    }
}
