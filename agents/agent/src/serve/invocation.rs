//! The command line of each job: a job runs as the `lifeboat-agent`
//! subcommand an operator would type, with `--output json`. Only what the
//! agent was started with can be asked for: locations by their `--copy-to`
//! names, restore directories under `--restore-root`, guest cells by their
//! `--guest` repositories; anything else is refused when the job is
//! submitted, with what to do.

use std::path::{Component, Path, PathBuf};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use lifeboat_api::{DrillSpec, JobSpec, PgTarget, RetentionOf};

use super::config::ServeArgs;
use super::Agent;

/// The command line and extra environment for one job.
#[derive(Debug)]
pub struct Invocation {
    pub args: Vec<String>,
    /// Passed in the environment, not argv (which every local user can read).
    pub env: Vec<(String, String)>,
    /// A guest cell's repository key, instead of the agent's own.
    pub key_file: Option<PathBuf>,
}

/// Turn a job into the subcommand that does it, or say why this agent
/// cannot run it (checked when the job is submitted).
pub fn invocation(agent: &Agent, spec: &JobSpec) -> Result<Invocation, String> {
    let mut c = Line {
        cfg: &agent.config,
        retention_env: &agent.retention_env,
        args: vec!["--output".into(), "json".into()],
        env: Vec::new(),
        key_file: None,
    };
    match spec {
        JobSpec::PgBackup { incremental } => {
            c.own_server(agent)?;
            c.with_cell(&["pg", "backup"]).push(&["--kind", if *incremental { "incremental" } else { "full" }]);
        }
        JobSpec::KafkaSnapshot {} => c.kafka_snapshot()?,
        JobSpec::Copy { location } => {
            let url = c.location(location)?.to_string();
            let repo = c.cfg.repo.url.clone();
            c.push(&["repo", "copy", &repo, &url]);
        }
        JobSpec::Verify { location, every_location, sample } => c.verify(location.as_deref(), *every_location, *sample)?,
        JobSpec::Retention { of, dry_run, keep_within, keep_incremental_within } => {
            c.retention(*of, *keep_within, *keep_incremental_within)?;
            if *dry_run {
                c.push(&["--dry-run"]);
            }
        }
        JobSpec::PgRestore { to, target, delta } => c.pg_restore(to, target, *delta)?,
        JobSpec::KafkaRestore { topic_prefix, snapshot, until, group_prefix } => {
            c.kafka_restore(topic_prefix, snapshot.as_deref(), *until)?;
            if let Some(g) = group_prefix {
                c.push(&["--group-prefix", g]);
            }
        }
        JobSpec::Drill(drill) => c.drill(drill)?,
        JobSpec::Fence { cell, reason, epoch } => c.fence(cell.as_deref(), reason, *epoch)?,
        JobSpec::Standby(s) => c.standby(s)?,
        JobSpec::Reprotect(r) => c.reprotect(r)?,
        JobSpec::Rebuild(r) => c.rebuild(agent, r)?,
        JobSpec::Handback(h) => {
            let root = c.restore_root("keeps no takeovers")?;
            let cell = c.guest(Some(&h.cell))?.ok_or("a takeover is another cell's (a guest), not the agent's own")?;
            let port = h.port.to_string();
            c.push(&["failback", "handback", "--cell", cell, "--restore-root", &root, "--port", &port, "--takeover", &h.takeover]);
        }
        JobSpec::Crash(k) => {
            c.own_cell(&k.cell)?;
            let pgdata = c.cfg.pg_data.as_ref().ok_or("this agent does not know the cell's data directory; start it with --pg-data")?;
            let pgdata = pgdata.display().to_string();
            c.push(&["failback", "crash", "--cell", &k.cell, "--pgdata", &pgdata, "--reason", &k.reason]);
        }
        JobSpec::HomePromote(p) => {
            c.own_cell(&p.cell)?;
            c.own_server(agent)?;
            c.push(&["failback", "promote", "--cell", &p.cell, "--after-lsn", &p.after_lsn]);
        }
    }
    Ok(Invocation { args: c.args, env: c.env, key_file: c.key_file })
}

/// A command line being built against the agent's configuration.
struct Line<'a> {
    cfg: &'a ServeArgs,
    retention_env: &'a [(String, String)],
    args: Vec<String>,
    env: Vec<(String, String)>,
    key_file: Option<PathBuf>,
}

