//! `repo verify`: read every object, check every seal and hash, and check
//! that every manifest's chunks exist. Names each missing or corrupt object
//! and the backups it breaks. Retention may delete while verify reads: an
//! object gone since the listing counts only when a backup that still
//! exists needs it.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;

use crate::error::{RepoError, Result};
use lifeboat_storage::ObjectPath;

use crate::format;
use crate::repo::Repository;

pub use lifeboat_api::results::{ProblemKind, VerifyProblem, VerifyReport};

pub async fn verify(repo: &Repository, workers: usize) -> Result<VerifyReport> {
    verify_sampled(repo, workers, None).await
}

/// [`verify`], reading only the `sample` newest objects (by the store's
/// modification time) when given; references are checked all the same.
pub async fn verify_sampled(repo: &Repository, workers: usize, sample: Option<usize>) -> Result<VerifyReport> {
    let mut report = VerifyReport { location: repo.location(), sampled: sample.map(|n| n as u64), ..Default::default() };
    // One listing serves both the chunk set and the other sealed objects.
    let listing = repo.store().list("").await?;
    let present = format::chunks_in(&listing);
    // chunk id -> backups referencing it
    let mut users: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for backup in repo.list_backups(None).await? {
        let name = format!("{}/{}", backup.cell, backup.id);
        report.manifests += 1;
        match repo.read_manifest(&backup.cell, &backup.id).await {
            Ok(m) => {
                for id in m.chunk_ids() {
                    users.entry(id.to_string()).or_default().insert(name.clone());
                }
            }
            Err(e) => report.problems.push(VerifyProblem {
                kind: ProblemKind::Corrupt,
                object: format::manifest_path(&backup.cell, &backup.id).to_string(),
                detail: e.to_string(),
                breaks: vec![name],
            }),
        }
    }
    let mut late = Vec::new();
    for (id, backups) in &users {
        if !present.contains_key(id) && repo.store().head(&format::chunk_path(id)).await?.is_some() {
            late.push(format::chunk_path(id)); // written by a backup that finished after the listing
        } else if !present.contains_key(id) {
            report.problems.push(VerifyProblem {
                kind: ProblemKind::Missing,
                object: format::chunk_path(id).to_string(),
                detail: "referenced by a manifest but not in the repository".into(),
                breaks: backups.iter().cloned().collect(),
            });
        }
    }
    report.unreferenced_chunks = present.keys().filter(|id| !users.contains_key(*id)).count() as u64;
    if let Some(files) = repo.store().as_file_store() {
        report.leftover_temporaries = files.leftovers(crate::retention::LEFTOVER_IDLE).await?.len() as u64;
    }
    // Every sealed object: chunks, and the rest (WAL, ...) that no manifest
    // lists; or, sampled, the newest of them and the chunks the listing missed.
    let mut objects: Vec<_> = listing.into_iter().filter(|m| format::is_sealed_data(m.path.as_str())).collect();
    if let Some(n) = sample {
        objects.sort_by_key(|m| std::cmp::Reverse(m.modified));
        objects.truncate(n);
    }
    let objects: Vec<ObjectPath> = objects.into_iter().map(|m| m.path).chain(late).collect();
    let mut checks = futures::stream::iter(objects)
        .map(|path| {
            let repo = repo.clone();
            async move {
                let result = repo.read_object(&path).await.map(|data| data.len() as u64);
                (path, result)
            }
        })
        .buffer_unordered(workers);
    while let Some((path, result)) = checks.next().await {
        let chunk_id = format::chunk_id_of(path.as_str()).map(String::from);
        if chunk_id.is_some() {
            report.chunks_checked += 1;
        } else {
            report.other_objects_checked += 1;
        }
        tracing::debug!(object = %path, "checked");
        match result {
            Ok(n) => report.bytes_checked += n,
            Err(RepoError::Store(e)) if !e.is_not_found() => return Err(RepoError::Store(e)),
            Err(e) => report.problems.push(VerifyProblem {
                kind: if matches!(e, RepoError::Store(_)) { ProblemKind::Missing } else { ProblemKind::Corrupt },
                object: path.to_string(),
                detail: e.to_string(),
                breaks: chunk_id.and_then(|id| users.get(&id)).map(|s| s.iter().cloned().collect()).unwrap_or_default(),
            }),
        }
    }
    drop_deleted_meanwhile(repo, &mut report).await?;
    report.problems.sort_by(|a, b| a.object.cmp(&b.object));
    Ok(report)
}

/// Keep a problem only when a backup that exists now is broken by it, or
/// it is damage (not absence) in an object nobody references: a manifest
/// or chunk that retention deleted during the pass is no problem.
async fn drop_deleted_meanwhile(repo: &Repository, report: &mut VerifyReport) -> Result<()> {
    if report.problems.is_empty() {
        return Ok(());
    }
    let existing: BTreeSet<String> = repo.list_backups(None).await?.into_iter().map(|b| format!("{}/{}", b.cell, b.id)).collect();
    report.problems.retain(|p| match p.breaks.is_empty() {
        true => p.kind == ProblemKind::Corrupt,
        false => p.breaks.iter().any(|b| existing.contains(b)),
    });
    Ok(())
}
