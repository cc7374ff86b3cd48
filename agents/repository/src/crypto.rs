//! Keys: loading, key ids, derived subkeys, and authenticated encryption.
//!
//! A key is 32 random bytes, written as 64 hex characters in a file or an
//! environment variable; it never enters the repository. Its id (the first
//! 16 hex characters of a SHA-256 over a fixed label and the key) is recorded
//! in the repository config, in manifests and in the header of every
//! encrypted object, so the wrong key is named as such.
//!
//! A key file may hold several keys, one per line (`#` starts a comment):
//! the first is the **current** key, which writes; the others are
//! **retired** keys, which still read what they sealed (`key rotate` puts a
//! new key first and keeps the old one below it). Subkeys are derived with HMAC-SHA-256 over fixed labels: one for
//! XChaCha20-Poly1305, one to key chunk ids (so chunk names do not reveal
//! plaintext hashes), one to seed the chunker.
//!
//! XChaCha20-Poly1305 is computed as its definition (draft-irtf-cfrg-xchacha)
//! builds it: HChaCha20 of the key and the nonce's first 16 bytes gives a
//! subkey for the IETF ChaCha20-Poly1305 of RFC 8439 (`ring`'s, which
//! encrypts and authenticates in one pass), with the nonce's last 8 bytes.
//! A test checks the result against the `chacha20poly1305` crate's
//! XChaCha20-Poly1305 in both directions.

use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use sha2::{Digest, Sha256};

use crate::error::{RepoError, Result};

pub const NONCE_LEN: usize = 24;
pub const ALGORITHM: &str = "xchacha20-poly1305";

#[derive(Clone)]
pub struct Key {
    id: String,
    /// The encryption subkey.
    enc_key: [u8; 32],
    chunk_id_key: [u8; 32],
    /// Authenticates the plain-JSON config.
    metadata_key: [u8; 32],
    chunker_seed: u64,
    /// Older keys that still open what they sealed; never used to write.
    retired: Vec<Key>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({}", self.id)?;
        for r in &self.retired {
            write!(f, ", retired {}", r.id)?;
        }
        write!(f, ")")
    }
}

