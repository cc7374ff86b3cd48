//! The deploy files are checked by the tools that read them: the alert
//! rules by `promtool check rules` and their unit tests by `promtool test
//! rules`; every dashboard query parses as PromQL (promtool); the systemd
//! units by `systemd-analyze verify` (no warning at all); the Kubernetes
//! manifests against the Kubernetes schemas (kubernetes-validate --strict);
//! every agent.toml shipped (the manifests', the docs') by the agent itself.
//! That the rules and dashboard name metrics the services really export
//! is checked against live /metrics in coordinator.rs.

use std::process::Command;

use lifeboat_restore_tests::deploy::{self, dashboard, dashboard_queries, promtool};
use lifeboat_restore_tests::{agent, agent_bin, lifeboat_bin, workspace_root};

fn said(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let rules = deploy::dir().join("prometheus");
    let check = promtool(&["check", "rules", rules.join("lifeboat.rules.yml").to_str().unwrap()]);
    assert!(check.status.success() && said(&check).contains("SUCCESS: 9 rules found"), "{}", said(&check));
    let test = Command::new(deploy::tools().join("usr/bin/promtool"))
        .current_dir(&rules)
        .args(["test", "rules", "lifeboat.tests.yml"])
        .output()
        .unwrap();
    assert!(test.status.success(), "{}", said(&test));
    // The unit tests can fail: the same tests against a rule that never fires.
    let scratch = tempfile::tempdir().unwrap();
    let rules_text = std::fs::read_to_string(rules.join("lifeboat.rules.yml")).unwrap();
    std::fs::write(scratch.path().join("lifeboat.rules.yml"), rules_text.replace("> 1800", "> 18000")).unwrap();
    std::fs::copy(rules.join("lifeboat.tests.yml"), scratch.path().join("lifeboat.tests.yml")).unwrap();
    let broken = Command::new(deploy::tools().join("usr/bin/promtool"))
        .current_dir(scratch.path())
        .args(["test", "rules", "lifeboat.tests.yml"])
        .output()
        .unwrap();
    assert!(!broken.status.success() && said(&broken).contains("LifeboatGeoCopyLagging"), "{}", said(&broken));
}

#[test]
fn every_dashboard_query_is_promql() {
    let d = dashboard();
    let panels = d["panels"].as_array().unwrap();
    let mut ids: Vec<i64> = panels.iter().map(|p| p["id"].as_i64().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for want in [
        "RPO exposure per cell and location",
        "Geo-copy lag per location",
        "Runs by kind and outcome (in the range)",
        "Drill RTO against the tier's RTO",
    ] {
        assert!(panels.iter().any(|p| p["title"] == want), "{want}");
    }
    let queries = dashboard_queries();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in queries.iter().enumerate() {
        rules += &format!("      - record: dashboard:query{i}\n        expr: {}\n", serde_json::to_string(expr).unwrap());
    }
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("dashboard.rules.yml");
    std::fs::write(&file, &rules).unwrap();
    let check = promtool(&["check", "rules", file.to_str().unwrap()]);
    assert!(check.status.success(), "{}\n{rules}", said(&check));
    assert!(said(&check).contains(&format!("SUCCESS: {} rules found", queries.len())), "{}", said(&check));
    // A query that does not parse is refused.
    std::fs::write(&file, rules.replace("sum by (kind, outcome)", "sum by kind, outcome)")).unwrap();
    assert!(!promtool(&["check", "rules", file.to_str().unwrap()]).status.success());
}

#[test]
fn systemd_units_verify_without_a_warning() {
    deploy::tools();
    let scratch = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for (unit, bin) in [("lifeboat-agent.service", agent_bin()), ("lifeboat-coordinator.service", lifeboat_bin())] {
        let text = std::fs::read_to_string(deploy::dir().join("systemd").join(unit)).unwrap();
        let name = bin.file_name().unwrap().to_str().unwrap().to_string();
        // The units name the installed binaries; here the built ones stand in.
        let text = text
            .replace(&format!("/usr/bin/{name} "), &format!("{} ", bin.display()))
            .replace(&format!("/usr/bin/{name}\n"), &format!("{}\n", bin.display()));
        assert!(text.contains(bin.to_str().unwrap()), "{unit} runs {name}");
        for hardening in ["ProtectSystem=strict", "NoNewPrivileges=yes", "LoadCredential=", "User=lifeboat"] {
            assert!(text.contains(hardening), "{unit}: {hardening}");
        }
        let path = scratch.path().join(unit);
        std::fs::write(&path, text).unwrap();
        units.push(path);
    }
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).args(&units).output().unwrap();
    assert!(out.status.success() && said(&out).trim().is_empty(), "systemd-analyze verify: {}", said(&out));
    // It does complain: a misspelt setting.
    let bad = scratch.path().join("lifeboat-agent.service");
    let text = std::fs::read_to_string(&bad).unwrap().replace("ProtectSystem=strict", "ProtectSystem=strickt");
    std::fs::write(&bad, text).unwrap();
    let out = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&bad).output().unwrap();
    assert!(said(&out).contains("strickt"), "{}", said(&out));
}

