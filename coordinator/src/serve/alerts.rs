//! Alert webhooks, Alertmanager-compatible: when a cell's Postgres or Kafka
//! at a location turns at-risk or breached (alert `LifeboatRpo`), or a cell
//! has no passing drill within its period (`LifeboatDrill`, location `all`), each `--alert-webhook` receives
//! a JSON array of alerts in Alertmanager's `POST /api/v2/alerts` shape
//! (labels, annotations, startsAt, endsAt, generatorURL). A firing alert
//! is sent again every `--alert-repeat` with `endsAt` four times that
//! ahead (as Prometheus does), so Alertmanager keeps it firing for as long
//! as it fires here, and lets it lapse only if the coordinator stops
//! sending; when it recovers, the same alert is sent once with `endsAt`
//! now (resolved). A change of verdict resolves the old alert and fires
//! the new one. Delivery is retried on the next evaluation until every
//! webhook took it; the alert state lives in the state database, when each
//! was last sent in memory (a restarted coordinator sends them again at
//! once, which Alertmanager takes as the same alerts).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::Coordinator;
use crate::clock::ts;
use crate::compliance::{Status, Verdict};

/// What an alert is about: one system of one cell at one location.
struct Subject<'a> {
    plan: &'a str,
    cell: &'a str,
    tier: &'a str,
    location: &'a str,
    system: &'a str,
    detail: String,
    url: &'a str,
}

impl Subject<'_> {
    /// The alert for `verdict`, firing since `starts` until `ends` (in
    /// the future: firing unless sent again; now: resolved).
    fn alert(&self, verdict: &str, starts: &str, ends: &str) -> Value {
        let Subject { plan, cell, tier, location, system, detail, url } = self;
        let severity = if verdict == "breached" { "critical" } else { "warning" };
        json!({
            "labels": {
                "alertname": if *system == "drill" { "LifeboatDrill" } else { "LifeboatRpo" },
                "plan": plan,
                "cell": cell,
                "tier": tier,
                "location": location,
                "system": system,
                "verdict": verdict,
                "severity": severity,
            },
            "annotations": {
                "summary": if *system == "drill" {
                    format!("{cell}: no passing restore drill within its period ({verdict})")
                } else {
                    format!("{cell}: {system} at {location} is {verdict}")
                },
                "description": detail,
            },
            "startsAt": starts,
            "endsAt": ends,
            "generatorURL": url,
        })
    }
}

/// One change of an alert's verdict: (cell, location, system, verdict; None: resolved).
type Change = (String, String, String, Option<String>);

/// An alert's key: (cell, location, system).
type Key = (String, String, String);

/// When each firing alert was last sent.
pub type Sent = HashMap<Key, OffsetDateTime>;

/// What one evaluation sends: the alerts, the changes to record, and the
/// firing alerts among them (their keys).
struct Batch {
    alerts: Vec<Value>,
    changes: Vec<Change>,
    firing: Vec<Key>,
}

/// Compare verdicts with what was last alerted; send what changed, and
/// record it once every webhook took it.
pub async fn evaluate(c: &Arc<Coordinator>, status: Status, now: OffsetDateTime) -> anyhow::Result<()> {
    if c.cfg.webhooks.is_empty() {
        return Ok(());
    }
    let batch = c.blocking(move |c| changes(c, &status, now)).await?;
    if batch.alerts.is_empty() {
        return Ok(());
    }
    send(c, &Value::Array(batch.alerts)).await?;
    c.blocking(move |c| -> anyhow::Result<()> {
        let mut sent = c.alerts_sent.lock().expect("alerts sent");
        for key in batch.firing {
            sent.insert(key, now);
        }
        for (cell, location, system, verdict) in batch.changes {
            tracing::warn!(%cell, %location, %system, verdict = verdict.as_deref().unwrap_or("ok (resolved)"), "alert sent");
            c.store.set_alert(&cell, &location, &system, verdict.as_deref(), now)?;
            if verdict.is_none() {
                sent.remove(&(cell, location, system));
            }
        }
        Ok(())
    })
    .await
}

