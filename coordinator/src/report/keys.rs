//! The report signing key pair: Ed25519 (ring). The private key (PKCS#8,
//! hex) stays with the coordinator in a file only it reads; the public key
//! (32 bytes, hex) is published with the plan, so an auditor verifies
//! reports with nothing secret.

use std::path::Path;

use anyhow::{bail, Context, Result};
use ring::signature::{Ed25519KeyPair, KeyPair as _};

fn unhex(s: &str, what: &str) -> Result<Vec<u8>> {
    hex::decode(s.trim()).with_context(|| format!("{what} is not hex"))
}

/// Create a key pair: `<dir>/report-signing.key` (mode 0600) and
/// `<dir>/report-signing.pub`. Refuses to overwrite.
pub fn generate(dir: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf, String)> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| anyhow::anyhow!("generating an Ed25519 key failed"))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| anyhow::anyhow!("the new key does not parse"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (private, public) = (dir.join("report-signing.key"), dir.join("report-signing.pub"));
    for p in [&private, &public] {
        if p.exists() {
            bail!("{} exists; keys are never overwritten (move it away first)", p.display());
        }
    }
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&private)?;
    writeln!(f, "{}", hex::encode(pkcs8.as_ref()))?;
    f.sync_all()?;
    std::fs::write(&public, format!("{}\n", hex::encode(pair.public_key().as_ref())))?;
    Ok((private, public, key_id(pair.public_key().as_ref())))
}

pub use lifeboat_secrets::signing::{key_id, Verifier};

/// Signs reports (used by `seal`).
#[cfg_attr(not(test), allow(dead_code))]
pub struct Signer {
    pair: Ed25519KeyPair,
    pub key_id: String,
}

#[cfg_attr(not(test), allow(dead_code))]
impl Signer {
    pub fn from_file(path: &Path) -> Result<Signer> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading the signing key {}", path.display()))?;
        let pkcs8 = unhex(&text, "the signing key")?;
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| anyhow::anyhow!("{} is not an Ed25519 signing key (make one with `lifeboat report keygen`)", path.display()))?;
        let key_id = key_id(pair.public_key().as_ref());
        Ok(Signer { pair, key_id })
    }

    pub fn sign(&self, bytes: &[u8]) -> String {
        hex::encode(self.pair.sign(bytes).as_ref())
    }

    /// `message` signed, as a spec sent to an agent carries it (checked
    /// there against the plan key).
    pub fn spec_signature(&self, message: &[u8]) -> lifeboat_api::ChecksSignature {
        lifeboat_api::ChecksSignature { key_id: self.key_id.clone(), signature: self.sign(message) }
    }
}

/// A signer must sign with the key the plan publishes (when it publishes
/// one): reports signed otherwise would not verify for auditors.
pub fn check_published(published_in: Option<&Path>, plan: &str, signer: &Signer) -> Result<()> {
    if let Some(path) = published_in {
        let published = Verifier::from_file(path)?;
        if published.key_id != signer.key_id {
            bail!(
                "the signing key (key id {}) is not the key plan {} publishes in {} (key id {}); reports it signed would not verify",
                signer.key_id,
                plan,
                path.display(),
                published.key_id
            );
        }
    }
    Ok(())
}
