//! Connections to the brokers: one place for client settings, timeouts
//! and the errors an operator sees when the brokers cannot be reached.

use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::metadata::Metadata;
use rdkafka::{Offset, TopicPartitionList};

use crate::record::Record;

use crate::security::Security;
use crate::{broker, KafkaError, Result};

/// Run rdkafka's blocking calls (metadata, watermarks, reading a range)
/// from async code: on a blocking thread, never on the runtime's.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.expect("a blocking Kafka call does not panic")
}

/// Brokers, how to reach them securely, and how long to wait for them.
#[derive(Debug, Clone)]
pub struct Brokers {
    pub list: String,
    /// TLS and SASL, from the environment ([`Security::from_env`]).
    pub security: Security,
    /// Bound on connecting, metadata and admin calls, and on a stall while
    /// reading or writing records.
    pub timeout: Duration,
}

impl Brokers {
    pub fn new(list: &str, timeout: Duration) -> Result<Brokers> {
        if list.trim().is_empty() || list.split(',').any(|b| !b.contains(':')) {
            return Err(KafkaError::Invalid(format!("--brokers {list:?}: give host:port[,host:port...]")));
        }
        Ok(Brokers { list: list.to_string(), security: Security::from_env()?, timeout })
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.list)
            .set("socket.timeout.ms", (self.timeout.as_millis().max(10_000)).to_string())
            .set("log_level", "3");
        self.security.apply(&mut c);
        c
    }

    /// A client for metadata, watermark and group-list queries only. It
    /// joins no consumer group, so dropping it takes no time; a reader's
    /// drop closes its group and waits in 100 ms polls (rdkafka), which
    /// cost a restore 0.1 s per client on its critical path. Its watermarks
    /// are those a `read_committed` reader sees, as a reader's are.
    pub fn querier(&self) -> Result<BaseConsumer> {
        self.base().set("isolation.level", "read_committed").create().map_err(broker("creating a Kafka client"))
    }

    /// Drop a consumer without waiting for it. Its drop closes its group and
    /// polls the close in 100 ms steps (rdkafka); a snapshot's readers and
    /// group-offset readers never join their group nor commit, so nothing
    /// depends on that close finishing, and the snapshot need not wait 0.1 s
    /// for each.
    /// It is unassigned first: a fetch still under way would otherwise
    /// reach the partition's end while closing and log it as an error.
    pub fn close_in_background(reader: BaseConsumer) {
        let _ = reader.unassign();
        std::thread::spawn(move || drop(reader));
    }

    /// A consumer that reads assigned partitions and never commits.
    pub fn reader(&self) -> Result<BaseConsumer> {
        self.reader_with_prefetch(64 << 10)
    }

    /// A reader prefetching up to `kib` KiB of records: memory is bounded by
    /// that, whatever the topics' size.
    pub fn reader_with_prefetch(&self, kib: usize) -> Result<BaseConsumer> {
        self.base()
            .set("group.id", "lifeboat-reader")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            // A partition read to its end leaves a fetch waiting at the broker;
            // the next partition's records must not wait behind it.
            .set("fetch.wait.max.ms", "10")
            // A fetch response stays in memory until its last record is
            // read: a quarter of the prefetch each (a larger record still
            // comes whole, the broker sends at least one batch).
            .set("fetch.max.bytes", "52428800")
            .set("max.partition.fetch.bytes", (kib * 256).clamp(1 << 20, 16 << 20).to_string())
            .set("queued.max.messages.kbytes", kib.to_string())
            // librdkafka >= 2.1 waits this long (default 1 s) before fetching
            // again once the queue was full; a reader that drains its queue
            // in a fraction of that would sit idle most of the time.
            .set("fetch.queue.backoff.ms", "5")
            .create()
            .map_err(broker("creating a Kafka consumer"))
    }

    /// A consumer acting for consumer group `group` (reading or committing its offsets).
    pub fn group(&self, group: &str) -> Result<BaseConsumer> {
        self.base()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(broker(format!("creating a consumer for group {group}")))
    }

    pub fn admin(&self) -> Result<AdminClient<DefaultClientContext>> {
        self.base().create().map_err(broker("creating a Kafka admin client"))
    }

    /// The producer settings restores use: idempotent, ordered, acks=all.
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("linger.ms", "20")
            .set("batch.size", "1000000")
            .set("message.max.bytes", "16000000")
            .set("compression.type", "lz4")
            // Records waiting to be sent: bounds memory whatever the topic's
            // size (32 MiB is a tenth of a second at 300 MB/s).
            .set("queue.buffering.max.kbytes", "32768")
            .set("delivery.timeout.ms", (self.timeout.as_millis().max(30_000)).to_string());
        c
    }

    /// `call`, retried while the group coordinator is still loading or
    /// moving (normal for seconds after a broker starts), up to the timeout.
    pub fn with_coordinator<T>(
        &self,
        mut call: impl FnMut() -> std::result::Result<T, rdkafka::error::KafkaError>,
    ) -> std::result::Result<T, rdkafka::error::KafkaError> {
        use rdkafka::types::RDKafkaErrorCode as Code;
        let deadline = std::time::Instant::now() + self.timeout;
        loop {
            match call() {
                Err(e)
                    if matches!(
                        e.rdkafka_error_code(),
                        Some(Code::CoordinatorLoadInProgress | Code::CoordinatorNotAvailable | Code::NotCoordinator)
                    ) && std::time::Instant::now() < deadline =>
                {
                    tracing::debug!(error = %e, "the group coordinator is not ready; retrying");
                    std::thread::sleep(Duration::from_millis(250));
                }
                other => return other,
            }
        }
    }

    /// Cluster metadata, or an error naming the brokers and the timeout.
    pub fn metadata(&self, consumer: &BaseConsumer) -> Result<Metadata> {
        consumer.fetch_metadata(None, self.timeout).map_err(|e| {
            // Deliver the client's queued errors (a failed SASL authentication,
            // an untrusted certificate): its context logs them, saying why.
            let _ = consumer.poll(Duration::from_millis(200));
            KafkaError::Failed(format!(
                "cannot reach the Kafka brokers {} within {}s over {} ({e}); check --brokers, the security settings and that the brokers are up",
                self.list,
                self.timeout.as_secs(),
                self.security.protocol()
            ))
        })
    }

    /// (log start, high watermark) of a partition; for a read_committed
    /// reader the high end is the last stable offset.
    pub fn watermarks(&self, consumer: &BaseConsumer, topic: &str, partition: i32) -> Result<(i64, i64)> {
        consumer.fetch_watermarks(topic, partition, self.timeout).map_err(broker(format!("reading the offsets of {topic}/{partition}")))
    }

    /// Read `topic/partition` from `start` up to `end` (exclusive) with
    /// `consumer`, handing each record to `each`. Offsets missing at the end
    /// (aborted transactions, control batches) are recognised by the
    /// consumer's position at end of partition. No progress for the
    /// timeout is an error naming the offset reached; `hint` says what to do.
    pub fn read_range(
        &self,
        consumer: &BaseConsumer,
        (topic, partition): (&str, i32),
        (start, end): (i64, i64),
        hint: &str,
        mut each: impl FnMut(Record<'_>) -> Result<()>,
    ) -> Result<()> {
        if start >= end {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(start)).map_err(broker("choosing offsets"))?;
        consumer.assign(&tpl).map_err(broker(format!("reading {topic}/{partition}")))?;
        // Since when no record came (None while they come: no clock read per record).
        let mut stalled_since: Option<std::time::Instant> = None;
        let mut next = start;
        loop {
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(msg)) => {
                    stalled_since = None;
                    if msg.offset() >= end {
                        return Ok(());
                    }
                    next = msg.offset() + 1;
                    each(Record::of(&msg))?;
                    if next >= end {
                        return Ok(());
                    }
                    continue;
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {
                    let position = consumer.position().ok().and_then(|t| t.find_partition(topic, partition).map(|e| e.offset()));
                    if matches!(position, Some(Offset::Offset(o)) if o >= end) {
                        return Ok(());
                    }
                }
                Some(Err(e)) => tracing::warn!(topic, partition, error = %e, "reading records; retrying"),
                None => {}
            }
            if stalled_since.get_or_insert_with(std::time::Instant::now).elapsed() > self.timeout {
                return Err(KafkaError::Failed(format!(
                    "no records from {topic}/{partition} for {}s at offset {next} (end {end}); the brokers {} may be down; {hint}",
                    self.timeout.as_secs(),
                    self.list
                )));
            }
        }
    }
}
