//! [`ObjectPath`]: a validated, backend-neutral object key.

use std::fmt;

use crate::StoreError;

/// A relative object key made of `/`-separated segments of `[A-Za-z0-9._-]`,
/// none empty, none starting with `.`. The same key is valid on every
/// backend and can never escape a filesystem root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectPath(String);

impl ObjectPath {
    pub fn parse(key: impl Into<String>) -> Result<Self, StoreError> {
        let key = key.into();
        let bad = |reason: &str| StoreError::InvalidPath { path: key.clone(), reason: reason.into() };
        if key.is_empty() {
            return Err(bad("empty key"));
        }
        if key.len() > 1000 {
            return Err(bad("longer than 1000 bytes"));
        }
        for segment in key.split('/') {
            if segment.is_empty() {
                return Err(bad("empty segment (leading, trailing or double '/')"));
            }
            if segment.starts_with('.') {
                return Err(bad("a segment starts with '.'"));
            }
            if !segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
                return Err(bad("only ASCII letters, digits, '.', '_', '-' and '/' are allowed"));
            }
        }
        Ok(ObjectPath(key))
    }

    /// Join a further key below this one.
    pub fn join(&self, rest: &str) -> Result<Self, StoreError> {
        Self::parse(format!("{}/{}", self.0, rest))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for ObjectPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_normal_keys() {
        for k in ["a", "chunks/ab/abcdef", "wal/cell-1/000000010000000000000001.partial"] {
            assert_eq!(ObjectPath::parse(k).unwrap().as_str(), k);
        }
    }

    #[test]
    fn rejects_escapes_and_oddities() {
        for k in ["", "/a", "a/", "a//b", "../a", "a/../b", ".tmp/x", "a b", "a\\b", "é"] {
            assert!(ObjectPath::parse(k).is_err(), "{k:?} should be rejected");
        }
    }
}
