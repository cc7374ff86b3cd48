//! The operator commands, one module each: what a command reads, where it
//! asks (a running coordinator, or straight to the agents or the state
//! database), and how its result prints (text for people, JSON for
//! scripts). `main` only parses the command line and calls them.
//!
//! Exit statuses: 0 success; 1 failure (the error, or a run, drill or
//! verification that did not pass); 2 usage (from clap).

pub mod drill;
pub mod failover;
pub mod failover_run;
pub mod plan;
pub mod remote;
pub mod report;
pub mod report_export;
pub mod runs;
pub mod standby;
pub mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
    /// `report show`: the report's HTML page (elsewhere the same as text).
    Html,
}

/// Where a command asks: a running coordinator, or the plan's agents directly.
#[derive(Debug, Args)]
pub struct Target {
    /// A running coordinator's URL (e.g. http://127.0.0.1:7300).
    #[arg(long, env = "LIFEBOAT_COORDINATOR", conflicts_with = "plans")]
    pub coordinator: Option<String>,
    #[command(flatten)]
    pub credentials: remote::Credentials,
    /// Without a coordinator: the plan directory, to talk to the agents directly.
    #[arg(long, env = "LIFEBOAT_PLANS")]
    pub plans: Option<PathBuf>,
}

/// Where run history comes from: a running coordinator, or its database.
#[derive(Debug, Args)]
pub struct HistorySource {
    #[arg(long, env = "LIFEBOAT_COORDINATOR", conflicts_with = "state")]
    pub coordinator: Option<String>,
    #[command(flatten)]
    pub credentials: remote::Credentials,
    /// Without a coordinator: its state database.
    #[arg(long, env = "LIFEBOAT_STATE")]
    pub state: Option<PathBuf>,
}

/// What a command produced: the value scripts read, the text people read,
/// and whether it counts as success.
pub struct Done<T> {
    pub value: T,
    pub text: String,
    pub ok: bool,
}

impl<T> Done<T> {
    pub fn ok(value: T, text: String) -> Done<T> {
        Done { value, text, ok: true }
    }
}

/// The exit codes of `lifeboat` that scripts rely on (README, "Exit codes").
pub mod exit {
    /// It worked (for `status --fail-on`: nothing at or over the level).
    pub const OK: u8 = 0;
    /// It failed (an error, or a result that did not pass).
    pub const FAILURE: u8 = 1;
    /// The command line is wrong (clap's usage errors; clap exits with it).
    #[allow(dead_code)]
    pub const USAGE: u8 = 2;
    /// `status --fail-on breached|at-risk`: a cell is breached.
    pub const BREACHED: u8 = 3;
    /// `status --fail-on at-risk`: a cell is at risk (none breached).
    pub const AT_RISK: u8 = 4;
}

/// Run an async command to its end.
pub fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime").block_on(work)
}

/// Run an async command: print its JSON or text, map failure to exit 1.
pub fn operate<T: Serialize>(output: Output, work: impl std::future::Future<Output = Result<Done<T>>>) -> ExitCode {
    finish(output, block_on(work))
}

/// Print a command's result; exit 1 on error or when it did not pass.
pub fn finish<T: Serialize>(output: Output, result: Result<Done<T>>) -> ExitCode {
    match result {
        Ok(done) => {
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&done.value).expect("results serialise")),
                Output::Text | Output::Html if done.text.is_empty() => {}
                Output::Text | Output::Html => print!("{}", if done.text.ends_with('\n') { done.text } else { format!("{}\n", done.text) }),
            }
            ExitCode::from(if done.ok { exit::OK } else { exit::FAILURE })
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            if output == Output::Json {
                // Scripts read stdout: the error is there too, as JSON.
                let error = serde_json::json!({ "error": { "message": format!("{e:#}"), "exit": exit::FAILURE } });
                println!("{}", serde_json::to_string_pretty(&error).expect("errors serialise"));
            }
            ExitCode::from(exit::FAILURE)
        }
    }
}
