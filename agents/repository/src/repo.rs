//! [`Repository`]: opening and creating repositories, and reading and writing
//! their objects (chunks and manifests) with verification on every read.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use lifeboat_storage::{DynStore, ObjectPath, PutMode, StoreError};

use crate::crypto::{self, Key};
use crate::envelope;
use crate::error::{RepoError, Result};
use crate::format::{self, Chunking, Compression, Encryption, RepoConfig};
use crate::manifest::Manifest;
use crate::progress::Progress;

/// Options for `repo init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub compression_level: i32,
    pub chunking: Chunking,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            // zstd level 1: pgBackRest-class speed; the data is mostly already dense pages.
            compression_level: 1,
            chunking: Chunking { algorithm: "fastcdc-2020".into(), min_size: 256 << 10, avg_size: 1 << 20, max_size: 4 << 20 },
        }
    }
}

/// A backup reference found by listing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BackupRef {
    pub cell: String,
    pub id: String,
}

/// An open repository. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Repository {
    store: DynStore,
    config: Arc<RepoConfig>,
    key: Option<Key>,
    progress: Arc<Progress>,
}

fn with_mac(config: RepoConfig, key: &Key) -> RepoConfig {
    RepoConfig { mac: Some(hex::encode(key.metadata_mac(format::CONFIG_KEY, &config.mac_input()))), ..config }
}

/// An encrypted repository's config must carry its MAC under `key`.
fn check_config_mac(config: &RepoConfig, key: &Key) -> Result<()> {
    let corrupt = |reason: &str| RepoError::Corrupt { key: format::CONFIG_KEY.into(), reason: reason.into() };
    let mac = config
        .mac
        .as_deref()
        .ok_or_else(|| corrupt("it carries no MAC; it was edited, or written by a Lifeboat older than 0.1 (re-create the repository)"))?;
    let tag = hex::decode(mac).map_err(|_| corrupt("its MAC is not hex"))?;
    if !key.check_metadata_mac(format::CONFIG_KEY, &config.mac_input(), &tag) {
        return Err(corrupt("its MAC does not match under the repository key: it was edited or replaced; restore it from a geo-copy (`repo copy` keeps it byte for byte)"));
    }
    Ok(())
}

impl Repository {
    /// Bytes done of the data path running now (for a progress bar).
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// Create a new repository in an empty location.
    pub async fn init(store: DynStore, key: Option<Key>, options: InitOptions) -> Result<Self> {
        store.prepare().await?;
        let location = store.describe();
        if store.head(&format::path(format::CONFIG_KEY)).await?.is_some() {
            return Err(RepoError::AlreadyInitialised { location });
        }
        let config = RepoConfig {
            format: format::FORMAT_NAME.into(),
            version: format::FORMAT_VERSION,
            id: hex::encode(rand::random::<[u8; 16]>()),
            created: OffsetDateTime::now_utc(),
            chunking: options.chunking,
            compression: Compression { algorithm: "zstd".into(), level: options.compression_level },
            encryption: key.as_ref().map(|k| Encryption {
                algorithm: crypto::ALGORITHM.into(),
                key_id: k.id().into(),
                retired_key_ids: Vec::new(),
            }),
            chunk_id: if key.is_some() { "hmac-sha256" } else { "sha256" }.into(),
            mac: None,
        };
        config.check_values().map_err(RepoError::Invalid)?;
        let config = match &key {
            Some(k) => with_mac(config, k),
            None => config,
        };
        Self::write_config(&store, &config).await?;
        Ok(Repository { store, config: Arc::new(config), key, progress: Arc::default() })
    }

    /// Write a config object where none exists (init and geo-copy).
    pub(crate) async fn write_config(store: &DynStore, config: &RepoConfig) -> Result<()> {
        let raw = serde_json::to_vec_pretty(config).expect("config serialises");
        match store.put(&format::path(format::CONFIG_KEY), Bytes::from(raw), PutMode::Create).await {
            Ok(()) => Ok(()),
            Err(StoreError::AlreadyExists { .. }) => Err(RepoError::AlreadyInitialised { location: store.describe() }),
            Err(e) => Err(e.into()),
        }
    }