impl Line<'_> {
    fn push(&mut self, items: &[&str]) -> &mut Self {
        self.args.extend(items.iter().map(|s| s.to_string()));
        self
    }

    /// `command... --repo REPO --cell CELL`.
    fn with_cell(&mut self, command: &[&str]) -> &mut Self {
        let (repo, cell) = (self.cfg.repo.url.clone(), self.cfg.cell.clone());
        self.push(command).push(&["--repo", &repo, "--cell", &cell])
    }

    fn brokers(&self) -> Result<String, String> {
        self.cfg.kafka_brokers.clone().ok_or_else(|| "this agent has no Kafka configured; start it with --kafka-brokers".into())
    }

    fn location(&self, name: &str) -> Result<&str, String> {
        self.cfg.location(name).ok_or_else(|| {
            let known: Vec<&str> = self.cfg.copy_to.iter().map(|(n, _)| n.as_str()).collect();
            let known = if known.is_empty() { "(none)".into() } else { known.join(", ") };
            format!("no location named `{name}`; this agent copies to: {known}")
        })
    }

    fn verify(&mut self, location: Option<&str>, every_location: bool, sample: Option<u32>) -> Result<(), String> {
        let url = match location {
            Some(_) if every_location => return Err("a verify names one location or asks for every location, not both".into()),
            Some(name) => self.location(name)?.to_string(),
            None => self.cfg.repo.url.clone(),
        };
        self.push(&["repo", "verify", "--repo", &url]);
        if every_location {
            let copies: Vec<String> = self.cfg.copy_to.iter().map(|(_, url)| url.clone()).collect();
            for copy in &copies {
                self.push(&["--also", copy]);
            }
        }
        if let Some(n) = sample {
            self.push(&["--sample", &n.to_string()]);
        }
        Ok(())
    }

    fn restore_root(&self, what: &str) -> Result<String, String> {
        let root = self.cfg.restore_root.as_deref().ok_or_else(|| format!("this agent {what}; start it with --restore-root"))?;
        Ok(root.display().to_string())
    }

    fn kafka_snapshot(&mut self) -> Result<(), String> {
        let brokers = self.brokers()?;
        let topics = self.cfg.kafka_topics.clone().filter(|t| !t.is_empty());
        let topics = topics.ok_or("this agent has no topics to snapshot; start it with --kafka-topics")?;
        self.with_cell(&["kafka", "snapshot"]).push(&["--brokers", &brokers, "--topics", &topics]);
        Ok(())
    }

    fn retention(
        &mut self,
        of: RetentionOf,
        keep: Option<std::time::Duration>,
        keep_incremental: Option<std::time::Duration>,
    ) -> Result<(), String> {
        let what = match of {
            RetentionOf::Pg => "pg",
            RetentionOf::Kafka => "kafka",
        };
        let floor = self.cfg.retention_floor;
        for (name, age) in [("keep_within", keep), ("keep_incremental_within", keep_incremental)] {
            if let Some(age) = age.filter(|a| *a < floor) {
                return Err(format!(
                    "{name} {} is below this agent's retention floor of {} (--retention-floor on the agent's host; the API cannot lower it)",
                    lifeboat_api::duration::format(age),
                    lifeboat_api::duration::format(floor)
                ));
            }
        }
        self.env.extend(self.retention_env.iter().cloned());
        self.with_cell(&[what, "retention"]);
        if let Some(k) = keep {
            self.push(&["--keep-within", &lifeboat_api::duration::format(k)]);
        }
        match (of, keep_incremental) {
            (_, None) => Ok(()),
            (RetentionOf::Pg, Some(k)) => {
                self.push(&["--keep-incremental-within", &lifeboat_api::duration::format(k)]);
                Ok(())
            }
            (RetentionOf::Kafka, Some(_)) => {
                Err("keep_incremental_within is for Postgres; Kafka snapshots are one series (use keep_within)".into())
            }
        }
    }

    fn pg_restore(&mut self, to: &str, target: &PgTarget, delta: bool) -> Result<(), String> {
        let dir = Path::new(&self.restore_root("takes no restores")?).join(relative_dir(to)?).display().to_string();
        // Tablespaces stay under the restore root too: next to the data directory.
        let tablespaces = format!("{dir}.tablespaces");
        self.with_cell(&["pg", "restore"]).push(&["--to", &dir, "--tablespaces-under", &tablespaces]);
        if delta {
            self.push(&["--delta"]);
        }
        match target {
            PgTarget::Latest => self.push(&["--latest"]),
            PgTarget::Time(t) => self.push(&["--target-time", &rfc3339(*t)]),
            PgTarget::Lsn(l) => self.push(&["--target-lsn", l]),
            PgTarget::Xid(x) => self.push(&["--target-xid", &x.to_string()]),
            PgTarget::Name(n) => self.push(&["--target-name", n]),
        };
        Ok(())
    }

    fn kafka_restore(&mut self, topic_prefix: &str, snapshot: Option<&str>, until: Option<OffsetDateTime>) -> Result<(), String> {
        let brokers = self.brokers()?;
        if topic_prefix.is_empty() {
            return Err("a Kafka restore through the API needs a topic_prefix, so it never writes into live topics".into());
        }
        self.with_cell(&["kafka", "restore"]).push(&["--brokers", &brokers, "--topic-prefix", topic_prefix]);
        match snapshot {
            Some(id) => self.push(&["--snapshot", id]),
            None => self.push(&["--latest"]),
        };
        if let Some(t) = until {
            self.push(&["--until", &rfc3339(t)]);
        }
        Ok(())
    }

    /// The guest cell a job names (None: the agent's own), its key chosen.
    fn guest<'c>(&mut self, cell: Option<&'c str>) -> Result<Option<&'c str>, String> {
        let Some(cell) = cell.filter(|c| *c != self.cfg.cell) else { return Ok(None) };
        if self.cfg.guest_locations(cell).is_empty() {
            return Err(format!(
                "this agent serves cell {} and hosts no guest cell {cell}; start it with --guest {cell}@LOCATION=URL",
                self.cfg.cell
            ));
        }
        self.key_file = self.cfg.guest_key(cell).cloned();
        Ok(Some(cell))
    }

    /// A location of guest `cell` by its plan name (None: the first given).
    fn guest_location(&self, cell: &str, name: Option<&str>) -> Result<(String, String), String> {
        let all = self.cfg.guest_locations(cell);
        let found = match name {
            Some(n) => all.iter().find(|g| g.location == n),
            None => all.first(),
        };
        found.map(|g| (g.location.clone(), g.url.clone())).ok_or_else(|| {
            let known: Vec<&str> = all.iter().map(|g| g.location.as_str()).collect();
            format!("guest cell {cell} has no location `{}` here; this agent has: {}", name.unwrap_or_default(), known.join(", "))
        })
    }

    /// The drill's source (and fallback) as (name, url), own or guest.
    fn drill_sources(&self, guest: Option<&str>, drill: &DrillSpec) -> Result<Vec<(String, String)>, String> {
        let one = |name: Option<&str>| match (guest, name) {
            (Some(cell), name) => self.guest_location(cell, name),
            (None, Some(name)) => Ok((name.to_string(), self.location(name)?.to_string())),
            (None, None) => Ok((lifeboat_api::recovery::PRIMARY.to_string(), self.cfg.repo.url.clone())),
        };
        let mut sources = vec![one(drill.location.as_deref())?];
        if let Some(name) = &drill.fallback_location {
            sources.push(one(Some(name))?);
        }
        Ok(sources)
    }

    fn drill(&mut self, drill: &DrillSpec) -> Result<(), String> {
        let root = self.restore_root("runs no drills")?;
        let guest = self.guest(drill.cell.as_deref())?;
        let sources = self.drill_sources(guest, drill)?;
        let cell = guest.unwrap_or(&self.cfg.cell).to_string();
        let (name, url) = &sources[0];
        self.push(&["drill", "run", "--repo", url, "--source-name", name, "--cell", &cell, "--restore-root", &root]);
        if let Some((name, url)) = sources.get(1) {
            self.push(&["--fallback", &format!("{name}={url}")]);
        }
        if let Some(t) = drill.takeover.as_ref().filter(|t| t.name.trim().is_empty() || t.name.contains('\n')) {
            return Err(format!("takeover name {:?} must be one non-empty line", t.name));
        }
        if drill.takeover.as_ref().is_some_and(|t| t.topic_prefix.is_empty()) && drill.kafka {
            return Err("a takeover's Kafka restore needs a topic_prefix, so it never writes into another cell's live topics".into());
        }
        if drill.kafka || drill.checks.iter().any(|c| c.needs_kafka()) {
            let brokers = self.brokers()?;
            self.push(&["--brokers", &brokers]);
        }
        self.push(&["--spec", &serde_json::to_string(drill).expect("a drill spec serialises")]);
        Ok(())
    }
}

