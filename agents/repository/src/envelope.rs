//! The envelope every repository object (except the plain-JSON config) is
//! stored in: compression, then either encryption or a SHA-256 seal.
//!
//! ```text
//! "LBOX" | version (2) | flags (bit 0: zstd, bit 1: encrypted) [| key id (8), when encrypted]
//!   encrypted:  nonce (24) | XChaCha20-Poly1305(payload, aad = header || context)
//!   plain:      SHA-256(header || context || payload) (32) | payload
//! ```
//!
//! `context` is the object's logical name (a chunk id, a manifest key), so an
//! object copied under another name fails to open. Compression is skipped
//! when it does not shrink the data. The key id names which key of the key
//! file (current or retired) sealed the object; version 1 objects, written
//! before key ids, are still read, their key found by its tag.

use sha2::{Digest, Sha256};

use crate::crypto::Key;

const MAGIC: &[u8; 4] = b"LBOX";
const VERSION: u8 = 2;
/// Objects written before key ids: no key id in the header.
const VERSION_1: u8 = 1;
const ZSTD: u8 = 1;
const ENCRYPTED: u8 = 2;
const BASE_HEADER_LEN: usize = 6;
const KEY_ID_LEN: usize = 8;
/// Larger claimed sizes are not trusted for a single allocation.
const MAX_OBJECT: u64 = 1 << 30;

/// Wrap `plain` for storage.
pub fn seal(plain: &[u8], context: &str, level: i32, key: Option<&Key>) -> Vec<u8> {
    let compressed = zstd::bulk::compress(plain, level).ok().filter(|c| c.len() < plain.len());
    let mut flags = 0u8;
    let payload: &[u8] = match &compressed {
        Some(c) => {
            flags |= ZSTD;
            c
        }
        None => plain,
    };
    if key.is_some() {
        flags |= ENCRYPTED;
    }
    let mut header = [&MAGIC[..], &[VERSION, flags]].concat();
    if let Some(key) = key {
        header.extend_from_slice(&key.id_bytes());
    }
    let mut out = Vec::with_capacity(header.len() + 40 + payload.len());
    out.extend_from_slice(&header);
    match key {
        Some(key) => {
            let aad = [&header[..], context.as_bytes()].concat();
            out.extend_from_slice(&key.seal(payload, &aad));
        }
        None => {
            out.extend_from_slice(&plain_seal(&header, context, payload));
            out.extend_from_slice(payload);
        }
    }
    out
}

fn plain_seal(header: &[u8], context: &str, payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(header);
    h.update(context.as_bytes());
    h.update(payload);
    h.finalize().into()
}

/// Check a stored object's seal without decompressing it: the AEAD tag of an
/// encrypted object, the SHA-256 of a plain one. Proves the object is byte
/// for byte what a writer sealed under this name (used by geo-copy).
pub fn check(stored: &[u8], context: &str, key: Option<&Key>) -> Result<(), String> {
    let (header, body) = parse_header(stored)?;
    if header[5] & ENCRYPTED == 0 {
        return plain_payload(header, body, context, key).map(|_| ());
    }
    let key = sealing_key(header, body, context, key)?;
    // The tag alone: decrypting is not needed to know the bytes are intact.
    match key.check_tag(body, &[header, context.as_bytes()].concat()) {
        true => Ok(()),
        false => Err(AUTH_FAILED.into()),
    }
}

/// The key (of `key`'s ring) that sealed an encrypted object: the one a
/// version 2 header names, or, for version 1, the one whose tag matches.
fn sealing_key<'k>(header: &[u8], body: &[u8], context: &str, key: Option<&'k Key>) -> Result<&'k Key, String> {
    let key = key.ok_or(NO_KEY)?;
    if header[4] == VERSION_1 {
        let aad = [header, context.as_bytes()].concat();
        return key.ring().find(|k| k.check_tag(body, &aad)).ok_or_else(|| AUTH_FAILED.into());
    }
    let id = hex::encode(&header[BASE_HEADER_LEN..]);
    key.find(&id).ok_or_else(|| {
        format!(
            "sealed under key {id}, which the key file does not hold (the current key is {}): put that key back in the key file, \
             on a line after the current one",
            key.id()
        )
    })
}

