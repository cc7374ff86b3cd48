//! Kafka snapshots end to end against the real broker: round trip on every
//! repository backend (read back with `kcat`), the incremental chain with a
//! topic created between snapshots and a retention gap, `--until`, consumer
//! group translation, and bad input.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lifeboat_restore_tests::kafka::{self, by_partition, contents, Repo, TestRecord};
use lifeboat_restore_tests::{agent, fails, ok, unique, Backend, BACKENDS};

fn text(n: usize, seed: usize) -> String {
    (0..n).map(|i| (b'a' + ((i * 7 + seed) % 26) as u8) as char).collect()
}

/// Records exercising every field: keys and null keys, null values
/// (tombstones), empty values, headers, explicit timestamps, a 1.5 MiB value.
fn varied_records(partitions: i32, count: usize, t0: i64) -> Vec<TestRecord> {
    (0..count)
        .map(|i| TestRecord {
            partition: (i as i32 * 7) % partitions,
            key: if i % 5 == 0 { None } else { Some(format!("key-{}", i % 13)) },
            value: match i % 11 {
                3 => None,
                4 => Some(String::new()),
                7 if i < 30 => Some(text(1_500_000, i)),
                _ => Some(format!("payment {i} {}", text(i % 300, i))),
            },
            headers: if i % 3 == 0 { vec![("trace".into(), format!("t{i}")), ("empty".into(), String::new())] } else { vec![] },
            timestamp: t0 + i as i64 * 10,
        })
        .collect()
}

/// An hour ago, to the second: recent enough that broker retention never
/// deletes the test records.
fn t0() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp() - 3600) * 1000
}

#[test]
fn round_trip_on_every_backend_read_back_with_kcat() {
    let t0 = t0();
    let source = unique("payments");
    kafka::shared().create_topic(
        &source,
        3,
        &[("max.message.bytes", "4000000"), ("retention.ms", "8640000000"), ("cleanup.policy", "delete")],
    );
    let records = varied_records(3, 120, t0);
    kafka::shared().produce(&source, &records);
    let expected = by_partition(&records);
    assert_eq!(contents(&kafka::shared().kcat_read(&source)), expected, "the source topic as kcat reads it");

    for backend in BACKENDS {
        let repo = Repo::new(backend, &kafka::brokers());
        let snap = repo.kafka(&["snapshot", "--topics", &source]);
        assert_eq!(snap["records"], 120, "{backend:?}: {snap}");
        assert_eq!(snap["kind"], "kafka-full");
        let configs = &snap["details"]["topics"][0]["configs"];
        assert_eq!(configs["max.message.bytes"]["value"], "4000000", "{configs}");
        assert_eq!(configs["max.message.bytes"]["topic_override"], true);

        let prefix = format!("r-{backend:?}-").to_lowercase();
        let restored = repo.kafka(&["restore", "--latest", "--topic-prefix", &prefix]);
        assert_eq!(restored["records_produced"], 120, "{restored}");
        let target = format!("{prefix}{source}");
        let read = kafka::shared().kcat_read(&target);
        assert_eq!(contents(&read), expected, "{backend:?}: the restored topic differs record by record");
        let verify = repo.kafka(&["verify", "--topic-prefix", &prefix]);
        assert_eq!(verify["problems"].as_array().unwrap().len(), 0, "{verify}");
    }
}

