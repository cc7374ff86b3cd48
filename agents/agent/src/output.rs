//! Printing results (text for people, JSON for scripts) and logging setup.

use serde::Serialize;

use crate::context::{Global, LogFormat, OutputFormat};

pub fn init_logging(global: &Global) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match global.log_format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

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
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}
