//! The plan stored with each cell's repository: every `*.toml` file of the
//! plan directory (and the public key it publishes, when it lies there),
//! named by their digest and signed with the plan key, handed to each
//! cell's agent, which stores it under `plans/<cell>/` (geo-copy carries
//! it). A coordinator that takes over from a surviving location compares
//! the plan it was given with the newest one stored there.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use futures::future::join_all;

use lifeboat_api::service::StoredPlan;
use lifeboat_client::AgentClient;
use lifeboat_secrets::signing::{plan_digest, plan_message};

use super::Plan;
use crate::report::keys::{Signer, Verifier};

/// The files of the plan directory `dir` a stored plan holds.
fn files(dir: &Path, plan: &Plan) -> Result<BTreeMap<String, String>> {
    let (plan_files, problems) = super::load::read_dir(dir);
    if let Some(problem) = problems.first() {
        anyhow::bail!("reading the plan directory: {problem}");
    }
    let mut texts: Vec<(std::path::PathBuf, String)> = plan_files.into_iter().map(|f| (f.path, f.text)).collect();
    for key in plan.report_public_key.iter().filter(|k| k.parent() == Some(dir)) {
        texts.push((key.clone(), std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?));
    }
    let mut out = BTreeMap::new();
    for (path, text) in texts {
        let name = path.file_name().and_then(|n| n.to_str()).with_context(|| format!("{} has no UTF-8 name", path.display()))?;
        out.insert(name.to_string(), text);
    }
    Ok(out)
}

/// The digest the plan in `dir` is stored under.
pub fn digest(plan: &Plan, dir: &Path) -> Result<String> {
    let files = files(dir, plan)?;
    Ok(plan_digest(files.iter().map(|(n, c)| (n.as_str(), c.as_str()))))
}

/// The plan in `dir`, named by its digest and signed.
pub fn signed(plan: &Plan, dir: &Path, signer: &Signer) -> Result<StoredPlan> {
    let files = files(dir, plan)?;
    let sha256 = plan_digest(files.iter().map(|(n, c)| (n.as_str(), c.as_str())));
    let signed_at = crate::clock::now();
    let signature = signer.spec_signature(&plan_message(&sha256, &plan.name, signed_at.unix_timestamp_nanos()));
    Ok(StoredPlan { plan: plan.name.clone(), sha256, files, signed_at, signature })
}

/// Whether `stored` is signed with the plan key and has its files' digest.
pub fn verifies(stored: &StoredPlan, key: &Verifier) -> bool {
    let digest = plan_digest(stored.files.iter().map(|(n, c)| (n.as_str(), c.as_str())));
    let message = plan_message(&digest, &stored.plan, stored.signed_at.unix_timestamp_nanos());
    digest == stored.sha256 && stored.signature.key_id == key.key_id && key.verify(&message, &stored.signature.signature)
}

/// Hand `stored` to every cell's agent; per cell, why not (empty: all stored).
pub async fn store(stored: &StoredPlan, agents: &HashMap<String, AgentClient>) -> Vec<String> {
    let puts = agents.iter().map(|(cell, agent)| async move { agent.put_plan(stored).await.map_err(|e| format!("{cell}: {e}")) });
    join_all(puts).await.into_iter().filter_map(Result::err).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_plan_verifies_until_a_file_changes() {
        let keys = tempfile::tempdir().unwrap();
        let (private, public, _) = crate::report::keys::generate(keys.path()).unwrap();
        let plan = crate::plan::tests::demo_plan();
        let dir = crate::plan::tests::demo_dir();
        let mut stored = signed(&plan, &dir, &Signer::from_file(&private).unwrap()).unwrap();
        assert!(stored.files.contains_key("demo.toml") && stored.files.contains_key("cells.toml"), "{:?}", stored.files.keys());
        let key = Verifier::from_file(&public).unwrap();
        assert!(verifies(&stored, &key));
        let mut later = stored.clone();
        later.signed_at += time::Duration::days(1);
        assert!(!verifies(&later, &key), "an old plan cannot pass for a later one");
        stored.files.insert("cells.toml".into(), "# edited".into());
        assert!(!verifies(&stored, &key), "a changed file breaks it");
    }
}
