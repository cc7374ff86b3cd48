//! Point-in-time restore: pick the newest base backup before the target,
//! check the archived WAL can reach it, restore the data directory (every
//! chunk verified), and write the recovery settings so that `pg_ctl start`
//! replays to the target through `wal-fetch` and promotes. Optionally start
//! the server and report the point actually reached.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use lifeboat_repository::{files, Manifest, Repository};

use crate::backup::{PgDetails, PgError};
use crate::chain;
use crate::lsn::Lsn;
use crate::walname::{segment_name, WalFile};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Latest,
    Time(OffsetDateTime),
    Lsn(Lsn),
    Xid(u64),
    Name(String),
}

impl Target {
    /// As the restore's report names it.
    pub fn to_wire(&self) -> lifeboat_api::PgTarget {
        use lifeboat_api::PgTarget;
        match self {
            Target::Latest => PgTarget::Latest,
            Target::Time(t) => PgTarget::Time(*t),
            Target::Lsn(l) => PgTarget::Lsn(l.to_string()),
            Target::Xid(x) => PgTarget::Xid(*x),
            Target::Name(n) => PgTarget::Name(n.clone()),
        }
    }

    fn settings(&self) -> String {
        // UTC with a numeric offset: at postmaster start the timezone
        // abbreviations (such as "Z") are not loaded yet, so Postgres
        // rejects RFC 3339's "Z" in recovery_target_time.
        let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]+00");
        match self {
            Target::Latest => String::new(),
            Target::Time(t) => {
                format!("recovery_target_time = '{}'\n", t.to_offset(time::UtcOffset::UTC).format(&fmt).expect("formatting a time"))
            }
            Target::Lsn(l) => format!("recovery_target_lsn = '{l}'\n"),
            Target::Xid(x) => format!("recovery_target_xid = '{x}'\n"),
            Target::Name(n) => format!("recovery_target_name = '{}'\n", n.replace('\'', "''")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub cell: String,
    pub to: PathBuf,
    pub target: Target,
    /// Use this backup instead of choosing one.
    pub backup: Option<String>,
    /// The `restore_command` Postgres will run (a `wal-fetch` invocation).
    pub restore_command: String,
    /// What the restored cluster does with its WAL once promoted.
    pub archiving: Archiving,
    /// Restore over an existing data directory, keeping files whose
    /// content already matches the backup.
    pub delta: bool,
    /// Where tablespaces outside the data directory go, by OID (wins over `tablespaces_under`).
    pub tablespace_map: Vec<(String, PathBuf)>,
    /// Put every tablespace at `DIR/<oid>` (scratch restores, drills).
    /// Without either, a tablespace goes back to its original location,
    /// which must be empty.
    pub tablespaces_under: Option<PathBuf>,
}

pub use lifeboat_api::results::{PgReached as Reached, PgRestoreReport as RestoreReport};

/// What a restored cluster does with its WAL once promoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archiving {
    /// `archive_mode = off`: an old copy never pushes a timeline into the
    /// archive (drills, operators' copies).
    Off,
    /// The cluster's own settings (a restore into production's place,
    /// which must archive again).
    Keep,
    /// `archive_mode = on` with an empty `archive_command`: Postgres keeps
    /// every WAL file it writes until a command is set (a failover's new
    /// primary and the standbys it may be promoted from: re-protecting it
    /// then archives its timeline from its first segment, with no restart).
    Held,
}

impl Archiving {
    fn settings(self) -> &'static str {
        match self {
            Archiving::Off => "archive_mode = 'off'\n",
            Archiving::Keep => "",
            Archiving::Held => "archive_mode = 'on'\narchive_command = ''\n",
        }
    }
}

