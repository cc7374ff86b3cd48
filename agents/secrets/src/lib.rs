//! Secrets as both binaries handle them: a secret file is refused when
//! every user can read it and when it is empty; a bearer token is at least
//! 32 characters and is compared as a SHA-256 digest in constant time, so
//! neither its value nor its length leaks through timing. Values are never
//! logged or put in error messages. Public keys that check the
//! coordinator's signatures are in [`signing`].

pub mod signing;

use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The trimmed content of the secret file `path` (`what` names it in errors).
pub fn read_file(path: &Path, what: &str) -> Result<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).with_context(|| format!("reading the {what} file {}", path.display()))?;
    if meta.permissions().mode() & 0o007 != 0 {
        bail!("the {what} file {} is readable by every user; chmod o-rwx it", path.display());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the {what} file {}", path.display()))?;
    let secret = text.trim().to_string();
    if secret.is_empty() {
        bail!("the {what} file {} is empty", path.display());
    }
    Ok(secret)
}

/// A bearer token, kept only as its digest.
pub struct Token {
    digest: [u8; 32],
}

impl Token {
    /// The token in `path`: a secret file holding at least 32 characters.
    pub fn from_file(path: &Path, what: &str) -> Result<Token> {
        let token = read_file(path, what)?;
        if token.len() < 32 {
            bail!("the {what} in {} has {} characters; use at least 32 (e.g. `openssl rand -hex 32`)", path.display(), token.len());
        }
        Ok(Token { digest: digest(&token) })
    }

    /// Whether `given` (surrounding whitespace ignored) is this token.
    pub fn matches(&self, given: &str) -> bool {
        bool::from(digest(given.trim()).ct_eq(&self.digest))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn secret_files_and_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        let token = "0123456789abcdef0123456789abcdef";
        std::fs::write(&f, format!("{token}\n")).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(format!("{:#}", Token::from_file(&f, "API token").err().unwrap()).contains("readable by every user"));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let t = Token::from_file(&f, "API token").unwrap();
        assert!(t.matches(token) && t.matches(&format!(" {token} ")) && !t.matches("0123456789abcdef0123456789abcdeX"));
        std::fs::write(&f, "short").unwrap();
        assert!(format!("{:#}", Token::from_file(&f, "API token").err().unwrap()).contains("at least 32"));
        std::fs::write(&f, "\n").unwrap();
        assert!(format!("{:#}", read_file(&f, "password").err().unwrap()).contains("is empty"));
    }
}
