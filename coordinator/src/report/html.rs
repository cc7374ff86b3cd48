//! A report as one self-contained HTML page (no scripts, no external
//! files) that reads well on screen and prints on A4: verdict first, then
//! targets against what the drill demonstrated, the recovery point, every
//! step and check with its evidence, and how to verify the signature.

use std::fmt::Write as _;

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
@media print { body { margin: 0; max-width: none; font-size: 11px; } h2 { break-after: avoid; } tr, pre { break-inside: avoid; } a { color: inherit; } }
@page { size: A4; margin: 15mm; }
"#;

fn items(out: &mut String, title: &str, items: &[Item]) {
    let _ = write!(out, "<h2>{}</h2><table class=\"items\"><thead><tr><th>{}</th><th>outcome</th><th>time</th><th>details and evidence</th></tr></thead><tbody>", esc(title), if title == "Steps" { "step" } else { "check" });
    for i in items {
        let evidence = if i.evidence.is_null() {
            String::new()
        } else {
            format!("<pre>{}</pre>", esc(&serde_json::to_string_pretty(&i.evidence).unwrap_or_default()))
        };
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

    let _ = write!(out, "<h2>Recovery point</h2><pre>{}</pre>", esc(&serde_json::to_string_pretty(&r.recovery_point).unwrap_or_default()));
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
    let _ = write!(
        out,
        "<p class=\"small\">This page is a rendering. The signed record is <code>{}</code>; verify it (and the chain of reports around it) offline with the published key: \
         <code>lifeboat report verify DIR --public-key report-signing.pub</code>.</p></body></html>",
        esc(&r.file_name())
    );
    out
}
