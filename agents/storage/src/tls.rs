//! What the object-store clients trust: the system's roots (which honour
//! `SSL_CERT_FILE` and `SSL_CERT_DIR`) plus, for stores behind a private
//! CA, the PEM bundle in the location's `ca_file=` or in `LIFEBOAT_CA_FILE`.
//!
//! Both clients speak TLS through rustls with ring, the one TLS stack on the
//! Rust side: S3 through the AWS SDK's own client, Azure (and Microsoft Entra
//! ID's token endpoint) through reqwest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lifeboat_process::shared::BuiltOnce;

use aws_sdk_s3::config::SharedHttpClient;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider, TlsContext, TrustStore};
use aws_smithy_http_client::Builder;

use crate::{Location, StoreError};

/// A private CA bundle, read and checked once per connection.
#[derive(Debug, Clone)]
pub struct PrivateCa {
    path: PathBuf,
    pem: Vec<u8>,
}

impl PrivateCa {
    /// The bundle `location` names (`ca_file=`), else `LIFEBOAT_CA_FILE`'s;
    /// None when neither is set. A bundle that cannot be read or holds no
    /// certificate is refused, naming the file.
    pub fn of(location: &Location) -> Result<Option<PrivateCa>, StoreError> {
        let path = match &location.ca_file {
            Some(path) => path.clone(),
            None => match std::env::var_os("LIFEBOAT_CA_FILE").filter(|v| !v.is_empty()) {
                Some(path) => PathBuf::from(path),
                None => return Ok(None),
            },
        };
        PrivateCa::read(&path).map(Some).map_err(|reason| StoreError::InvalidUrl { url: location.to_string(), reason })
    }

    fn read(path: &Path) -> Result<PrivateCa, String> {
        use rustls_pki_types::{pem::PemObject, CertificateDer};
        let pem = std::fs::read(path).map_err(|e| format!("the CA bundle {}: {e}", path.display()))?;
        let certs = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>();
        match certs {
            Ok(certs) if !certs.is_empty() => Ok(PrivateCa { path: path.to_path_buf(), pem }),
            Ok(_) => Err(format!("the CA bundle {} holds no PEM certificate (BEGIN CERTIFICATE)", path.display())),
            Err(e) => Err(format!("the CA bundle {} is not PEM: {e}", path.display())),
        }
    }
}

/// The HTTPS client of an S3 store: the system roots, plus `ca` if given.
/// A new one for each store: its connection pool belongs to the runtime
/// that opened the connections, and a process may run several in turn.
pub(crate) fn s3_http_client(ca: Option<&PrivateCa>) -> Result<SharedHttpClient, StoreError> {
    let mut trust = TrustStore::default();
    if let Some(ca) = ca {
        trust = trust.with_pem_certificate(ca.pem.clone());
    }
    let context = TlsContext::builder().with_trust_store(trust).build().map_err(|e| StoreError::InvalidUrl {
        url: ca.map(|c| c.path.display().to_string()).unwrap_or_default(),
        reason: format!("the TLS settings: {e}"),
    })?;
    Ok(Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).tls_context(context).build_https())
}

/// The HTTP client of an Azure store and of its Entra ID credential: the
/// system roots, plus `ca` if given. One client per CA bundle serves the
/// whole process (building one reads the system's certificates); it holds
/// no connection between requests, so it is not tied to a runtime.
pub(crate) fn azure_http_client(ca: Option<&PrivateCa>) -> Result<Arc<dyn azure_core::HttpClient>, String> {
    static BUILT: BuiltOnce<Option<Vec<u8>>, Arc<dyn azure_core::HttpClient>> = BuiltOnce::new();
    BUILT.get_or_try_build(ca.map(|c| c.pem.clone()), || new_azure_http_client(ca))
}

/// Idle connections are not pooled, as the Azure SDK's own client does (a
/// hyper pool can hang on a dead one).
fn new_azure_http_client(ca: Option<&PrivateCa>) -> Result<Arc<dyn azure_core::HttpClient>, String> {
    let mut builder = reqwest::Client::builder().pool_max_idle_per_host(0);
    if let Some(ca) = ca {
        let certs = reqwest::Certificate::from_pem_bundle(&ca.pem).map_err(|e| format!("the CA bundle {}: {e}", ca.path.display()))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(Arc::new(builder.build().map_err(|e| format!("building the HTTPS client: {e}"))?))
}