fn choose(backups: Vec<(Manifest, PgDetails)>, req: &RestoreRequest) -> Result<(Manifest, PgDetails), PgError> {
    let cell = &req.cell;
    if backups.is_empty() {
        return Err(PgError::Config(format!(
            "cell {cell} has no Postgres backup in this repository; run `lifeboat-agent pg backup` first"
        )));
    }
    if let Some(id) = &req.backup {
        return backups
            .into_iter()
            .find(|(m, _)| &m.id == id)
            .ok_or_else(|| PgError::Config(format!("backup {id} of cell {cell} not found; `lifeboat-agent pg info` lists them")));
    }
    let oldest_end = backups[0].0.finished;
    let oldest_lsn = backups[0].1.stop_lsn;
    let usable: Vec<_> = match &req.target {
        Target::Time(t) => backups.into_iter().filter(|(m, _)| m.finished <= *t).collect(),
        Target::Lsn(l) => backups.into_iter().filter(|(_, d)| d.stop_lsn <= *l).collect(),
        _ => backups,
    };
    usable.into_iter().last().ok_or_else(|| match &req.target {
        Target::Lsn(l) => PgError::Config(format!(
            "target LSN {l} is before the end of the oldest backup of cell {cell} ({oldest_lsn}); the earliest recoverable LSN is {oldest_lsn}"
        )),
        _ => PgError::Config(format!(
            "target time is before the end of the oldest backup of cell {cell} ({oldest_end}); the earliest recoverable time is {oldest_end}"
        )),
    })
}

/// A base backup holds its tablespaces' contents under `pg_tblspc/<oid>/`
/// and the restore makes the links. A manifest holding a link there was not
/// written by Lifeboat: restored and started as root, it would have the
/// server's files handed to `postgres` wherever it points.
fn refuse_tablespace_links(manifest: &Manifest) -> Result<(), PgError> {
    use lifeboat_repository::manifest::EntryKind;
    match manifest.entries.iter().find(|e| e.kind == EntryKind::Symlink && e.path.starts_with("pg_tblspc/")) {
        Some(e) => Err(PgError::Repo(lifeboat_repository::RepoError::Corrupt {
            key: format!("manifests/{}/{}", manifest.cell, manifest.id),
            reason: format!("it holds a symbolic link {} where a tablespace's contents belong", e.path),
        })),
        None => Ok(()),
    }
}

/// Restore a data directory ready for `pg_ctl start`.
pub async fn restore(repo: &Repository, req: &RestoreRequest) -> Result<RestoreReport, PgError> {
    let (manifest, details) = choose(crate::backup::list_backups(repo, &req.cell).await?, req)?;
    refuse_tablespace_links(&manifest)?;
    let latest = check_wal_reaches(repo, &req.cell, &details, &req.target).await?;
    let places = match &details.tablespace_map {
        Some(map) => tablespace_places(req, &manifest.id, map)?,
        None => Vec::new(),
    };
    if req.delta && details.tablespace_map.is_some() {
        return Err(PgError::Config(
            "this cluster has tablespaces outside the data directory; a delta restore cannot place them yet: restore into an empty directory".into(),
        ));
    }
    let summary = if req.delta {
        if req.to.join("postmaster.pid").exists() {
            return Err(PgError::Config(format!(
                "{} holds postmaster.pid: a server may be running on it; stop it (pg_ctl stop -D {0}) or, if it is stale, remove the file",
                req.to.display()
            )));
        }
        // Without pg_control Postgres refuses to start, so an interrupted
        // delta restore can never be started on mixed content.
        files::restore_delta(repo, &manifest, &req.to, &["global/pg_control"]).await?
    } else {
        files::restore_dir(repo, &manifest, &req.to).await?
    };
    let io = |what: &str, e: std::io::Error| PgError::Config(format!("{what} in {}: {e}", req.to.display()));
    // Postgres refuses a data directory open to others.
    std::fs::set_permissions(&req.to, std::os::unix::fs::PermissionsExt::from_mode(0o700)).map_err(|e| io("setting mode 0700", e))?;
    std::fs::write(req.to.join("backup_label"), &details.backup_label).map_err(|e| io("writing backup_label", e))?;
    if !places.is_empty() {
        let placed = place_tablespaces(req, &manifest.id, &places)?;
        std::fs::write(req.to.join("tablespace_map"), placed).map_err(|e| io("writing tablespace_map", e))?;
    }
    std::fs::write(req.to.join("recovery.signal"), "").map_err(|e| io("writing recovery.signal", e))?;
    let mut settings = String::from("\n# ---- added by lifeboat-agent pg restore ----\n");
    let _ = writeln!(settings, "restore_command = '{}'", req.restore_command.replace('\'', "''"));
    settings.push_str(&req.target.settings());
    settings.push_str("recovery_target_action = 'promote'\nrecovery_target_timeline = 'latest'\n");
    settings.push_str(req.archiving.settings());
    append_settings(&req.to, &settings)?;
    Ok(RestoreReport {
        backup_started: Some(manifest.started),
        backup_id: manifest.id,
        backup_stop_lsn: details.stop_lsn.to_string(),
        target: req.target.to_wire(),
        data_directory: req.to.display().to_string(),
        latest_archived_wal: latest,
        files_written: summary.files - summary.reused_files,
        files_reused: summary.reused_files,
        bytes_reused: summary.reused_bytes,
        reached: None,
    })
}

