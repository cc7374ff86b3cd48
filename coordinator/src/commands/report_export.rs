//! What auditors take away: `report export DIR` (a static bundle of one
//! cell's signed reports, their pages, the plan's public key and an index
//! page, checked with `report verify` before it is handed over) and
//! `report show --pdf` (a report's page printed by headless Chromium).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use time::OffsetDateTime;

use super::Done;
use crate::report::{self, Report};
use crate::serve::load_plan;

#[derive(Serialize)]
pub struct Exported {
    dir: PathBuf,
    cell: String,
    /// Reports in the bundle: the chain from the first report to the newest in the period.
    reports: usize,
    /// Of those, started within the period.
    in_period: usize,
    public_key: PathBuf,
    index: PathBuf,
}

/// Export `cell`'s reports started within `since..until` into `dir`
/// (which must not exist): every report from the chain's first up to the
/// newest in the period (the chain verifies only whole), each with its
/// page, the plan's public key and `index.html`. Written under
/// `DIR.partial`, verified, then renamed: a bundle that exists is whole.
pub async fn export(
    cell: &str,
    plans: &Path,
    dir: &Path,
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
) -> Result<Done<Exported>> {
    if dir.exists() {
        bail!("{} exists; give a new directory for the bundle", dir.display());
    }
    let plan = load_plan(plans)?;
    let key =
        plan.report_public_key.clone().with_context(|| format!("plan {} publishes no report key ([plan] report_public_key)", plan.name))?;
    let mut stored = super::report::stored_reports(&super::report::cell_agent(&plan, cell)?).await?;
    // Names come from the agent and the unverified report: plain file names only.
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) && !s.starts_with('.');
    if let Some((name, _, r)) = stored.iter().find(|(name, _, r)| *name != r.file_name() || !plain(&r.report_id) || !plain(name)) {
        bail!("the agent lists {name:?}, which is not the file name of the report it holds ({:?}); not exported", r.file_name());
    }
    stored.sort_by_key(|(_, _, r)| r.chain.sequence);
    let within = |r: &Report| {
        let started = crate::clock::parse(&r.started).ok();
        started.is_some_and(|t| since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u))
    };
    let Some(last) = stored.iter().rposition(|(_, _, r)| within(r)) else {
        bail!("cell {cell} has no report started in the period ({} reports stored); `lifeboat report list` shows them", stored.len());
    };
    stored.truncate(last + 1);
    let partial = PathBuf::from(format!("{}.partial", dir.display()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).with_context(|| format!("removing the unfinished {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    for (name, bytes, r) in &stored {
        std::fs::write(partial.join(name), bytes)?;
        std::fs::write(partial.join(r.page_name()), report::html::render(r))?;
    }
    std::fs::copy(&key, partial.join("report-signing.pub")).with_context(|| format!("copying the public key {}", key.display()))?;
    let reports: Vec<&Report> = stored.iter().map(|(_, _, r)| r).collect();
    let verifier = report::keys::Verifier::from_file(&key)?;
    let problems = report::chain::verify(&report::chain::load(&partial)?, &verifier, None);
    if !problems.is_empty() {
        bail!("the bundle does not verify, so it was not made ({}): {}", partial.display(), problems.join("; "));
    }
    let in_period = reports.iter().filter(|r| within(r)).count();
    std::fs::write(partial.join("index.html"), index(cell, &plan.name, &reports, &within, &verifier.key_id))?;
    std::fs::rename(&partial, dir).with_context(|| format!("renaming {} to {}", partial.display(), dir.display()))?;
    let text = format!(
        "{} report(s) of cell {cell} in {} ({in_period} in the period), verified; open {}/index.html, or check it with: lifeboat report verify {} --public-key {}/report-signing.pub",
        reports.len(),
        dir.display(),
        dir.display(),
        dir.display(),
        dir.display()
    );
    let value = Exported {
        dir: dir.to_path_buf(),
        cell: cell.to_string(),
        reports: reports.len(),
        in_period,
        public_key: dir.join("report-signing.pub"),
        index: dir.join("index.html"),
    };
    Ok(Done::ok(value, text))
}

/// The bundle's index: one row per report, those in the period marked.
fn index(cell: &str, plan: &str, reports: &[&Report], within: &dyn Fn(&Report) -> bool, key_id: &str) -> String {
    const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}\
        table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #eaeef2}\
        .passed{color:#116329}.failed{color:#a40e26}tr.earlier{color:#57606a}";
    let figure = |v: Option<f64>| v.map(|s| format!("{s:.1} s")).unwrap_or_else(|| "\u{2014}".into());
    let page = maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Lifeboat reports of cell " (cell) } style { (maud::PreEscaped(STYLE)) } }
            body {
                h1 { "Reports of cell " (cell) " (plan " (plan) ")" }
                p { "Rows in grey came before the period; they are here because the chain of signed reports verifies only from its first report." }
                table #reports {
                    thead { tr { th { "#" } th { "report" } th { "operation" } th { "verdict" } th { "started" } th { "RTO" } th { "RPO" } } }
                    tbody {
                        @for r in reports {
                            tr class=(if within(r) { "in-period" } else { "earlier" }) {
                                td { (r.chain.sequence) }
                                td { a href=(r.page_name()) { (r.report_id) } }
                                td { (r.operation) }
                                td class=(r.verdict.as_str()) { (r.verdict.as_str()) }
                                td { (r.started) }
                                td { (figure(r.demonstrated.rto_seconds)) }
                                td { (figure(r.demonstrated.rpo_seconds)) }
                            }
                        }
                    }
                }
                h2 { "How to verify this bundle" }
                p { "Offline, with the key in this directory (fingerprint " code { (key_id) } "; compare it with the plan's published key):" }
                pre { "lifeboat report verify . --public-key report-signing.pub" }
            }
        }
    };
    page.into_string()
}

/// Print `r`'s page to `pdf` with headless Chromium (`LIFEBOAT_CHROMIUM`,
/// else `chromium` on the PATH).
pub fn print_pdf(r: &Report, pdf: &Path) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let page = scratch.path().join(r.page_name());
    std::fs::write(&page, report::html::render(r))?;
    let chromium = std::env::var("LIFEBOAT_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let out = std::process::Command::new(&chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer"])
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .with_context(|| format!("starting {chromium} (install Chromium, or set LIFEBOAT_CHROMIUM)"))?;
    let printed = std::fs::metadata(pdf).map(|m| m.len()).unwrap_or(0);
    if !out.status.success() || printed == 0 {
        bail!("{chromium} did not print {}: {}", pdf.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
