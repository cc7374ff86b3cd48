//! The continuous Kafka snapshot mode (`kafka follow`) against the real
//! broker: seals every second, a follower killed with SIGKILL and started
//! again continues with no gap and no duplicate, a group's commit is sealed
//! though no record came, the newest seal restores record-exact (read back
//! with `kcat`), the scheduled snapshot folds the seals (merging their
//! segments, re-storing their small chunks) and retention deletes the
//! folded seals without taking a chunk the fold needs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use lifeboat_restore_tests::kafka::{self, by_partition, contents, Repo, TestRecord};
use lifeboat_restore_tests::{agent_bin, Backend};

/// A running follower and the seals it printed (JSON lines).
struct Follower {
    child: Child,
    seals: Receiver<serde_json::Value>,
}

impl Follower {
    fn start(repo: &Repo, topic: &str) -> Follower {
        let args = repo.command(&["follow", "--topics", topic, "--every", "1s", "--idle", "1h"]);
        let mut child =
            Command::new(agent_bin()).args(&args).env("RUST_LOG", "error").stdout(Stdio::piped()).spawn().expect("starting kafka follow");
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, seals) = channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("follow printed {line}: {e}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Follower { child, seals }
    }

    /// Seals until `records` new records were sealed in all (panics after a
    /// minute); every seal's kind.
    fn sealed(&self, records: u64) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut got, mut seals) = (0, Vec::new());
        while got < records {
            let left = deadline.saturating_duration_since(Instant::now());
            let seal = self.seals.recv_timeout(left).unwrap_or_else(|_| panic!("only {got} of {records} records sealed in a minute"));
            got += seal["records"].as_u64().unwrap();
            seals.push(seal);
        }
        assert_eq!(got, records, "sealed more records than were produced: {seals:?}");
        seals
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn batch(partitions: i32, from: usize, count: usize, t0: i64) -> Vec<TestRecord> {
    (from..from + count)
        .map(|i| TestRecord {
            partition: i as i32 % partitions,
            key: Some(format!("payment-{i}")),
            value: Some(format!("{{\"payment\":{i},\"amount\":{}}}", i * 7 % 1000)),
            headers: vec![("trace".into(), format!("t{i}"))],
            timestamp: t0 + i as i64,
        })
        .collect()
}

#[test]
fn a_follower_seals_resumes_after_sigkill_and_its_seals_are_folded_and_retired() {
    let k = kafka::shared();
    let topic = lifeboat_restore_tests::unique("followed");
    k.create_topic(&topic, 3, &[]);
    let t0 = (time::OffsetDateTime::now_utc().unix_timestamp() - 600) * 1000;
    let repo = Repo::new(Backend::File, &k.address);
    let mut produced = batch(3, 0, 30, t0);
    k.produce(&topic, &produced);

    // The first tick of a cell with no snapshot takes a full one.
    let follower = Follower::start(&repo, &topic);
    let first = follower.sealed(30);
    assert_eq!(first[0]["kind"], "kafka-full", "{first:?}");

    // Small batches a second apart: a seal each (or so), kinds kafka-seal.
    for n in 0..10 {
        let more = batch(3, produced.len(), 6, t0);
        k.produce(&topic, &more);
        produced.extend(more);
        let seals = follower.sealed(6);
        assert!(seals.iter().all(|s| s["kind"] == "kafka-seal"), "batch {n}: {seals:?}");
    }

    // A group's commit is a change: sealed with no record.
    k.commit("follow-readers", &topic, &[(0, 5), (1, 7)]);
    let seal = follower.seals.recv_timeout(Duration::from_secs(30)).expect("a seal of the group's commit");
    assert_eq!(seal["records"], 0, "{seal}");

    // SIGKILL, records meanwhile, a new follower: exactly those records next.
    drop(follower);
    let more = batch(3, produced.len(), 15, t0);
    k.produce(&topic, &more);
    produced.extend(more);
    let follower = Follower::start(&repo, &topic);
    follower.sealed(15);
    let mut stop = follower;
    // SIGTERM ends it cleanly.
    unsafe { libc::kill(stop.child.id() as i32, libc::SIGTERM) };
    assert!(stop.child.wait().unwrap().success(), "kafka follow exits 0 on SIGTERM");

    let expected = by_partition(&produced);
    let listed = repo.kafka(&["ls"]);
    let newest = listed.as_array().unwrap().last().unwrap().clone();
    assert_eq!(newest["kind"], "kafka-seal", "{newest}");
    let seal_chunks = newest["chunks"].as_u64().unwrap();
    let seal_segments = newest["segments"].as_u64().unwrap();
    assert!(seal_segments > 9, "the newest seal restores from the seals' own segments: {newest}");

    // The newest seal restores record-exact, groups translated.
    let restored = repo.kafka(&["restore", "--topic-prefix", "sealed-"]);
    assert_eq!(restored["snapshot"], newest["id"], "{restored}");
    assert_eq!(contents(&k.kcat_read(&format!("sealed-{topic}"))), expected, "the newest seal restores every record once, in order");
    let groups = restored["groups"].as_array().unwrap();
    assert!(groups.iter().any(|g| g["source_group"] == "follow-readers"), "{restored}");
    let verify = repo.kafka(&["verify", "--topic-prefix", "sealed-"]);
    assert_eq!(verify["problems"].as_array().unwrap().len(), 0, "{verify}");

    // The scheduled snapshot folds the seals: nothing new read, the seals'
    // segments merged (one per partition) and their small chunks re-stored.
    let fold = repo.kafka(&["snapshot", "--topics", &topic]);
    assert_eq!(fold["kind"], "kafka-incr", "{fold}");
    assert_eq!(fold["records"], 0, "{fold}");
    assert!(fold["stored_bytes"].as_u64().unwrap() > 0, "runs of small chunks were re-stored: {fold}");
    let listed = repo.kafka(&["ls"]);
    let folded = listed.as_array().unwrap().last().unwrap().clone();
    assert_eq!(folded["id"], fold["snapshot_id"]);
    assert_eq!(folded["segments"], 3, "one segment per partition: {folded}");
    assert!(folded["chunks"].as_u64().unwrap() < seal_chunks, "fewer chunks than the seal's {seal_chunks}: {folded}");
    assert!(listed.as_array().unwrap().iter().all(|s| s["kind"] != "kafka-seal"), "folded seals are not listed: {listed}");

    // A folded seal is still found by its id (a restore that started from it goes on).
    let seal_id = newest["id"].as_str().unwrap();
    let again = repo.kafka(&["restore", "--snapshot", seal_id, "--topic-prefix", "refound-"]);
    assert_eq!(again["snapshot"], seal_id, "{again}");
    assert_eq!(contents(&k.kcat_read(&format!("refound-{topic}"))), expected, "the folded seal, rebuilt from its chain");

    // Retention keeps folded seals for a while (6 h by default), then deletes them and no chunk the fold needs.
    let kept = repo.kafka(&["retention", "--keep-last", "1", "--keep-within", "7d", "--dry-run"]);
    assert!(kept["delete"].as_array().unwrap().is_empty(), "{kept}");
    let plan = repo.kafka(&["retention", "--keep-last", "1", "--keep-within", "7d", "--keep-folded-seals", "0s"]);
    let deleted = plan["delete"].as_array().unwrap();
    assert!(deleted.len() >= 11 && deleted.iter().all(|d| d["kind"] == "kafka-seal"), "{plan}");
    assert!(deleted.iter().all(|d| d["reason"] == "folded into a later backup"), "{plan}");
    assert!(!plan["delete_chunks"].as_array().unwrap().is_empty(), "the seals' small chunks go: {plan}");
    repo.kafka(&["restore", "--topic-prefix", "folded-"]);
    assert_eq!(contents(&k.kcat_read(&format!("folded-{topic}"))), expected, "the fold restores every record after retention");
    let verify = repo.kafka(&["verify", "--topic-prefix", "folded-"]);
    assert_eq!(verify["problems"].as_array().unwrap().len(), 0, "{verify}");
    let check = lifeboat_restore_tests::agent(&["repo", "verify", "--repo", &repo.url, "--key-file", &repo.key], &[]);
    lifeboat_restore_tests::ok(&check);
}