/// Append `settings` to the `postgresql.auto.conf` of data directory
/// `data` (created when missing): the last setting of a name wins.
pub fn append_settings(data: &Path, settings: &str) -> Result<(), PgError> {
    let io = |what: &str, e: std::io::Error| PgError::Config(format!("{what} postgresql.auto.conf in {}: {e}", data.display()));
    let auto = data.join("postgresql.auto.conf");
    let mut text = match std::fs::read_to_string(&auto) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io("reading", e)),
    };
    text.push_str(settings);
    std::fs::write(&auto, text).map_err(|e| io("writing", e))
}

/// Where each tablespace of `map` (the backup's `tablespace_map`) goes:
/// `(oid, original location, destination)`. Checked before anything is
/// written: a destination must be empty (the original usually is not:
/// the source cluster still uses it).
fn tablespace_places(req: &RestoreRequest, backup: &str, map: &str) -> Result<Vec<(String, String, PathBuf)>, PgError> {
    let mut places = Vec::new();
    for line in map.lines().filter(|l| !l.trim().is_empty()) {
        let (oid, original) =
            line.split_once(' ').ok_or_else(|| PgError::Config(format!("backup {backup}: unreadable tablespace_map line {line:?}")))?;
        let dest = match (req.tablespace_map.iter().find(|(o, _)| o == oid), &req.tablespaces_under) {
            (Some((_, d)), _) => d.clone(),
            (None, Some(under)) => under.join(oid),
            (None, None) => PathBuf::from(original),
        };
        if let Ok(mut existing) = std::fs::read_dir(&dest) {
            if existing.next().is_some() {
                return Err(PgError::Config(format!(
                    "tablespace {oid} ({original}) would be restored to {}, which is not empty (does the original cluster still use it?); give --tablespace-map {oid}=DIR or --tablespaces-under DIR",
                    dest.display()
                )));
            }
        }
        places.push((oid.to_string(), original.to_string(), dest));
    }
    Ok(places)
}

/// Move each tablespace's restored contents (`pg_tblspc/<oid>/`, as the
/// backup stored them) to its place, link it there as Postgres does, and
/// return the `tablespace_map` naming the new places.
fn place_tablespaces(req: &RestoreRequest, backup: &str, places: &[(String, String, PathBuf)]) -> Result<String, PgError> {
    let mut placed = String::new();
    for (oid, original, dest) in places {
        let link = req.to.join("pg_tblspc").join(oid);
        let fail = |what: String| PgError::Config(format!("tablespace {oid} ({original}): {what}"));
        let meta = std::fs::symlink_metadata(&link).map_err(|e| fail(format!("{} is missing from the restore: {e}", link.display())))?;
        if !meta.is_dir() {
            return Err(fail(format!(
                "backup {backup} holds only a link to it, not its contents (it was taken before Lifeboat followed tablespaces); restore from a newer backup"
            )));
        }
        std::fs::create_dir_all(dest).map_err(|e| fail(format!("creating {}: {e}", dest.display())))?;
        std::fs::set_permissions(dest, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| fail(format!("{}: {e}", dest.display())))?;
        for entry in std::fs::read_dir(&link).map_err(|e| fail(format!("{}: {e}", link.display())))? {
            let entry = entry.map_err(|e| fail(format!("{}: {e}", link.display())))?;
            move_tree(&entry.path(), &dest.join(entry.file_name())).map_err(|e| fail(format!("moving into {}: {e}", dest.display())))?;
        }
        std::fs::remove_dir(&link).map_err(|e| fail(format!("{}: {e}", link.display())))?;
        std::os::unix::fs::symlink(dest, &link).map_err(|e| fail(format!("linking {}: {e}", link.display())))?;
        let _ = writeln!(placed, "{oid} {}", dest.display());
    }
    Ok(placed)
}

