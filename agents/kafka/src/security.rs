//! How Kafka clients encrypt and authenticate: TLS with a private CA,
//! optionally a client certificate, SASL PLAIN or SCRAM. The settings come
//! from the environment, as the storage backends' credentials do, so every
//! client the agent makes (commands, jobs, the follower, drills) uses the
//! same ones; the agent's config file sets them (`[kafka]` in agent.toml):
//!
//! | variable | rdkafka setting |
//! |---|---|
//! | `LIFEBOAT_KAFKA_SECURITY_PROTOCOL` (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`) | `security.protocol` |
//! | `LIFEBOAT_KAFKA_SASL_MECHANISM` (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`) | `sasl.mechanisms` |
//! | `LIFEBOAT_KAFKA_SASL_USERNAME` | `sasl.username` |
//! | `LIFEBOAT_KAFKA_SASL_PASSWORD_FILE` (a secret file) | `sasl.password` |
//! | `LIFEBOAT_KAFKA_CA_FILE` (PEM) | `ssl.ca.location` |
//! | `LIFEBOAT_KAFKA_CERT_FILE`, `LIFEBOAT_KAFKA_KEY_FILE` (PEM) | `ssl.certificate.location`, `ssl.key.location` |

use crate::{KafkaError, Result};

const PROTOCOLS: [&str; 4] = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];
const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// rdkafka settings for encryption and authentication. Its Debug never
/// shows the password.
#[derive(Clone, Default)]
pub struct Security {
    settings: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<_> =
            self.settings.iter().map(|(k, v)| (*k, if *k == "sasl.password" { "<redacted>" } else { v.as_str() })).collect();
        f.debug_struct("Security").field("settings", &shown).finish()
    }
}

fn invalid(message: String) -> KafkaError {
    KafkaError::Invalid(message)
}

