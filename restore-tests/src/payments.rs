//! A cell with a payments workload, for drills: a PostgreSQL 15 cluster
//! archiving into a keyed `file://` repository, a `payments` table with a
//! double-entry `ledger`, and a Kafka topic `<cell>.payments` (3
//! partitions) where every payment is published after it commits (as an
//! outbox relay would), keyed by its id.

use std::path::PathBuf;

use serde_json::Value;

use crate::kafka::{self, Kafka, TestRecord};
use crate::pg::{Archive, Cluster};
use crate::{agent, ok, unique};

pub struct PaymentsCell {
    pub a: Archive,
    pub pg: Cluster,
    pub kafka: Kafka,
    pub name: String,
    pub topic: String,
    /// Where drills put their scratch environments (reachable by the postgres user).
    pub restore_root: PathBuf,
}

/// A running `kafka follow`, killed when dropped.
pub struct Follower(std::process::Child);

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl PaymentsCell {
    pub fn new(prefix: &str) -> PaymentsCell {
        Self::with(prefix, Archive::new())
    }

    /// A payments cell whose repository (and WAL archive) is at `url`.
    pub fn on(prefix: &str, url: &str) -> PaymentsCell {
        Self::with(prefix, Archive::on(url))
    }

    fn with(prefix: &str, a: Archive) -> PaymentsCell {
        let name = unique(prefix);
        let conf = a.archive_conf(&name);
        let pg = Cluster::create(&a.root.join("pg"), &[&conf[0], &conf[1]]);
        pg.psql(
            "create table payments (id bigserial primary key, amount numeric(12,2) not null, at timestamptz not null default now());
             create table ledger (payment_id bigint not null references payments, amount numeric(12,2) not null)",
        );
        let kafka = kafka::shared();
        let topic = format!("{name}.payments");
        kafka.create_topic(&topic, 3, &[]);
        let restore_root = a.root.join("drills");
        PaymentsCell { a, pg, kafka, name, topic, restore_root }
    }

    pub fn conninfo(&self) -> String {
        self.pg.conninfo()
    }

    /// `n` payments, each a debit and a credit in the ledger, committed and then published.
    pub fn pay(&self, n: usize) {
        self.pay_at(&self.pg, n)
    }

    /// [`PaymentsCell::pay`] on the server `pg` (the cell's new primary after a failover).
    pub fn pay_at(&self, pg: &Cluster, n: usize) {
        for _ in 0..n {
            let id = pg.psql(
                "with p as (insert into payments (amount) values (round((random() * 100)::numeric, 2)) returning id, amount),
                      l as (insert into ledger select id, amount from p union all select id, -amount from p)
                 select id from p",
            );
            let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
            let partition = (id.parse::<i64>().unwrap() % 3) as i32;
            let record = TestRecord {
                partition,
                key: Some(id.clone()),
                value: Some(format!("{{\"payment\":{id}}}")),
                headers: vec![],
                timestamp: now as i64,
            };
            self.kafka.produce(&self.topic, &[record]);
        }
    }

    /// `lifeboat-agent ARGS --repo --cell --key-file --output json`, parsed; panics on failure.
    pub fn agent(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--repo", &self.a.repo, "--cell", &self.name, "--key-file", self.a.k(), "--output", "json"]);
        serde_json::from_str(&ok(&agent(&all, &[]))).unwrap()
    }

    pub fn backup(&self) {
        self.agent(&["pg", "backup", "--conn", &self.conninfo()]);
    }

    pub fn snapshot(&self) {
        self.agent(&["kafka", "snapshot", "--brokers", &self.kafka.address, "--topics", &format!("{}\\..*", self.name)]);
    }

    /// `kafka follow` of the cell's topics, sealing every second (the
    /// continuous mode); stopped when the guard is dropped.
    pub fn follow(&self) -> Follower {
        let topics = format!("{}\\..*", self.name);
        let args = ["kafka", "follow", "--brokers", &self.kafka.address, "--topics", &topics, "--every", "1s", "--idle", "5s"];
        let mut all = args.to_vec();
        all.extend(["--repo", &self.a.repo, "--cell", &self.name, "--key-file", self.a.k()]);
        let child = std::process::Command::new(crate::agent_bin())
            .args(&all)
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("starting kafka follow");
        Follower(child)
    }

    /// How many of the topic's records the newest snapshot or seal holds.
    pub fn kafka_sealed(&self) -> i64 {
        let listed = self.agent(&["kafka", "ls"]);
        let Some(newest) = listed.as_array().and_then(|l| l.last()) else { return 0 };
        newest["topics"].as_array().unwrap().iter().flat_map(|t| t["ranges"].as_array().unwrap()).map(|r| r[2].as_i64().unwrap()).sum()
    }

    /// Nothing a drill made is left: no ledger or directory under the
    /// restore root, no server on it, no scratch topic (read with kcat).
    pub fn assert_no_drill_left(&self) {
        let left: Vec<_> = std::fs::read_dir(&self.restore_root).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "the restore root still holds {left:?}");
        let ps = std::process::Command::new("pgrep").args(["-f", &format!("{}/drill-", self.restore_root.display())]).output().unwrap();
        assert!(ps.stdout.is_empty(), "a scratch server still runs: {}", String::from_utf8_lossy(&ps.stdout));
        let topics = std::process::Command::new("kcat").args(["-L", "-b", &self.kafka.address, "-J"]).output().unwrap();
        let listing: Value = serde_json::from_slice(&topics.stdout).unwrap();
        let scratch: Vec<_> = listing["topics"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["topic"].as_str())
            .filter(|t| t.starts_with("lifeboat-drill-"))
            .collect();
        assert!(scratch.is_empty(), "scratch topics remain: {scratch:?}");
    }

    /// Whether a drill's scratch server is up under the restore root.
    pub fn scratch_server_running(&self) -> bool {
        std::fs::read_dir(&self.restore_root)
            .map(|d| d.flatten().any(|e| e.path().join("pgdata").join("postmaster.pid").exists()))
            .unwrap_or(false)
    }
}
