//! `key generate`: make a new repository key.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use lifeboat_repository::Key;

use crate::context::Global;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate a random 256-bit key and write it (as hex) to a new file with mode 0600.
    Generate {
        /// Where to write the key; refuses to overwrite an existing file.
        #[arg(long)]
        out: PathBuf,
    },
}

pub async fn run(_global: &Global, cmd: KeyCommand) -> Result<ExitCode> {
    match cmd {
        KeyCommand::Generate { out } => {
            let hex = Key::generate_hex();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&out)
                .with_context(|| format!("creating key file {} (it must not exist yet)", out.display()))?;
            writeln!(file, "{hex}")?;
            file.sync_all()?;
            let key = Key::from_hex(&hex)?;
            eprintln!("wrote key {} to {}; keep a copy outside the repository", key.id(), out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
