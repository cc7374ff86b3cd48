//! Kafka over TLS and SASL against a real broker whose only client
//! listener is SASL_SSL (its certificate signed by a private CA): a
//! snapshot over SASL PLAIN with the settings in agent.toml, a restore
//! over SCRAM-SHA-512 with the settings in the environment, both read back
//! with kcat over SASL_SSL and compared record by record; a wrong password
//! and an untrusted certificate are refused, and the error says so.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use lifeboat_restore_tests::kafka::{by_partition, contents, PrivateBroker, Repo, TestRecord};
use lifeboat_restore_tests::{agent, ok, Backend};

fn secret(dir: &Path, name: &str, value: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.to_str().unwrap().to_string()
}

fn records(t0: i64) -> Vec<TestRecord> {
    (0..90)
        .map(|i| TestRecord {
            partition: i % 3,
            key: (i % 4 != 0).then(|| format!("account-{}", i % 7)),
            value: Some(format!("payment {i}")),
            headers: if i % 5 == 0 { vec![("trace".into(), format!("t{i}"))] } else { vec![] },
            timestamp: t0 + i as i64,
        })
        .collect()
}

fn args(repo: &Repo, command: &[&str], extra: &[&str]) -> Vec<String> {
    let mut all = repo.command(command);
    all.extend(extra.iter().map(|s| s.to_string()));
    all
}

fn run(all: &[String], env: &[(&str, &str)]) -> std::process::Output {
    agent(&all.iter().map(String::as_str).collect::<Vec<_>>(), env)
}

#[test]
fn snapshot_and_restore_over_sasl_ssl_only() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, secure) = PrivateBroker::start_secure(&dir.path().join("kafka"));
    let client = broker.client();
    let topic = "payments.sasl";
    client.create_topic(topic, 3, &[("retention.ms", "8640000000")]);
    let t0 = (time::OffsetDateTime::now_utc().unix_timestamp() - 3600) * 1000;
    let records = records(t0);
    client.produce(topic, &records);
    let expected = by_partition(&records);
    assert_eq!(contents(&client.kcat_read(topic)), expected, "the source as kcat reads it over SASL_SSL");

    let repo = Repo::new(Backend::File, &broker.address());
    let ca = secure.ca.to_str().unwrap();
    let (_, plain_user, plain_password) = secure.users[0];
    let (scram_mechanism, scram_user, scram_password) = secure.users[1];

    // Snapshot: SASL PLAIN, from agent.toml.
    let config = dir.path().join("agent.toml");
    let plain_file = secret(dir.path(), "plain-password", plain_password);
    std::fs::write(
        &config,
        format!(
            "[kafka]\nsecurity_protocol = \"SASL_SSL\"\nsasl_mechanism = \"PLAIN\"\nsasl_username = \"{plain_user}\"\n\
             sasl_password_file = \"{plain_file}\"\nca_file = \"{ca}\"\n"
        ),
    )
    .unwrap();
    let snapshot = run(&args(&repo, &["snapshot", "--topics", "payments\\..*"], &["--config", config.to_str().unwrap()]), &[]);
    let snap: serde_json::Value = serde_json::from_str(&ok(&snapshot)).unwrap();
    assert_eq!(snap["records"], 90, "{snap}");

    // Restore and verify: SCRAM-SHA-512, from the environment.
    let scram_file = secret(dir.path(), "scram-password", scram_password);
    let scram = [
        ("LIFEBOAT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
        ("LIFEBOAT_KAFKA_SASL_MECHANISM", scram_mechanism),
        ("LIFEBOAT_KAFKA_SASL_USERNAME", scram_user),
        ("LIFEBOAT_KAFKA_SASL_PASSWORD_FILE", scram_file.as_str()),
        ("LIFEBOAT_KAFKA_CA_FILE", ca),
    ];
    let restored: serde_json::Value =
        serde_json::from_str(&ok(&run(&args(&repo, &["restore", "--latest", "--topic-prefix", "r-"], &[]), &scram))).unwrap();
    assert_eq!(restored["records_produced"], 90, "{restored}");
    assert_eq!(contents(&client.kcat_read(&format!("r-{topic}"))), expected, "the restored topic, record by record");
    let verify: serde_json::Value =
        serde_json::from_str(&ok(&run(&args(&repo, &["verify", "--topic-prefix", "r-"], &[]), &scram))).unwrap();
    assert_eq!(verify["problems"].as_array().unwrap().len(), 0, "{verify}");

    // A wrong password: refused by the broker, and the error says so.
    let wrong_file = secret(dir.path(), "wrong-password", "not-the-password");
    let mut wrong = scram;
    wrong[3] = ("LIFEBOAT_KAFKA_SASL_PASSWORD_FILE", wrong_file.as_str());
    let out = run(&args(&repo, &["snapshot", "--topics", "payments\\..*"], &["--broker-timeout", "10s"]), &wrong);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success() && stderr.contains("Authentication failed") && stderr.contains("invalid credentials"), "{stderr}");

    // Without the private CA the broker's certificate is not trusted.
    let untrusted: Vec<(&str, &str)> = scram.iter().copied().filter(|(k, _)| *k != "LIFEBOAT_KAFKA_CA_FILE").collect();
    let out = run(&args(&repo, &["snapshot", "--topics", "payments\\..*"], &["--broker-timeout", "10s"]), &untrusted);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success() && stderr.contains("certificate verify failed") && stderr.contains("over SASL_SSL"), "{stderr}");

    // A SASL setting without a SASL protocol is refused before connecting.
    let out = run(&args(&repo, &["snapshot", "--topics", "x"], &[]), &[("LIFEBOAT_KAFKA_SASL_USERNAME", "someone")]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success() && stderr.contains("not SASL_SSL or SASL_PLAINTEXT"), "{stderr}");
}
