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

/// A broker to talk to: the shared one or a test's own.
pub struct Kafka {
    pub address: String,
    /// Client settings beyond the address (TLS, SASL), as `kcat -X` takes them.
    pub settings: Vec<(String, String)>,
}

/// The shared broker (started once).
pub fn shared() -> Kafka {
    Kafka { address: brokers(), settings: Vec::new() }
}

impl Kafka {
    /// A client's settings: the address and `settings`.
    pub fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.address);
        for (k, v) in &self.settings {
            c.set(k, v);
        }
        c
    }

    fn admin(&self) -> AdminClient<DefaultClientContext> {
        self.config().create().unwrap()
    }

    /// Create `name` with `partitions` and topic configs.
    pub fn create_topic(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (k, v) in configs {
            t = t.set(k, v);
        }
        let result = runtime().block_on(self.admin().create_topics([&t], &AdminOptions::new())).unwrap();
        result.into_iter().for_each(|r| {
            r.unwrap();
        });
        // Wait until the topic is usable.
        let c = self.consumer("lifeboat-test-probe");
        for _ in 0..100 {
            if c.fetch_watermarks(name, partitions - 1, Duration::from_secs(2)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("topic {name} did not become usable");
    }

    pub fn consumer(&self, group: &str) -> BaseConsumer {
        self.config().set("group.id", group).set("enable.auto.commit", "false").set("enable.partition.eof", "true").create().unwrap()
    }

    /// Produce `records` in order (idempotent, so each partition keeps it);
    /// panics if the broker refused any.
    pub fn produce(&self, topic: &str, records: &[TestRecord]) {
        let p: BaseProducer<Failures> = self
            .config()
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

    /// Produce `batches` in transactions of one transactional producer,
    /// committing or aborting each as its flag says.
    pub fn produce_transactions(&self, topic: &str, batches: &[(Vec<TestRecord>, bool)]) {
        let p: BaseProducer<Failures> = self
            .config()
            .set("transactional.id", format!("lifeboat-test-{}", rand::random::<u32>()))
            .create_with_context(Failures::default())
            .unwrap();
        p.init_transactions(Duration::from_secs(30)).unwrap();
        for (records, commit) in batches {
            p.begin_transaction().unwrap();
            for r in records {
                let mut rec: BaseRecord<'_, str, str> = BaseRecord::to(topic).partition(r.partition).timestamp(r.timestamp);
                if let Some(v) = &r.value {
                    rec = rec.payload(v.as_str());
                }
                if let Some(k) = &r.key {
                    rec = rec.key(k.as_str());
                }
                p.send(rec).map_err(|(e, _)| e).unwrap();
            }
            p.flush(Duration::from_secs(30)).unwrap();
            if *commit {
                p.commit_transaction(Duration::from_secs(30)).unwrap();
            } else {
                p.abort_transaction(Duration::from_secs(30)).unwrap();
            }
        }
        assert!(p.context().0.lock().unwrap().is_empty(), "the broker refused records");
    }

    /// High watermark of a partition.
    pub fn end_offset(&self, topic: &str, partition: i32) -> i64 {
        self.consumer("lifeboat-test-probe").fetch_watermarks(topic, partition, Duration::from_secs(10)).unwrap().1
    }

    /// Move the log start forward, as retention would.
    pub fn delete_before(&self, topic: &str, partition: i32, offset: i64) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset)).unwrap();
        runtime().block_on(self.admin().delete_records(&tpl, &AdminOptions::new())).unwrap();
    }

    /// Commit `offsets` (partition, next offset to read) for `group` on `topic`.
    pub fn commit(&self, group: &str, topic: &str, offsets: &[(i32, i64)]) {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*o)).unwrap();
        }
        self.consumer(group).commit(&tpl, CommitMode::Sync).unwrap();
    }

    /// Every record of `topic`, per partition, read with `kcat -C -J -e`.
    pub fn kcat_read(&self, topic: &str) -> BTreeMap<i32, Vec<KcatRecord>> {
        let mut kcat = Command::new("kcat");
        kcat.args(["-C", "-b", &self.address, "-t", topic, "-e", "-J", "-q", "-X", "fetch.message.max.bytes=16000000"]);
        for (k, v) in &self.settings {
            kcat.arg("-X").arg(format!("{k}={v}"));
        }
        let out = kcat.output().expect("running kcat");
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
                record: TestRecord {
                    partition,
                    key: text(&v["key"]),
                    value: text(&v["payload"]),
                    headers,
                    timestamp: v["ts"].as_i64().unwrap(),
                },
            });
        }
        for records in by_partition.values_mut() {
            records.sort_by_key(|r| r.offset);
        }
        by_partition
    }
}

