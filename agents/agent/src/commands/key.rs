//! `key generate`: make a new repository key. `key rotate`: a new key
//! writes from now on, the old one stays in the key file as retired.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

use lifeboat_repository::{Key, Repository};

use crate::context::{store, Global};

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate a random 256-bit key and write it (as hex) to a new file with mode 0600.
    Generate {
        /// Where to write the key; refuses to overwrite an existing file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Rotate the key of --key-file: a new key goes on its first line and
    /// writes from now on; the old one stays below it (retired) and still
    /// reads what it sealed. Then every --repo names the new key. Shows its
    /// plan first; rerun to finish an interrupted rotation.
    Rotate {
        /// Every location of the repository (primary and each copy).
        #[arg(long = "repo", required = true)]
        repos: Vec<String>,
        /// Show the plan only.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(global: &Global, cmd: KeyCommand) -> Result<ExitCode> {
    match cmd {
        KeyCommand::Generate { out } => {
            let hex = Key::generate_hex();
            write_new_private(&out, &format!("{hex}\n")).context("the key file must not exist yet")?;
            let key = Key::from_hex(&hex)?;
            eprintln!("wrote key {} to {}; keep a copy outside the repository", key.id(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        KeyCommand::Rotate { repos, dry_run } => rotate(global, &repos, dry_run).await,
    }
}

/// The key file and the configs are the rotation's journal: a key file
/// whose current key some location does not name yet is a rotation under
/// way, which a rerun finishes instead of starting another.
async fn rotate(global: &Global, urls: &[String], dry_run: bool) -> Result<ExitCode> {
    let path = global.key_file.as_deref().context("key rotate needs --key-file (or LIFEBOAT_KEY_FILE): the file the new key goes into")?;
    let mut ring = Key::from_file(path)?;
    let behind =
        |repos: &[Repository]| repos.iter().filter(|r| !r.config_names_current_key()).map(Repository::location).collect::<Vec<_>>();
    let mut repos = open_all(urls, &ring).await?;
    let resuming = !behind(&repos).is_empty();
    if resuming {
        eprintln!(
            "plan: finish the rotation to key {} (already first in {}): {} will name it",
            ring.id(),
            path.display(),
            behind(&repos).join(", ")
        );
    } else {
        eprintln!(
            "plan: write a new key first in {} (key {} stays below it, retired, and still reads what it sealed); then {} will name \
             the new key",
            path.display(),
            ring.id(),
            urls.join(", ")
        );
    }
    if dry_run {
        eprintln!("dry run: nothing changed");
        return Ok(ExitCode::SUCCESS);
    }
    if !resuming {
        ring = prepend_key(path)?;
        repos = open_all(urls, &ring).await?;
    }
    for repo in &mut repos {
        if repo.adopt_current_key().await? {
            eprintln!("{} now names key {}", repo.location(), ring.id());
        }
    }
    eprintln!(
        "key {} is current in every location; retired: {}. Restart agent services so they load the key file; keep the retired \
         keys in it as long as backups sealed under them are kept",
        ring.id(),
        ring.retired_ids().join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

/// Every location opens with the key file (its current or a retired key).
async fn open_all(urls: &[String], ring: &Key) -> Result<Vec<Repository>> {
    let mut repos = Vec::new();
    for url in urls {
        repos.push(Repository::open(store(url).await?, Some(ring.clone())).await.with_context(|| format!("opening {url}"))?);
    }
    Ok(repos)
}

/// Create `path` (it must not exist) readable by its owner only, write
/// `text` and sync it.
fn write_new_private(path: &Path, text: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// Write a new key on the key file's first line, keeping the rest below
/// it: a new file (mode 0600, synced) renamed over the old one.
fn prepend_key(path: &Path) -> Result<Key> {
    let old = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let today = time::OffsetDateTime::now_utc().date();
    let text = format!("{}\n# retired by key rotate on {today}: still reads what it sealed\n{old}", Key::generate_hex());
    let tmp = path.with_file_name(format!(".{}.rotate-{}", path.file_name().unwrap_or_default().to_string_lossy(), std::process::id()));
    write_new_private(&tmp, &text)?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    let ring = Key::from_file(path)?;
    eprintln!("wrote new key {} first in {}", ring.id(), path.display());
    Ok(ring)
}
