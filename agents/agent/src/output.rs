//! Printing results: text for people, JSON for scripts, progress bars.

use serde::Serialize;

use crate::context::{Global, OutputFormat};

/// Print `value` as JSON, or as the text `render` makes of it.
pub fn emit<T: Serialize>(global: &Global, value: &T, render: impl FnOnce(&T) -> String) {
    match global.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(value).expect("results serialise")),
        OutputFormat::Text => {
            let text = render(value);
            if !text.is_empty() {
                println!("{}", text.trim_end());
            }
        }
    }
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Run `work` with a progress bar over the repository's data path on
/// stderr, when stderr is a terminal (never in scripts or logs). Under
/// `lifeboat-agent serve`, progress goes to the file `LIFEBOAT_PROGRESS_FILE`
/// names instead ("done total" in bytes, replaced every half second).
pub async fn with_progress<T>(repo: &lifeboat_repository::Repository, what: &str, work: impl std::future::Future<Output = T>) -> T {
    if let Some(path) = std::env::var_os("LIFEBOAT_PROGRESS_FILE") {
        let progress = repo.progress().clone();
        let path = std::path::PathBuf::from(path);
        let ticker = tokio::spawn(async move {
            let tmp = path.with_extension("progress.tmp");
            loop {
                let (done, total) = progress.get();
                if std::fs::write(&tmp, format!("{done} {total}\n")).is_ok() {
                    let _ = std::fs::rename(&tmp, &path);
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        });
        let out = work.await;
        ticker.abort();
        return out;
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return work.await;
    }
    let style = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
        .expect("a valid template")
        .progress_chars("=> ");
    let bar = indicatif::ProgressBar::new(0).with_style(style).with_message(what.to_string());
    let progress = repo.progress().clone();
    let drawn = bar.clone();
    let ticker = tokio::spawn(async move {
        loop {
            let (done, total) = progress.get();
            drawn.set_length(total);
            drawn.set_position(done);
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    let out = work.await;
    ticker.abort();
    bar.finish_and_clear();
    out
}

/// A retention plan for people: one line per backup kept or deleted, then
/// what goes (and `extra`, e.g. the WAL kept).
pub fn retention_text(plan: &lifeboat_repository::retention::Plan, dry_run: bool, extra: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for d in &plan.keep {
        let _ = writeln!(out, "keep   {}/{}  ({})", d.cell, d.id, d.reason);
    }
    for d in &plan.delete {
        let _ = writeln!(out, "delete {}/{}  ({})", d.cell, d.id, d.reason);
    }
    for d in &plan.retained {
        let _ = writeln!(out, "kept   {}/{}  (the policy lets it go, but it is under Object Lock: retained until its date)", d.cell, d.id);
    }
    if plan.retained_objects > 0 {
        let _ = writeln!(out, "{} objects under Object Lock were kept", plan.retained_objects);
    }
    let temporaries = match plan.delete_temporaries.len() {
        0 => String::new(),
        n => format!(", {n} temporary files of interrupted writes"),
    };
    let _ = writeln!(
        out,
        "{} {} backups and {} chunks{temporaries} ({}){extra}",
        if dry_run { "would delete" } else { "deleted" },
        plan.delete.len(),
        plan.delete_chunks.len(),
        bytes(plan.freed_bytes)
    );
    out
}
