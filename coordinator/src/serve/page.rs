//! The status page for people (`/`): every cell's RPO exposure per
//! location, copy lag and problems, then each cell's newest drills with
//! links to their reports. Self-contained (no scripts, no external files),
//! refreshed every 15 s; built with maud, so every text is escaped.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::Coordinator;
use crate::clock;
use crate::compliance::{human, Point, Status, Verdict};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em} table{border-collapse:collapse} \
    td,th{border:1px solid #ccc;padding:.4em .7em;vertical-align:top} th{background:#f3f3f3;text-align:left} \
    .ok{color:#080} .at-risk{color:#b60;font-weight:bold} .breached{color:#c00;font-weight:bold}";

fn badge(v: Verdict) -> Markup {
    html! { span class=(v.as_str()) { (v.as_str()) } }
}

fn point(p: &Option<Point>) -> Markup {
    match p {
        None => html! { td { "\u{2013}" } },
        Some(p) => html! { td { (human(p.exposure_seconds)) " / " (human(Some(p.target_seconds))) " " (badge(p.verdict)) } },
    }
}

/// Each cell's newest five drills, as table rows with links to their reports.
pub(super) fn drills(c: &Coordinator) -> anyhow::Result<Markup> {
    let mut rows = Vec::new();
    for cell in &c.plan.cells {
        for d in c.store.drills(&cell.name)?.into_iter().take(5) {
            rows.push((cell.name.clone(), d));
        }
    }
    Ok(html! {
        @for (cell, d) in &rows {
            @let r = d.report.as_ref();
            @let shown = |f: fn(&crate::report::Demonstrated) -> Option<f64>| human(r.and_then(|r| f(&r.demonstrated)));
            tr {
                td { (cell) }
                td { (clock::ts(d.finished)) }
                td { @if d.passed { span.ok { "passed" } } @else { span.breached { "failed" } } }
                td { (shown(|d| d.rto_seconds)) }
                td { (shown(|d| d.rpo_seconds)) }
                td {
                    @match r {
                        Some(r) => {
                            a href=(format!("/reports/{cell}/{}", r.page_name())) { "report" }
                            " \u{b7} "
                            a href=(format!("/reports/{cell}/{}", r.file_name())) { "signed JSON" }
                        }
                        None => "no report",
                    }
                }
            }
        }
    })
}

/// The page: `drills` are the rows [`drills`] made.
pub(super) fn render(s: &Status, drills: &Markup) -> String {
    let rate = s.drill_success_rate.map(|r| format!("{:.1} %", r * 100.0)).unwrap_or_else(|| "no drills yet".into());
    let page = html! {
        (DOCTYPE)
        html {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content="15";
                title { "Lifeboat: " (s.plan) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "Lifeboat \u{b7} plan " (s.plan) " " (badge(s.verdict)) }
                p { "Computed " (clock::ts(s.computed_at)) " (UTC). RPO exposure is now minus the newest point each location can recover to." }
                table {
                    tr { th { "Cell" } th { "Location" } th { "Postgres exposure / RPO" } th { "Kafka exposure / RPO" } th { "Copy lag" } th { "Problem" } }
                    @for c in &s.cells {
                        @for (i, l) in c.locations.iter().enumerate() {
                            tr {
                                @if i == 0 {
                                    td rowspan=(c.locations.len()) { b { (c.cell) } br; (c.tier) " \u{b7} " (badge(c.verdict)) }
                                }
                                td { (l.location) br; small { (l.role.as_str()) } }
                                (point(&l.postgres))
                                (point(&l.kafka))
                                td { (human(l.copy_lag_seconds)) }
                                td { (l.problem.as_deref().or(c.agent_problem.as_deref()).unwrap_or("")) }
                            }
                        }
                    }
                }
                h2 { "Drills" }
                p { "Restore success rate over the last 365 days: " (rate) "." }
                table {
                    tr { th { "Cell" } th { "Finished" } th { "Verdict" } th { "RTO" } th { "RPO" } th { "Report" } }
                    (drills)
                }
                p { a href="/v1/status" { "JSON" } " \u{b7} " a href="/v1/runs" { "runs" } " \u{b7} " a href="/metrics" { "metrics" } }
            }
        }
    };
    page.into_string()
}