const AUTH_FAILED: &str = "authentication failed (corrupt, truncated, moved, or another key)";
const NO_KEY: &str = "the object is encrypted and no key was given";

/// The header and body of a stored object, with magic and version checked.
fn parse_header(stored: &[u8]) -> Result<(&[u8], &[u8]), String> {
    if stored.len() < BASE_HEADER_LEN || &stored[..4] != MAGIC {
        return Err("not a Lifeboat object (bad magic)".into());
    }
    let len = match (stored[4], stored[5] & ENCRYPTED != 0) {
        (VERSION, true) => BASE_HEADER_LEN + KEY_ID_LEN,
        (VERSION | VERSION_1, _) => BASE_HEADER_LEN,
        (v, _) => return Err(format!("unknown envelope version {v}")),
    };
    if stored.len() < len {
        return Err("truncated".into());
    }
    Ok(stored.split_at(len))
}

/// Unwrap a stored object, checking its seal. The error says what is wrong.
pub fn open(stored: Vec<u8>, context: &str, key: Option<&Key>) -> Result<Vec<u8>, String> {
    open_keyed(stored, context, key).map(|(plain, _)| plain)
}

/// [`open`], also naming the key (of `key`'s ring) that had sealed it.
pub fn open_keyed<'k>(stored: Vec<u8>, context: &str, key: Option<&'k Key>) -> Result<(Vec<u8>, Option<&'k Key>), String> {
    let (flags, payload, sealer) = unseal_payload(stored, context, key)?;
    Ok((decompress(flags, payload)?, sealer))
}

fn decompress(flags: u8, payload: Vec<u8>) -> Result<Vec<u8>, String> {
    if flags & ZSTD == 0 {
        return Ok(payload);
    }
    // Frames written by `seal` carry their content size: decompress into one
    // exact allocation (WAL segments are 16 MiB; regrowing costs page faults).
    match zstd::zstd_safe::get_frame_content_size(&payload) {
        Ok(Some(size)) if size > MAX_OBJECT => {
            Err(format!("it claims {size} bytes uncompressed, more than any object holds ({MAX_OBJECT})"))
        }
        Ok(Some(size)) => zstd::bulk::decompress(&payload, size as usize).map_err(|e| format!("zstd: {e}")),
        _ => decompress_bounded(&payload, MAX_OBJECT),
    }
}

/// A frame without its content size: stream it, refusing more than `limit` bytes.
fn decompress_bounded(payload: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let decoder = zstd::stream::Decoder::new(payload).map_err(|e| format!("zstd: {e}"))?;
    let mut out = Vec::new();
    decoder.take(limit + 1).read_to_end(&mut out).map_err(|e| format!("zstd: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!("it decompresses to more than any object holds ({limit} bytes)"));
    }
    Ok(out)
}

/// The flags and the (possibly compressed) payload of a sealed object,
/// unwrapped in the buffer it was read into, and the key that sealed it.
fn unseal_payload<'k>(mut stored: Vec<u8>, context: &str, key: Option<&'k Key>) -> Result<(u8, Vec<u8>, Option<&'k Key>), String> {
    let (header, body) = parse_header(&stored)?;
    let flags = header[5];
    if flags & ENCRYPTED == 0 {
        let start = stored.len() - plain_payload(header, body, context, key)?.len();
        stored.drain(..start);
        return Ok((flags, stored, None));
    }
    let sealer = sealing_key(header, body, context, key)?;
    let (header_len, aad) = (header.len(), [header, context.as_bytes()].concat());
    let len = sealer.open_in_place(&mut stored, header_len, &aad).ok_or(AUTH_FAILED)?;
    stored.truncate(len);
    Ok((flags, stored, Some(sealer)))
}

