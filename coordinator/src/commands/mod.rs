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

/// Run an async command: print its JSON or text, map failure to exit 1.
pub fn operate<T: Serialize>(output: Output, work: impl std::future::Future<Output = Result<Done<T>>>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    finish(output, runtime.block_on(work))
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
            if done.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
