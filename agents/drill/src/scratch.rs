//! The scratch environment of one drill, and removing it. Before a drill
//! creates anything it writes a ledger (`<restore-root>/<drill-id>.drill.json`)
//! naming everything it may create: the data directory, the port of the
//! scratch server, the Kafka topic and group prefix. Cleanup works from the
//! ledger alone, so a drill that was killed is cleaned up by whoever finds
//! its ledger next (`sweep`: the agent at start and at exit, `lifeboat-agent
//! drill sweep`). The ledger is removed last.
//!
//! Names never touch production: the directory lives under the agent's
//! restore root, the server listens only on a Unix socket in that
//! directory (`socket/`, mode 0700, with its own `pg_hba.conf`; the port is
//! a free one, naming the socket) with archiving off, and topics and
//! groups carry the prefix `lifeboat-drill-<id>.`.
//!
//! A failover's takeover uses the same steps into a kept environment
//! ([`Scratch::keep`]): no ledger, so nothing sweeps it; the directory
//! `takeover-<port>` (short: the server's socket lives in it), marked with
//! the takeover's name, a server on that port, topics under its prefix.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::admin::AdminOptions;
use rdkafka::consumer::Consumer;
use serde::{Deserialize, Serialize};

use lifeboat_kafka::client::Brokers;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scratch {
    pub id: String,
    /// `<restore-root>/<id>`: the data directory and the server's log.
    pub dir: PathBuf,
    pub port: u16,
    /// Topic and consumer-group prefix.
    pub prefix: String,
    pub brokers: Option<String>,
    pub pg_bindir: PathBuf,
    /// A takeover's: stays after the drill steps, never swept.
    #[serde(default)]
    pub kept: bool,
    /// A takeover that promotes the cell's standby kept in `dir`.
    #[serde(default)]
    pub promote: bool,
}

