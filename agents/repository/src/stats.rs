//! `repo stats`: what a repository holds and how well it dedups.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use crate::repo::Repository;

#[derive(Debug, Clone, Default, Serialize)]
pub struct CellStats {
    pub backups: u64,
    /// Sum of the backups' logical sizes.
    pub logical_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub location: String,
    pub repository_id: String,
    pub format_version: u32,
    pub encrypted: bool,
    pub key_id: Option<String>,
    pub chunks: u64,
    pub stored_chunk_bytes: u64,
    pub manifests: u64,
    pub logical_bytes: u64,
    /// logical bytes / stored chunk bytes.
    pub dedup_compression_ratio: f64,
    pub cells: BTreeMap<String, CellStats>,
}

pub async fn stats(repo: &Repository) -> Result<Stats> {
    let chunks = repo.list_chunks().await?;
    let mut s = Stats {
        location: repo.location(),
        repository_id: repo.config().id.clone(),
        format_version: repo.config().version,
        encrypted: repo.config().encryption.is_some(),
        key_id: repo.config().encryption.as_ref().map(|e| e.key_id.clone()),
        chunks: chunks.len() as u64,
        stored_chunk_bytes: chunks.values().sum(),
        ..Default::default()
    };
    for b in repo.list_backups(None).await? {
        let m = repo.read_manifest(&b.cell, &b.id).await?;
        let cell = s.cells.entry(b.cell).or_default();
        cell.backups += 1;
        cell.logical_bytes += m.totals.bytes;
        s.manifests += 1;
        s.logical_bytes += m.totals.bytes;
    }
    if s.stored_chunk_bytes > 0 {
        s.dedup_compression_ratio = s.logical_bytes as f64 / s.stored_chunk_bytes as f64;
    }
    Ok(s)
}