/// What is alertable in a cell: (location, system, verdict, detail).
fn subjects(cell: &crate::compliance::CellStatus) -> Vec<(&str, &'static str, Verdict, String)> {
    let mut subjects = Vec::new();
    for l in &cell.locations {
        for (system, point) in [("postgres", &l.postgres), ("kafka", &l.kafka)] {
            let Some(p) = point else { continue };
            let detail = format!(
                "RPO exposure {} against a target of {:.0}s{}",
                p.exposure_seconds.map(|e| format!("{e:.0}s")).unwrap_or_else(|| "unbounded (nothing recoverable)".into()),
                p.target_seconds,
                l.problem.as_deref().map(|x| format!("; {x}")).unwrap_or_default()
            );
            subjects.push((l.location.as_str(), system, p.verdict, detail));
        }
    }
    if let Some(d) = &cell.drills {
        let detail = format!(
            "no passing drill within its period of {:.1} days (newest passing: {}; newest drill: {} {})",
            d.period_seconds / 86400.0,
            d.last_passed.map_or_else(|| "never".to_string(), crate::clock::ts),
            d.last_verdict.map_or("none", |v| v.as_str()),
            d.last_report.as_deref().unwrap_or("")
        );
        subjects.push(("all", "drill", d.verdict, detail));
    }
    subjects
}

/// The alerts whose verdict changed since the last ones sent (from the
/// state database) and the firing ones due to be sent again, with the
/// changes to record once they are sent.
fn changes(c: &Coordinator, status: &Status, now: OffsetDateTime) -> anyhow::Result<Batch> {
    let mut batch = Batch { alerts: Vec::new(), changes: Vec::new(), firing: Vec::new() };
    let repeat = c.cfg.alert_repeat;
    let lapses = ts(now + repeat * 4);
    let sent = c.alerts_sent.lock().expect("alerts sent").clone();
    for cell in &status.cells {
        for (location, system, verdict, detail) in subjects(cell) {
            let key = (cell.cell.clone(), location.to_string(), system.to_string());
            let previous = c.store.alert(&cell.cell, location, system)?;
            let current = (verdict != Verdict::Ok).then(|| verdict.as_str().to_string());
            let subject =
                Subject { plan: &status.plan, cell: &cell.cell, tier: &cell.tier, location, system, detail, url: &c.cfg.public_url };
            if previous.as_ref().map(|(v, _)| v) == current.as_ref() {
                // Unchanged: a firing alert is sent again when due.
                let due = sent.get(&key).is_none_or(|last| now - *last >= repeat);
                if let (Some((v, since)), true) = (&previous, due) {
                    batch.alerts.push(subject.alert(v, since, &lapses));
                    batch.firing.push(key);
                }
                continue;
            }
            if let Some((old, since)) = &previous {
                batch.alerts.push(subject.alert(old, since, &ts(now)));
            }
            if let Some(v) = &current {
                batch.alerts.push(subject.alert(v, &ts(now), &lapses));
                batch.firing.push(key);
            }
            batch.changes.push((cell.cell.clone(), location.to_string(), system.to_string(), current));
        }
    }
    Ok(batch)
}

/// Post `body` to every webhook; any failure leaves the changes unrecorded
/// (the next evaluation sends them again).
async fn send(c: &Coordinator, body: &Value) -> anyhow::Result<()> {
    // Webhook URLs may carry tokens: errors name them by position only.
    for (i, hook) in c.cfg.webhooks.iter().enumerate() {
        let n = i + 1;
        let sent = c.http.post(hook).timeout(Duration::from_secs(10)).json(body).send().await;
        match sent {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => anyhow::bail!("alert webhook #{n} answered {}; will retry", r.status()),
            Err(e) => anyhow::bail!(
                "alert webhook #{n} could not be reached ({}); will retry",
                if e.is_timeout() { "timeout" } else { "connection failed" }
            ),
        }
    }
    Ok(())
}
