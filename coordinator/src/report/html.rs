//! A report as one self-contained HTML page (no scripts, no external
//! files) that reads well on screen and prints on A4: verdict first, then
//! targets against what the drill demonstrated, the controls it evidences,
//! a timeline of its phases (inline SVG), the recovery point and every
//! step and check with its evidence as labelled tables, and how to verify
//! the signature. Built with maud: text is escaped by construction.

use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::Value;

use super::{Item, Report};

fn secs(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.1} s"),
        Some(_) => "unbounded (nothing recovered)".into(),
        None => "not measured".into(),
    }
}

fn within(demonstrated: Option<f64>, target: f64) -> Markup {
    match demonstrated {
        Some(d) if d <= target => html! { span.passed { "within target" } },
        Some(_) => html! { span.failed { "over target" } },
        None => html! { span.failed { "not demonstrated" } },
    }
}

const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1f24; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; } h2 { font-size: 1.1rem; margin: 1.6rem 0 .5rem; border-bottom: 1px solid #d0d7de; }
.verdict { display: inline-block; padding: .3rem .8rem; border-radius: .3rem; font-weight: 700; font-size: 1.2rem; text-transform: uppercase; }
.verdict.passed { background: #dafbe1; color: #116329; border: 2px solid #116329; }
.verdict.failed { background: #ffebe9; color: #a40e26; border: 2px solid #a40e26; }
table { border-collapse: collapse; width: 100%; margin: .3rem 0; }
th, td { text-align: left; vertical-align: top; padding: .3rem .5rem; border-bottom: 1px solid #eaeef2; }
th { background: #f6f8fa; font-weight: 600; } td.num { text-align: right; white-space: nowrap; }
.passed { color: #116329; font-weight: 600; } .failed { color: #a40e26; font-weight: 600; }
.warning { color: #9a6700; font-weight: 600; } .skipped { color: #57606a; font-weight: 600; }
pre { background: #f6f8fa; padding: .5rem; font-size: 11px; white-space: pre-wrap; word-break: break-all; margin: .2rem 0; }
.meta td:first-child { width: 13rem; color: #57606a; } .small { font-size: 12px; color: #57606a; }
table.evidence { margin: .2rem 0; font-size: 12px; } table.evidence th, table.evidence td { padding: .1rem .4rem; border-bottom: 1px solid #f0f2f4; }
table.evidence th { width: 12rem; background: none; color: #57606a; font-weight: 500; }
svg.timeline { width: 100%; height: auto; font: 11px system-ui, sans-serif; } .verify code { word-break: break-all; }
@media print { body { margin: 0; max-width: none; font-size: 11px; } h2 { break-after: avoid; } tr, pre { break-inside: avoid; } a { color: inherit; } }
@page { size: A4; margin: 15mm; }
"#;

pub fn render(r: &Report) -> String {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Lifeboat " (r.operation) " report " (r.report_id) ": " (r.verdict.as_str()) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "Lifeboat " (r.operation) " report: cell " (r.cell) }
                p {
                    span.verdict.(r.verdict.as_str()) #verdict { (r.verdict.as_str()) }
                    (PreEscaped(" &nbsp; ")) (r.errors) " error(s), " (r.warnings) " warning(s)"
                }
                (meta(r))
                (targets(r))
                (controls(r))
                (timeline(r))
                h2 { "Recovery point" }
                #recovery-point { (value(&r.recovery_point, 0)) }
                (items("Steps", "step", &r.steps))
                (items("Checks", "check", &r.checks))
                (integrity(r))
                (verify_footer(r))
            }
        }
    };
    page.into_string()
}

/// Who, what, where and when.
fn meta(r: &Report) -> Markup {
    let rows = [
        ("report id", r.report_id.clone()),
        ("plan", r.plan.clone()),
        ("cell", r.cell.clone()),
        ("tenants", r.tenants.join(", ")),
        ("operation", r.operation.clone()),
        ("initiator", r.initiator.clone()),
        ("source location", r.source_location.clone()),
        ("target environment", r.target_environment.clone()),
        ("started", r.started.clone()),
        ("finished", r.finished.clone()),
        ("duration", format!("{:.1} s", r.duration_seconds)),
        ("schema, tool", format!("{}, lifeboat {}", r.schema, r.tool_version)),
    ];
    html! { table.meta { tbody { @for (k, v) in &rows { tr { td { (k) } td { (v) } } } } } }
}

/// The tier's targets against what the report demonstrated.
fn targets(r: &Report) -> Markup {
    let (d, t) = (&r.demonstrated, &r.targets);
    let row = |what: &str, target: f64, shown: Option<f64>| {
        html! { tr { td { (what) } td.num { (secs(Some(target))) } td.num { (secs(shown)) } td { (within(shown, target)) } } }
    };
    html! {
        h2 { "Targets" }
        table #targets {
            thead { tr { th {} th { "tier target" } th { "demonstrated" } th {} } }
            tbody {
                (row("RTO (time to a restored, checked environment)", t.rto_seconds, d.rto_seconds))
                @if r.checks.iter().any(|c| c.name.contains("Postgres RPO")) {
                    (row("RPO, Postgres (target minus the point recovered)", t.rpo_seconds, d.rpo_seconds))
                }
                @if let Some(k) = t.kafka_rpo_seconds {
                    (row("RPO, Kafka (target minus the newest snapshot's end)", k, d.kafka_rpo_seconds))
                }
            }
        }
    }
}

fn items(title: &str, noun: &str, items: &[Item]) -> Markup {
    html! {
        h2 { (title) }
        table.items {
            thead { tr { th { (noun) } th { "outcome" } th { "time" } th { "details and evidence" } } }
            tbody {
                @for i in items {
                    tr {
                        td { (i.name) }
                        td class=(i.outcome.as_str()) { (i.outcome.as_str()) }
                        td.num { (format!("{:.1} s", i.seconds)) }
                        td {
                            @if let Some(m) = &i.message { (m) }
                            @if !i.evidence.is_null() { (value(&i.evidence, 0)) }
                        }
                    }
                }
            }
        }
    }
}

/// The report's place in its cell's chain and its signature.
fn integrity(r: &Report) -> Markup {
    html! {
        h2 { "Integrity" }
        table.meta { tbody {
            tr { td { "place in the cell's chain" } td { "report " (r.chain.sequence) " of cell " (r.cell) } }
            tr { td { "previous report (SHA-256)" } td { code { (r.chain.previous.as_deref().unwrap_or("none: the first report")) } } }
            @match &r.signature {
                Some(s) => tr { td { "signature" } td { (s.algorithm) " by key " code { (s.key_id) } br; code.small { (s.value) } } },
                None => tr { td { "signature" } td.failed { "not signed" } },
            }
        } }
    }
}

/// The controls the report evidences (from the plan), if it names any.
fn controls(r: &Report) -> Markup {
    if r.controls.is_empty() {
        return html! {};
    }
    html! {
        h2 { "Controls evidenced" }
        table #controls {
            thead { tr { th { "control" } th { "title" } } }
            tbody { @for c in &r.controls { tr { td { (c.id) } td { (c.title) } } } }
        }
        p.small { "This " (r.operation) " of cell " (r.cell) " is evidence for the controls above, as plan \u{201c}" (r.plan) "\u{201d} maps them." }
    }
}

/// How to check this report without trusting the page or its server.
fn verify_footer(r: &Report) -> Markup {
    let key = r.signature.as_ref().map_or("(not signed)", |s| s.key_id.as_str());
    let file = r.file_name();
    html! {
        h2 { "How to verify this report" }
        .verify.small #verify {
            p {
                "This page is a rendering. The signed record is " code { (file) } ". Verify it, and the chain of reports around it, \
                 offline with the plan's published key, whose fingerprint is " code { (key) } ":"
            }
            pre {
                "lifeboat report verify " (file) " --public-key report-signing.pub\n"
                "lifeboat report verify DIR --public-key report-signing.pub   # the whole chain of cell " (r.cell)
            }
            p {
                "The fingerprint is the first 16 hex digits of SHA-256 over the public key's 32 bytes: "
                code { "xxd -r -p report-signing.pub | sha256sum | cut -c1-16" } " must print " code { (key) } "."
            }
        }
    }
}

/// A JSON value as HTML: objects as labelled tables, arrays of objects as
/// tables with a column per key, other arrays as lists, scalars as text.
fn value(v: &Value, depth: usize) -> Markup {
    let label = |k: &str| k.replace('_', " ");
    match v {
        Value::Null => html! { span.small { "none" } },
        Value::Bool(b) => html! { (if *b { "yes" } else { "no" }) },
        Value::Number(n) => html! { (n) },
        Value::String(s) => html! { (s) },
        Value::Object(map) if depth < 4 => html! {
            table.evidence { tbody { @for (k, v) in map { tr { th { (label(k)) } td { (value(v, depth + 1)) } } } } }
        },
        Value::Array(items) if items.is_empty() => html! { span.small { "none" } },
        Value::Array(items) if depth < 4 && items.iter().all(Value::is_object) => rows(items, depth),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => html! {
            @for (n, i) in items.iter().enumerate() { @if n > 0 { ", " } (value(i, depth + 1)) }
        },
        Value::Array(items) if depth < 4 => html! { ol { @for i in items { li { (value(i, depth + 1)) } } } },
        deep => html! { code { (deep.to_string()) } },
    }
}

/// An array of objects: one column per key (in first-seen order), one row each.
fn rows(items: &[Value], depth: usize) -> Markup {
    let mut keys: Vec<&String> = Vec::new();
    for item in items {
        for k in item.as_object().into_iter().flat_map(|m| m.keys()) {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    html! {
        table.evidence {
            thead { tr { @for k in &keys { th { (k.replace('_', " ")) } } } }
            tbody {
                @for item in items {
                    tr { @for k in &keys { td { @if let Some(v) = item.get(k.as_str()) { (value(v, depth + 1)) } } } }
                }
            }
        }
    }
}

/// The phase a step belongs to, for the timeline: (name, colour).
fn phase(name: &str) -> (&'static str, &'static str) {
    let n = name.to_ascii_lowercase();
    if n.contains("kafka") {
        ("Kafka", "#8250df")
    } else if n.contains("replay") || n.contains("promote") {
        ("replay", "#bf8700")
    } else if n.contains("restore") || n.contains("base backup") || n.contains("fence") {
        ("restore", "#0969da")
    } else if n.contains("approv") || n.contains("hook") || n.contains("route") {
        ("failover", "#57606a")
    } else {
        ("other", "#6e7781")
    }
}

/// One bar of the timeline: a step (or all checks), its phase and length.
struct Bar {
    name: String,
    phase: &'static str,
    colour: &'static str,
    seconds: f64,
}

/// The steps in the order they ran, then the checks as one bar.
fn bars(r: &Report) -> Vec<Bar> {
    let mut bars: Vec<Bar> = r
        .steps
        .iter()
        .map(|s| {
            let (phase, colour) = phase(&s.name);
            Bar { name: s.name.clone(), phase, colour, seconds: s.seconds.max(0.0) }
        })
        .collect();
    if !r.checks.is_empty() {
        let seconds = r.checks.iter().map(|c| c.seconds.max(0.0)).sum();
        bars.push(Bar { name: format!("{} checks", r.checks.len()), phase: "checks", colour: "#1a7f37", seconds });
    }
    bars
}

/// The phases drawn to scale (inline SVG), each bar starting where the one
/// before ended: restore, replay, Kafka, checks.
fn timeline(r: &Report) -> Markup {
    let bars = bars(r);
    let total: f64 = bars.iter().map(|b| b.seconds).sum::<f64>().max(0.001);
    let (label, width, row) = (300.0, 560.0, 20.0);
    let axis = bars.len() as f64 * row + 14.0;
    let f = |v: f64| format!("{v:.1}");
    let mut at = 0.0;
    let drawn: Vec<(f64, f64, &Bar)> = bars
        .iter()
        .map(|b| {
            let (x, w) = (label + at / total * width, (b.seconds / total * width).max(1.0));
            at += b.seconds;
            (x, w, b)
        })
        .collect();
    html! {
        h2 { "Timeline" }
        svg.timeline #timeline viewBox=(format!("0 0 {} {}", label + width + 80.0, axis + 16.0)) role="img"
            aria-label=(format!("the report's phases over {total:.1} s")) {
            title { "Phases of the " (r.operation) " over " (f(total)) " s" }
            @for (i, (x, w, b)) in drawn.iter().enumerate() {
                @let y = i as f64 * row;
                g class=(format!("phase-{}", b.phase)) {
                    text x=(f(label - 6.0)) y=(f(y + 14.0)) text-anchor="end" { (b.name.chars().take(48).collect::<String>()) }
                    rect x=(f(*x)) y=(f(y + 3.0)) width=(f(*w)) height=(f(row - 6.0)) fill=(b.colour) {
                        title { (b.name) ": " (f(b.seconds)) " s (" (b.phase) ")" }
                    }
                    text x=(f(x + w + 4.0)) y=(f(y + 14.0)) { (f(b.seconds)) " s" }
                }
            }
            line x1=(label) x2=(label + width) y1=(f(axis - 10.0)) y2=(f(axis - 10.0)) stroke="#d0d7de" {}
            text x=(label) y=(f(axis + 4.0)) { "0 s" }
            text x=(label + width) y=(f(axis + 4.0)) text-anchor="end" { (f(total)) " s" }
        }
        p.small { "Steps drawn in the order they ran, each from the end of the one before; the checks as one bar." }
    }
}
