//! Object storage for Lifeboat repositories.
//!
//! This crate owns one small async trait, [`ObjectStore`], and everything that
//! talks to a storage service through it:
//!
//! - backends chosen by URL ([`open`]): `file://` ([`fs::FileStore`], the
//!   embedded default), `s3://` ([`s3::S3Store`], `aws-sdk-s3`) and `az://`
//!   ([`azure::AzureStore`], `azure_storage_blobs`);
//! - wrappers that add behaviour around any backend: [`retry::Resilient`]
//!   (timeouts, retries with backoff and jitter on transient errors only,
//!   cancellation) and [`faults::FaultyStore`] (fault injection for tests);
//! - [`conformance`], the one test suite every backend must pass against its
//!   real server.
//!
//! The trait is deliberately small. Objects are never overwritten by accident:
//! [`PutMode::Create`] fails with [`StoreError::AlreadyExists`] when the key is
//! taken, atomically on every backend.

pub mod azure;
pub mod conformance;
mod error;
pub mod faults;
pub mod fs;
mod location;
mod path;
mod prefix;
pub mod retry;
pub mod s3;
pub mod tls;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use error::StoreError;
pub use location::{Location, ObjectLock, Scheme};
pub use path::ObjectPath;

/// A stream of object bytes, as read from or written to a store.
pub type ByteStream = BoxStream<'static, Result<Bytes, StoreError>>;

/// How a `put` treats an existing object at the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Fail with [`StoreError::AlreadyExists`] if the key exists (atomic check).
    Create,
    /// Replace any existing object (only for objects that are meant to change).
    Overwrite,
}

/// What a store knows about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub path: ObjectPath,
    pub size: u64,
    /// When the object was last written, as the store reports it.
    pub modified: Option<time::OffsetDateTime>,
    /// A content hash the store computed itself from what it received, and
    /// lists: S3's ETag of a single-part upload (the MD5, unless the bucket
    /// encrypts with KMS or customer keys: then it is opaque, and never
    /// equal for different content). None elsewhere: `file://`, S3
    /// multipart uploads, Azure (whose Content-MD5 a writer may set
    /// without Azure checking it).
    pub md5: Option<[u8; 16]>,
}

impl ObjectMeta {
    /// The MD5 an S3 ETag carries: an ETag of 32 hex digits (quoted or
    /// not) is one; a multipart upload's (`...-N`) is not.
    pub fn md5_of_etag(etag: Option<&str>) -> Option<[u8; 16]> {
        let hex = etag?.trim_matches('"');
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(out)
    }
}

/// The operations Lifeboat needs from a storage service.
///
/// Implementations map service errors onto [`StoreError`] so that callers can
/// tell transient failures (retry) from permanent ones (report).
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug + 'static {
    /// A human-readable name of the location, without secrets.
    fn describe(&self) -> String;

    /// This store as a directory of local files, when it is one
    /// (`file://`): a copy between two such stores moves the bytes inside
    /// the kernel ([`fs::FileStore::copy_from`]). Wrappers that must see
    /// every operation (fault injection) keep the default `None`.
    fn as_file_store(&self) -> Option<&fs::FileStore> {
        None
    }

    /// Make sure the bucket, container or directory exists (used by `repo init`).
    async fn prepare(&self) -> Result<(), StoreError>;

    /// Store `data` at `path` durably before returning.
    async fn put(&self, path: &ObjectPath, data: Bytes, mode: PutMode) -> Result<(), StoreError>;

    /// Like `put`, but the content need only be durable after the next
    /// [`ObjectStore::sync`]: for bulk writers (geo-copy) that sync once
    /// before their commit point and can tell a lost write on rerun. Object
    /// stores, where every PUT is durable, keep the default.
    async fn put_deferred(&self, path: &ObjectPath, data: Bytes, mode: PutMode) -> Result<(), StoreError> {
        self.put(path, data, mode).await
    }

    /// Store a stream of unknown length with bounded memory (multipart / block
    /// lists). The object becomes visible only when the whole stream is stored.
    /// Returns the number of bytes stored.
    async fn put_stream(&self, path: &ObjectPath, data: ByteStream, mode: PutMode) -> Result<u64, StoreError>;

    /// Read a whole object into memory.
    async fn get(&self, path: &ObjectPath) -> Result<Bytes, StoreError>;

    /// Read a whole object into memory, refusing one larger than `limit`
    /// bytes without holding more than that (a planted object cannot
    /// exhaust memory). Backends that know the size first refuse before
    /// reading.
    async fn get_bounded(&self, path: &ObjectPath, limit: u64) -> Result<Bytes, StoreError> {
        collect_bounded(self.get_stream(path).await?, limit, || StoreError::TooLarge {
            store: self.describe(),
            path: path.to_string(),
            limit,
        })
        .await
    }

    /// Read an object as a stream, with bounded memory.
    async fn get_stream(&self, path: &ObjectPath) -> Result<ByteStream, StoreError>;

    /// Size of an object, or `None` if it does not exist.
    async fn head(&self, path: &ObjectPath) -> Result<Option<ObjectMeta>, StoreError>;

    /// All objects whose key starts with `prefix` (a plain string prefix, as in
    /// S3), sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;

    /// Delete an object. Deleting a missing object is not an error.
    async fn delete(&self, path: &ObjectPath) -> Result<(), StoreError>;

    /// Put the object under a legal hold (`on`) or lift it, where the store
    /// enforces one (S3 Object Lock): no credential without the right to
    /// change legal holds can delete it meanwhile. False where the store
    /// has none (nothing changed). Wrappers forward it.
    async fn set_legal_hold(&self, path: &ObjectPath, on: bool) -> Result<bool, StoreError> {
        let _ = (path, on);
        Ok(false)
    }

    /// Durability barrier: every object stored before the call (by any
    /// process) survives a crash once it returns. Object contents are
    /// durable when `put` returns; on the filesystem the new names become
    /// durable here (one `syncfs` instead of a directory fsync per object).
    /// Callers sync before and after writing a commit point (a manifest) and
    /// before telling Postgres a WAL file is archived. A no-op for object
    /// stores, where a successful PUT is durable.
    async fn sync(&self) -> Result<(), StoreError>;
}

