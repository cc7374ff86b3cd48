//! The repository's layout and its self-describing config object.
//!
//! ```text
//! lifeboat.repo.json            plain JSON: format, version, id, chunking, compression, encryption key id, MAC
//! chunks/<aa>/<64 hex>          content-addressed data chunks (envelope)
//! manifests/<cell>/<backup-id>  one per finished backup, written last: the commit point (envelope)
//! holds/<cell>/<backup-id>      legal holds: retention never deletes a held backup (envelope)
//! wal/<cell>/<wal file name>    archived WAL segments and history files (envelope; lifeboat-postgres)
//! locks/<lock-id>               live writers and pruners (envelope, refreshed while running)
//! ```
//! Everything but the config is wrapped in [`crate::envelope`] with the
//! object's key as context; the config carries a MAC instead. See
//! `docs/repository-format.md`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use lifeboat_storage::ObjectPath;

use crate::error::{RepoError, Result};

pub const FORMAT_NAME: &str = "lifeboat-repository";
pub const FORMAT_VERSION: u32 = 1;
pub const CONFIG_KEY: &str = "lifeboat.repo.json";
/// The most bytes a config object holds (it is read before anything else).
pub const MAX_CONFIG_SIZE: u64 = 1 << 20;
pub const CHUNKS: &str = "chunks/";
pub const MANIFESTS: &str = "manifests/";
pub const HOLDS: &str = "holds/";
pub const LOCKS: &str = "locks/";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    pub format: String,
    pub version: u32,
    /// Random id shared by a repository and all its geo-copies.
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    pub chunking: Chunking,
    pub compression: Compression,
    /// `None`: the repository was created without a key and stores plaintext.
    pub encryption: Option<Encryption>,
    /// `sha256` (plain repositories) or `hmac-sha256` (keyed, encrypted ones).
    pub chunk_id: String,
    /// Encrypted repositories: HMAC-SHA-256 (hex) under the repository key
    /// of the config without this field, so an edited config is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunking {
    pub algorithm: String,
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compression {
    pub algorithm: String,
    pub level: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    pub algorithm: String,
    /// The current key: new objects are sealed under it.
    pub key_id: String,
    /// Keys rotated out (newest first): objects sealed under them are
    /// still read when the key file keeps them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_key_ids: Vec<String>,
}

impl RepoConfig {
    /// Parse a stored config, refusing versions newer than this build.
    pub fn parse(raw: &[u8], location: &str) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_slice(raw).map_err(|e| RepoError::Corrupt { key: CONFIG_KEY.into(), reason: e.to_string() })?;
        if value.get("format").and_then(|v| v.as_str()) != Some(FORMAT_NAME) {
            return Err(RepoError::Corrupt { key: CONFIG_KEY.into(), reason: format!("format is not {FORMAT_NAME:?}") });
        }
        let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
        if version > FORMAT_VERSION {
            return Err(RepoError::NewerFormat { location: location.into(), found: version, supported: FORMAT_VERSION });
        }
        let config: RepoConfig =
            serde_json::from_value(value).map_err(|e| RepoError::Corrupt { key: CONFIG_KEY.into(), reason: e.to_string() })?;
        config.check_values().map_err(|reason| RepoError::Corrupt { key: CONFIG_KEY.into(), reason })?;
        Ok(config)
    }

    /// Values this build can work with (fastcdc's and zstd's ranges, known
    /// algorithms), so an edited config is an error, never a panic.
    pub(crate) fn check_values(&self) -> std::result::Result<(), String> {
        let c = &self.chunking;
        let fits = (64..=1 << 20).contains(&c.min_size) && (256..=4 << 20).contains(&c.avg_size) && (1024..=16 << 20).contains(&c.max_size);
        if c.algorithm != "fastcdc-2020" || !fits || !(c.min_size <= c.avg_size && c.avg_size <= c.max_size) {
            return Err(format!(
                "chunking {} {}/{}/{} is not one this build supports (fastcdc-2020, min 64 B-1 MiB <= avg 256 B-4 MiB <= max 1 KiB-16 MiB)",
                c.algorithm, c.min_size, c.avg_size, c.max_size
            ));
        }
        let levels = zstd::compression_level_range();
        if self.compression.algorithm != "zstd" || !levels.contains(&self.compression.level) {
            return Err(format!(
                "compression {} level {} is not zstd {}..={}",
                self.compression.algorithm,
                self.compression.level,
                levels.start(),
                levels.end()
            ));
        }
        match (&self.encryption, self.chunk_id.as_str()) {
            (Some(e), "hmac-sha256") if e.algorithm == crate::crypto::ALGORITHM => Ok(()),
            (None, "sha256") => Ok(()),
            _ => Err(format!("encryption {:?} with chunk ids {:?} is not a combination this build writes", self.encryption, self.chunk_id)),
        }
    }

    /// The bytes the MAC covers: the config as JSON without its MAC.
    pub fn mac_input(&self) -> Vec<u8> {
        let bare = RepoConfig { mac: None, ..self.clone() };
        serde_json::to_vec(&bare).expect("config serialises")
    }
}

