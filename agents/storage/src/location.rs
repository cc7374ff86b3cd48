//! [`Location`]: a parsed storage URL (`file://`, `s3://`, `az://`).
//!
//! Secrets never appear in a location; credentials come from the standard
//! environment (the AWS credential chain, `AZURE_STORAGE_*`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use url::Url;

use crate::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    File,
    S3,
    Azure,
}

/// An S3 Object Lock mode (the bucket must have Object Lock enabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectLock {
    /// Deletable early only with `s3:BypassGovernanceRetention`.
    Governance,
    /// Deletable by nobody, root included, before the date.
    Compliance,
}

/// A storage location: a directory, or a bucket/container plus a key prefix.
///
/// Accepted forms:
/// - `file:///absolute/dir`
/// - `s3://bucket[/prefix][?endpoint=http://host:port&region=r&path_style=true&object_lock=governance&retain_days=36&role_arn=ARN&ca_file=/ca.pem]`
/// - `az://container[/prefix][?endpoint=http://host:port/account&account=name&ca_file=/ca.pem]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    url: String,
    scheme: Scheme,
    /// Bucket or container (empty for `file://`).
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing '/'.
    pub prefix: String,
    /// For `file://`: the directory.
    root: PathBuf,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: Option<bool>,
    pub account: Option<String>,
    /// S3 Object Lock: every object but locks is written with this mode and
    /// a retain-until date this many days ahead (`object_lock=governance|compliance&retain_days=N`).
    pub object_lock: Option<(ObjectLock, u32)>,
    /// S3: a role to assume (STS AssumeRole) with the credentials the
    /// default chain finds (`role_arn=arn:aws:iam::ACCOUNT:role/NAME`).
    pub role_arn: Option<String>,
    /// S3 and Azure over HTTPS: a PEM bundle of private CAs trusted beside
    /// the system roots (`ca_file=/etc/lifeboat/ca.pem`; else `LIFEBOAT_CA_FILE`).
    pub ca_file: Option<PathBuf>,
}

impl Location {
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The directory of a `file://` location; None for object stores.
    pub fn file_dir(&self) -> Option<&std::path::Path> {
        (self.scheme == Scheme::File).then_some(self.root.as_path())
    }

    pub(crate) fn file_root(&self) -> Result<PathBuf, StoreError> {
        match self.scheme {
            Scheme::File => Ok(self.root.clone()),
            _ => Err(self.invalid("not a file:// location")),
        }
    }