fn derive(master: &[u8; 32], label: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(master).expect("hmac takes any key length");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

impl Key {
    /// Parse a key file's text: one key of 64 hex characters per line, the
    /// current one first, retired ones after it; blank lines and `#`
    /// comments ignored.
    pub fn from_hex(text: &str) -> Result<Self> {
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if !line.is_empty() {
                keys.push(Self::one_from_hex(line).map_err(|e| RepoError::BadKey(format!("line {}: {e}", n + 1)))?);
            }
        }
        let mut keys = keys.into_iter();
        let current =
            keys.next().ok_or_else(|| RepoError::BadKey("no key in it (generate one with `lifeboat-agent key generate`)".into()))?;
        Ok(current.with_retired(keys.collect()))
    }

    fn one_from_hex(hex: &str) -> std::result::Result<Self, String> {
        let bytes = hex::decode(hex).map_err(|_| "expected 64 hex characters (generate one with `lifeboat-agent key generate`)")?;
        let master: [u8; 32] = bytes.try_into().map_err(|_| "expected 32 bytes (64 hex characters)")?;
        Ok(Self::from_bytes(&master))
    }

    /// This key, writing, with `retired` keys that still read.
    pub fn with_retired(self, retired: Vec<Key>) -> Self {
        let mut flat = Vec::new();
        for r in retired {
            flat.extend(r.retired.iter().cloned());
            flat.push(Key { retired: Vec::new(), ..r });
        }
        let mut seen = std::collections::HashSet::from([self.id.clone()]);
        flat.retain(|r| seen.insert(r.id.clone()));
        Key { retired: flat, ..self }
    }

    /// The current key, then the retired ones.
    pub fn ring(&self) -> impl Iterator<Item = &Key> {
        std::iter::once(self).chain(&self.retired)
    }

    /// The key (current or retired) with this id.
    pub fn find(&self, id: &str) -> Option<&Key> {
        self.ring().find(|k| k.id == id)
    }

    /// The ids of the retired keys.
    pub fn retired_ids(&self) -> Vec<String> {
        self.retired.iter().map(|k| k.id.clone()).collect()
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
            enc_key: enc,
            chunk_id_key: derive(master, "lifeboat-chunk-id-v1"),
            metadata_key: derive(master, "lifeboat-metadata-mac-v1"),
            chunker_seed: u64::from_le_bytes(seed[..8].try_into().unwrap()),
            retired: Vec::new(),
        }
    }

    /// A new random key, as hex.
    pub fn generate_hex() -> String {
        hex::encode(rand::random::<[u8; 32]>())
    }

    /// Load from a file of hex, refused when its group or others may read it.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(path).map_err(RepoError::io(format!("reading key file {}", path.display())))?;
        if meta.permissions().mode() & 0o044 != 0 {
            return Err(RepoError::BadKey(format!(
                "the key file {} is readable by its group or by others (mode {:o}); chmod 600 it, and chown it to the user that runs \
                 the agent or Postgres' archive_command",
                path.display(),
                meta.permissions().mode() & 0o777
            )));
        }
        let text = std::fs::read_to_string(path).map_err(RepoError::io(format!("reading key file {}", path.display())))?;
        Self::from_hex(&text).map_err(|e| RepoError::BadKey(format!("{}: {e}", path.display())))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The id as the 8 bytes an encrypted object's header carries.
    pub fn id_bytes(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        hex::decode_to_slice(&self.id, &mut out).expect("ids are 16 hex characters");
        out
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

    /// HMAC-SHA-256 of metadata stored in the clear, bound to its object name.
    pub fn metadata_mac(&self, name: &str, bytes: &[u8]) -> [u8; 32] {
        self.metadata_hmac(name, bytes).finalize().into_bytes().into()
    }

    /// Whether `tag` is [`Key::metadata_mac`] of `bytes` (compared in constant time).
    pub fn check_metadata_mac(&self, name: &str, bytes: &[u8], tag: &[u8]) -> bool {
        self.metadata_hmac(name, bytes).verify_slice(tag).is_ok()
    }

    fn metadata_hmac(&self, name: &str, bytes: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.metadata_key).expect("hmac takes any key length");
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(bytes);
        mac
    }

    /// Encrypt with a random nonce; returns nonce || ciphertext+tag.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let (key, ietf_nonce) = self.ietf(&nonce);
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = key
            .seal_in_place_separate_tag(ietf_nonce, Aad::from(aad), &mut out[NONCE_LEN..])
            .expect("encryption of an in-memory buffer cannot fail");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// The IETF ChaCha20-Poly1305 key and nonce an XChaCha20 nonce stands for.
    fn ietf(&self, nonce: &[u8]) -> (LessSafeKey, Nonce) {
        use chacha20::cipher::consts::U10;
        let subkey = chacha20::hchacha::<U10>(&self.enc_key.into(), nonce[..16].into());
        let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &subkey).expect("a 32-byte key"));
        let mut ietf = [0u8; 12];
        ietf[4..].copy_from_slice(&nonce[16..NONCE_LEN]);
        (key, Nonce::assume_unique_for_key(ietf))
    }

    /// Check the Poly1305 tag of nonce || ciphertext+tag without decrypting
    /// (the XChaCha20-Poly1305 construction of RFC 8439 section 2.8 with an
    /// XChaCha20 nonce: the one-time key is the first 32 bytes of keystream
    /// block 0; the tag covers aad, ciphertext, each zero-padded to 16 bytes,
    /// and both lengths). True exactly when [`Key::open`] would succeed, at
    /// a fraction of the cost: used where the bytes are only passed on.
    pub fn check_tag(&self, sealed: &[u8], aad: &[u8]) -> bool {
        use chacha20::cipher::{KeyIvInit, StreamCipher};
        use poly1305::universal_hash::{KeyInit as _, UniversalHash};
        if sealed.len() < NONCE_LEN + 16 {
            return false;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let (ciphertext, tag) = body.split_at(body.len() - 16);
        let mut one_time = [0u8; 32];
        chacha20::XChaCha20::new(&self.enc_key.into(), nonce.into()).apply_keystream(&mut one_time);
        let mut mac = poly1305::Poly1305::new(&one_time.into());
        mac.update_padded(aad);
        mac.update_padded(ciphertext);
        let mut lengths = poly1305::Block::default();
        lengths[..8].copy_from_slice(&(aad.len() as u64).to_le_bytes());
        lengths[8..].copy_from_slice(&(ciphertext.len() as u64).to_le_bytes());
        mac.update(&[lengths]);
        mac.verify(tag.into()).is_ok()
    }

    /// Decrypt nonce || ciphertext+tag into a new buffer; `None` if it was
    /// not sealed by this key with this aad. (Readers open in place.)
    #[cfg(test)]
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let mut buf = sealed.to_vec();
        let len = self.open_in_place(&mut buf, 0, aad)?;
        buf.truncate(len);
        Some(buf)
    }

    /// Decrypt the nonce || ciphertext+tag at `buf[from..]` in place,
    /// moving the plaintext to `buf[..len]`; returns `len`, or `None` if
    /// it was not sealed by this key with this aad (`buf` is then garbage).
    pub fn open_in_place(&self, buf: &mut [u8], from: usize, aad: &[u8]) -> Option<usize> {
        if buf.len() < from + NONCE_LEN + 16 {
            return None;
        }
        let (key, nonce) = self.ietf(&buf[from..from + NONCE_LEN]);
        key.open_within(nonce, Aad::from(aad), buf, from + NONCE_LEN..).ok().map(|plain| plain.len())
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
        assert!(!key.check_tag(&flipped, b"ctx"));
        let other = Key::from_hex(&Key::generate_hex()).unwrap();
        assert!(other.open(&sealed, b"ctx").is_none());
        assert_ne!(key.id(), other.id());
    }

    /// The same construction as an independent implementation: what one
    /// seals the other opens, byte for byte, and a wrong aad fails in both.
    #[test]
    fn agrees_with_the_chacha20poly1305_crate() {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};
        let key = Key::from_hex(&Key::generate_hex()).unwrap();
        let reference = XChaCha20Poly1305::new(&key.enc_key.into());
        for len in [0usize, 1, 63, 64, 65, 1000, 70_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 253) as u8).collect();
            let sealed = key.seal(&data, b"aad");
            let (nonce, body) = sealed.split_at(NONCE_LEN);
            let theirs = reference.decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad: b"aad" }).unwrap();
            assert_eq!(theirs, data, "len {len}");
            assert!(reference.decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad: b"aaD" }).is_err());
            let nonce: [u8; NONCE_LEN] = rand::random();
            let mut mine = nonce.to_vec();
            mine.extend(reference.encrypt(XNonce::from_slice(&nonce), Payload { msg: &data, aad: b"aad" }).unwrap());
            assert_eq!(key.open(&mine, b"aad").unwrap(), data, "len {len}");
            assert!(key.open(&mine, b"aaD").is_none());
            let mut shifted = vec![9u8; 5];
            shifted.extend(&mine);
            let n = key.open_in_place(&mut shifted, 5, b"aad").unwrap();
            assert_eq!(&shifted[..n], &data[..], "in place, len {len}");
        }
    }

    #[test]
    fn rejects_malformed_keys() {
        assert!(Key::from_hex("zz").is_err());
        assert!(Key::from_hex("abcd").is_err());
        assert!(Key::from_hex(&format!("  {}\n", "11".repeat(32))).is_ok());
        let err = Key::from_hex(&format!("{}\nnot a key\n", "11".repeat(32))).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(Key::from_hex("# only a comment\n").unwrap_err().to_string().contains("no key"));
    }

    /// The first line writes, the others read; ids find their key.
    #[test]
    fn a_key_file_holds_the_current_key_then_retired_ones() {
        let (new, old) = (Key::generate_hex(), Key::generate_hex());
        let ring = Key::from_hex(&format!("# rotated today\n{new}\n\n{old}  # the key before\n")).unwrap();
        let (new, old) = (Key::from_hex(&new).unwrap(), Key::from_hex(&old).unwrap());
        assert_eq!(ring.id(), new.id());
        assert_eq!(ring.retired_ids(), vec![old.id().to_string()]);
        assert_eq!(ring.find(old.id()).unwrap().chunk_id(b"x"), old.chunk_id(b"x"));
        assert!(ring.find("0000000000000000").is_none());
        let again = new.clone().with_retired(vec![ring.clone(), new.clone()]);
        assert_eq!(again.retired_ids(), vec![old.id().to_string()], "flattened, without the current key");
    }

    /// `check_tag` agrees with decryption on every length around the
    /// 16-byte padding and block boundaries, and on every single-byte
    /// change of nonce, ciphertext or tag.
    #[test]
    fn check_tag_agrees_with_open() {
        let key = Key::from_hex(&Key::generate_hex()).unwrap();
        let other = Key::from_hex(&Key::generate_hex()).unwrap();
        for len in [0usize, 1, 15, 16, 17, 63, 64, 65, 1000, 70_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            for aad in [&b""[..], b"header", b"exactly sixteen!", b"chunks/ab/abcdef0123456789"] {
                let sealed = key.seal(&data, aad);
                assert!(key.check_tag(&sealed, aad), "len {len}");
                assert!(!other.check_tag(&sealed, aad), "another key");
                assert!(!key.check_tag(&sealed, b"moved"), "another name");
                assert!(!key.check_tag(&sealed[..sealed.len() - 1], aad), "truncated");
                for at in [0, NONCE_LEN - 1, NONCE_LEN, sealed.len() / 2, sealed.len() - 17, sealed.len() - 1] {
                    let mut bad = sealed.clone();
                    bad[at] ^= 0x10;
                    assert_eq!(key.check_tag(&bad, aad), key.open(&bad, aad).is_some(), "len {len} byte {at}");
                    assert!(!key.check_tag(&bad, aad), "len {len} byte {at} flipped");
                }
            }
        }
    }
}
