//! Fencing Postgres writers: once a cell has failed over, its new primary
//! runs on a new timeline, and the fence in force
//! ([`lifeboat_repository::fence`]) names the first timeline that belongs
//! to it. `wal-push`, the spooler and `pg backup` refuse a cluster on an
//! older timeline, with an error saying why and what to do: that cluster
//! is the old primary, and what it writes would otherwise mix into the
//! new primary's history. Postgres keeps refused WAL in `pg_wal`, so
//! nothing is lost; a backup is refused before its manifest is written.
//! A `.partial` segment passes: the new primary leaves the old timeline's
//! last segment so named at its promotion and archives it first, and
//! recovery never reads one (an archiver stuck on it would archive
//! nothing of the new timeline).

use lifeboat_repository::fence::{self, Fence};
use lifeboat_repository::Repository;

use crate::archive::{WalError, WAL_PREFIX};
use crate::walname::WalFile;

/// The fence in force for `cell`, if it names a timeline.
pub async fn in_force(repo: &Repository, cell: &str) -> lifeboat_repository::Result<Option<Fence>> {
    Ok(fence::newest(repo, cell).await?.filter(|f| f.postgres_timeline.is_some()))
}

/// Why `fence` refuses a writer on `timeline` of `cell` (None: it may write).
pub fn refusal(fence: Option<&Fence>, cell: &str, timeline: u32, what: &str) -> Option<String> {
    let f = fence?;
    let first = f.postgres_timeline?;
    (timeline < first).then(|| {
        format!(
            "refusing {what} of cell {cell}: the cell failed over ({}) and its primary now runs on timeline {first} or later; \
             this cluster is on timeline {timeline}, so it is no longer the cell's primary: stop it (its WAL stays in pg_wal), \
             or rebuild it as a standby of the new primary",
            f.describe()
        )
    })
}

/// Refuse WAL file `name` when the fence in force says its timeline is over.
pub fn check_wal(fence: Option<&Fence>, cell: &str, name: &str) -> Result<(), WalError> {
    let timeline = match WalFile::parse(name) {
        // A history file starts a timeline: the new primary's first write;
        // a partial segment ends the old one at the promotion.
        Some(WalFile::History { .. } | WalFile::Partial { .. }) | None => return Ok(()),
        Some(file) => file.timeline(),
    };
    match refusal(fence, cell, timeline, &format!("to archive {name}")) {
        Some(message) => Err(WalError::Fenced(message)),
        None => Ok(()),
    }
}

/// The timeline a new primary of `cell` will run on: one past the highest
/// archived (a promotion, or a restore that ends recovery, takes the next
/// free timeline after those the archive holds).
pub async fn next_timeline(repo: &Repository, cell: &str) -> Result<u32, WalError> {
    let prefix = format!("{WAL_PREFIX}{cell}/");
    let listed = repo.store().list(&prefix).await.map_err(lifeboat_repository::RepoError::from)?;
    let highest = listed.iter().filter_map(|m| WalFile::parse(&m.path.as_str()[prefix.len()..])).map(|w| w.timeline()).max().unwrap_or(1);
    Ok(highest + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_timeline_is_refused_the_new_one_and_history_files_pass() {
        let f =
            Fence { epoch: 1, postgres_timeline: Some(3), reason: "test".into(), created: time::OffsetDateTime::now_utc(), by: "t".into() };
        let e = check_wal(Some(&f), "c", "000000020000000000000007").unwrap_err().to_string();
        assert!(e.contains("timeline 3 or later") && e.contains("on timeline 2") && e.contains("no longer the cell's primary"), "{e}");
        assert!(check_wal(Some(&f), "c", "00000002000000000000000A.partial").is_ok(), "left by the new primary's promotion");
        assert!(check_wal(Some(&f), "c", "000000030000000000000007").is_ok());
        assert!(check_wal(Some(&f), "c", "00000003.history").is_ok());
        assert!(check_wal(None, "c", "000000010000000000000001").is_ok());
    }
}
