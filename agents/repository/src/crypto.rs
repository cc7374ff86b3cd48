//! Keys: loading, key ids, derived subkeys, and authenticated encryption.
//!
//! A key is 32 random bytes, written as 64 hex characters in a file or an
//! environment variable; it never enters the repository. Its id (the first
//! 16 hex characters of a SHA-256 over a fixed label and the key) is recorded
//! in the repository config and in manifests, so the wrong key is named as
//! such. Subkeys are derived with HMAC-SHA-256 over fixed labels: one for
//! XChaCha20-Poly1305, one to key chunk ids (so chunk names do not reveal
//! plaintext hashes), one to seed the chunker.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::error::{RepoError, Result};

pub const NONCE_LEN: usize = 24;
pub const ALGORITHM: &str = "xchacha20-poly1305";

#[derive(Clone)]
pub struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
    chunk_id_key: [u8; 32],
    chunker_seed: u64,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

fn derive(master: &[u8; 32], label: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(master).expect("hmac takes any key length");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

impl Key {
    /// Parse 64 hex characters (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self> {
        let bytes = hex::decode(text.trim())
            .map_err(|_| RepoError::BadKey("expected 64 hex characters (generate one with `lifeboat-agent key generate`)".into()))?;
        let master: [u8; 32] = bytes
            .try_into()
            .map_err(|_| RepoError::BadKey("expected 32 bytes (64 hex characters)".into()))?;
        Ok(Self::from_bytes(&master))
    }

    pub fn from_bytes(master: &[u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(b"lifeboat-key-id-v1");
        h.update(master);
        let id = hex::encode(&h.finalize()[..8]);
        let enc = derive(master, "lifeboat-encryption-v1");
        let seed = derive(master, "lifeboat-chunker-seed-v1");
        Key {
            id,
            cipher: XChaCha20Poly1305::new(&enc.into()),
            chunk_id_key: derive(master, "lifeboat-chunk-id-v1"),
            chunker_seed: u64::from_le_bytes(seed[..8].try_into().unwrap()),
        }
    }

    /// A new random key, as hex.
    pub fn generate_hex() -> String {
        hex::encode(rand::random::<[u8; 32]>())
    }

    /// Load from a file of hex.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(RepoError::io(format!("reading key file {}", path.display())))?;
        Self::from_hex(&text).map_err(|e| RepoError::BadKey(format!("{}: {e}", path.display())))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed
    }

    /// Keyed chunk id: HMAC-SHA-256 of the plaintext.
    pub fn chunk_id(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.chunk_id_key).unwrap();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Encrypt with a random nonce; returns nonce || ciphertext+tag.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = XNonce::from_slice(&nonce_bytes);
        let sealed = self
            .cipher
            .encrypt(nonce, Payload { msg: plaintext, aad })
            .expect("encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypt nonce || ciphertext+tag; `None` if it was not sealed by this key with this aad.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        self.cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad }).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let key = Key::from_hex(&Key::generate_hex()).unwrap();
        let sealed = key.seal(b"payments", b"ctx");
        assert_eq!(key.open(&sealed, b"ctx").unwrap(), b"payments");
        assert!(key.open(&sealed, b"other-ctx").is_none());
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(key.open(&flipped, b"ctx").is_none());
        let other = Key::from_hex(&Key::generate_hex()).unwrap();
        assert!(other.open(&sealed, b"ctx").is_none());
        assert_ne!(key.id(), other.id());
    }

    #[test]
    fn rejects_malformed_keys() {
        assert!(Key::from_hex("zz").is_err());
        assert!(Key::from_hex("abcd").is_err());
        assert!(Key::from_hex(&format!("  {}\n", "11".repeat(32))).is_ok());
    }
}