/// True for sealed data objects: everything but the config (plain JSON),
/// and locks, holds and manifests (sealed too, but each handled on its own:
/// locks never leave their repository, holds travel with their backups,
/// manifests are the commit points).
pub fn is_sealed_data(key: &str) -> bool {
    key != CONFIG_KEY && !key.starts_with(LOCKS) && !key.starts_with(MANIFESTS) && !key.starts_with(HOLDS)
}

/// The most bytes an object stored at `key` can hold, checked before it is
/// read whole: a chunk its chunker's maximum, locks and holds a few KiB, the
/// config 1 MiB, anything else (WAL segments up to 1 GiB, manifests,
/// Kafka objects, reports) 1 GiB, each plus the envelope.
pub fn max_stored_size(key: &str, config: &RepoConfig) -> u64 {
    const ENVELOPE: u64 = 256;
    if key == CONFIG_KEY {
        MAX_CONFIG_SIZE
    } else if chunk_id_of(key).is_some() {
        u64::from(config.chunking.max_size) + ENVELOPE
    } else if key.starts_with(LOCKS) || key.starts_with(HOLDS) || key.starts_with(crate::fence::FENCES) {
        64 << 10
    } else {
        (1 << 30) + ENVELOPE
    }
}

pub fn path(key: &str) -> ObjectPath {
    ObjectPath::parse(key).expect("repository layout keys are valid object paths")
}

pub fn chunk_path(id_hex: &str) -> ObjectPath {
    path(&format!("{CHUNKS}{}/{}", &id_hex[..2], id_hex))
}

/// The chunk id of a key under `chunks/`, if it is one.
pub fn chunk_id_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(CHUNKS)?;
    let (dir, id) = rest.split_once('/')?;
    (id.len() == 64 && id.starts_with(dir) && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// The chunks in a listing: id → stored size.
pub fn chunks_in<'a>(listing: impl IntoIterator<Item = &'a lifeboat_storage::ObjectMeta>) -> std::collections::HashMap<String, u64> {
    listing.into_iter().filter_map(|m| chunk_id_of(m.path.as_str()).map(|id| (id.to_string(), m.size))).collect()
}

pub fn manifest_path(cell: &str, id: &str) -> ObjectPath {
    path(&format!("{MANIFESTS}{cell}/{id}"))
}

pub fn hold_path(cell: &str, id: &str) -> ObjectPath {
    path(&format!("{HOLDS}{cell}/{id}"))
}

/// Cell names: 1 to 63 of `[a-z0-9-]`, starting with a letter or digit.
pub fn validate_cell(cell: &str) -> Result<()> {
    let ok = !cell.is_empty()
        && cell.len() <= 63
        && !cell.starts_with('-')
        && cell.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(RepoError::Invalid(format!("invalid cell name {cell:?}: use 1 to 63 lowercase letters, digits and '-', not starting with '-'")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_keys_round_trip() {
        let id = "ab".repeat(32);
        let p = chunk_path(&id);
        assert_eq!(chunk_id_of(p.as_str()), Some(id.as_str()));
        assert_eq!(chunk_id_of("chunks/cd/abab"), None);
        assert_eq!(chunk_id_of("manifests/x/y"), None);
    }

    #[test]
    fn newer_versions_are_refused() {
        let raw = br#"{"format":"lifeboat-repository","version":99}"#;
        assert!(matches!(RepoConfig::parse(raw, "here"), Err(RepoError::NewerFormat { found: 99, .. })));
    }
}