/// A record `kcat -J` printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KcatRecord {
    pub offset: i64,
    pub record: TestRecord,
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

/// A broker of the test's own (the cached Kafka jars, a KRaft config like
/// `infra/services.sh` writes), for faults that must not disturb the shared
/// one: killed and restarted on the same port and log directory.
pub struct PrivateBroker {
    dir: std::path::PathBuf,
    pub port: u16,
    child: Option<std::process::Child>,
    /// What a client needs beyond the address (TLS, SASL).
    settings: Vec<(String, String)>,
}

/// A SASL_SSL broker's CA and users: `(mechanism, user, password)`.
pub struct Secure {
    pub ca: std::path::PathBuf,
    pub users: Vec<(&'static str, &'static str, &'static str)>,
}

/// The client listener of a private broker.
enum Listener {
    Plaintext,
    /// TLS (a certificate of a private CA) and SASL PLAIN or SCRAM-SHA-512.
    SaslSsl,
}

const SCRAM_USER: (&str, &str, &str) = ("SCRAM-SHA-512", "lifeboat-scram", "scram-secret-2718");
const PLAIN_USER: (&str, &str, &str) = ("PLAIN", "lifeboat-plain", "plain-secret-3141");

impl PrivateBroker {
    pub fn start(dir: &std::path::Path) -> PrivateBroker {
        Self::start_with(dir, Listener::Plaintext)
    }

    /// A broker whose only client listener is SASL_SSL: its certificate
    /// signed by a private CA, users for SASL PLAIN and SCRAM-SHA-512 (the
    /// test's own client is an admin over PLAIN).
    pub fn start_secure(dir: &std::path::Path) -> (PrivateBroker, Secure) {
        let b = Self::start_with(dir, Listener::SaslSsl);
        (b, Secure { ca: dir.join("ca.pem"), users: vec![PLAIN_USER, SCRAM_USER] })
    }

    fn start_with(dir: &std::path::Path, listener: Listener) -> PrivateBroker {
        brokers(); // the shared services export LIFEBOAT_KAFKA_LIBS
        let (port, cport) = (crate::pg::free_port(), crate::pg::free_port());
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let (client, security, settings) = match listener {
            Listener::Plaintext => ("PLAINTEXT", String::new(), Vec::new()),
            Listener::SaslSsl => Self::secure_files(dir),
        };
        let props = format!(
            "process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=1@127.0.0.1:{cport}\n\
             listeners={client}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}\nadvertised.listeners={client}://127.0.0.1:{port}\n\
             controller.listener.names=CONTROLLER\ninter.broker.listener.name={client}\n\
             listener.security.protocol.map=CONTROLLER:PLAINTEXT,{client}:{client}\nlog.dirs={}\nauto.create.topics.enable=false\n\
             offsets.topic.replication.factor=1\noffsets.topic.num.partitions=1\ntransaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\ngroup.initial.rebalance.delay.ms=0\n{security}",
            dir.join("data").display()
        );
        std::fs::write(dir.join("server.properties"), props).unwrap();
        let cluster_id = "TGlmZWJvYXRUZXN0Q2x1cw";
        let mut format = Command::new("java");
        format
            .arg("-cp")
            .arg(Self::classpath())
            .args(["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c"])
            .arg(dir.join("server.properties"));
        if matches!(listener, Listener::SaslSsl) {
            let (mechanism, user, password) = SCRAM_USER;
            format.args(["--add-scram", &format!("{mechanism}=[name={user},password={password}]")]);
        }
        let out = format.output().unwrap();
        assert!(out.status.success(), "formatting the private broker: {}", String::from_utf8_lossy(&out.stderr));
        let mut b = PrivateBroker { dir: dir.to_path_buf(), port, child: None, settings };
        b.launch();
        b
    }

