//! A report as one self-contained HTML page (no scripts, no external
//! files) that reads well on screen and prints on A4: verdict first, then
//! targets against what the drill demonstrated, the controls it evidences,
//! a timeline of its phases (inline SVG), the recovery point and every
//! step and check with its evidence as labelled tables, and how to verify
//! the signature.

use std::fmt::Write as _;

use serde_json::Value;

use super::{Item, Report};

/// Text made safe for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn secs(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.1} s"),
        Some(_) => "unbounded (nothing recovered)".into(),
        None => "not measured".into(),
    }
}

fn within(demonstrated: Option<f64>, target: f64) -> &'static str {
    match demonstrated {
        Some(d) if d <= target => "<span class=\"passed\">within target</span>",
        Some(_) => "<span class=\"failed\">over target</span>",
        None => "<span class=\"failed\">not demonstrated</span>",
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

fn items(out: &mut String, title: &str, items: &[Item]) {
    let _ = write!(out, "<h2>{}</h2><table class=\"items\"><thead><tr><th>{}</th><th>outcome</th><th>time</th><th>details and evidence</th></tr></thead><tbody>", esc(title), if title == "Steps" { "step" } else { "check" });
    for i in items {
        let evidence = if i.evidence.is_null() { String::new() } else { value(&i.evidence, 0) };
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td class=\"num\">{:.1} s</td><td>{}{}</td></tr>",
            esc(&i.name),
            i.outcome.as_str(),
            i.outcome.as_str(),
            i.seconds,
            i.message.as_deref().map(esc).unwrap_or_default(),
            evidence
        );
    }
    out.push_str("</tbody></table>");
}

pub fn render(r: &Report) -> String {
    let mut out = String::with_capacity(16 << 10);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Lifeboat {} report {}: {}</title><style>{STYLE}</style></head><body>",
        esc(&r.operation),
        esc(&r.report_id),
        r.verdict.as_str()
    );
    let _ = write!(
        out,
        "<h1>Lifeboat {} report: cell {}</h1><p><span class=\"verdict {}\" id=\"verdict\">{}</span> &nbsp; {} error(s), {} warning(s)</p>",
        esc(&r.operation),
        esc(&r.cell),
        r.verdict.as_str(),
        r.verdict.as_str(),
        r.errors,
        r.warnings
    );
    out.push_str("<table class=\"meta\"><tbody>");
    let tenants = r.tenants.join(", ");
    let duration = format!("{:.1} s", r.duration_seconds);
    for (k, v) in [
        ("report id", r.report_id.as_str()),
        ("plan", &r.plan),
        ("cell", &r.cell),
        ("tenants", &tenants),
        ("operation", &r.operation),
        ("initiator", &r.initiator),
        ("source location", &r.source_location),
        ("target environment", &r.target_environment),
        ("started", &r.started),
        ("finished", &r.finished),
        ("duration", &duration),
        ("schema, tool", &format!("{}, lifeboat {}", r.schema, r.tool_version)),
    ] {
        let _ = write!(out, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
    }
    out.push_str("</tbody></table>");

    out.push_str(
        "<h2>Targets</h2><table id=\"targets\"><thead><tr><th></th><th>tier target</th><th>demonstrated</th><th></th></tr></thead><tbody>",
    );
    let d = &r.demonstrated;
    let t = &r.targets;
    let _ = write!(
        out,
        "<tr><td>RTO (time to a restored, checked environment)</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
        secs(Some(t.rto_seconds)),
        secs(d.rto_seconds),
        within(d.rto_seconds, t.rto_seconds)
    );
    if r.checks.iter().any(|c| c.name.contains("Postgres RPO")) {
        let _ = write!(out, "<tr><td>RPO, Postgres (target minus the point recovered)</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>", secs(Some(t.rpo_seconds)), secs(d.rpo_seconds), within(d.rpo_seconds, t.rpo_seconds));
    }
    if let Some(k) = t.kafka_rpo_seconds {
        let _ = write!(out, "<tr><td>RPO, Kafka (target minus the newest snapshot's end)</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>", secs(Some(k)), secs(d.kafka_rpo_seconds), within(d.kafka_rpo_seconds, k));
    }
    out.push_str("</tbody></table>");

    controls(&mut out, r);
    out.push_str(&timeline(r));
    let _ = write!(out, "<h2>Recovery point</h2><div id=\"recovery-point\">{}</div>", value(&r.recovery_point, 0));
    items(&mut out, "Steps", &r.steps);
    items(&mut out, "Checks", &r.checks);

    out.push_str("<h2>Integrity</h2><table class=\"meta\"><tbody>");
    let _ = write!(out, "<tr><td>place in the cell's chain</td><td>report {} of cell {}</td></tr>", r.chain.sequence, esc(&r.cell));
    let _ = write!(
        out,
        "<tr><td>previous report (SHA-256)</td><td><code>{}</code></td></tr>",
        esc(r.chain.previous.as_deref().unwrap_or("none: the first report"))
    );
    match &r.signature {
        Some(s) => {
            let _ = write!(
                out,
                "<tr><td>signature</td><td>{} by key <code>{}</code><br><code class=\"small\">{}</code></td></tr>",
                esc(&s.algorithm),
                esc(&s.key_id),
                esc(&s.value)
            );
        }
        None => out.push_str("<tr><td>signature</td><td class=\"failed\">not signed</td></tr>"),
    }
    out.push_str("</tbody></table>");
    verify_footer(&mut out, r);
    out.push_str("</body></html>");
    out
}