#[test]
fn incremental_chain_with_a_new_topic_and_a_retention_gap() {
    let t0 = t0();
    let repo = Repo::new(Backend::File, &kafka::brokers());
    let stem = unique("ledger");
    let (a, b, c) = (format!("{stem}-a"), format!("{stem}-b"), format!("{stem}-c"));
    let re = format!("{stem}-.*");
    kafka::shared().create_topic(&a, 2, &[("max.message.bytes", "4000000")]);
    kafka::shared().create_topic(&c, 1, &[]);
    let first_a = varied_records(2, 40, t0);
    let first_c: Vec<TestRecord> =
        (0..30).map(|i| TestRecord { partition: 0, key: None, value: Some(format!("c{i}")), headers: vec![], timestamp: t0 + i }).collect();
    kafka::shared().produce(&a, &first_a);
    kafka::shared().produce(&c, &first_c);
    let s1 = repo.kafka(&["snapshot", "--topics", &re]);
    assert_eq!(s1["records"], 70, "{s1}");

    // Between snapshots: more records, a new topic, and retention on c
    // deleting records the first snapshot never saw.
    let second_a: Vec<TestRecord> =
        varied_records(2, 20, t0 + 100_000).into_iter().filter(|r| r.value.as_ref().is_none_or(|v| v.len() < 1000)).collect();
    kafka::shared().produce(&a, &second_a);
    kafka::shared().create_topic(&b, 2, &[("max.message.bytes", "4000000")]);
    let records_b = varied_records(2, 10, t0 + 200_000);
    kafka::shared().produce(&b, &records_b);
    let more_c: Vec<TestRecord> = (30..50)
        .map(|i| TestRecord { partition: 0, key: None, value: Some(format!("c{i}")), headers: vec![], timestamp: t0 + i })
        .collect();
    kafka::shared().produce(&c, &more_c);
    kafka::shared().delete_before(&c, 0, 40); // offsets 30..40 are gone before snapshot 2

    let s2 = repo.kafka(&["snapshot", "--topics", &re]);
    assert_eq!(s2["kind"], "kafka-incr", "{s2}");
    assert_eq!(s2["parent"], s1["snapshot_id"]);
    let a_ranges = &s2["details"]["topics"].as_array().unwrap().iter().find(|t| t["name"] == a.as_str()).unwrap()["partitions"];
    let s1_a = &s1["details"]["topics"].as_array().unwrap().iter().find(|t| t["name"] == a.as_str()).unwrap()["partitions"];
    for p in 0..2 {
        assert_eq!(a_ranges[p]["start"], s1_a[p]["end"], "the increment continues exactly where the first ended");
    }
    let gaps = s2["details"]["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1, "{s2}");
    assert_eq!((gaps[0]["topic"].as_str().unwrap(), gaps[0]["from"].as_i64(), gaps[0]["to"].as_i64()), (c.as_str(), Some(30), Some(40)));
    assert_eq!(s2["records"].as_u64().unwrap(), (second_a.len() + records_b.len() + 10) as u64, "{s2}");
    let human = ok(&agent(
        &[
            "kafka",
            "snapshot",
            "--repo",
            &repo.url,
            "--cell",
            "k1",
            "--key-file",
            &repo.key,
            "--brokers",
            &kafka::brokers(),
            "--topics",
            &re,
        ],
        &[],
    ));
    assert!(!human.contains("GAP"), "no new gap in a third snapshot: {human}");

    let listed = repo.kafka(&["ls"]);
    assert_eq!(listed.as_array().unwrap().len(), 3);

    // The newest snapshot restores what the topics held when it was taken:
    // a and b complete, c from its log start (40) on.
    let check_latest = |prefix: &str| {
        repo.kafka(&["restore", "--topic-prefix", prefix]);
        let mut want_a = first_a.clone();
        want_a.extend(second_a.iter().cloned());
        assert_eq!(contents(&kafka::shared().kcat_read(&format!("{prefix}{a}"))), by_partition(&want_a), "{prefix}: a");
        assert_eq!(
            contents(&kafka::shared().kcat_read(&format!("{prefix}{b}"))),
            by_partition(&records_b),
            "{prefix}: b, created between snapshots"
        );
        assert_eq!(
            contents(&kafka::shared().kcat_read(&format!("{prefix}{c}"))),
            by_partition(&more_c[10..]),
            "{prefix}: c after the retention gap"
        );
    };
    check_latest("chain-");
    // The first snapshot still restores c as it was then.
    let s1_id = s1["snapshot_id"].as_str().unwrap();
    repo.kafka(&["restore", "--snapshot", s1_id, "--topic-prefix", "first-"]);
    assert_eq!(contents(&kafka::shared().kcat_read(&format!("first-{c}"))), by_partition(&first_c));

    // Retention keeps only the newest snapshot; it still restores in full,
    // though its older records were stored by the snapshots just deleted.
    let plan = repo.kafka(&["retention", "--keep-last", "1", "--keep-within", "0s", "--dry-run"]);
    assert_eq!(plan["delete"].as_array().unwrap().len(), 2, "{plan}");
    assert_eq!(repo.kafka(&["ls"]).as_array().unwrap().len(), 3, "a dry run deletes nothing");
    let done = repo.kafka(&["retention", "--keep-last", "1", "--keep-within", "0s"]);
    assert_eq!(done["delete"], plan["delete"]);
    assert_eq!(repo.kafka(&["ls"]).as_array().unwrap().len(), 1);
    let verify = serde_json::from_str::<serde_json::Value>(&ok(&agent(
        &["repo", "verify", "--repo", &repo.url, "--key-file", &repo.key, "--output", "json"],
        &[],
    )))
    .unwrap();
    assert_eq!(verify["problems"].as_array().unwrap().len(), 0, "{verify}");
    check_latest("after-retention-");
}

#[test]
fn until_restores_exactly_the_records_stamped_up_to_the_target() {
    let t0 = t0();
    let repo = Repo::new(Backend::File, &kafka::brokers());
    let topic = unique("events");
    kafka::shared().create_topic(&topic, 4, &[]);
    // Interleaved timestamps across partitions, one record per 100 ms.
    let records: Vec<TestRecord> = (0..400)
        .map(|i| TestRecord {
            partition: i % 4,
            key: Some(format!("k{i}")),
            value: Some(format!("v{i}")),
            headers: vec![],
            timestamp: t0 + i as i64 * 100,
        })
        .collect();
    kafka::shared().produce(&topic, &records);
    repo.kafka(&["snapshot", "--topics", &topic]);
    for (n, cut) in [(1, t0 + 12_345), (2, t0 + 100), (3, t0 + 39_900)] {
        let until = time::OffsetDateTime::from_unix_timestamp_nanos(cut as i128 * 1_000_000).unwrap();
        let until = until.format(&time::format_description::well_known::Rfc3339).unwrap();
        let prefix = format!("until{n}-");
        repo.kafka(&["restore", "--until", &until, "--topic-prefix", &prefix]);
        let want: Vec<TestRecord> = records.iter().filter(|r| r.timestamp <= cut).cloned().collect();
        let got = contents(&kafka::shared().kcat_read(&format!("{prefix}{topic}")));
        let want = by_partition(&want);
        assert_eq!(got.values().map(Vec::len).sum::<usize>(), want.values().map(Vec::len).sum::<usize>(), "cut {until}");
        assert_eq!(got, want, "cut {until}: exactly the records stamped at or before it");
        let verify = repo.kafka(&["verify", "--until", &until, "--topic-prefix", &prefix]);
        assert_eq!(verify["problems"].as_array().unwrap().len(), 0, "{verify}");
    }
}

#[test]
fn consumer_groups_resume_at_the_next_unconsumed_record() {
    let t0 = t0();
    use rdkafka::consumer::Consumer;
    use rdkafka::message::Message;
    let repo = Repo::new(Backend::File, &kafka::brokers());
    let topic = unique("orders");
    kafka::shared().create_topic(&topic, 2, &[]);
    let records: Vec<TestRecord> = (0..200)
        .map(|i| TestRecord { partition: i % 2, key: None, value: Some(format!("order-{i}")), headers: vec![], timestamp: t0 + i as i64 })
        .collect();
    kafka::shared().produce(&topic, &records);
    // Retention moved partition 0's start, so restored offsets differ from the source's.
    kafka::shared().delete_before(&topic, 0, 5);
    let group = unique("billing");
    kafka::shared().commit(&group, &topic, &[(0, 30), (1, 12)]);
    let snap = repo.kafka(&["snapshot", "--topics", &topic]);
    let saved = snap["details"]["groups"].as_array().unwrap().iter().find(|g| g["group"] == group.as_str()).cloned().expect("group saved");
    assert_eq!(saved["offsets"].as_array().unwrap().len(), 2, "{saved}");

    let restored = repo.kafka(&["restore", "--topic-prefix", "cg-"]);
    let g = restored["groups"].as_array().unwrap().iter().find(|g| g["source_group"] == group.as_str()).unwrap().clone();
    assert_eq!(g["target_group"], format!("cg-{group}"));
    // A consumer of the restored group resumes at the next unconsumed record.
    let source_by_offset = kafka::shared().kcat_read(&topic);
    let c = kafka::shared().consumer(&format!("cg-{group}"));
    let target = format!("cg-{topic}");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&target, 0, rdkafka::Offset::Stored).unwrap();
    tpl.add_partition_offset(&target, 1, rdkafka::Offset::Stored).unwrap();
    c.assign(&tpl).unwrap();
    let mut first: BTreeMap<i32, String> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while first.len() < 2 && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
            first.entry(m.partition()).or_insert_with(|| String::from_utf8_lossy(m.payload().unwrap()).into_owned());
        }
    }
    let at = |p: i32, o: i64| source_by_offset[&p].iter().find(|r| r.offset == o).unwrap().record.value.clone().unwrap();
    assert_eq!(first.get(&0), Some(&at(0, 30)), "partition 0 resumes at source offset 30 ({g})");
    assert_eq!(first.get(&1), Some(&at(1, 12)), "partition 1 resumes at source offset 12");
    let p0 = g["offsets"].as_array().unwrap().iter().find(|o| o["partition"] == 0).unwrap();
    assert_eq!(p0["target_offset"], 25, "source 30 minus the 5 deleted before the snapshot");
}