/// `serve --kafka-follow`: the agent seals on its own; its recovery answer
/// and its metric show a Kafka point seconds old, which follows new records.
#[test]
fn the_agent_service_follows_and_its_kafka_point_is_seconds_old() {
    use lifeboat_restore_tests::pg::Archive;
    use lifeboat_restore_tests::served::Service;

    let k = kafka::shared();
    let archive = Archive::new();
    let cell = lifeboat_restore_tests::unique("served-follow");
    let topic = format!("{cell}.events");
    k.create_topic(&topic, 2, &[]);
    let t0 = (time::OffsetDateTime::now_utc().unix_timestamp() - 600) * 1000;
    k.produce(&topic, &batch(2, 0, 10, t0));
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--kafka-brokers", &k.address, "--kafka-topics", &topic, "--kafka-follow", "1s"];
    let service = Service::agent_on(&archive, &cell, dir.path(), &extra);

    let sealed = || -> i64 {
        let args = ["kafka", "ls", "--repo", &archive.repo, "--cell", &cell, "--key-file", archive.k(), "--output", "json"];
        let listed: serde_json::Value =
            serde_json::from_str(&lifeboat_restore_tests::ok(&lifeboat_restore_tests::agent(&args, &[]))).unwrap();
        let Some(newest) = listed.as_array().and_then(|l| l.last().cloned()) else { return 0 };
        newest["topics"][0]["ranges"].as_array().unwrap().iter().map(|r| r[2].as_i64().unwrap()).sum()
    };
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "{what} within a minute\n{}", service.log_text());
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    wait("the first 10 records sealed", &|| sealed() == 10);
    k.produce(&topic, &batch(2, 10, 5, t0));
    wait("the next 5 sealed", &|| sealed() == 15);

    let (_, recovery) = service.get("/v1/recovery");
    let point = recovery["locations"][0]["kafka"]["recoverable_to"].as_str().unwrap_or_else(|| panic!("{recovery}"));
    let point = time::OffsetDateTime::parse(point, &time::format_description::well_known::Rfc3339).unwrap();
    let age = (time::OffsetDateTime::now_utc() - point).as_seconds_f64();
    assert!(age < 30.0, "the Kafka point is the newest seal's, {age} s old: {recovery}");
    let metrics = service.metrics();
    let line =
        metrics.lines().find(|l| l.starts_with("lifeboat_agent_kafka_seal_last_timestamp_seconds")).unwrap_or_else(|| panic!("{metrics}"));
    let stamp: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(stamp > 0.0 && (point.unix_timestamp() as f64 - stamp).abs() < 60.0, "{line} against {point}");
    assert!(metrics.contains("lifeboat_agent_kafka_seal_failures_total 0"), "{metrics}");
}