impl Security {
    /// The settings `LIFEBOAT_KAFKA_*` give, checked together.
    pub fn from_env() -> Result<Security> {
        Self::from_vars(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Security> {
        let mut settings = Vec::new();
        let protocol = var("LIFEBOAT_KAFKA_SECURITY_PROTOCOL").map(|p| p.trim().to_ascii_uppercase());
        if let Some(p) = &protocol {
            if !PROTOCOLS.contains(&p.as_str()) {
                return Err(invalid(format!("LIFEBOAT_KAFKA_SECURITY_PROTOCOL {p:?}: give one of {}", PROTOCOLS.join(", "))));
            }
            settings.push(("security.protocol", p.clone()));
        }
        let sasl = protocol.as_deref().is_some_and(|p| p.starts_with("SASL_"));
        let mechanism = var("LIFEBOAT_KAFKA_SASL_MECHANISM").map(|m| m.trim().to_ascii_uppercase());
        let (user, password_file) = (var("LIFEBOAT_KAFKA_SASL_USERNAME"), var("LIFEBOAT_KAFKA_SASL_PASSWORD_FILE"));
        match (sasl, &mechanism, &user, &password_file) {
            (false, None, None, None) => {}
            (false, ..) => return Err(invalid("a SASL mechanism, user or password is set, but the security protocol is not SASL_SSL or SASL_PLAINTEXT".into())),
            (true, Some(m), Some(u), Some(file)) => {
                if !MECHANISMS.contains(&m.as_str()) {
                    return Err(invalid(format!("LIFEBOAT_KAFKA_SASL_MECHANISM {m:?}: give one of {}", MECHANISMS.join(", "))));
                }
                let password = lifeboat_secrets::read_file(std::path::Path::new(file), "Kafka SASL password").map_err(|e| invalid(format!("{e:#}")))?;
                settings.extend([("sasl.mechanisms", m.clone()), ("sasl.username", u.clone()), ("sasl.password", password)]);
            }
            (true, ..) => {
                return Err(invalid(
                    "SASL needs a mechanism, a user and a password file (LIFEBOAT_KAFKA_SASL_MECHANISM, _USERNAME, _PASSWORD_FILE; kafka.sasl_* in agent.toml)".into(),
                ))
            }
        }
        let tls = protocol.as_deref().is_some_and(|p| p.ends_with("SSL"));
        let files = [
            ("LIFEBOAT_KAFKA_CA_FILE", "ssl.ca.location"),
            ("LIFEBOAT_KAFKA_CERT_FILE", "ssl.certificate.location"),
            ("LIFEBOAT_KAFKA_KEY_FILE", "ssl.key.location"),
        ];
        if !tls && files.iter().any(|(name, _)| var(name).is_some()) {
            return Err(invalid("a TLS file (CA, certificate or key) is set, but the security protocol is not SSL or SASL_SSL: it would connect unencrypted".into()));
        }
        if var("LIFEBOAT_KAFKA_CERT_FILE").is_some() != var("LIFEBOAT_KAFKA_KEY_FILE").is_some() {
            return Err(invalid(
                "a client certificate needs its key and a key its certificate (LIFEBOAT_KAFKA_CERT_FILE and LIFEBOAT_KAFKA_KEY_FILE)"
                    .into(),
            ));
        }
        for (name, setting) in files {
            if let Some(path) = var(name) {
                if !std::path::Path::new(&path).is_file() {
                    return Err(invalid(format!("{name}: {path} is not a readable file")));
                }
                settings.push((setting, path));
            }
        }
        Ok(Security { settings })
    }

    /// Apply to a client's settings.
    pub fn apply(&self, config: &mut rdkafka::config::ClientConfig) {
        for (k, v) in &self.settings {
            config.set(*k, v);
        }
    }

    /// The protocol in use (PLAINTEXT unless set).
    pub fn protocol(&self) -> &str {
        self.settings.iter().find(|(k, _)| *k == "security.protocol").map_or("PLAINTEXT", |(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Security> {
        Security::from_vars(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn settings_are_checked_together() {
        assert!(from(&[]).unwrap().settings.is_empty());
        assert_eq!(from(&[("LIFEBOAT_KAFKA_SECURITY_PROTOCOL", "ssl")]).unwrap().protocol(), "SSL");
        assert!(from(&[("LIFEBOAT_KAFKA_SECURITY_PROTOCOL", "TLS")]).is_err());
        let e = from(&[("LIFEBOAT_KAFKA_SASL_USERNAME", "u")]).unwrap_err().to_string();
        assert!(e.contains("not SASL_SSL"), "{e}");
        let e = from(&[("LIFEBOAT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"), ("LIFEBOAT_KAFKA_SASL_USERNAME", "u")]).unwrap_err().to_string();
        assert!(e.contains("needs a mechanism, a user and a password file"), "{e}");
        let e = from(&[("LIFEBOAT_KAFKA_SECURITY_PROTOCOL", "SSL"), ("LIFEBOAT_KAFKA_CA_FILE", "/nonexistent/ca.pem")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let e = from(&[("LIFEBOAT_KAFKA_CA_FILE", "/etc/hostname")]).unwrap_err().to_string();
        assert!(e.contains("would connect unencrypted"), "{e}");
        let e =
            from(&[("LIFEBOAT_KAFKA_SECURITY_PROTOCOL", "SSL"), ("LIFEBOAT_KAFKA_CERT_FILE", "/etc/hostname")]).unwrap_err().to_string();
        assert!(e.contains("needs its key"), "{e}");
    }

    #[test]
    fn the_password_is_never_shown() {
        let dir = std::env::temp_dir().join(format!("lifeboat-sasl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "hunter2\n").unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let s = from(&[
            ("LIFEBOAT_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("LIFEBOAT_KAFKA_SASL_MECHANISM", "scram-sha-512"),
            ("LIFEBOAT_KAFKA_SASL_USERNAME", "lifeboat"),
            ("LIFEBOAT_KAFKA_SASL_PASSWORD_FILE", file.to_str().unwrap()),
        ])
        .unwrap();
        assert!(s.settings.contains(&("sasl.password", "hunter2".to_string())));
        assert!(s.settings.contains(&("sasl.mechanisms", "SCRAM-SHA-512".to_string())));
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2") && shown.contains("<redacted>"), "{shown}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