    /// Read a location's config, or `None` if it holds no repository.
    pub async fn read_config(store: &DynStore) -> Result<Option<RepoConfig>> {
        match store.get_bounded(&format::path(format::CONFIG_KEY), format::MAX_CONFIG_SIZE).await {
            Ok(raw) => Ok(Some(RepoConfig::parse(&raw, &store.describe())?)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Open an existing repository, checking the key against its config.
    pub async fn open(store: DynStore, key: Option<Key>) -> Result<Self> {
        let location = store.describe();
        let config = Self::read_config(&store).await?.ok_or_else(|| RepoError::NotARepository { location: location.clone() })?;
        match (&config.encryption, &key) {
            (Some(enc), None) => return Err(RepoError::KeyRequired { location, key_id: enc.key_id.clone() }),
            // The config names the key file's current key, or (a rotation
            // not yet carried to this location) one of its retired keys.
            (Some(enc), Some(k)) => match k.find(&enc.key_id) {
                Some(named) => check_config_mac(&config, named)?,
                None => {
                    let given = k.ring().map(|k| k.id()).collect::<Vec<_>>().join(", ");
                    return Err(RepoError::WrongKey { location, expected: enc.key_id.clone(), given });
                }
            },
            (None, Some(_)) => return Err(RepoError::NotEncrypted { location }),
            (None, None) => {}
        }
        Ok(Repository { store, config: Arc::new(config), key, progress: Arc::default() })
    }

    /// Whether the config already names the key file's current key (else a
    /// rotation has not reached this location yet).
    pub fn config_names_current_key(&self) -> bool {
        match (&self.config.encryption, &self.key) {
            (Some(enc), Some(k)) => enc.key_id == k.id(),
            _ => true,
        }
    }

    /// Carry a key rotation to this location: the config names the current
    /// key, lists the one it named before as retired, and is MACed under the
    /// current key. Objects are not rewritten: they stay readable under the
    /// retired key. Returns false when there was nothing to do.
    pub async fn adopt_current_key(&mut self) -> Result<bool> {
        let (Some(enc), Some(key)) = (&self.config.encryption, &self.key) else { return Ok(false) };
        if enc.key_id == key.id() {
            return Ok(false);
        }
        let mut retired = vec![enc.key_id.clone()];
        retired.extend(enc.retired_key_ids.iter().filter(|id| *id != key.id() && **id != enc.key_id).cloned());
        let encryption = Encryption { key_id: key.id().into(), retired_key_ids: retired, ..enc.clone() };
        let config = with_mac(RepoConfig { encryption: Some(encryption), mac: None, ..(*self.config).clone() }, key);
        let raw = serde_json::to_vec_pretty(&config).expect("config serialises");
        self.store.put(&format::path(format::CONFIG_KEY), Bytes::from(raw), PutMode::Overwrite).await?;
        self.config = Arc::new(config);
        Ok(true)
    }

    /// The store the repository lives in.
    pub fn store(&self) -> &DynStore {
        &self.store
    }

    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    pub fn key(&self) -> Option<&Key> {
        self.key.as_ref()
    }

    pub fn location(&self) -> String {
        self.store.describe()
    }

    /// The chunk id of some plaintext, as this repository computes it.
    pub fn chunk_id(&self, data: &[u8]) -> String {
        match &self.key {
            Some(k) => hex::encode(k.chunk_id(data)),
            None => hex::encode(Sha256::digest(data)),
        }
    }

    /// Seed for the content-defined chunker (keyed in encrypted repositories).
    pub fn chunker_seed(&self) -> u64 {
        self.key.as_ref().map_or(0, |k| k.chunker_seed())
    }

    /// Wrap plaintext for storage at `path`.
    pub fn seal(&self, path: &ObjectPath, plain: &[u8]) -> Vec<u8> {
        envelope::seal(plain, path.as_str(), self.config.compression.level, self.key.as_ref())
    }

    /// Check and unwrap a stored object read from `path`. For chunks, the
    /// plaintext must also hash to the chunk id in the key.
    pub fn unseal(&self, path: &ObjectPath, stored: Vec<u8>) -> Result<Vec<u8>> {
        let corrupt = |reason: String| RepoError::Corrupt { key: path.to_string(), reason };
        let (plain, sealer) = envelope::open_keyed(stored, path.as_str(), self.key.as_ref()).map_err(corrupt)?;
        if let Some(id) = format::chunk_id_of(path.as_str()) {
            // Chunk ids are keyed by the key that sealed the chunk (a retired one, after a rotation).
            let actual = match sealer {
                Some(k) => hex::encode(k.chunk_id(&plain)),
                None => self.chunk_id(&plain),
            };
            if actual != id {
                return Err(corrupt(format!("content hashes to {actual}")));
            }
        }
        Ok(plain)
    }

    /// Check a stored object's seal (not its plaintext hash): cheap enough
    /// for geo-copy, and proof the bytes are what a writer sealed at `path`.
    pub fn check_seal(&self, path: &ObjectPath, stored: &[u8]) -> Result<()> {
        envelope::check(stored, path.as_str(), self.key.as_ref()).map_err(|reason| RepoError::Corrupt { key: path.to_string(), reason })
    }

    /// An object as stored, refused when larger than any of its kind.
    pub async fn get_stored(&self, path: &ObjectPath) -> Result<Bytes> {
        Ok(self.store.get_bounded(path, format::max_stored_size(path.as_str(), &self.config)).await?)
    }

    /// Read and verify an object.
    pub async fn read_object(&self, path: &ObjectPath) -> Result<Vec<u8>> {
        let stored = self.get_stored(path).await?;
        let this = self.clone();
        let path = path.clone();
        // Unsealed in the buffer it was read into (no copy when this is its only reference).
        tokio::task::spawn_blocking(move || this.unseal(&path, Vec::from(stored))).await.expect("unseal does not panic")
    }

    /// Read and verify one chunk.
    pub async fn read_chunk(&self, id: &str) -> Result<Vec<u8>> {
        self.read_object(&format::chunk_path(id)).await
    }

    /// Every chunk in the repository: id → stored size.
    pub async fn list_chunks(&self) -> Result<HashMap<String, u64>> {
        Ok(format::chunks_in(&self.store.list(format::CHUNKS).await?))
    }

    /// Store a sealed chunk unless it exists. Returns true if it was uploaded.
    pub async fn put_sealed_chunk(&self, id: &str, sealed: Vec<u8>) -> Result<bool> {
        match self.store.put(&format::chunk_path(id), Bytes::from(sealed), PutMode::Create).await {
            Ok(()) => Ok(true),
            // Same id, same content: someone (or an earlier attempt) stored it already.
            Err(StoreError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Seal `plain` for `path` (encrypted or hashed, bound to the path) and
    /// store it in `mode`, durably: what [`Repository::read_object`] reads
    /// back and verifies. With [`PutMode::Create`] an existing object is
    /// [`StoreError::AlreadyExists`].
    pub async fn put_sealed(&self, path: &ObjectPath, plain: &[u8], mode: PutMode) -> Result<()> {
        let sealed = Bytes::from(self.seal(path, plain));
        self.store.put(path, sealed, mode).await?;
        self.store.sync().await?;
        Ok(())
    }

    /// Every sealed JSON object under `prefix` (locks, holds), with what it
    /// says: `None` when it does not verify under the key or is not a `T`
    /// (forged, damaged, or written before these objects were sealed).
    /// Objects deleted between the listing and the read are skipped.
    pub async fn list_sealed<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(lifeboat_storage::ObjectMeta, Option<T>)>> {
        let mut out = Vec::new();
        for meta in self.store.list(prefix).await? {
            let value = match self.read_object(&meta.path).await {
                Ok(plain) => serde_json::from_slice::<T>(&plain).ok(),
                Err(RepoError::Store(e)) if e.is_not_found() => continue,
                Err(RepoError::Corrupt { .. }) => None,
                Err(e) => return Err(e),
            };
            out.push((meta, value));
        }
        Ok(out)
    }

    /// Commit a backup: write its manifest (never overwriting one).
    pub async fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        format::validate_cell(&manifest.cell)?;
        let path = format::manifest_path(&manifest.cell, &manifest.id);
        let raw = serde_json::to_vec(manifest).expect("manifest serialises");
        self.store.sync().await?; // everything the manifest references is durable first
        self.put_sealed(&path, &raw, PutMode::Create).await // and then the commit point itself
    }

    pub async fn read_manifest(&self, cell: &str, id: &str) -> Result<Manifest> {
        format::validate_cell(cell)?;
        let path = ObjectPath::parse(format!("{}{cell}/{id}", format::MANIFESTS))
            .map_err(|_| RepoError::Invalid(format!("invalid backup id {id:?}")))?;
        let raw = match self.read_object(&path).await {
            Err(RepoError::Store(StoreError::NotFound { .. })) => {
                return Err(RepoError::BackupNotFound { id: id.into(), location: self.location() })
            }
            other => other?,
        };
        serde_json::from_slice(&raw).map_err(|e| RepoError::Corrupt { key: path.to_string(), reason: e.to_string() })
    }

    /// Backups in the repository (all cells, or one), oldest first.
    pub async fn list_backups(&self, cell: Option<&str>) -> Result<Vec<BackupRef>> {
        let prefix = match cell {
            Some(c) => {
                format::validate_cell(c)?;
                format!("{}{c}/", format::MANIFESTS)
            }
            None => format::MANIFESTS.to_string(),
        };
        let mut out: Vec<BackupRef> = self
            .store
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|m| {
                let rest = m.path.as_str().strip_prefix(format::MANIFESTS)?;
                let (cell, id) = rest.split_once('/')?;
                Some(BackupRef { cell: cell.into(), id: id.into() })
            })
            .collect();
        out.sort_by(|a, b| (a.id.as_str(), a.cell.as_str()).cmp(&(b.id.as_str(), b.cell.as_str())));
        Ok(out)
    }

    /// Resolve `latest` or an id to a manifest.
    pub async fn resolve_backup(&self, cell: &str, id_or_latest: &str) -> Result<Manifest> {
        if id_or_latest == "latest" {
            let latest = self
                .list_backups(Some(cell))
                .await?
                .pop()
                .ok_or_else(|| RepoError::BackupNotFound { id: format!("latest for cell {cell}"), location: self.location() })?;
            return self.read_manifest(cell, &latest.id).await;
        }
        self.read_manifest(cell, id_or_latest).await
    }
}
