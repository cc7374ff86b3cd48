//! The HTTP(S) listener the agent and the coordinator serve with: it
//! accepts connections, does the TLS handshake when the service has a
//! certificate (rustls) and, when told to, requires a client certificate
//! from a given CA (mutual TLS), bounds how long a client may take to send its
//! headers or finish the handshake, and hands each request to the router
//! with the peer's address attached (for refusal logs).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio_rustls::{rustls, TlsAcceptor};

/// The address a request came from.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The PEM certificates in `path` (`what` names them in errors); at least one.
fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading the {what} {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing the {what} {}", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

/// A TLS acceptor for a PEM certificate chain and private key. With
/// `client_ca`, every client must present a certificate that CA signed
/// (mutual TLS); the handshake fails otherwise.
pub fn tls_acceptor(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::PrivateKeyDer;
    let certs = read_certs(cert, "TLS certificate")?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading the TLS private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca, "client CA certificate")? {
                roots.add(c).with_context(|| format!("{} is not a usable CA certificate", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .with_context(|| format!("verifying clients against {}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).context("the TLS certificate and key do not form a usable pair")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The acceptor for `--tls-cert` and `--tls-key` when both are given (None:
/// plain HTTP), requiring client certificates from `client_ca` if named.
pub fn tls_from(cert: Option<&Path>, key: Option<&Path>, client_ca: Option<&Path>) -> Result<Option<TlsAcceptor>> {
    match (cert, key) {
        (Some(cert), Some(key)) => tls_acceptor(cert, key, client_ca).map(Some),
        _ if client_ca.is_some() => bail!("a client CA (mutual TLS) needs --tls-cert and --tls-key"),
        _ => Ok(None),
    }
}

/// Serve `app` on `listener` until the future is dropped.
pub async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, app: Router) -> Result<()> {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!("accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(Peer(peer));
                tower::ServiceExt::oneshot(app.clone(), req)
            });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(10));
            let served = match tls {
                None => http.serve_connection(TokioIo::new(tcp), service).await,
                Some(acceptor) => match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => http.serve_connection(TokioIo::new(stream), service).await,
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, "TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
            };
            if let Err(e) = served {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}