impl Line<'_> {
    /// `standby ensure` of a guest cell from one of its locations here.
    fn standby(&mut self, s: &lifeboat_api::standby::StandbySpec) -> Result<(), String> {
        let root = self.restore_root("keeps no standbys")?;
        let cell = self.guest(Some(&s.cell))?.ok_or("a standby is kept for another cell (a guest), not the agent's own")?;
        let (name, url) = self.guest_location(cell, Some(&s.location))?;
        lifeboat_postgres::standby::check_conninfo(s.primary_conninfo.as_deref().unwrap_or_default()).map_err(|e| e.to_string())?;
        let port = s.port.to_string();
        self.push(&["standby", "ensure", "--repo", &url, "--source-name", &name, "--cell", cell, "--restore-root", &root]);
        self.push(&["--port", &port, "--mode", s.mode.as_str()]);
        if let Some(c) = &s.primary_conninfo {
            self.env.push(("LIFEBOAT_PRIMARY_CONNINFO".into(), c.clone()));
        }
        Ok(())
    }

    /// The cell's own server, to the job's environment (its conninfo, and its password if it has one).
    fn own_server(&mut self, agent: &Agent) -> Result<(), String> {
        let server = agent.pg.as_ref().ok_or("this agent has no Postgres configured; start it with --pg-conn")?;
        self.env.push(("LIFEBOAT_PG_CONN".into(), server.conninfo.clone()));
        if let Some(password) = &server.password {
            self.env.push(("PGPASSWORD".into(), password.clone()));
        }
        Ok(())
    }

    /// A failback's home steps are the agent's own cell's.
    fn own_cell(&self, cell: &str) -> Result<(), String> {
        match cell == self.cfg.cell {
            true => Ok(()),
            false => {
                Err(format!("this agent serves cell {}, not {cell}: a failback's home steps go to the cell's own agent", self.cfg.cell))
            }
        }
    }

    /// `failback rebuild` of the agent's own cell from one of its locations.
    fn rebuild(&mut self, agent: &Agent, r: &lifeboat_api::failback::RebuildSpec) -> Result<(), String> {
        self.own_cell(&r.cell)?;
        let pgdata = self.cfg.pg_data.as_ref().ok_or("this agent does not know the cell's data directory; start it with --pg-data")?;
        let pgdata = pgdata.display().to_string();
        self.own_server(agent)?;
        lifeboat_postgres::standby::check_conninfo(&r.primary_conninfo).map_err(|e| e.to_string())?;
        let own = self.cfg.repo.url.clone();
        let source = match r.location.as_str() {
            lifeboat_api::recovery::PRIMARY => own.clone(),
            name => self.location(name)?.to_string(),
        };
        self.push(&["failback", "rebuild", "--repo", &source, "--source-name", &r.location, "--archive-repo", &own]);
        self.push(&["--cell", &r.cell, "--pgdata", &pgdata]);
        self.env.push(("LIFEBOAT_PRIMARY_CONNINFO".into(), r.primary_conninfo.clone()));
        Ok(())
    }

    /// `reprotect` of a guest's takeover into one of its locations here.
    fn reprotect(&mut self, r: &lifeboat_api::reprotect::ReprotectSpec) -> Result<(), String> {
        let root = self.restore_root("keeps no takeovers")?;
        let cell = self.guest(Some(&r.cell))?.ok_or("a takeover is another cell's (a guest), not the agent's own")?;
        let (name, url) = self.guest_location(cell, Some(&r.location))?;
        let port = r.port.to_string();
        self.push(&["reprotect", "--repo", &url, "--source-name", &name, "--cell", cell, "--restore-root", &root]);
        self.push(&["--port", &port, "--takeover", &r.takeover]);
        Ok(())
    }

    /// `fence raise` in every location this agent has for the cell.
    fn fence(&mut self, cell: Option<&str>, reason: &str, epoch: Option<u64>) -> Result<(), String> {
        let guest = self.guest(cell)?;
        // Named as the plan (a guest) or the agent (its own) names them, so the caller can tell which holds the fence.
        let (cell, urls): (String, Vec<String>) = match guest {
            Some(g) => (g.to_string(), self.cfg.guest_locations(g).iter().map(|l| format!("{}={}", l.location, l.url)).collect()),
            None => {
                let copies = self.cfg.copy_to.iter().map(|(n, u)| format!("{n}={u}"));
                let primary = format!("{}={}", lifeboat_api::recovery::PRIMARY, self.cfg.repo.url);
                (self.cfg.cell.clone(), std::iter::once(primary).chain(copies).collect())
            }
        };
        self.push(&["fence", "raise", "--cell", &cell, "--reason", reason]);
        for url in &urls {
            self.push(&["--repo", url]);
        }
        if let Some(e) = epoch {
            self.push(&["--epoch", &e.to_string()]);
        }
        Ok(())
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("formatting an instant")
}

/// A restore directory must stay under the restore root.
fn relative_dir(to: &str) -> Result<&Path, String> {
    let p = Path::new(to);
    if to.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("restore directory `{to}` must be a relative path without `..` (it is created under the restore root)"));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_dirs_stay_under_the_root() {
        assert!(relative_dir("drill-1/data").is_ok());
        assert!(relative_dir("../etc").is_err());
        assert!(relative_dir("/etc").is_err());
        assert!(relative_dir("a/../../b").is_err());
        assert!(relative_dir("").is_err());
    }
}
