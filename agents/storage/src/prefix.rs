//! [`KeyPrefix`]: mapping object paths to and from keys under a bucket or
//! container prefix, shared by the S3 and Azure backends.

use crate::ObjectPath;

#[derive(Debug, Clone)]
pub(crate) struct KeyPrefix(String);

impl KeyPrefix {
    /// `prefix` without leading or trailing '/'; empty for the bucket root.
    pub fn new(prefix: &str) -> Self {
        KeyPrefix(prefix.to_string())
    }

    /// The service key of an object path.
    pub fn key(&self, path: &ObjectPath) -> String {
        self.full(path.as_str())
    }

    /// The service key prefix for a listing prefix.
    pub fn full(&self, prefix: &str) -> String {
        if self.0.is_empty() {
            prefix.to_string()
        } else {
            format!("{}/{}", self.0, prefix)
        }
    }

    /// The object path of a listed service key (`None` for keys that are not ours).
    pub fn path_of(&self, key: &str) -> Option<ObjectPath> {
        let rest = if self.0.is_empty() { key } else { key.strip_prefix(&self.0)?.strip_prefix('/')? };
        ObjectPath::parse(rest).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_both_ways() {
        let p = ObjectPath::parse("chunks/ab/x").unwrap();
        let root = KeyPrefix::new("");
        assert_eq!(root.key(&p), "chunks/ab/x");
        assert_eq!(root.path_of("chunks/ab/x"), Some(p.clone()));
        let nested = KeyPrefix::new("cells/eu-1");
        assert_eq!(nested.key(&p), "cells/eu-1/chunks/ab/x");
        assert_eq!(nested.full("chunks/"), "cells/eu-1/chunks/");
        assert_eq!(nested.path_of("cells/eu-1/chunks/ab/x"), Some(p));
        assert_eq!(nested.path_of("cells/eu-10/chunks/ab/x"), None, "a sibling prefix is not ours");
    }
}
