//! The files under `infra/deploy` (alert rules, dashboard, units,
//! manifests) and the checkers that read them: promtool from Debian's
//! prometheus package, systemd-analyze, kubernetes-validate (installed by
//! `infra/services.sh install deploy`, cached like the services).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

use crate::workspace_root;

pub fn dir() -> PathBuf {
    workspace_root().join("infra/deploy")
}

/// Where `infra/services.sh install deploy` put the checkers (installing them once).
pub fn tools() -> PathBuf {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let out = Command::new("bash").arg(workspace_root().join("infra/services.sh")).args(["install", "deploy"]).output().unwrap();
        assert!(out.status.success(), "installing the deploy checkers: {}", String::from_utf8_lossy(&out.stderr));
    });
    crate::cache_dir().join("deploy-tools")
}

pub fn promtool(args: &[&str]) -> Output {
    Command::new(tools().join("usr/bin/promtool")).args(args).output().unwrap()
}

/// The Grafana dashboard.
pub fn dashboard() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("grafana/lifeboat.json")).unwrap()).unwrap()
}

/// Every PromQL expression of the dashboard's panels, with Grafana's
/// variables replaced by values a query could hold.
pub fn dashboard_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard()["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let expr = expr.replace("$cell", ".*").replace("$__range", "1d").replace("$__rate_interval", "5m");
            out.push((panel["title"].as_str().unwrap().to_string(), expr));
        }
    }
    out
}

/// The `lifeboat_*` metric names the rules and the dashboard query, each
/// reduced to the name its `# TYPE` line gives (no `_total`, `_bucket`).
pub fn metrics_used() -> Vec<String> {
    let rules = std::fs::read_to_string(dir().join("prometheus/lifeboat.rules.yml")).unwrap();
    let text = dashboard_queries().into_iter().map(|(_, e)| e).collect::<Vec<_>>().join("\n") + &rules;
    let mut names: Vec<String> = Vec::new();
    for (i, _) in text.match_indices("lifeboat_") {
        let name: String = text[i..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
        let base = ["_bucket", "_total"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name).to_string();
        if !names.contains(&base) {
            names.push(base);
        }
    }
    names
}

/// The names of `metrics_used` that `scraped` (a /metrics text of an
/// agent, or else of a coordinator) lacks.
pub fn missing_from(scraped: &str, agent: bool) -> Vec<String> {
    let ours = |n: &String| n.starts_with("lifeboat_agent_") == agent;
    metrics_used().into_iter().filter(ours).filter(|n| !scraped.contains(&format!("# TYPE {n} "))).collect()
}