    fn invalid(&self, reason: &str) -> StoreError {
        StoreError::InvalidUrl { url: self.url.clone(), reason: reason.into() }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl FromStr for Location {
    type Err = StoreError;

    fn from_str(raw: &str) -> Result<Self, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidUrl { url: raw.to_string(), reason: reason.into() };
        let url =
            Url::parse(raw).map_err(|e| invalid(&format!("{e}; use file:///absolute/dir, s3://bucket/prefix or az://container/prefix")))?;
        let scheme = match url.scheme() {
            "file" => Scheme::File,
            "s3" => Scheme::S3,
            "az" | "azure" => Scheme::Azure,
            other => {
                return Err(invalid(&format!(
                    "unknown scheme {other:?}; use file:///absolute/dir, s3://bucket/prefix or az://container/prefix"
                )))
            }
        };
        let mut loc = Location {
            url: raw.to_string(),
            scheme,
            bucket: String::new(),
            prefix: String::new(),
            root: PathBuf::new(),
            endpoint: None,
            region: None,
            path_style: None,
            account: None,
            object_lock: None,
            role_arn: None,
            ca_file: None,
        };
        let mut lock_mode = None;
        let mut retain_days = None;
        for (key, value) in url.query_pairs() {
            match (scheme, key.as_ref()) {
                (Scheme::S3 | Scheme::Azure, "endpoint") => loc.endpoint = Some(value.into_owned()),
                (Scheme::S3, "region") => loc.region = Some(value.into_owned()),
                (Scheme::S3, "role_arn") if value.starts_with("arn:") && value.contains(":role/") => loc.role_arn = Some(value.into_owned()),
                (Scheme::S3, "role_arn") => return Err(invalid("role_arn must be a role's ARN: arn:aws:iam::ACCOUNT:role/NAME")),
                (Scheme::S3, "path_style") => {
                    loc.path_style = Some(value.parse().map_err(|_| invalid("path_style must be true or false"))?)
                }
                (Scheme::S3 | Scheme::Azure, "ca_file") if value.starts_with('/') => loc.ca_file = Some(PathBuf::from(value.as_ref())),
                (Scheme::S3 | Scheme::Azure, "ca_file") => return Err(invalid("ca_file must be an absolute path to a PEM bundle")),
                (Scheme::Azure, "account") => loc.account = Some(value.into_owned()),
                (Scheme::S3, "object_lock") => {
                    lock_mode = Some(match value.as_ref() {
                        "governance" => ObjectLock::Governance,
                        "compliance" => ObjectLock::Compliance,
                        _ => return Err(invalid("object_lock must be governance or compliance")),
                    })
                }
                (Scheme::S3, "retain_days") => {
                    retain_days = Some(value.parse::<u32>().map_err(|_| invalid("retain_days must be a whole number of days (0: legal holds only)"))?)
                }
                (_, other) => {
                    return Err(invalid(&format!(
                        "unknown option {other:?}; s3:// takes endpoint, region, path_style, object_lock, retain_days, role_arn, ca_file; az:// takes endpoint, account, ca_file; secrets go in the environment, never in the url"
                    )))
                }
            }
        }
        loc.object_lock = match (lock_mode, retain_days) {
            (Some(mode), Some(days)) => Some((mode, days)),
            (None, None) => None,
            _ => return Err(invalid("object_lock and retain_days go together (e.g. object_lock=governance&retain_days=36)")),
        };
        match scheme {
            Scheme::File => {
                if url.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(invalid("file:// urls take an absolute path: file:///dir (three slashes)"));
                }
                let path = url.to_file_path().map_err(|_| invalid("not an absolute path"))?;
                loc.root = path;
            }
            Scheme::S3 | Scheme::Azure => {
                let bucket = url.host_str().unwrap_or_default();
                if bucket.is_empty() {
                    return Err(invalid("missing bucket or container name"));
                }
                loc.bucket = bucket.to_string();
                loc.prefix = url.path().trim_matches('/').to_string();
                if !loc.prefix.is_empty() {
                    crate::ObjectPath::parse(loc.prefix.clone()).map_err(|e| invalid(&e.to_string()))?;
                }
            }
        }
        Ok(loc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_scheme() {
        let f: Location = "file:///var/backups/repo".parse().unwrap();
        assert_eq!(f.scheme(), Scheme::File);
        assert_eq!(f.file_root().unwrap(), PathBuf::from("/var/backups/repo"));

        let s: Location = "s3://bkt/a/b?endpoint=http://127.0.0.1:9000&path_style=true".parse().unwrap();
        assert_eq!((s.bucket.as_str(), s.prefix.as_str()), ("bkt", "a/b"));
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s.path_style, Some(true));

        let a: Location = "az://ctr?account=dev".parse().unwrap();
        assert_eq!((a.bucket.as_str(), a.prefix.as_str()), ("ctr", ""));
    }

    #[test]
    fn rejects_bad_urls_with_a_hint() {
        for (raw, hint) in [
            ("ftp://x/y", "unknown scheme"),
            ("/plain/path", "use file:///"),
            ("file://host/dir", "three slashes"),
            ("s3:///prefix", "missing bucket"),
            ("s3://b/p?secret=1", "unknown option"),
            ("s3://b/a%20b", "invalid object path"),
        ] {
            let err = raw.parse::<Location>().unwrap_err().to_string();
            assert!(err.contains(hint), "{raw}: {err}");
        }
    }
}