#[test]
fn kubernetes_manifests_match_the_schemas() {
    let validate = deploy::tools().join("venv/bin/kubernetes-validate");
    let dir = deploy::dir().join("kubernetes");
    let files: Vec<_> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "yaml")).collect();
    assert_eq!(files.len(), 2, "{files:?}");
    let out = Command::new(&validate).args(["--strict", "-k", "1.30.0"]).args(&files).output().unwrap();
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(said(&out).matches(" passed for resource ").count(), 8, "{}", said(&out));
    let scratch = tempfile::tempdir().unwrap();
    let bad = scratch.path().join("bad.yaml");
    let text = std::fs::read_to_string(dir.join("coordinator.yaml")).unwrap().replace("replicas: 2", "replicas: two");
    std::fs::write(&bad, text).unwrap();
    assert!(!Command::new(&validate).args(["--strict", "-k", "1.30.0"]).arg(&bad).output().unwrap().status.success());
}

/// The `agent.toml` in the sidecar manifest's ConfigMap (its indented block).
fn manifest_agent_toml() -> String {
    let text = std::fs::read_to_string(deploy::dir().join("kubernetes/postgres-with-agent.yaml")).unwrap();
    let block = text.split("agent.toml: |\n").nth(1).unwrap();
    block
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.strip_prefix("    ").unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first ```toml block after `heading` in a Markdown file.
fn doc_toml(path: &str, after: &str) -> String {
    let text = std::fs::read_to_string(workspace_root().join(path)).unwrap();
    let rest = &text[text.find(after).unwrap_or_else(|| panic!("{after} in {path}"))..];
    let start = rest.find("```toml\n").unwrap() + 8;
    rest[start..start + rest[start..].find("```").unwrap()].to_string()
}

#[test]
fn every_shipped_agent_toml_is_taken_by_the_agent() {
    let scratch = tempfile::tempdir().unwrap();
    let examples = [
        ("kubernetes sidecar", manifest_agent_toml()),
        ("docs/agent-config.md", doc_toml("docs/agent-config.md", "## An example")),
        ("README.md", doc_toml("README.md", "One file holds a cell's agent settings")),
    ];
    for (name, text) in examples {
        assert!(text.contains("cell = "), "{name}: {text}");
        let file = scratch.path().join("agent.toml");
        std::fs::write(&file, &text).unwrap();
        // --version reads the file and goes on even when it does not check, with a warning.
        let out = agent(&["--config", file.to_str().unwrap(), "--version"], &[]);
        assert!(out.status.success() && !said(&out).contains("warning"), "{name}: {}\n{text}", said(&out));
    }
    let file = scratch.path().join("agent.toml");
    std::fs::write(&file, manifest_agent_toml().replace("follow = \"5s\"", "follow = \"soon\"")).unwrap();
    let out = agent(&["--config", file.to_str().unwrap(), "--version"], &[]);
    assert!(said(&out).contains("agent.toml:18: kafka.follow"), "{}", said(&out));
}

#[test]
fn completions_man_pages_and_versions_of_both_binaries() {
    for (bin, name, command) in [(lifeboat_bin(), "lifeboat", "serve"), (agent_bin(), "lifeboat-agent", "check")] {
        let run = |args: &[&str]| Command::new(&bin).args(args).output().unwrap();
        let bash = run(&["completions", "bash"]);
        let script = String::from_utf8_lossy(&bash.stdout).to_string();
        assert!(bash.status.success() && script.contains(&format!("complete -F _{}", name.replace('-', "__"))), "{name}: {script:.300}");
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("completion.bash");
        std::fs::write(&file, &script).unwrap();
        let syntax = Command::new("bash").arg("-n").arg(&file).output().unwrap();
        assert!(syntax.status.success(), "{name}: bash -n: {}", said(&syntax));
        assert!(String::from_utf8_lossy(&run(&["completions", "zsh"]).stdout).starts_with(&format!("#compdef {name}")));
        assert!(String::from_utf8_lossy(&run(&["completions", "fish"]).stdout).contains(&format!("complete -c {name}")));
        let pages = scratch.path().join("man");
        let out = run(&["man", "--out-dir", pages.to_str().unwrap()]);
        assert!(out.status.success(), "{}", said(&out));
        let top = std::fs::read_to_string(pages.join(format!("{name}.1"))).unwrap();
        assert!(top.contains(&format!(".TH {name} 1")), "{top:.300}");
        let sub = std::fs::read_to_string(pages.join(format!("{name}-{command}.1"))).unwrap();
        assert!(sub.contains(".SH OPTIONS") || sub.contains(".SH NAME"), "{sub:.300}");
        let version = String::from_utf8_lossy(&run(&["--version"]).stdout).to_string();
        assert!(version.starts_with(&format!("{name} 0.1.0 (commit ")), "{version}");
    }
}
