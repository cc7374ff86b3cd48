//! Options every command shares, and turning them into an open repository.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use lifeboat_repository::{Key, Repository};
use lifeboat_storage::{DynStore, Location};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

pub use lifeboat_process::LogFormat;

#[derive(Debug, Args)]
pub struct Global {
    /// Output format for results (json for scripts).
    #[arg(long, global = true, value_enum, default_value = "text", env = "LIFEBOAT_OUTPUT")]
    pub output: OutputFormat,
    /// Log format (logs go to stderr; level from RUST_LOG, default info).
    #[arg(long, global = true, value_enum, default_value = "plain", env = "LIFEBOAT_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// The agent's config file (agent.toml): defaults for every flag below
    /// and of each command; flags and LIFEBOAT_* variables win over it.
    #[arg(long, global = true, value_name = "FILE", env = "LIFEBOAT_CONFIG", default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// File holding the repository key (64 hex characters). LIFEBOAT_KEY may hold the key itself.
    #[arg(long, global = true, env = "LIFEBOAT_KEY_FILE")]
    pub key_file: Option<PathBuf>,
}

/// The repository location option, shared by commands that take one.
#[derive(Debug, Args)]
pub struct RepoArg {
    /// Repository URL: file:///dir, s3://bucket/prefix or az://container/prefix.
    #[arg(long = "repo", env = "LIFEBOAT_REPO")]
    pub url: String,
}

impl Global {
    /// The key from --key-file / LIFEBOAT_KEY_FILE or LIFEBOAT_KEY, if any.
    pub fn key(&self) -> Result<Option<Key>> {
        if let Some(path) = &self.key_file {
            return Ok(Some(Key::from_file(path)?));
        }
        match std::env::var("LIFEBOAT_KEY") {
            Ok(hex) => Ok(Some(Key::from_hex(&hex).context("LIFEBOAT_KEY")?)),
            Err(_) => Ok(None),
        }
    }
}

pub async fn store(url: &str) -> Result<DynStore> {
    let location: Location = url.parse()?;
    Ok(lifeboat_storage::open(&location).await?)
}

pub async fn open_repo(global: &Global, url: &str) -> Result<Repository> {
    Ok(Repository::open(store(url).await?, global.key()?).await?)
}