/// A shared handle to any store.
pub type DynStore = Arc<dyn ObjectStore>;

/// Open the backend a location names, wrapped in [`retry::Resilient`] with the
/// default policy.
pub async fn open(location: &Location) -> Result<DynStore, StoreError> {
    open_with(location, retry::RetryPolicy::from_env()?).await
}

/// Open the backend a location names with an explicit retry policy.
pub async fn open_with(location: &Location, policy: retry::RetryPolicy) -> Result<DynStore, StoreError> {
    let inner: DynStore = match location.scheme() {
        Scheme::File => Arc::new(fs::FileStore::new(location.file_root()?)),
        Scheme::S3 => Arc::new(s3::S3Store::connect(location).await?),
        Scheme::Azure => Arc::new(azure::AzureStore::connect(location)?),
    };
    Ok(Arc::new(retry::Resilient::new(inner, policy)))
}

/// Collect a [`ByteStream`] into memory (for small objects and tests).
/// [`collect`], giving up with `too_large()` past `limit` bytes.
pub async fn collect_bounded(mut stream: ByteStream, limit: u64, too_large: impl Fn() -> StoreError) -> Result<Bytes, StoreError> {
    use futures::StreamExt;
    let mut out = bytes::BytesMut::new();
    while let Some(piece) = stream.next().await {
        let piece = piece?;
        if (out.len() + piece.len()) as u64 > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&piece);
    }
    Ok(out.freeze())
}

pub async fn collect(stream: ByteStream) -> Result<Bytes, StoreError> {
    collect_bounded(stream, u64::MAX, || unreachable!("no object holds more than u64::MAX bytes")).await
}

#[cfg(test)]
mod tests {
    use super::ObjectMeta;

    #[test]
    fn an_etag_is_an_md5_only_for_a_single_part_upload() {
        let md5 = ObjectMeta::md5_of_etag(Some("\"9e107d9d372bb6826bd81d3542a419d6\"")).unwrap();
        assert_eq!((md5[0], md5[15]), (0x9e, 0xd6));
        assert_eq!(ObjectMeta::md5_of_etag(Some("9e107d9d372bb6826bd81d3542a419d6")), Some(md5));
        assert_eq!(ObjectMeta::md5_of_etag(Some("\"9e107d9d372bb6826bd81d3542a419d6-3\"")), None);
        assert_eq!(ObjectMeta::md5_of_etag(Some("\"not-hex-not-hex-not-hex-not-hex!\"")), None);
        assert_eq!(ObjectMeta::md5_of_etag(None), None);
    }
}