/// The payload of a plain (unencrypted) object, its SHA-256 seal checked.
fn plain_payload<'a>(header: &[u8], body: &'a [u8], context: &str, key: Option<&Key>) -> Result<&'a [u8], String> {
    if key.is_some() {
        return Err("the object is not encrypted but the repository is".into());
    }
    if body.len() < 32 {
        return Err("truncated".into());
    }
    let (seal, payload) = body.split_at(32);
    if plain_seal(header, context, payload) != seal {
        return Err("SHA-256 seal does not match (corrupt or truncated)".into());
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_frame_without_its_size_decompresses_only_up_to_the_limit() {
        // A streamed frame (no content size in its header), as a hostile writer could store.
        let mut encoder = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
        std::io::Write::write_all(&mut encoder, &vec![0u8; 64 << 10]).unwrap();
        let frame = encoder.finish().unwrap();
        assert_eq!(zstd::zstd_safe::get_frame_content_size(&frame).unwrap(), None);
        assert_eq!(super::decompress_bounded(&frame, 64 << 10).unwrap().len(), 64 << 10);
        let err = super::decompress_bounded(&frame, 4096).unwrap_err();
        assert!(err.contains("more than any object holds"), "{err}");
    }

    use super::*;

    #[test]
    fn round_trips_plain_and_encrypted() {
        let key = Key::from_hex(&"42".repeat(32)).unwrap();
        for data in [&b""[..], b"x", &vec![7u8; 100_000][..]] {
            for k in [None, Some(&key)] {
                let sealed = seal(data, "ctx", 1, k);
                assert_eq!(open(sealed.clone(), "ctx", k).unwrap(), data);
                assert!(open(sealed.clone(), "other", k).is_err(), "context is bound");
            }
        }
    }

    /// Objects name the key that sealed them: a ring whose current key is
    /// newer opens them with the retired one, a ring without it says which
    /// key is missing, and version 1 objects (no key id) still open.
    #[test]
    fn objects_open_under_the_key_that_sealed_them() {
        let old = Key::from_hex(&Key::generate_hex()).unwrap();
        let new = Key::from_hex(&Key::generate_hex()).unwrap();
        let ring = new.clone().with_retired(vec![old.clone()]);
        let sealed = seal(b"ledger", "c", 1, Some(&old));
        assert_eq!(&sealed[6..14], &old.id_bytes());
        let (plain, sealer) = open_keyed(sealed.clone(), "c", Some(&ring)).unwrap();
        assert_eq!((plain.as_slice(), sealer.map(Key::id)), (&b"ledger"[..], Some(old.id())));
        assert!(check(&sealed, "c", Some(&ring)).is_ok());
        let err = open(sealed, "c", Some(&new)).unwrap_err();
        assert!(err.contains(&format!("sealed under key {}", old.id())) && err.contains(new.id()), "{err}");

        let header = [&MAGIC[..], &[VERSION_1, ENCRYPTED]].concat();
        let v1 = [header.clone(), old.seal(b"written before key ids", &[&header[..], b"c"].concat())].concat();
        assert_eq!(open(v1.clone(), "c", Some(&ring)).unwrap(), b"written before key ids");
        assert!(check(&v1, "c", Some(&ring)).is_ok());
        assert!(open(v1, "c", Some(&new)).unwrap_err().contains("authentication failed"));
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let key = Key::from_hex(&"42".repeat(32)).unwrap();
        for k in [None, Some(&key)] {
            let sealed = seal(b"ledger rows ledger rows ledger rows", "c", 1, k);
            for i in 0..sealed.len() {
                let mut bad = sealed.clone();
                bad[i] ^= 0x10;
                assert!(open(bad.clone(), "c", k).is_err(), "flip at {i} went unnoticed");
                assert!(check(&bad, "c", k).is_err(), "check missed the flip at {i}");
            }
            assert!(check(&sealed, "c", k).is_ok());
            assert!(open(sealed[..sealed.len() - 1].to_vec(), "c", k).is_err(), "truncation");
        }
    }
}
