//! What the failover tests share: an incident as it happens (the primary
//! killed, its data directory gone), waiting for a condition, the payments
//! a cluster holds, reading a `--output json` answer, and stopping a
//! server a takeover left running when a test ends.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::pg::Cluster;

/// A command's `--output json` answer: whether it succeeded, and the JSON.
pub fn parse(out: &Output) -> (bool, Value) {
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: stdout {} stderr {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), v)
}

pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ids in a payments cell's `payments` table.
pub fn ids(pg: &Cluster) -> BTreeSet<i64> {
    pg.psql("select id from payments order by id").lines().map(|l| l.parse().unwrap()).collect()
}

/// Kill the primary as an incident would: SIGKILL to the postmaster, data directory gone.
pub fn kill_primary(pg: &Cluster) {
    let pid = std::fs::read_to_string(pg.data().join("postmaster.pid")).unwrap().lines().next().unwrap().trim().to_string();
    assert!(Command::new("kill").args(["-9", &pid]).status().unwrap().success());
    wait_until("the postmaster to die", Duration::from_secs(30), || !Path::new(&format!("/proc/{pid}")).exists());
    // Its backends go with it once they notice; the directory goes now.
    std::fs::remove_dir_all(pg.data()).unwrap();
}

/// Stops the takeover's server (it outlives the agent by design) when the test ends, passed or not.
pub struct StopServer(pub PathBuf);

impl Drop for StopServer {
    fn drop(&mut self) {
        stop_postgres(&self.0);
    }
}

/// `pg_ctl stop -m immediate` on `data`, as the postgres user when we are root.
pub fn stop_postgres(data: &Path) {
    let pg_ctl = crate::pg::bindir().join("pg_ctl");
    let as_postgres = r#"cd / && if [ "$(id -u)" = 0 ]; then exec runuser -u postgres -- "$@"; else exec "$@"; fi"#;
    let _ = Command::new("bash").args(["-c", as_postgres, "stop"]).arg(pg_ctl).args(["stop", "-m", "immediate", "-D"]).arg(data).output();
}

/// An RFC 3339 instant in a JSON answer.
pub fn instant(v: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(v.as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap()
}
