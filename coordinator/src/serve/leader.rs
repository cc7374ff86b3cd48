//! Which coordinator acts, when several share one Postgres state
//! (`--state postgres://...`). Each tries for the lease row
//! ([`crate::store::Store::lease`]) every third of `--lease`; the one that
//! holds it leads: it fires schedules, dispatches and polls runs, sends
//! alerts, keeps standbys and runs exercises and failovers. The others
//! serve reads from the shared state and answer commands with 503 naming
//! the leader, until the lease is theirs.
//!
//! A leader counts its lease from the moment it *asked* for it, on its own
//! monotonic clock, so it stops acting no later than the database lets
//! another take over. Should it be paused past that (a SIGSTOP, a long GC,
//! a frozen VM) it may still have requests in flight when it wakes: every
//! request to an agent carries the lease's **epoch** (the last one held,
//! also after stepping down), the new leader shows its higher epoch to
//! every agent as soon as it leads, and agents refuse lower ones with 409.
//! A coordinator refused so steps down at once. Its writes to the shared
//! state are fenced by the lease row ([`crate::store::Store::fence`]).
//!
//! With a SQLite state there is one coordinator: it always leads and its
//! requests carry no epoch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use lifeboat_client::CoordinatorEpoch;

use super::Coordinator;

/// The epoch every agent client of this process carries (0: none).
pub fn epoch_cell() -> Arc<CoordinatorEpoch> {
    static EPOCH: OnceLock<Arc<CoordinatorEpoch>> = OnceLock::new();
    EPOCH.get_or_init(Default::default).clone()
}

pub struct Leadership {
    /// This process, as the lease row names it.
    pub holder: String,
    /// The state is shared: leading needs the lease.
    pub shared: bool,
    pub lease: Duration,
    epoch: Arc<CoordinatorEpoch>,
    /// Until when the lease held is surely ours.
    until: Mutex<Option<Instant>>,
    /// An agent's refusal of the epoch has been logged.
    noted: AtomicBool,
    /// Stopping: the lease is given up and not renewed again.
    resigning: AtomicBool,
}

impl Leadership {
    pub fn new(shared: bool, lease: Duration) -> Leadership {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let holder = format!("{}/{}/{:08x}", host.trim(), std::process::id(), rand::random::<u32>());
        Leadership {
            holder,
            shared,
            lease,
            epoch: epoch_cell(),
            until: Mutex::new(None),
            noted: AtomicBool::new(false),
            resigning: AtomicBool::new(false),
        }
    }

    /// This coordinator may act now.
    pub fn leading(&self) -> bool {
        if !self.shared {
            return true;
        }
        let epoch = self.epoch.get();
        if self.epoch.is_superseded() {
            if !self.noted.swap(true, Ordering::SeqCst) {
                tracing::warn!(epoch, "an agent has seen a higher coordinator epoch: another coordinator leads, so this one steps down");
            }
            *self.until.lock().expect("lease") = None;
            return false;
        }
        let until = *self.until.lock().expect("lease");
        epoch != 0 && until.is_some_and(|u| Instant::now() < u)
    }

    /// The epoch this coordinator leads with (0: it does not).
    pub fn epoch(&self) -> u64 {
        if self.leading() {
            self.epoch.get()
        } else {
            0
        }
    }

    /// Stop leading now and renew no more (the lease is about to be given up).
    pub fn resign(&self) {
        self.resigning.store(true, Ordering::SeqCst);
        self.step_down();
    }

    /// Wait until this coordinator leads.
    pub async fn wait_leading(&self) {
        while !self.leading() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn step_down(&self) {
        *self.until.lock().expect("lease") = None;
    }
}

/// Take and keep the lease, forever (a SQLite state: nothing to do).
pub async fn keep(c: Arc<Coordinator>) {
    if !c.leader.shared {
        return std::future::pending().await;
    }
    let every = c.leader.lease / 3;
    loop {
        renew(&c).await;
        tokio::time::sleep(every).await;
    }
}

async fn renew(c: &Arc<Coordinator>) {
    let l = &c.leader;
    if l.resigning.load(Ordering::SeqCst) {
        return;
    }
    let asked = Instant::now();
    let leading_before = l.leading();
    let held_epoch = l.epoch.get();
    match c.blocking(|c| c.store.lease(&c.leader.holder, &c.cfg.public_url, c.leader.lease)).await {
        Ok(Some(epoch)) => {
            if epoch != held_epoch {
                l.noted.store(false, Ordering::SeqCst);
            }
            l.epoch.set(epoch);
            if l.epoch.is_superseded() {
                // The database says this holder leads at an epoch an agent has seen surpassed: not safe to act.
                return;
            }
            *l.until.lock().expect("lease") = Some(asked + l.lease);
            if !leading_before {
                tracing::info!(epoch, holder = %l.holder, "this coordinator leads");
                announce(c, epoch).await;
            }
        }
        Ok(None) => {
            if leading_before || l.until.lock().expect("lease").is_some() {
                tracing::warn!(holder = %l.holder, "another coordinator holds the lease: this one steps down");
            }
            l.step_down();
        }
        // Leading lapses by itself when the lease runs out unrenewed.
        Err(e) => tracing::warn!("renewing the coordinator lease: {e:#}"),
    }
}

/// Show every agent the new epoch, so an old leader's late requests are
/// refused from now on rather than from its next contact.
async fn announce(c: &Arc<Coordinator>, epoch: u64) {
    let sites = c.plan.sites.iter().filter_map(|s| super::site_client(s).ok());
    let agents: Vec<_> = c.agents.values().cloned().chain(sites).collect();
    let told = futures::future::join_all(agents.iter().map(|a| a.health())).await;
    let reached = told.iter().filter(|r| r.is_ok()).count();
    tracing::info!(epoch, reached, agents = agents.len(), "epoch shown to the agents");
}