#[test]
fn bad_input_is_refused_clearly() {
    let t0 = t0();
    let repo = Repo::new(Backend::File, &kafka::brokers());
    // Unreachable brokers: a clear error within the stated timeout.
    let started = Instant::now();
    let out = agent(
        &[
            "kafka",
            "snapshot",
            "--repo",
            &repo.url,
            "--cell",
            "k1",
            "--key-file",
            &repo.key,
            "--brokers",
            "127.0.0.1:1",
            "--broker-timeout",
            "3s",
            "--topics",
            ".*",
        ],
        &[],
    );
    let err = fails(&out);
    assert!(err.contains("cannot reach the Kafka brokers 127.0.0.1:1 within 3s"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}: a hang, not a timeout", started.elapsed());

    let nothing = format!("{}-.*", unique("no-such-topic"));
    let err = fails(&repo.run(&["snapshot", "--topics", &nothing]));
    assert!(err.contains("no topic on") && err.contains("matches --topics"), "{err}");
    let err = fails(&repo.run(&["snapshot", "--topics", "(unclosed"]));
    assert!(err.contains("not a valid regular expression"), "{err}");

    let topic = unique("conflict");
    kafka::shared().create_topic(&topic, 3, &[]);
    kafka::shared()
        .produce(&topic, &[TestRecord { partition: 0, key: None, value: Some("x".into()), headers: vec![], timestamp: t0 + 5_000 }]);
    repo.kafka(&["snapshot", "--topics", &topic]);
    let other = unique("two-partitions");
    kafka::shared().create_topic(&other, 2, &[]);
    let err = fails(&repo.run(&["restore", "--topic-map", &format!("{topic}={other}")]));
    assert!(err.contains("exists with 2 partitions") && err.contains("has 3"), "{err}");
    assert_eq!(kafka::shared().end_offset(&other, 0), 0, "nothing was written");

    let err = fails(&repo.run(&["restore", "--until", "2026-01-01T00:00:00Z", "--topic-prefix", "early-"]));
    assert!(err.contains("before the first record"), "{err}");
    // A failover's cut before Kafka's first record: the topics exist, with no record.
    let empty = format!("{}.", unique("empty"));
    let done = repo.kafka(&["restore", "--until", "2026-01-01T00:00:00Z", "--topic-prefix", &empty, "--empty-ok"]);
    assert_eq!(done["records_produced"], 0, "{done}");
    assert_eq!(kafka::shared().end_offset(&format!("{empty}{topic}"), 0), 0, "the topic exists, empty");
    let err = fails(&repo.run(&["restore", "--until", "yesterday", "--topic-prefix", "early-"]));
    assert!(err.contains("RFC 3339"), "{err}");
    let err = fails(&repo.run(&["restore", "--snapshot", "20990101T000000.000Z-kafka-full-000000"]));
    assert!(err.contains("not found"), "{err}");
}

/// Transactional topics: aborted records and control batches are not
/// stored or restored; the group offsets translate across their gaps.
#[test]
fn transactional_topics_keep_exactly_the_committed_records() {
    let t0 = t0();
    let repo = Repo::new(Backend::File, &kafka::brokers());
    let k = kafka::shared();
    let topic = unique("ledger-tx");
    k.create_topic(&topic, 2, &[]);
    let batch = |from: usize, n: usize| -> Vec<TestRecord> {
        (from..from + n)
            .map(|i| TestRecord {
                partition: (i % 2) as i32,
                key: Some(format!("k{i}")),
                value: Some(format!("entry-{i}")),
                headers: vec![],
                timestamp: t0 + i as i64,
            })
            .collect()
    };
    let (a, aborted, b) = (batch(0, 10), batch(10, 6), batch(16, 10));
    k.produce_transactions(&topic, &[(a.clone(), true), (aborted, false), (b.clone(), true)]);
    let mut committed = a.clone();
    committed.extend(b.iter().cloned());
    // kcat (read_uncommitted by default) would show the aborted records; ask for committed ones.
    let source = k.kcat_read(&topic);
    let group = unique("tx-reader");
    // The group consumed up to entry-17 (partition 1: entries 1,3,..,17): its
    // committed offset is the source offset right after entry-17.
    let after = source[&1].iter().find(|r| r.record.value.as_deref() == Some("entry-17")).unwrap().offset + 1;
    k.commit(&group, &topic, &[(1, after)]);

    let snap = repo.kafka(&["snapshot", "--topics", &topic]);
    assert_eq!(snap["records"], committed.len(), "only committed records are stored: {snap}");
    let restored = repo.kafka(&["restore", "--topic-prefix", "tx-"]);
    assert_eq!(restored["records_produced"], committed.len());
    let target = format!("tx-{topic}");
    assert_eq!(kafka::contents(&k.kcat_read(&target)), by_partition(&committed), "restored: the committed records, in order");
    let g = restored["groups"].as_array().unwrap().iter().find(|g| g["source_group"] == group.as_str()).unwrap().clone();
    let p1 = g["offsets"].as_array().unwrap().iter().find(|o| o["partition"] == 1).unwrap().clone();
    let next = k.kcat_read(&target)[&1].iter().find(|r| r.offset == p1["target_offset"].as_i64().unwrap()).map(|r| r.record.value.clone());
    assert_eq!(next, Some(Some("entry-19".to_string())), "the group resumes at the next committed record: {g}");
}
