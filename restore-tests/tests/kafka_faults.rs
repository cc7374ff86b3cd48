//! Kafka faults on purpose: the agent killed mid-snapshot (nothing
//! committed, the rerun is not held up by the dead process's lock) and
//! mid-restore (the rerun finishes without a duplicate), a corrupt chunk (detected, never
//! produced), the broker killed and restarted mid-snapshot (the
//! snapshot completes correctly or fails clearly, never a silent partial),
//! and the repository failing mid-snapshot (the snapshot ends with the
//! repository's error and commits nothing).

use std::time::{Duration, Instant};

use lifeboat_restore_tests::kafka::{self, Kafka, PrivateBroker, Repo, TestRecord};
use lifeboat_restore_tests::{agent_bin, fails, unique, Backend};

fn bulk(partitions: i32, count: usize, size: usize) -> Vec<TestRecord> {
    let t0 = (time::OffsetDateTime::now_utc().unix_timestamp() - 600) * 1000;
    (0..count)
        .map(|i| TestRecord {
            partition: i as i32 % partitions,
            key: Some(format!("k{}", i % 1000)),
            value: Some(format!("{i:08} {}", "x".repeat(size))),
            headers: vec![],
            timestamp: t0 + i as i64,
        })
        .collect()
}

/// A repository that fails after a few chunks, while a partition still
/// holds far more than the snapshot's pipeline has room for: the snapshot
/// ends (before the fix of 2026-11-28 it waited forever) with the
/// repository's error, not with the reader's "stopped taking records",
/// and writes no manifest.
#[test]
fn a_repository_failing_mid_snapshot_ends_it_with_its_error() {
    use std::sync::Arc;

    use lifeboat_kafka::client::Brokers;
    use lifeboat_kafka::snapshot::{snapshot, SnapshotRequest};
    use lifeboat_repository::repo::{InitOptions, Repository};
    use lifeboat_storage::faults::FaultyStore;
    use lifeboat_storage::fs::FileStore;
    use lifeboat_storage::DynStore;

    let k = kafka::shared();
    let topic = unique("repo-fails");
    k.create_topic(&topic, 1, &[]);
    k.produce(&topic, &bulk(1, 100_000, 600)); // about 60 MiB: 60 chunks
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (outcome, manifests) = runtime.block_on(async {
        let faulty = Arc::new(FaultyStore::new(Arc::new(FileStore::new(dir.path()))));
        let repo = Repository::init(faulty.clone(), None, InitOptions::default()).await.unwrap();
        faulty.crash_after_puts(4); // the lock and three chunks
        let req = SnapshotRequest {
            cell: "cell-f".into(),
            brokers: Brokers::new(&k.address, Duration::from_secs(30)).unwrap(),
            topics: topic.clone(),
        };
        let outcome = tokio::time::timeout(Duration::from_secs(120), snapshot(&repo, &req)).await;
        let base: DynStore = Arc::new(FileStore::new(dir.path()));
        (outcome, base.list("manifests/").await.unwrap().len())
    });
    let result = outcome.expect("the snapshot ends instead of waiting forever");
    let e = result.expect_err("the repository failed").to_string();
    assert!(e.contains("injected crash"), "the repository's error: {e}");
    assert_eq!(manifests, 0, "nothing committed");
    let chunk_dirs = std::fs::read_dir(dir.path().join("chunks")).map(|d| d.count()).unwrap_or(0);
    assert!(chunk_dirs > 0, "the repository failed mid-stream, after storing chunks");
}

/// Files under `dir`, recursively (0 when it does not exist yet).
fn files_in(dir: &std::path::Path) -> usize {
    if !dir.exists() {
        return 0;
    }
    lifeboat_restore_tests::files_under(dir).len()
}

/// kill -9 of the agent mid snapshot, after it stored chunks: nothing is
/// committed (no snapshot listed), the dead process's lock does not hold
/// up the rerun (recognised and removed at once, not waited out for its
/// 300 s lease), and the rerun's snapshot restores every record, read
/// back with kcat.
#[test]
fn agent_killed_mid_snapshot_commits_nothing_and_the_rerun_completes() {
    let k = kafka::shared();
    let topic = unique("killsnap");
    k.create_topic(&topic, 2, &[]);
    let records = bulk(2, 200_000, 500); // about 100 MiB
    k.produce(&topic, &records);
    let repo = Repo::new(Backend::File, &k.address);
    let chunks = std::path::PathBuf::from(repo.url.strip_prefix("file://").unwrap()).join("chunks");
    let args = repo.command(&["snapshot", "--topics", &topic]);
    let mut child = std::process::Command::new(agent_bin())
        .args(&args)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while files_in(&chunks) < 5 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the snapshot finished ({status}) before it could be killed; make the topic larger");
        }
        assert!(Instant::now() < deadline, "no chunk stored within 2 minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(repo.kafka(&["ls"]).as_array().unwrap().len(), 0, "a killed snapshot commits nothing");

    let rerun = std::process::Command::new(agent_bin()).args(&args).env("RUST_LOG", "warn").output().unwrap();
    let log = String::from_utf8_lossy(&rerun.stderr);
    assert!(rerun.status.success(), "{log}");
    assert!(log.contains("a lock left by a process that died on this host: ignored, and removed"), "{log}");
    let snap: serde_json::Value = serde_json::from_slice(&rerun.stdout).unwrap();
    assert_eq!(snap["records"], records.len(), "{snap}");
    repo.kafka(&["restore", "--topic-prefix", "after-kill-"]);
    assert_eq!(kafka::contents(&k.kcat_read(&format!("after-kill-{topic}"))), kafka::by_partition(&records));
    let verify = repo.kafka(&["verify"]);
    assert_eq!(verify["problems"].as_array().unwrap().len(), 0, "{verify}");
}

