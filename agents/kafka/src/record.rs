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
//!
//! Records are handled as borrowed views ([`Record`]) of where they live
//! (a consumed message, a decoded buffer): the data path copies each byte
//! only into the stream it is bound for.

use rdkafka::message::{Headers, Message};
use rdkafka::Timestamp;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record<'a> {
    pub offset: i64,
    pub timestamp_type: u8,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

pub const TS_NONE: u8 = 0;
pub const TS_CREATE: u8 = 1;
pub const TS_LOG_APPEND: u8 = 2;

fn bytes_len(b: Option<&[u8]>) -> usize {
    4 + b.map_or(0, <[u8]>::len)
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(b) => {
            out.extend_from_slice(&(b.len() as i32).to_be_bytes());
            out.extend_from_slice(b);
        }
    }
}

impl<'a> Record<'a> {
    /// A consumed message, borrowed.
    pub fn of<M: Message>(m: &'a M) -> Record<'a> {
        let (timestamp_type, timestamp) = match m.timestamp() {
            Timestamp::NotAvailable => (TS_NONE, -1),
            Timestamp::CreateTime(t) => (TS_CREATE, t),
            Timestamp::LogAppendTime(t) => (TS_LOG_APPEND, t),
        };
        let headers = m.headers().map(|h| h.iter().map(|h| (h.key, h.value)).collect()).unwrap_or_default();
        Record { offset: m.offset(), timestamp_type, timestamp, key: m.key(), value: m.payload(), headers }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.push(self.timestamp_type);
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        put_bytes(out, self.key);
        put_bytes(out, self.value);
        out.extend_from_slice(&(self.headers.len() as u32).to_be_bytes());
        for (name, value) in &self.headers {
            out.extend_from_slice(&(name.len() as u32).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            put_bytes(out, *value);
        }
    }

    /// Plaintext size of the encoding.
    pub fn encoded_len(&self) -> usize {
        9 + self.content_len()
    }

    /// Size of everything but the offset and timestamp type: what the hash covers.
    fn content_len(&self) -> usize {
        8 + bytes_len(self.key) + bytes_len(self.value) + 4 + self.headers.iter().map(|(n, v)| 4 + n.len() + bytes_len(*v)).sum::<usize>()
    }
}

/// Running content hash of a partition's records, in order.
#[derive(Clone, Default)]
pub struct ContentHash {
    hasher: Sha256,
}

impl ContentHash {
    /// Adds the record's length and content, exactly the bytes of its
    /// encoding after the offset and timestamp type.
    pub fn add(&mut self, r: &Record<'_>) {
        let h = &mut self.hasher;
        let bytes = |h: &mut Sha256, b: Option<&[u8]>| match b {
            None => h.update((-1i32).to_be_bytes()),
            Some(b) => {
                h.update((b.len() as i32).to_be_bytes());
                h.update(b);
            }
        };
        h.update((r.content_len() as u64).to_be_bytes());
        h.update(r.timestamp.to_be_bytes());
        bytes(h, r.key);
        bytes(h, r.value);
        h.update((r.headers.len() as u32).to_be_bytes());
        for (name, value) in &r.headers {
            h.update((name.len() as u32).to_be_bytes());
            h.update(name.as_bytes());
            bytes(h, *value);
        }
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

/// Where a complete record lies in the decoder's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    start: usize,
    end: usize,
    pub offset: i64,
}

struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.data.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|b| i32::from_be_bytes(b.try_into().unwrap()))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_be_bytes(b.try_into().unwrap()))
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8).map(|b| i64::from_be_bytes(b.try_into().unwrap()))
    }
    fn bytes(&mut self) -> Result<Option<Option<&'a [u8]>>, String> {
        let Some(len) = self.i32() else { return Ok(None) };
        match len {
            -1 => Ok(Some(None)),
            n if n < -1 => Err(format!("negative length {n}")),
            n => Ok(self.take(n as usize).map(Some)),
        }
    }
}

/// Parse one record at the start of `data`: `Ok(None)` when incomplete.
fn parse(data: &[u8]) -> Result<Option<(Record<'_>, usize)>, String> {
    macro_rules! need {
        ($e:expr) => {
            match $e {
                Some(v) => v,
                None => return Ok(None),
            }
        };
    }
    let mut c = Cursor { data, at: 0 };
    let offset = need!(c.i64());
    let timestamp_type = need!(c.take(1))[0];
    if timestamp_type > TS_LOG_APPEND {
        return Err(format!("unknown timestamp type {timestamp_type} at offset {offset}"));
    }
    let timestamp = need!(c.i64());
    let key = need!(c.bytes()?);
    let value = need!(c.bytes()?);
    let count = need!(c.u32());
    let mut headers = Vec::with_capacity(count.min(64) as usize);
    for _ in 0..count {
        let len = need!(c.u32()) as usize;
        let name = std::str::from_utf8(need!(c.take(len))).map_err(|_| format!("header name is not UTF-8 at offset {offset}"))?;
        headers.push((name, need!(c.bytes()?)));
    }
    Ok(Some((Record { offset, timestamp_type, timestamp, key, value, headers }, c.at)))
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

    /// Where the next complete record is (and consume it), `Ok(None)` when
    /// more bytes are needed. View it with [`Decoder::record`] before the next `feed`.
    pub fn next_span(&mut self) -> Result<Option<Span>, String> {
        match parse(&self.buf[self.pos..])? {
            None => Ok(None),
            Some((r, len)) => {
                let span = Span { start: self.pos, end: self.pos + len, offset: r.offset };
                self.pos += len;
                Ok(Some(span))
            }
        }
    }

    pub fn record(&self, span: Span) -> Record<'_> {
        parse(&self.buf[span.start..span.end]).ok().flatten().expect("a span holds one parsed record").0
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
                key: Some(b"k"),
                value: Some(b""),
                headers: vec![("h", None), ("i", Some(b"v"))],
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
                while let Some(span) = d.next_span().unwrap() {
                    let mut again = Vec::new();
                    d.record(span).encode(&mut again);
                    got.push(again);
                }
            }
            assert_eq!(got.concat(), bytes);
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn content_hash_ignores_offsets_and_matches_the_encoding() {
        let a = Record { offset: 1, timestamp_type: TS_CREATE, timestamp: 5, key: None, value: Some(b"x"), headers: vec![("h", None)] };
        let b = Record { offset: 9, timestamp_type: TS_LOG_APPEND, ..a.clone() };
        let (mut ha, mut hb) = (ContentHash::default(), ContentHash::default());
        ha.add(&a);
        hb.add(&b);
        assert_eq!(ha.hex(), hb.hex());
        // The documented definition: length, then the encoding minus 9 bytes.
        let mut enc = Vec::new();
        a.encode(&mut enc);
        let mut reference = Sha256::new();
        reference.update(((enc.len() - 9) as u64).to_be_bytes());
        reference.update(&enc[9..]);
        assert_eq!(ha.hex(), hex::encode(reference.finalize()));
        hb.add(&b);
        assert_ne!(ha.hex(), hb.hex());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut d = Decoder::default();
        let mut bytes = vec![0u8; 9];
        bytes[8] = 7; // timestamp type 7
        bytes.extend_from_slice(&[0; 16]);
        d.feed(&bytes);
        assert!(d.next_span().is_err());
        let mut d = Decoder::default();
        let mut bytes = vec![0u8; 17];
        bytes.extend_from_slice(&(-5i32).to_be_bytes());
        d.feed(&bytes);
        assert!(d.next_span().unwrap_err().contains("negative length"));
    }
}