impl Scratch {
    /// A new scratch environment under `root`, recorded in its ledger
    /// before anything else exists.
    pub fn create(root: &Path, brokers: Option<&Brokers>, pg_bindir: &Path) -> std::io::Result<Scratch> {
        std::fs::create_dir_all(root)?;
        let now = time::OffsetDateTime::now_utc();
        let id = lifeboat_process::stamped_id("drill", now, rand::random());
        let scratch = Scratch {
            dir: root.join(&id),
            port: free_port()?,
            prefix: format!("lifeboat-{id}."),
            brokers: brokers.map(|b| b.list.clone()),
            pg_bindir: pg_bindir.to_path_buf(),
            id,
            kept: false,
            promote: false,
        };
        let ledger = scratch.ledger(root);
        let tmp = ledger.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&scratch).expect("a scratch serialises"))?;
        std::fs::rename(&tmp, &ledger)?;
        std::fs::create_dir(&scratch.dir)?;
        Ok(scratch)
    }

    /// A takeover's environment, `<root>/takeover-<port>`, for `cell`.
    ///
    /// - The cell's standby kept there is promoted in place when the
    ///   takeover asks for it (`promote_standby`; also when an earlier
    ///   attempt of the same takeover began promoting it), and replaced by
    ///   the restore otherwise.
    /// - What an earlier attempt of the same takeover left there (its marker
    ///   names the same takeover, the failover's and the cell's; a failover
    ///   routes to it only after it passed) is stopped and removed first.
    /// - Another takeover's, or another cell's standby, is refused: it may
    ///   be a cell's live primary.
    pub fn keep(
        root: &Path,
        cell: &str,
        takeover: &lifeboat_api::drill::Takeover,
        brokers: Option<&Brokers>,
        pg_bindir: &Path,
    ) -> std::io::Result<Scratch> {
        let mut scratch = Scratch {
            id: takeover.name.clone(),
            dir: crate::standby::dir(root, takeover.port),
            port: takeover.port,
            prefix: takeover.topic_prefix.clone(),
            brokers: brokers.map(|b| b.list.clone()),
            pg_bindir: pg_bindir.to_path_buf(),
            kept: true,
            promote: false,
        };
        let marker = scratch.dir.join("takeover.name");
        if scratch.dir.exists() {
            let found = std::fs::read_to_string(&marker).unwrap_or_default();
            let standby = crate::standby::record(&scratch.dir).filter(|r| r.cell == cell).is_some();
            let ours =
                found.trim() == takeover.name || (found.is_empty() && crate::standby::marked_cell(&scratch.dir).as_deref() == Some(cell));
            if ours && standby && takeover.promote_standby {
                std::fs::write(&marker, &takeover.name)?;
                scratch.promote = true;
                return Ok(scratch);
            }
            if !ours {
                let holder = match crate::standby::marked_cell(&scratch.dir) {
                    Some(c) if found.is_empty() => format!("the standby of cell {c}"),
                    _ => format!("takeover {:?}", found.trim()),
                };
                return Err(std::io::Error::other(format!(
                    "{} holds {holder}, which may be a cell's live primary; stop its server and remove the directory, or give the cell another port",
                    scratch.dir.display(),
                )));
            }
            clear(&scratch.dir, pg_bindir).map_err(std::io::Error::other)?;
        }
        std::fs::create_dir_all(&scratch.dir)?;
        std::fs::write(&marker, &takeover.name)?;
        Ok(scratch)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("pgdata")
    }

    /// How the scratch server is reached: its private socket only (a
    /// takeover's also on TCP, for the cell's clients).
    pub fn listen(&self) -> lifeboat_postgres::server::Listen {
        use lifeboat_postgres::server::Listen;
        match self.kept {
            true => Listen::Takeover { port: self.port, dir: self.dir.join("socket") },
            false => Listen::Private { port: self.port, dir: self.dir.join("socket") },
        }
    }

    /// What the scratch server logged (pg_ctl's log, next to the data directory).
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(lifeboat_postgres::server::server_log(&self.data_dir())).unwrap_or_default()
    }

    /// Stop the scratch server if it runs.
    pub fn stop_server(&self) -> Result<(), String> {
        stop_server(&self.data_dir(), &self.pg_bindir)
    }

    fn ledger(&self, root: &Path) -> PathBuf {
        root.join(format!("{}.drill.json", self.id))
    }

    /// Remove everything this drill may have created; returns what could
    /// not be removed (empty: all gone, ledger removed too).
    pub async fn remove(&self, root: &Path) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.stop_server() {
            problems.push(e);
        }
        // The WAL prefetcher ends with the server; it must not write into
        // the directory while it is deleted.
        lifeboat_postgres::prefetch::wait_stopped(&self.data_dir(), std::time::Duration::from_secs(30));
        if self.dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                problems.push(format!("removing {}: {e}", self.dir.display()));
            }
        }
        if let Some(list) = &self.brokers {
            if let Err(e) = remove_kafka(list, &self.prefix).await {
                problems.push(e);
            }
        }
        if problems.is_empty() {
            let _ = std::fs::remove_file(self.ledger(root));
        }
        problems
    }
}

/// Clean up every drill whose ledger is under `root`. Returns, per drill
/// id, what could not be removed.
pub async fn sweep(root: &Path) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else { return out };
    for e in entries.flatten() {
        let path = e.path();
        if !path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".drill.json")) {
            continue;
        }
        let scratch = match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Scratch>(&b).map_err(|e| e.to_string()))
        {
            Ok(s) => s,
            Err(e) => {
                out.push((path.display().to_string(), vec![format!("unreadable drill ledger: {e}; inspect and remove it by hand")]));
                continue;
            }
        };
        tracing::info!(drill = %scratch.id, "removing what an interrupted drill left behind");
        let problems = scratch.remove(root).await;
        out.push((scratch.id.clone(), problems));
    }
    out
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Stop the server of `dir/pgdata` if it runs, let its WAL prefetcher
/// end, and remove `dir`.
pub(crate) fn clear(dir: &Path, bindir: &Path) -> Result<(), String> {
    let data = dir.join("pgdata");
    stop_server(&data, bindir)?;
    lifeboat_postgres::prefetch::wait_stopped(&data, Duration::from_secs(30));
    std::fs::remove_dir_all(dir).map_err(|e| format!("removing {}: {e}", dir.display()))
}