/// The controls the report evidences (from the plan), if it names any.
fn controls(out: &mut String, r: &Report) {
    if r.controls.is_empty() {
        return;
    }
    out.push_str("<h2>Controls evidenced</h2><table id=\"controls\"><thead><tr><th>control</th><th>title</th></tr></thead><tbody>");
    for c in &r.controls {
        let _ = write!(out, "<tr><td>{}</td><td>{}</td></tr>", esc(&c.id), esc(&c.title));
    }
    let _ = write!(
        out,
        "</tbody></table><p class=\"small\">This {} of cell {} is evidence for the controls above, as plan &ldquo;{}&rdquo; maps them.</p>",
        esc(&r.operation),
        esc(&r.cell),
        esc(&r.plan)
    );
}

/// How to check this report without trusting the page or its server.
fn verify_footer(out: &mut String, r: &Report) {
    let key = r.signature.as_ref().map_or("(not signed)", |s| s.key_id.as_str());
    let _ = write!(
        out,
        "<h2>How to verify this report</h2><div class=\"verify small\" id=\"verify\"><p>This page is a rendering. The signed record is <code>{file}</code>. \
         Verify it, and the chain of reports around it, offline with the plan's published key, whose fingerprint is <code>{key}</code>:</p>\
         <pre>lifeboat report verify {file} --public-key report-signing.pub\nlifeboat report verify DIR --public-key report-signing.pub   # the whole chain of cell {cell}</pre>\
         <p>The fingerprint is the first 16 hex digits of SHA-256 over the public key's 32 bytes: \
         <code>xxd -r -p report-signing.pub | sha256sum | cut -c1-16</code> must print <code>{key}</code>.</p></div>",
        file = esc(&r.file_name()),
        key = esc(key),
        cell = esc(&r.cell)
    );
}

