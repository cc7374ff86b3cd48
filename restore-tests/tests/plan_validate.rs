//! `lifeboat plan validate` and `plan show` on the shipped plans, and on
//! broken copies of the demo plan: each break gives one precise error at
//! the right file and line.

use std::path::Path;
use std::process::Command;

use lifeboat_restore_tests::{lifeboat_bin, workspace_root};
use serde_json::json;

fn lifeboat(args: &[&str]) -> std::process::Output {
    Command::new(lifeboat_bin()).args(args).output().expect("running lifeboat")
}

#[test]
fn the_shipped_plans_are_valid_and_show_their_schedules() {
    for dir in ["plans/platform", "plans/demo"] {
        let path = workspace_root().join(dir);
        let out = lifeboat(&["plan", "validate", path.to_str().unwrap()]);
        assert!(out.status.success(), "{dir}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = lifeboat(&["plan", "show", workspace_root().join("plans/platform").to_str().unwrap(), "--output", "json"]);
    assert!(out.status.success());
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cells = plan["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 10);
    assert_eq!(cells.iter().map(|c| c["tenants"].as_array().unwrap().len()).sum::<usize>(), 50);
    assert_eq!(plan["tiers"].as_array().unwrap().len(), 3);
    let clouds: Vec<&str> = plan["regions"].as_array().unwrap().iter().map(|r| r["cloud"].as_str().unwrap()).collect();
    assert_eq!(clouds.iter().filter(|c| **c == "azure").count(), 2);
    assert_eq!(clouds.iter().filter(|c| **c == "aws").count(), 2);
    let tier1 = plan["tiers"].as_array().unwrap().iter().find(|t| t["name"] == "tier-1").unwrap();
    assert_eq!((tier1["rpo"].as_u64(), tier1["rto"].as_u64()), (Some(300), Some(900)));
    let weu1 = cells.iter().find(|c| c["name"] == "weu-1").unwrap();
    assert_eq!(weu1["schedules"]["pg_full"], "0 2 * * *");
    assert_eq!(weu1["schedules"]["pg_incremental"], "0 * * * *");
    assert_eq!(weu1["retention"]["pg_full"], 35 * 86400);
    assert_eq!(weu1["dr_cell"], "neu-1");
    // Failover: standbys from the tier strategy, the design's three scenarios.
    let standby = |name: &str| cells.iter().find(|c| c["name"] == name).unwrap()["failover"]["standby"].clone();
    assert_eq!((standby("weu-1"), standby("weu-3"), standby("weu-5")), (json!("stream"), json!("archive"), json!("none")));
    let scopes: Vec<&str> = plan["scenarios"].as_array().unwrap().iter().map(|s| s["scope"].as_str().unwrap()).collect();
    assert_eq!(scopes, ["cell", "region", "cloud"]);
    assert_eq!(plan["scenarios"][1]["tier_order"], json!(["tier-1", "tier-2", "tier-3"]));
    assert_eq!(plan["sites"].as_array().unwrap().len(), 12);

    let text = lifeboat(&["plan", "show", workspace_root().join("plans/demo").to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("postgres incremental  30 * * * *"), "demo-b's own schedule wins: {text}");
    assert!(text.contains("tier-1   RPO 5m     RTO 15m"), "{text}");
}

/// One break: in `file` of the demo plan, replace the first `old` with
/// `new`; validation must fail with `message` at the line holding `anchor`.
struct Break {
    file: &'static str,
    old: &'static str,
    new: &'static str,
    message: &'static str,
    anchor: &'static str,
}

const BREAKS: &[Break] = &[
    Break {
        file: "demo.toml",
        old: "description = \"two local cells, tier 1, backing up to local directories\"\n",
        new: "description = \"two local cells, tier 1, backing up to local directories\"\n\n[[plan.controls]]\nid = \"SOC 2 A1.3\"\noperations = [\"restore\"]\n",
        message: "control \"SOC 2 A1.3\": operation \"restore\" writes no report",
        anchor: "[[plan.controls]]",
    },
    Break {
        file: "cells.toml",
        old: "name = \"demo-a\"\n",
        new: "name = \"demo-a\"\ncolour = \"red\"\n",
        message: "unknown field `colour`",
        anchor: "colour = \"red\"",
    },
    Break {
        file: "demo.toml",
        old: "pg_full = \"0 2 * * *\"",
        new: "pg_full = \"0 25 * * *\"",
        message: "schedules.pg_full: \"0 25 * * *\" is not a valid cron expression",
        anchor: "pg_full = \"0 25",
    },
    Break {
        file: "demo.toml",
        old: "drill = \"0 3 1 * *\"",
        new: "drill = \"0 3 1 *\"",
        message: "is not a cron expression of 5 fields",
        anchor: "drill = \"0 3 1 *\"",
    },
    Break {
        file: "demo.toml",
        old: "kafka_snapshot = \"0 * * * *\"",
        new: "kafka_snapshot = \"0 */2 * * *\"",
        message: "leaves up to 2h between snapshots, more than tier \"tier-1\"'s Kafka RPO of 1h 30m",
        anchor: "kafka_snapshot = \"0 */2",
    },
    Break {
        file: "cells.toml",
        old: "archive_timeout = \"60s\"",
        new: "archive_timeout = \"10m\"",
        message: "archive_timeout 10m cannot meet tier \"tier-1\"'s RPO of 5m",
        anchor: "archive_timeout = \"10m\"",
    },
    Break {
        file: "cells.toml",
        old: "dr_cell = \"demo-b\"\n",
        new: "",
        message: "cell \"demo-a\" is in tier \"tier-1\" (active-passive) but has no dr_cell",
        anchor: "name = \"demo-a\"",
    },
    Break {
        file: "cells.toml",
        old: ", token = \"env:LIFEBOAT_DEMO_TOKEN\" }",
        new: " }",
        message: "agent.token is missing",
        anchor: "agent = { url = \"http://127.0.0.1:7401\" }",
    },
    Break {
        file: "cells.toml",
        old: "http://127.0.0.1:7401",
        new: "http://agent.demo-a.internal:7401",
        message: "is plain http to another host",
        anchor: "http://agent.demo-a.internal:7401",
    },
    Break {
        file: "cells.toml",
        old: "token = \"env:LIFEBOAT_DEMO_TOKEN\"",
        new: "token = \"hunter2\"",
        message: "agent.token must be a reference, env:NAME or file:PATH",
        anchor: "hunter2",
    },
    Break {
        file: "cells.toml",
        old: "name = \"demo-b\"",
        new: "name = \"demo-a\"",
        message: "duplicate cell name \"demo-a\" (first defined at",
        anchor: "name = \"demo-a\"\ntier = \"tier-1\"\nregion = \"local-b\"",
    },
    Break {
        file: "demo.toml",
        old: "[[region]]\nname = \"local-a\"",
        new: "[[tier]]\nname = \"tier-1\"\nrpo = \"5m\"\nrto = \"15m\"\nstrategy = \"active-passive\"\n\n[[region]]\nname = \"local-a\"",
        message: "duplicate tier name \"tier-1\" (first defined at",
        anchor: "name = \"tier-1\"\nrpo = \"5m\"\nrto = \"15m\"\nstrategy",
    },
    Break {
        file: "cells.toml",
        old: "tier = \"tier-1\"",
        new: "tier = \"tier-9\"",
        message: "cell \"demo-a\" refers to unknown tier \"tier-9\" (defined: tier-1)",
        anchor: "tier = \"tier-9\"",
    },
    Break {
        file: "demo.toml",
        old: "region = \"local-a\"\nrole = \"primary\"",
        new: "region = \"local-z\"\nrole = \"primary\"",
        message: "location \"a-primary\" refers to unknown region \"local-z\"",
        anchor: "region = \"local-z\"",
    },
    Break {
        file: "cells.toml",
        old: "dr_cell = \"demo-b\"",
        new: "dr_cell = \"demo-x\"",
        message: "cell \"demo-a\" dr_cell refers to unknown cell \"demo-x\"",
        anchor: "dr_cell = \"demo-x\"",
    },
    Break {
        file: "demo.toml",
        old: "rpo = \"5m\"",
        new: "rpo = \"5 parsecs\"",
        message: "rpo = \"5 parsecs\" is not a duration",
        anchor: "rpo = \"5 parsecs\"",
    },
    Break { file: "demo.toml", old: "name = \"demo\"", new: "name = \"demo", message: "", anchor: "name = \"demo\n" },
    Break {
        file: "demo.toml",
        old: "url = \"file:///var/tmp/lifeboat-demo/a-primary\"",
        new: "url = \"ftp://user:pw@host/x\"",
        message: "use file:///dir, s3://bucket/prefix or az://container/prefix, without credentials",
        anchor: "ftp://",
    },
    Break {
        file: "cells.toml",
        old: "tenants = [\"initech\"]",
        new: "tenants = [\"acme\"]",
        message: "tenant \"acme\" is already in another cell",
        anchor: "tenants = [\"acme\"]",
    },
    Break {
        file: "cells.toml",
        old: "locations = [\"a-primary\", \"a-in-b\", \"cross-cloud\"]",
        new: "locations = [\"a-in-b\", \"cross-cloud\"]",
        message: "cell \"demo-a\" has no location with role \"primary\"",
        anchor: "name = \"demo-a\"",
    },
    Break {
        file: "cells.toml",
        old: "user=postgres dbname=postgres\"",
        new: "user=postgres password=s3cret dbname=postgres\"",
        message: "conninfo holds a password",
        anchor: "password=s3cret",
    },
    Break {
        file: "cells.toml",
        old: "\"host=127.0.0.1 port=5501 user=postgres dbname=postgres\"",
        new: "\"postgresql://postgres:s3cret@127.0.0.1:5501/postgres\"",
        message: "conninfo holds a password",
        anchor: "postgresql://postgres:s3cret",
    },
    Break {
        file: "cells.toml",
        old: "locations = [\"a-primary\", \"a-in-b\", \"cross-cloud\"]",
        new: "locations = [\"a-primary\", \"b-in-a\", \"cross-cloud\"]",
        message: "location \"b-in-a\" is a secondary region but in the cell's own region",
        anchor: "[\"a-primary\", \"b-in-a\"",
    },
    Break {
        file: "demo.toml",
        old: "strategy = \"active-passive\"",
        new: "strategy = \"hot\"",
        message: "unknown variant `hot`",
        anchor: "strategy = \"hot\"",
    },
    Break {
        file: "cells.toml",
        old: "brokers = \"127.0.0.1:9092\"",
        new: "brokers = \"127.0.0.1\"",
        message: "brokers \"127.0.0.1\": give host:port",
        anchor: "brokers = \"127.0.0.1\"",
    },
    Break {
        file: "cells.toml",
        old: "sites = [\"a-host\", \"aws-host\"]",
        new: "sites = [\"a-hots\", \"aws-host\"]",
        message: "cell \"demo-a\" failover refers to unknown recovery_site \"a-hots\" (defined: a-host, aws-host, b-host)",
        anchor: "sites = [\"a-hots\"",
    },
    Break {
        file: "cells.toml",
        old: "failover = { sites = [\"a-host\", \"aws-host\"] }",
        new: "failover = { standby = \"none\", sites = [\"a-host\", \"aws-host\"] }",
        message: "standby \"none\" is colder than tier \"tier-1\" (active-passive) keeps; use \"stream\"",
        anchor: "failover = { standby = \"none\"",
    },
    Break {
        file: "cells.toml",
        old: "failover = { sites = [\"a-host\", \"aws-host\"] }",
        new: "failover = { sites = [\"a-host\", \"aws-host\"], primary_conninfo = \"host=db user=replicator password=hunter2\" }",
        message: "failover.primary_conninfo: conninfo holds a password; give it in a passfile on the recovery site's host",
        anchor: "primary_conninfo = \"host=db",
    },
    Break {
        file: "demo.toml",
        // Both of demo-a's sites hosted by its own agent.
        old: "agent = { url = \"http://127.0.0.1:7402\", token = \"env:LIFEBOAT_DEMO_TOKEN\" }\ncapacity = 1\nkafka = { brokers = \"127.0.0.1:9092\", topic_prefix = \"dr.\" }\npostgres = { port = 5510 }\n\n[[recovery_site]]\nname = \"b-host\"\nregion = \"local-a\"\nagent = { url = \"http://127.0.0.1:7401\", token = \"env:LIFEBOAT_DEMO_TOKEN\" }\ncapacity = 1\npostgres = { port = 5520 }\n\n# The second cloud: an agent in AWS hosting both cells from their\n# cross-cloud copies (scenario 3, all of Azure lost).\n[[recovery_site]]\nname = \"aws-host\"\nregion = \"local-aws\"\nagent = { url = \"http://127.0.0.1:7403\"",
        new: "agent = { url = \"http://127.0.0.1:7401\", token = \"env:LIFEBOAT_DEMO_TOKEN\" }\ncapacity = 1\nkafka = { brokers = \"127.0.0.1:9092\", topic_prefix = \"dr.\" }\npostgres = { port = 5510 }\n\n[[recovery_site]]\nname = \"b-host\"\nregion = \"local-a\"\nagent = { url = \"http://127.0.0.1:7401\", token = \"env:LIFEBOAT_DEMO_TOKEN\" }\ncapacity = 1\npostgres = { port = 5520 }\n\n# The second cloud: an agent in AWS hosting both cells from their\n# cross-cloud copies (scenario 3, all of Azure lost).\n[[recovery_site]]\nname = \"aws-host\"\nregion = \"local-aws\"\nagent = { url = \"http://127.0.0.1:7401\"",
        message: "scenario \"cell-failure\": when cell \"demo-a\" fails, cell \"demo-a\" has no recovery site hosted by another agent than its own with [recovery_site.kafka] (its [cell.failover] sites: a-host, aws-host)",
        anchor: "name = \"cell-failure\"",
    },
    Break {
        file: "demo.toml",
        old: "capacity = 2\nkafka = { brokers = \"127.0.0.1:9092\", topic_prefix = \"aws.\" }",
        new: "capacity = 2",
        message: "scenario \"azure-outage\": when cloud \"azure\" fails, cell \"demo-a\" has no recovery site on another cloud with [recovery_site.kafka] (its [cell.failover] sites: a-host, aws-host)",
        anchor: "name = \"azure-outage\"",
    },
    Break {
        file: "demo.toml",
        old: "approve = [\"fence\"]",
        new: "approve = [\"smoke\"]",
        message: "approve \"smoke\" is not a step a gate can hold (fence, promote, restore, route)",
        anchor: "approve = [\"smoke\"]",
    },
    Break {
        file: "demo.toml",
        old: "approve = [\"fence\"]",
        new: "approve = [\"fence\"]\ntest = { failed = [\"demo-z\"] }",
        message: "scenario \"cell-failure\" test: cell \"demo-z\" holds no cell this scenario fails over (it can fail: demo-a, demo-b)",
        anchor: "test = { failed",
    },
    Break {
        file: "demo.toml",
        old: "approve = [\"fence\"]",
        new: "approve = [\"fence\"]\ntest = { schedule = \"quarterly\" }",
        message: "scenario \"cell-failure\" test: schedule \"quarterly\" is not a cron expression of 5 fields",
        anchor: "test = { schedule",
    },
    Break {
        file: "demo.toml",
        old: "approve = [\"fence\"]",
        new: "approve = [\"fence\"]\nchaos = { schedule = \"monthly\" }",
        message: "scenario \"cell-failure\" chaos: schedule \"monthly\" is not a cron expression of 5 fields",
        anchor: "chaos = { schedule",
    },
    Break {
        file: "demo.toml",
        old: "approve = [\"fence\"]",
        new: "approve = [\"fence\"]\nchaos = { schedule = \"0 3 15 * *\", cells = [\"demo-z\"] }",
        message: "scenario \"cell-failure\" chaos: cell \"demo-z\" keeps no \"stream\" standby (a chaos drill promotes one)",
        anchor: "chaos = { schedule",
    },
    Break {
        file: "demo.toml",
        old: "hooks = { route = \"route-log\"",
        new: "hooks = { route = \"router\"",
        message: "scenario \"cell-failure\" hooks.route refers to unknown hook \"router\" (defined: route-log)",
        anchor: "hooks = { route",
    },
    Break {
        file: "demo.toml",
        old: "capacity = 1\nkafka",
        new: "capacity = 0\nkafka",
        message: "recovery_site \"a-host\": capacity must be at least 1 guest cell",
        anchor: "capacity = 0",
    },
    Break {
        file: "demo.toml",
        old: "postgres = { port = 5510 }",
        new: "postgres = { port = 80 }",
        message: "recovery_site \"a-host\": postgres port must leave room for its 1 possible guest(s) between 1024 and 65535",
        anchor: "port = 80",
    },
    Break {
        file: "demo.toml",
        old: "[[scenario]]",
        new: "[[hook]]\nname = \"route\"\nkind = \"http\"\nurl = \"http://router.internal/v1\"\n\n[[scenario]]",
        message: "url \"http://router.internal/v1\" is plain http to another host",
        anchor: "url = \"http://router.internal/v1\"",
    },
];

fn copy_demo(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["demo.toml", "cells.toml"] {
        std::fs::copy(workspace_root().join("plans/demo").join(f), to.join(f)).unwrap();
    }
}

#[test]
fn each_broken_plan_gets_a_precise_error_at_its_line() {
    assert!(BREAKS.len() >= 15);
    let scratch = tempfile::tempdir().unwrap();
    for (n, b) in BREAKS.iter().enumerate() {
        let dir = scratch.path().join(format!("break-{n}"));
        copy_demo(&dir);
        let path = dir.join(b.file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(b.old), "break {n}: {:?} is not in {}", b.old, b.file);
        let broken = text.replacen(b.old, b.new, 1);
        std::fs::write(&path, &broken).unwrap();
        let at = broken.find(b.anchor).unwrap_or_else(|| panic!("break {n}: anchor {:?} not found", b.anchor));
        let line = broken[..at].matches('\n').count() + 1;

        let out = lifeboat(&["plan", "validate", dir.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "break {n} ({}) was accepted", b.message);
        let want = format!("{}:{line}: ", path.display());
        let found = stderr.lines().find(|l| l.starts_with(&want) && l.contains(b.message));
        assert!(found.is_some(), "break {n}: expected {want}...{} in:\n{stderr}", b.message);

        let json = lifeboat(&["plan", "validate", dir.to_str().unwrap(), "--output", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(v["ok"], false);
        assert!(v["problems"].as_array().unwrap().iter().any(|p| p["line"] == line));
    }
}

/// `failover check-hooks` calls each hook of a scenario with step `check`:
/// the command hook gets the body on stdin; a failing hook makes it exit 1
/// naming the hook, after its retries.
#[test]
fn check_hooks_calls_each_hook_of_a_scenario() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("plan");
    copy_demo(&dir);
    let seen = scratch.path().join("seen");
    let hooks = format!(
        "[[hook]]\nname = \"probe\"\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"cat >> {}\"]\n\n\
         [[hook]]\nname = \"broken\"\nkind = \"command\"\ncommand = [\"false\"]\nretries = 1\n\n[[scenario]]",
        seen.display()
    );
    let demo = std::fs::read_to_string(dir.join("demo.toml")).unwrap().replacen("[[scenario]]", &hooks, 1);
    std::fs::write(
        dir.join("demo.toml"),
        demo.replacen("hooks = { route = \"route-log\", notify = \"route-log\" }", "hooks = { verify = \"probe\" }", 1),
    )
    .unwrap();
    let out = lifeboat(&["failover", "check-hooks", "--scenario", "cell-failure", "--plans", dir.to_str().unwrap(), "--output", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let outcomes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((outcomes[0]["hook"].as_str(), outcomes[0]["succeeded"].as_bool()), (Some("probe"), Some(true)), "{outcomes}");
    let body = std::fs::read_to_string(&seen).unwrap();
    assert!(body.contains("\"step\":\"check\"") && body.contains("\"scenario\":\"cell-failure\""), "{body}");

    let demo = std::fs::read_to_string(dir.join("demo.toml")).unwrap();
    std::fs::write(
        dir.join("demo.toml"),
        demo.replacen("hooks = { verify = \"probe\" }", "hooks = { verify = \"probe\", route = \"broken\" }", 1),
    )
    .unwrap();
    let out = lifeboat(&["failover", "check-hooks", "--scenario", "cell-failure", "--plans", dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("FAIL broken: failed after 2 attempt(s)"), "{text}");
}
