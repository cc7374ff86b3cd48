//! Ed25519 public keys (ring): the plan key whose private half the
//! coordinator holds. Agents check with it that a drill's SQL checks come
//! from the coordinator; auditors check reports with it. A public key file
//! holds 32 bytes as hex; its key id is the first 16 hex digits of its
//! SHA-256.

use std::path::Path;

use anyhow::{bail, Context, Result};
use ring::signature::{UnparsedPublicKey, ED25519};
use sha2::{Digest, Sha256};

/// The key id of a public key: the first 16 hex digits of its SHA-256.
pub fn key_id(public: &[u8]) -> String {
    hex::encode(Sha256::digest(public))[..16].to_string()
}

/// An Ed25519 public key that checks signatures.
pub struct Verifier {
    public: Vec<u8>,
    pub key_id: String,
}

impl Verifier {
    /// The public key in `path` (hex, as `lifeboat report keygen` writes it).
    pub fn from_file(path: &Path) -> Result<Verifier> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading the public key {}", path.display()))?;
        let public = hex::decode(text.trim()).with_context(|| format!("the public key {} is not hex", path.display()))?;
        if public.len() != 32 {
            bail!("{} is not an Ed25519 public key (32 bytes, hex)", path.display());
        }
        let key_id = key_id(&public);
        Ok(Verifier { public, key_id })
    }

    /// Whether `signature_hex` is this key's signature of `bytes`.
    pub fn verify(&self, bytes: &[u8], signature_hex: &str) -> bool {
        let Ok(sig) = hex::decode(signature_hex.trim()) else { return false };
        UnparsedPublicKey::new(&ED25519, &self.public).verify(bytes, &sig).is_ok()
    }
}

/// The SHA-256 (hex) a stored plan is named and signed by: over each
/// file's name and content in name order, each length-prefixed, so no two
/// different plan directories share it.
pub fn plan_digest<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut files: Vec<(&str, &str)> = files.into_iter().collect();
    files.sort();
    let mut h = Sha256::new();
    for (name, content) in files {
        for part in [name, content] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
    }
    hex::encode(h.finalize())
}

/// What a stored plan's signature signs: a purpose (so no other message
/// the plan key signs passes for a plan), the plan's digest, its name and
/// when it was signed (Unix nanoseconds; an old plan cannot be passed off
/// as signed later).
pub fn plan_message(digest: &str, plan: &str, signed_at_nanos: i128) -> Vec<u8> {
    format!("lifeboat-plan\0{digest}\0{plan}\0{signed_at_nanos}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::plan_digest;

    #[test]
    fn a_plan_digest_names_its_files_and_their_content() {
        let a = plan_digest([("plan.toml", "x = 1"), ("cells.toml", "")]);
        assert_eq!(a, plan_digest([("cells.toml", ""), ("plan.toml", "x = 1")]), "file order does not matter");
        assert_ne!(a, plan_digest([("plan.toml", "x = 1")]));
        assert_ne!(a, plan_digest([("plan.toml", "x = 1"), ("cells.tom", "l")]), "names and contents are framed");
    }
}