    /// The CA, the broker's certificate and key (one PEM keystore), the
    /// SASL settings, and the admin client's settings.
    fn secure_files(dir: &std::path::Path) -> (&'static str, String, Vec<(String, String)>) {
        let ca = crate::served::self_signed_named(dir, "ca", "/CN=lifeboat-test-kafka-ca");
        let (cert, key) = crate::served::server_cert(dir, "broker", &ca);
        let keystore = dir.join("broker-keystore.pem");
        let pem = std::fs::read_to_string(&key).unwrap() + &std::fs::read_to_string(&cert).unwrap();
        std::fs::write(&keystore, pem).unwrap();
        let (_, plain_user, plain_password) = PLAIN_USER;
        let security = format!(
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512\nsasl.mechanism.inter.broker.protocol=PLAIN\n\
             listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \
             username=\"admin\" password=\"admin-secret\" user_admin=\"admin-secret\" user_{plain_user}=\"{plain_password}\";\n\
             listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
             ssl.keystore.type=PEM\nssl.keystore.location={}\nssl.truststore.type=PEM\nssl.truststore.location={}\n",
            keystore.display(),
            ca.0.display()
        );
        let settings = [
            ("security.protocol", "SASL_SSL".to_string()),
            ("sasl.mechanisms", "PLAIN".into()),
            ("sasl.username", "admin".into()),
            ("sasl.password", "admin-secret".into()),
            ("ssl.ca.location", ca.0.display().to_string()),
        ];
        ("SASL_SSL", security, settings.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    fn classpath() -> String {
        format!("{}/*", std::env::var("LIFEBOAT_KAFKA_LIBS").expect("services.sh exports LIFEBOAT_KAFKA_LIBS"))
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> Kafka {
        Kafka { address: self.address(), settings: self.settings.clone() }
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("broker.log")).unwrap();
        let child = Command::new("java")
            .args(["-Xmx512m", "-Xms256m", "-cp", &Self::classpath(), "kafka.Kafka"])
            .arg(self.dir.join("server.properties"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let c: BaseConsumer = self.client().config().create().unwrap();
        for _ in 0..120 {
            if c.fetch_metadata(None, Duration::from_secs(1)).is_ok_and(|m| !m.brokers().is_empty()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("the private broker did not start; see {}", self.dir.join("broker.log").display());
    }

    /// kill -9 the broker.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port and log directory.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A repository (fresh, keyed) to snapshot into, and the agent's `kafka`
/// commands against it for cell `k1` and one broker.
pub struct Repo {
    pub url: String,
    pub key: String,
    pub brokers: String,
    _scratch: tempfile::TempDir,
}

impl Repo {
    pub fn new(backend: crate::Backend, brokers: &str) -> Repo {
        let scratch = tempfile::tempdir().unwrap();
        let key = scratch.path().join("key");
        crate::write_key(&key);
        let url = crate::fresh_url(backend, "kafka", scratch.path());
        let key = key.to_str().unwrap().to_string();
        crate::ok(&crate::agent(&["repo", "init", "--repo", &url, "--key-file", &key], &[]));
        Repo { url, key, brokers: brokers.to_string(), _scratch: scratch }
    }

    /// `kafka <args>` as JSON; panics if it fails.
    pub fn kafka(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&crate::ok(&self.run(args))).unwrap()
    }

    /// The agent command line for `kafka <args>` (brokers added where taken).
    pub fn command(&self, args: &[&str]) -> Vec<String> {
        let mut all: Vec<String> = ["kafka", args[0], "--repo", &self.url, "--cell", "k1", "--key-file", &self.key, "--output", "json"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if !matches!(args[0], "ls" | "retention") {
            all.extend(["--brokers".to_string(), self.brokers.clone()]);
        }
        all.extend(args[1..].iter().map(|s| s.to_string()));
        all
    }

    pub fn run(&self, args: &[&str]) -> std::process::Output {
        let all = self.command(args);
        crate::agent(&all.iter().map(String::as_str).collect::<Vec<_>>(), &[])
    }
}
