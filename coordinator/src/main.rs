//! `lifeboat`: the coordinator and operator CLI.
//!
//! The control plane (plans, scheduler, agent driver, compliance, drills,
//! reports) lands in later milestones; today this binary only reports its
//! version, so that nothing here pretends to work before it does. The
//! data-plane commands live in `lifeboat-agent`.

use clap::{Parser, Subcommand};

/// Lifeboat coordinator: runs tiered DR plans by driving one agent per cell.
#[derive(Debug, Parser)]
#[command(name = "lifeboat", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version (and the repository format this build writes), as JSON with --json.
    Version {
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    match Cli::parse().command {
        Command::Version { json } => {
            let version = env!("CARGO_PKG_VERSION");
            if json {
                println!("{}", serde_json::json!({ "name": "lifeboat", "version": version, "repository_format": 1 }));
            } else {
                println!("lifeboat {version} (repository format 1)");
            }
        }
    }
}
