//! Kafka for the tests: the real broker started by `infra/services.sh`,
//! topics with unique names, a producer that sets every record field, and
//! reading back with `kcat` (an independent client) as the reference.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// The broker's bootstrap address (starting it, with S3 and Azure, once).
pub fn brokers() -> String {
    static STARTED: OnceLock<()> = OnceLock::new();
    crate::services();
    STARTED.get_or_init(|| crate::start_services(&["kafka"]));
    std::env::var("LIFEBOAT_TEST_KAFKA_BROKERS").expect("services.sh exports LIFEBOAT_TEST_KAFKA_BROKERS")
}

/// A record as the tests write it and as `kcat` reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord {
    pub partition: i32,
    pub key: Option<String>,
    pub value: Option<String>,
    pub headers: Vec<(String, String)>,
    pub timestamp: i64,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap()
}

/// Create `name` with `partitions` and topic configs.
pub fn create_topic(name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let result = runtime().block_on(admin().create_topics([&t], &AdminOptions::new())).unwrap();
    result.into_iter().for_each(|r| {
        r.unwrap();
    });
    // Wait until the topic is usable.
    let c = consumer("lifeboat-test-probe");
    for _ in 0..100 {
        if c.fetch_watermarks(name, partitions - 1, Duration::from_secs(2)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("topic {name} did not become usable");
}

pub fn consumer(group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap()
}

/// Counts failed deliveries, so a test never trusts a record the broker refused.
#[derive(Default)]
struct Failures(std::sync::Mutex<Vec<String>>);

impl rdkafka::client::ClientContext for Failures {}

impl rdkafka::producer::ProducerContext for Failures {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.0.lock().unwrap().push(e.to_string());
        }
    }
}

/// Produce `records` in order (idempotent, so each partition keeps it);
/// panics if the broker refused any.
pub fn produce(topic: &str, records: &[TestRecord]) {
    let p: BaseProducer<Failures> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .set("message.max.bytes", "8000000")
        .set("linger.ms", "5")
        .create_with_context(Failures::default())
        .unwrap();
    for r in records {
        let mut rec: BaseRecord<'_, str, str> = BaseRecord::to(topic).partition(r.partition).timestamp(r.timestamp);
        if let Some(k) = &r.key {
            rec = rec.key(k.as_str());
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_str());
        }
        if !r.headers.is_empty() {
            let mut h = OwnedHeaders::new();
            for (k, v) in &r.headers {
                h = h.insert(Header { key: k, value: Some(v.as_str()) });
            }
            rec = rec.headers(h);
        }
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    p.poll(Duration::from_millis(50));
                    rec = back;
                }
            }
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(60)).unwrap();
    let failures = p.context().0.lock().unwrap();
    assert!(failures.is_empty(), "the broker refused {} records of {topic}: {:?}", failures.len(), failures.first());
}

/// High watermark of a partition.
pub fn end_offset(topic: &str, partition: i32) -> i64 {
    consumer("lifeboat-test-probe").fetch_watermarks(topic, partition, Duration::from_secs(10)).unwrap().1
}

/// Move the log start forward, as retention would.
pub fn delete_before(topic: &str, partition: i32, offset: i64) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset)).unwrap();
    runtime().block_on(admin().delete_records(&tpl, &AdminOptions::new())).unwrap();
}

/// Commit `offsets` (partition, next offset to read) for `group` on `topic`.
pub fn commit(group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o)).unwrap();
    }
    consumer(group).commit(&tpl, CommitMode::Sync).unwrap();
}

/// A record `kcat -J` printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KcatRecord {
    pub offset: i64,
    pub record: TestRecord,
}

/// Every record of `topic`, per partition, read with `kcat -C -J -e`.
pub fn kcat_read(topic: &str) -> BTreeMap<i32, Vec<KcatRecord>> {
    let out = Command::new("kcat")
        .args(["-C", "-b", &brokers(), "-t", topic, "-e", "-J", "-q", "-X", "fetch.message.max.bytes=16000000"])
        .output()
        .expect("running kcat");
    assert!(out.status.success(), "kcat failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut by_partition: BTreeMap<i32, Vec<KcatRecord>> = BTreeMap::new();
    for line in String::from_utf8(out.stdout).expect("kcat JSON is UTF-8 for text records").lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("kcat printed {line:.200}: {e}"));
        let text = |x: &serde_json::Value| x.as_str().map(String::from);
        let headers = v["headers"]
            .as_array()
            .map(|h| h.chunks(2).map(|kv| (text(&kv[0]).unwrap(), text(&kv[1]).unwrap_or_default())).collect())
            .unwrap_or_default();
        let partition = v["partition"].as_i64().unwrap() as i32;
        by_partition.entry(partition).or_default().push(KcatRecord {
            offset: v["offset"].as_i64().unwrap(),
            record: TestRecord { partition, key: text(&v["key"]), value: text(&v["payload"]), headers, timestamp: v["ts"].as_i64().unwrap() },
        });
    }
    for records in by_partition.values_mut() {
        records.sort_by_key(|r| r.offset);
    }
    by_partition
}

/// `records` grouped by partition, in produce order.
pub fn by_partition(records: &[TestRecord]) -> BTreeMap<i32, Vec<TestRecord>> {
    let mut out: BTreeMap<i32, Vec<TestRecord>> = BTreeMap::new();
    for r in records {
        out.entry(r.partition).or_default().push(r.clone());
    }
    out
}

/// What kcat read, without offsets, per partition.
pub fn contents(read: &BTreeMap<i32, Vec<KcatRecord>>) -> BTreeMap<i32, Vec<TestRecord>> {
    read.iter().map(|(p, rs)| (*p, rs.iter().map(|r| r.record.clone()).collect())).collect()
}
