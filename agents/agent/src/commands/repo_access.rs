//! Repository access by hand: `repo locks` and `repo unlock` (see who holds
//! a repository, and remove a lock whose holder is dead or that is not
//! Lifeboat's; without `--force`, `unlock` only says what it would remove),
//! and `repo sas` (mint the write-only Azure credential an agent should hold).

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use time::OffsetDateTime;

use lifeboat_repository::lock::{self, FoundLock};

use crate::context::{open_repo, Global, RepoArg};
use crate::output::emit;

#[derive(Debug, Args)]
pub struct LocksArgs {
    #[command(flatten)]
    pub repo: RepoArg,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    #[command(flatten)]
    pub repo: RepoArg,
    /// The lock's id (from `repo locks`).
    pub id: String,
    /// Remove it; without this flag, only show what would be removed.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct SasArgs {
    /// An `az://` location; the account key comes from AZURE_STORAGE_KEY.
    #[arg(long)]
    pub repo: String,
    /// For retention: may delete too (by default the token cannot delete).
    #[arg(long)]
    pub with_delete: bool,
    /// How long the token is valid.
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    pub valid_for: std::time::Duration,
}

/// Print a container SAS token for the location: read, add, create, write
/// and list, and delete only with `--with-delete`.
pub async fn sas(a: SasArgs) -> Result<ExitCode> {
    let location: lifeboat_storage::Location = a.repo.parse()?;
    if location.scheme() != lifeboat_storage::Scheme::Azure {
        anyhow::bail!("repo sas mints Azure SAS tokens; {} is not an az:// location (on S3 use an IAM policy, docs/security.md)", a.repo);
    }
    let store = lifeboat_storage::azure::AzureStore::connect(&location)?;
    let expiry = OffsetDateTime::now_utc() + a.valid_for;
    println!("{}", store.sas_token(!a.with_delete, expiry).await?);
    Ok(ExitCode::SUCCESS)
}

#[derive(serde::Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    lock: &'a FoundLock,
    live: bool,
    described: String,
}

pub async fn locks(global: &Global, a: LocksArgs) -> Result<ExitCode> {
    let r = open_repo(global, &a.repo.url).await?;
    let (found, now, store_clock) = lock::survey(&r).await?;
    if !store_clock {
        eprintln!("ages are by this machine's clock (this credential may not write the probe that reads the store's)");
    }
    let listed: Vec<Listed<'_>> = found.iter().map(|l| Listed { lock: l, live: l.is_live(now), described: l.describe(now) }).collect();
    emit(global, &listed, |ls| {
        if ls.is_empty() {
            return format!("no locks in {}", r.location());
        }
        ls.iter().map(|l| format!("{}{}\n", l.described, if l.live { "" } else { " — stale, ignored" })).collect()
    });
    Ok(ExitCode::SUCCESS)
}

pub async fn unlock(global: &Global, a: UnlockArgs) -> Result<ExitCode> {
    let r = open_repo(global, &a.repo.url).await?;
    if !a.force {
        let l = lock::find(&r, &a.id).await?;
        eprintln!("would remove {} (dry run: add --force once you know its holder is gone)", l.describe(OffsetDateTime::now_utc()));
        return Ok(ExitCode::SUCCESS);
    }
    let removed = lock::force_unlock(&r, &a.id).await?;
    eprintln!("removed {}", removed.describe(OffsetDateTime::now_utc()));
    Ok(ExitCode::SUCCESS)
}
