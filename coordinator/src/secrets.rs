//! Secrets by reference: a plan names `env:NAME` or `file:PATH`, and the
//! coordinator resolves it when it needs the value. Values are never
//! logged, printed or stored.

use anyhow::{bail, Context, Result};

/// The value behind a reference (trimmed of surrounding whitespace).
pub fn resolve(reference: &str, what: &str) -> Result<String> {
    let value = if let Some(name) = reference.strip_prefix("env:") {
        std::env::var(name).with_context(|| format!("{what}: environment variable {name} is not set"))?
    } else if let Some(path) = reference.strip_prefix("file:") {
        lifeboat_secrets::read_file(std::path::Path::new(path), what)?
    } else {
        bail!("{what}: `{reference}` is not a secret reference (env:NAME or file:PATH)");
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        bail!("{what}: {reference} is empty");
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    #[test]
    fn references_resolve_or_say_why_not() {
        std::env::set_var("LIFEBOAT_TEST_SECRET_X", " s3cret\n");
        assert_eq!(super::resolve("env:LIFEBOAT_TEST_SECRET_X", "t").unwrap(), "s3cret");
        let e = super::resolve("env:LIFEBOAT_TEST_SECRET_MISSING", "agent token of cell a").unwrap_err();
        assert!(format!("{e:#}").contains("LIFEBOAT_TEST_SECRET_MISSING is not set"));
        assert!(super::resolve("s3cret", "t").is_err());
    }
}
