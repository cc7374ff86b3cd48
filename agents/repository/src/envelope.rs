//! The envelope every repository object (except the plain-JSON config) is
//! stored in: compression, then either encryption or a SHA-256 seal.
//!
//! ```text
//! "LBOX" | version (1) | flags (bit 0: zstd, bit 1: encrypted)
//!   encrypted:  nonce (24) | XChaCha20-Poly1305(payload, aad = header || context)
//!   plain:      SHA-256(header || context || payload) (32) | payload
//! ```
//!
//! `context` is the object's logical name (a chunk id, a manifest key), so an
//! object copied under another name fails to open. Compression is skipped
//! when it does not shrink the data.

use sha2::{Digest, Sha256};

use crate::crypto::Key;

const MAGIC: &[u8; 4] = b"LBOX";
const VERSION: u8 = 1;
const ZSTD: u8 = 1;
const ENCRYPTED: u8 = 2;
const HEADER_LEN: usize = 6;
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
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(MAGIC);
    header[4] = VERSION;
    header[5] = flags;
    let mut out = Vec::with_capacity(HEADER_LEN + 40 + payload.len());
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
    let key = key.ok_or(NO_KEY)?;
    // The tag alone: decrypting is not needed to know the bytes are intact.
    match key.check_tag(body, &[header, context.as_bytes()].concat()) {
        true => Ok(()),
        false => Err(AUTH_FAILED.into()),
    }
}

const AUTH_FAILED: &str = "authentication failed (corrupt, truncated, moved, or another key)";
const NO_KEY: &str = "the object is encrypted and no key was given";

/// The header and body of a stored object, with magic and version checked.
fn parse_header(stored: &[u8]) -> Result<(&[u8], &[u8]), String> {
    if stored.len() < HEADER_LEN || &stored[..4] != MAGIC {
        return Err("not a Lifeboat object (bad magic)".into());
    }
    if stored[4] != VERSION {
        return Err(format!("unknown envelope version {}", stored[4]));
    }
    Ok(stored.split_at(HEADER_LEN))
}

/// Unwrap a stored object, checking its seal. The error says what is wrong.
pub fn open(stored: Vec<u8>, context: &str, key: Option<&Key>) -> Result<Vec<u8>, String> {
    let (flags, payload) = unseal_payload(stored, context, key)?;
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
/// unwrapped in the buffer it was read into.
fn unseal_payload(mut stored: Vec<u8>, context: &str, key: Option<&Key>) -> Result<(u8, Vec<u8>), String> {
    let (header, body) = parse_header(&stored)?;
    let flags = header[5];
    if flags & ENCRYPTED == 0 {
        let start = stored.len() - plain_payload(header, body, context, key)?.len();
        stored.drain(..start);
        return Ok((flags, stored));
    }
    let key = key.ok_or(NO_KEY)?;
    let aad = [header, context.as_bytes()].concat();
    let len = key.open_in_place(&mut stored, HEADER_LEN, &aad).ok_or(AUTH_FAILED)?;
    stored.truncate(len);
    Ok((flags, stored))
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
