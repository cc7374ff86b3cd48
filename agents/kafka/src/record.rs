//! One Kafka record as Lifeboat stores it, byte for byte, and the content
//! hash that compares a snapshot with a restored topic.
//!
//! Encoding (all integers big-endian), records back to back:
//! ```text
//! i64 offset | u8 timestamp type (0 none, 1 create, 2 log append) | i64 timestamp ms
//! i32 key length (-1: null) | key | i32 value length (-1: null) | value
//! u32 header count | per header: u32 name length | name | i32 value length (-1: null) | value
//! ```
//! The content hash covers timestamp, key, value and headers in order, not
//! the offset or timestamp type (a restore gives new offsets and, on topics
//! created by the restore, create-time timestamps).

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    pub timestamp_type: u8,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

pub const TS_NONE: u8 = 0;
pub const TS_CREATE: u8 = 1;
pub const TS_LOG_APPEND: u8 = 2;

fn put_bytes(out: &mut Vec<u8>, b: &Option<Vec<u8>>) {
    match b {
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(b) => {
            out.extend_from_slice(&(b.len() as i32).to_be_bytes());
            out.extend_from_slice(b);
        }
    }
}

impl Record {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.push(self.timestamp_type);
        self.encode_content(out);
    }

    /// Everything but the offset and timestamp type: what the hash covers.
    fn encode_content(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        put_bytes(out, &self.key);
        put_bytes(out, &self.value);
        out.extend_from_slice(&(self.headers.len() as u32).to_be_bytes());
        for (name, value) in &self.headers {
            out.extend_from_slice(&(name.len() as u32).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            put_bytes(out, value);
        }
    }

    /// Plaintext size of the encoding.
    pub fn encoded_len(&self) -> usize {
        let b = |x: &Option<Vec<u8>>| 4 + x.as_ref().map_or(0, |v| v.len());
        8 + 1 + 8 + b(&self.key) + b(&self.value) + 4 + self.headers.iter().map(|(n, v)| 4 + n.len() + b(v)).sum::<usize>()
    }
}

/// Running content hash of a partition's records, in order.
#[derive(Clone, Default)]
pub struct ContentHash {
    hasher: Sha256,
    scratch: Vec<u8>,
}

impl ContentHash {
    pub fn add(&mut self, r: &Record) {
        self.scratch.clear();
        r.encode_content(&mut self.scratch);
        self.hasher.update((self.scratch.len() as u64).to_be_bytes());
        self.hasher.update(&self.scratch);
    }

    pub fn hex(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

/// Decodes records from a byte stream delivered in arbitrary pieces.
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
    pos: usize,
}

impl Decoder {
    pub fn feed(&mut self, piece: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > (1 << 20) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(piece);
    }

    /// The next complete record, `Ok(None)` when more bytes are needed.
    pub fn next_record(&mut self) -> Result<Option<Record>, String> {
        let mut at = self.pos;
        let data = &self.buf;
        macro_rules! take {
            ($n:expr) => {{
                let n = $n;
                if data.len() < at + n {
                    return Ok(None);
                }
                let s = &data[at..at + n];
                at += n;
                s
            }};
        }
        macro_rules! int {
            ($t:ty) => {
                <$t>::from_be_bytes(take!(std::mem::size_of::<$t>()).try_into().unwrap())
            };
        }
        macro_rules! opt_bytes {
            () => {{
                let len = int!(i32);
                if len < -1 {
                    return Err(format!("negative length {len}"));
                }
                if len == -1 { None } else { Some(take!(len as usize).to_vec()) }
            }};
        }
        let offset = int!(i64);
        let timestamp_type = take!(1)[0];
        if timestamp_type > TS_LOG_APPEND {
            return Err(format!("unknown timestamp type {timestamp_type} at offset {offset}"));
        }
        let timestamp = int!(i64);
        let key = opt_bytes!();
        let value = opt_bytes!();
        let count = int!(u32);
        let mut headers = Vec::with_capacity(count.min(1024) as usize);
        for _ in 0..count {
            let len = int!(u32) as usize;
            let name = String::from_utf8(take!(len).to_vec()).map_err(|_| format!("header name is not UTF-8 at offset {offset}"))?;
            headers.push((name, opt_bytes!()));
        }
        self.pos = at;
        Ok(Some(Record { offset, timestamp_type, timestamp, key, value, headers }))
    }

    /// Bytes fed but not yet decoded (non-zero at the end: truncated data).
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_any_pieces() {
        let records = vec![
            Record { offset: 0, timestamp_type: TS_CREATE, timestamp: 1, key: None, value: None, headers: vec![] },
            Record {
                offset: 7,
                timestamp_type: TS_LOG_APPEND,
                timestamp: -1,
                key: Some(b"k".to_vec()),
                value: Some(vec![]),
                headers: vec![("h".into(), None), ("i".into(), Some(b"v".to_vec()))],
            },
        ];
        let mut bytes = Vec::new();
        for r in &records {
            r.encode(&mut bytes);
        }
        assert_eq!(bytes.len(), records.iter().map(Record::encoded_len).sum::<usize>());
        for piece in [1, 3, 1000] {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for p in bytes.chunks(piece) {
                d.feed(p);
                while let Some(r) = d.next_record().unwrap() {
                    got.push(r);
                }
            }
            assert_eq!(got, records);
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn content_hash_ignores_offsets() {
        let a = Record { offset: 1, timestamp_type: TS_CREATE, timestamp: 5, key: None, value: Some(b"x".to_vec()), headers: vec![] };
        let b = Record { offset: 9, timestamp_type: TS_LOG_APPEND, ..a.clone() };
        let (mut ha, mut hb) = (ContentHash::default(), ContentHash::default());
        ha.add(&a);
        hb.add(&b);
        assert_eq!(ha.hex(), hb.hex());
        hb.add(&b);
        assert_ne!(ha.hex(), hb.hex());
    }
}