/// Rename, or copy and remove when `to` is on another file system.
fn move_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.raw_os_error() == Some(libc_exdev()) => {
            let meta = std::fs::symlink_metadata(from)?;
            if meta.is_dir() {
                std::fs::create_dir(to)?;
                std::fs::set_permissions(to, meta.permissions())?;
                for entry in std::fs::read_dir(from)? {
                    let entry = entry?;
                    move_tree(&entry.path(), &to.join(entry.file_name()))?;
                }
                std::fs::remove_dir(from)
            } else {
                std::fs::copy(from, to)?;
                std::fs::remove_file(from)
            }
        }
        other => other,
    }
}

/// EXDEV: a rename across file systems.
const fn libc_exdev() -> i32 {
    18
}

/// The WAL from the backup's start must be unbroken; an LSN target must lie
/// within what is archived. Returns the latest archived segment.
async fn check_wal_reaches(repo: &Repository, cell: &str, d: &PgDetails, target: &Target) -> Result<String, PgError> {
    let report = chain::check(repo, cell).await?;
    let start = WalFile::parse(&d.start_wal).ok_or_else(|| PgError::Wal(format!("bad start WAL {}", d.start_wal)))?;
    let WalFile::Segment { timeline, segno: start_seg } = start else {
        return Err(PgError::Wal(format!("bad start WAL {}", d.start_wal)));
    };
    let tl = report.timelines.iter().find(|t| t.timeline == timeline).ok_or_else(|| {
        PgError::Wal(format!("no WAL of timeline {timeline} is archived for cell {cell}; the backup cannot be made consistent"))
    })?;
    let last = WalFile::parse(&tl.last);
    let Some(WalFile::Segment { segno: last_seg, .. }) = last else {
        return Err(PgError::Wal("unreadable WAL chain".into()));
    };
    // Gaps after the backup's start break replay; report the reachable end.
    if let Some(gap) = tl.gaps.iter().find(|g| matches!(WalFile::parse(&g.to), Some(WalFile::Segment { segno, .. }) if segno >= start_seg))
    {
        let from = match WalFile::parse(&gap.from) {
            Some(WalFile::Segment { segno, .. }) => segno,
            _ => start_seg,
        };
        if from <= d.stop_lsn.segno_before() {
            return Err(PgError::Wal(format!(
                "WAL segments {} .. {} are missing, and the backup needs them to become consistent; no point of this backup is recoverable",
                gap.from, gap.to
            )));
        }
        let reachable = segment_name(timeline, from - 1);
        // An LSN target past the gap is refused here; time, xid and name
        // targets are checked by Postgres itself, so the operator is warned.
        if matches!(target, Target::Lsn(l) if l.segno() >= from) {
            return Err(PgError::Wal(format!(
                "WAL segments {} .. {} are missing; the latest reachable point is the end of {reachable}",
                gap.from, gap.to
            )));
        }
        tracing::warn!(gap_from = %gap.from, gap_to = %gap.to, %reachable, "the WAL chain has a gap; replay cannot go past {reachable}");
        return Ok(reachable);
    }
    if start_seg > last_seg || d.stop_lsn.segno_before() > last_seg {
        return Err(PgError::Wal(format!("the WAL this backup needs ({} .. {}) is not all archived", d.start_wal, d.stop_wal)));
    }
    if let Target::Lsn(l) = target {
        if l.segno() > last_seg && !report.timelines.iter().any(|t| t.timeline > timeline) {
            return Err(PgError::Wal(format!(
                "target LSN {l} is after the latest archived WAL ({}); the latest reachable point is the end of that segment",
                tl.last
            )));
        }
    }
    Ok(report.timelines.last().map(|t| t.last.clone()).unwrap_or_else(|| tl.last.clone()))
}