/// A JSON value as HTML: objects as labelled tables, arrays of objects as
/// tables with a column per key, other arrays as lists, scalars as text.
fn value(v: &Value, depth: usize) -> String {
    match v {
        Value::Null => "<span class=\"small\">none</span>".into(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => esc(s),
        Value::Object(map) if depth < 4 => {
            let mut out = String::from("<table class=\"evidence\"><tbody>");
            for (k, v) in map {
                let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(&k.replace('_', " ")), value(v, depth + 1));
            }
            out + "</tbody></table>"
        }
        Value::Array(items) if items.is_empty() => "<span class=\"small\">none</span>".into(),
        Value::Array(items) if depth < 4 && items.iter().all(Value::is_object) => rows(items, depth),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            items.iter().map(|i| value(i, depth + 1)).collect::<Vec<_>>().join(", ")
        }
        Value::Array(items) if depth < 4 => {
            let cells: String = items.iter().map(|i| format!("<li>{}</li>", value(i, depth + 1))).collect();
            format!("<ol>{cells}</ol>")
        }
        deep => format!("<code>{}</code>", esc(&deep.to_string())),
    }
}

/// An array of objects: one column per key (in first-seen order), one row each.
fn rows(items: &[Value], depth: usize) -> String {
    let mut keys: Vec<&String> = Vec::new();
    for item in items {
        for k in item.as_object().into_iter().flat_map(|m| m.keys()) {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    let mut out = String::from("<table class=\"evidence\"><thead><tr>");
    for k in &keys {
        let _ = write!(out, "<th>{}</th>", esc(&k.replace('_', " ")));
    }
    out.push_str("</tr></thead><tbody>");
    for item in items {
        out.push_str("<tr>");
        for k in &keys {
            let _ = write!(out, "<td>{}</td>", item.get(k.as_str()).map(|v| value(v, depth + 1)).unwrap_or_default());
        }
        out.push_str("</tr>");
    }
    out + "</tbody></table>"
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

/// The phases drawn to scale, one bar per step in the order they ran, then
/// the checks as one bar: restore, replay, Kafka, checks.
fn timeline(r: &Report) -> String {
    let mut bars: Vec<(String, &str, &str, f64)> = r
        .steps
        .iter()
        .map(|s| {
            let (p, colour) = phase(&s.name);
            (s.name.clone(), p, colour, s.seconds.max(0.0))
        })
        .collect();
    if !r.checks.is_empty() {
        let seconds = r.checks.iter().map(|c| c.seconds.max(0.0)).sum();
        bars.push((format!("{} checks", r.checks.len()), "checks", "#1a7f37", seconds));
    }
    let total: f64 = bars.iter().map(|b| b.3).sum::<f64>().max(0.001);
    let (label, width, row) = (300.0, 560.0, 20.0);
    let height = row * bars.len() as f64 + 30.0;
    let mut svg = format!(
        "<h2>Timeline</h2><svg class=\"timeline\" id=\"timeline\" viewBox=\"0 0 {} {height}\" role=\"img\" aria-label=\"the report's phases over {total:.1} s\">\
         <title>Phases of the {} over {total:.1} s</title>",
        label + width + 80.0,
        esc(&r.operation)
    );
    let mut at = 0.0;
    for (i, (name, p, colour, seconds)) in bars.iter().enumerate() {
        let y = i as f64 * row;
        let (x, w) = (label + at / total * width, (seconds / total * width).max(1.0));
        let short: String = name.chars().take(48).collect();
        let _ = write!(
            svg,
            "<g class=\"phase-{p}\"><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{colour}\"><title>{}: {seconds:.1} s ({p})</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\">{seconds:.1} s</text></g>",
            label - 6.0,
            y + 14.0,
            esc(&short),
            y + 3.0,
            row - 6.0,
            esc(name),
            x + w + 4.0,
            y + 14.0
        );
        at += seconds;
    }
    let axis = bars.len() as f64 * row + 14.0;
    let _ = write!(
        svg,
        "<line x1=\"{label}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#d0d7de\"/><text x=\"{label}\" y=\"{:.1}\">0 s</text>\
         <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{total:.1} s</text></svg>\
         <p class=\"small\">Steps drawn in the order they ran, each from the end of the one before; the checks as one bar.</p>",
        label + width,
        axis - 10.0,
        axis - 10.0,
        axis + 4.0,
        label + width,
        axis + 4.0
    );
    svg
}