/// `pg_ctl stop -m immediate` when a server runs on `data` (as the
/// `postgres` user when we are root). A scratch server holds nothing worth a
/// clean shutdown.
pub fn stop_server(data: &Path, bindir: &Path) -> Result<(), String> {
    let Some(pid) = lifeboat_postgres::server::postmaster(data) else { return Ok(()) };
    let ok = lifeboat_postgres::server::pg_ctl(bindir)
        .arg("-D")
        .arg(data)
        .args(["-m", "immediate", "-w", "-t", "30", "stop"])
        .current_dir("/")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        // SAFETY: pid is the scratch server's postmaster, read from its own pid file.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        std::thread::sleep(Duration::from_millis(500));
        if unsafe { libc::kill(pid, 0) } == 0 {
            return Err(format!("the scratch server (pid {pid}) on {} would not stop", data.display()));
        }
    }
    Ok(())
}

/// Delete the topics and consumer groups named with `prefix`.
async fn remove_kafka(list: &str, prefix: &str) -> Result<(), String> {
    let brokers = Brokers::new(list, Duration::from_secs(30)).map_err(|e| e.to_string())?;
    let fail = |what: &str, e: &dyn std::fmt::Display| format!("{what} with prefix {prefix} on {list}: {e}");
    let reader = brokers.reader().map_err(|e| fail("listing topics", &e))?;
    let topics: Vec<String> = brokers
        .metadata(&reader)
        .map_err(|e| fail("listing topics", &e))?
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| n.starts_with(prefix))
        .collect();
    let groups: Vec<String> = reader
        .fetch_group_list(None, brokers.timeout)
        .map_err(|e| fail("listing consumer groups", &e))?
        .groups()
        .iter()
        .map(|g| g.name().to_string())
        .filter(|n| n.starts_with(prefix))
        .collect();
    let admin = brokers.admin().map_err(|e| fail("deleting", &e))?;
    let opts = AdminOptions::new().operation_timeout(Some(brokers.timeout));
    if !groups.is_empty() {
        let names: Vec<&str> = groups.iter().map(String::as_str).collect();
        for r in admin.delete_groups(&names, &opts).await.map_err(|e| fail("deleting consumer groups", &e))? {
            if let Err((g, code)) = r {
                return Err(format!("deleting consumer group {g}: {code}"));
            }
        }
    }
    if !topics.is_empty() {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        for r in admin.delete_topics(&names, &opts).await.map_err(|e| fail("deleting topics", &e))? {
            if let Err((t, code)) = r {
                if code != rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition {
                    return Err(format!("deleting topic {t}: {code}"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A takeover never clears a directory another takeover (perhaps a
    /// cell's live primary) or anything unmarked holds.
    #[test]
    fn a_takeover_refuses_the_directory_of_another() {
        let root = tempfile::tempdir().unwrap();
        let takeover = |name: &str| lifeboat_api::drill::Takeover {
            name: name.into(),
            port: 5999,
            topic_prefix: String::new(),
            promote_standby: true,
        };
        let dir = root.path().join("takeover-5999");
        std::fs::create_dir_all(dir.join("pgdata")).unwrap();
        let e = Scratch::keep(root.path(), "a", &takeover("fo-2-a"), None, Path::new("/nonexistent")).unwrap_err();
        assert!(e.to_string().contains("holds takeover \"\""), "{e}");
        std::fs::write(dir.join("standby.cell"), "b").unwrap();
        let e = Scratch::keep(root.path(), "a", &takeover("fo-2-a"), None, Path::new("/nonexistent")).unwrap_err();
        assert!(e.to_string().contains("holds the standby of cell b"), "{e}");
        std::fs::write(dir.join("takeover.name"), "fo-1-a").unwrap();
        let e = Scratch::keep(root.path(), "a", &takeover("fo-2-a"), None, Path::new("/nonexistent")).unwrap_err();
        assert!(e.to_string().contains("holds takeover \"fo-1-a\", which may be a cell's live primary"), "{e}");
        assert!(dir.join("pgdata").exists(), "nothing was removed");
        let fresh = Scratch::keep(root.path(), "b", &takeover("fo-3-b"), None, Path::new("/nonexistent")).map(|s| s.dir);
        assert!(fresh.is_err(), "the same port, another takeover");
    }
}