fn total_end(k: &Kafka, topic: &str, partitions: i32) -> i64 {
    (0..partitions).map(|p| k.end_offset(topic, p)).sum()
}

#[test]
fn agent_killed_mid_restore_reruns_without_duplicates() {
    let k = kafka::shared();
    let topic = unique("bulk");
    k.create_topic(&topic, 2, &[]);
    let records = bulk(2, 300_000, 300);
    k.produce(&topic, &records);
    let repo = Repo::new(Backend::File, &k.address);
    repo.kafka(&["snapshot", "--topics", &topic]);

    let target = format!("killed-{topic}");
    let args = repo.command(&["restore", "--topic-prefix", "killed-"]);
    let mut child = std::process::Command::new(agent_bin()).args(&args).env("RUST_LOG", "error").spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut killed_at = 0;
    let probe = k.consumer("lifeboat-test-probe");
    let end = |p: i32| {
        use rdkafka::consumer::Consumer;
        probe.fetch_watermarks(&target, p, Duration::from_secs(5)).map(|w| w.1).unwrap_or(0)
    };
    let mut finished_early = None;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            finished_early = Some(status);
            break;
        }
        if end(0) + end(1) > 1000 {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            killed_at = total_end(&k, &target, 2);
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Never left running past the test (a no-op when it was killed or ended).
    let _ = child.kill();
    let _ = child.wait();
    if let Some(status) = finished_early {
        panic!("the restore finished ({status}) before it could be killed; make the topic larger");
    }
    eprintln!("killed after {killed_at} of {} records", records.len());
    assert!(killed_at > 0 && (killed_at as usize) < records.len(), "killed after {killed_at} of {} records", records.len());

    let rerun = repo.kafka(&["restore", "--topic-prefix", "killed-"]);
    assert_eq!(rerun["resumed"], true, "{rerun}");
    let produced = rerun["records_produced"].as_u64().unwrap();
    assert_eq!(total_end(&k, &target, 2), records.len() as i64, "every record exactly once");
    assert!((produced as usize) < records.len(), "the rerun continued; it did not start over");
    let read = k.kcat_read(&target);
    assert_eq!(kafka::contents(&read), kafka::by_partition(&records), "order and content, no duplicates");
    let verify = repo.kafka(&["verify", "--topic-prefix", "killed-"]);
    assert_eq!(verify["problems"].as_array().unwrap().len(), 0, "{verify}");
    // A third run has nothing left to do.
    let again = repo.kafka(&["restore", "--topic-prefix", "killed-"]);
    assert_eq!(again["records_produced"], 0, "{again}");
}

#[test]
fn a_corrupt_chunk_is_detected_and_never_produced() {
    let k = kafka::shared();
    let topic = unique("corrupt");
    k.create_topic(&topic, 1, &[]);
    let records = bulk(1, 3000, 2000);
    k.produce(&topic, &records);
    let repo = Repo::new(Backend::File, &k.address);
    repo.kafka(&["snapshot", "--topics", &topic]);
    // Flip one byte in the middle of the largest chunk.
    let root = std::path::PathBuf::from(repo.url.strip_prefix("file://").unwrap());
    let mut chunks: Vec<_> = lifeboat_restore_tests::files_under(&root.join("chunks"));
    chunks.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let victim = chunks.last().unwrap().clone();
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&victim, bytes).unwrap();
    let name = victim.file_name().unwrap().to_str().unwrap().to_string();

    let err = fails(&repo.run(&["restore", "--topic-prefix", "corrupt-"]));
    assert!(err.contains(&name) || err.contains("corrupt"), "the error names the damage: {err}");
    let verify = lifeboat_restore_tests::agent(&["repo", "verify", "--repo", &repo.url, "--key-file", &repo.key], &[]);
    assert!(!verify.status.success());
    let said = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    assert!(said.contains(&name), "repo verify names the corrupt chunk: {said}");
    // Whatever was produced before the damaged chunk is an exact prefix.
    let read = k.kcat_read(&format!("corrupt-{topic}"));
    let got = kafka::contents(&read).remove(&0).unwrap_or_default();
    assert!(got.len() < records.len(), "the damaged records were not produced");
    assert_eq!(got[..], records[..got.len()], "only verified records, in order");
}

#[test]
fn broker_restarted_mid_snapshot_completes_or_fails_clearly() {
    let scratch = tempfile::tempdir().unwrap();
    let mut broker = PrivateBroker::start(scratch.path());
    let k = broker.client();
    let topic = unique("restart");
    k.create_topic(&topic, 3, &[]);
    let records = bulk(3, 120_000, 700);
    k.produce(&topic, &records);
    let repo = Repo::new(Backend::File, &k.address);
    let args = repo.command(&["snapshot", "--topics", &topic, "--broker-timeout", "60s"]);
    let child = std::process::Command::new(agent_bin())
        .args(&args)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let it read for a moment, then kill -9 the broker and start it again.
    std::thread::sleep(Duration::from_millis(1500));
    let restarted = Instant::now();
    broker.restart();
    eprintln!("broker back after {:?}", restarted.elapsed());
    let out = child.wait_with_output().unwrap();
    let listed = repo.kafka(&["ls"]);
    eprintln!("snapshot {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        let snap: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(snap["records"], records.len(), "a completed snapshot holds every record: {snap}");
        assert_eq!(listed.as_array().unwrap().len(), 1);
        repo.kafka(&["restore", "--topic-prefix", "after-restart-"]);
        assert_eq!(kafka::contents(&k.kcat_read(&format!("after-restart-{topic}"))), kafka::by_partition(&records));
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("rerun"), "a failed snapshot says what to do: {err}");
        assert_eq!(listed.as_array().unwrap().len(), 0, "a failed snapshot commits nothing");
    }
}
