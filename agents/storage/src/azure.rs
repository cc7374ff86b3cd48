//! The Azure Blob backend (`az://container/prefix`), with `azure_storage_blobs`.
//!
//! This is the legacy Azure SDK crate, kept on purpose (the 1.x crate cannot
//! authenticate with a shared key, so it cannot talk to Azurite); it stays
//! behind [`crate::ObjectStore`] so a later swap is local to this file.
//!
//! Credentials: `AZURE_STORAGE_ACCOUNT` (or `?account=`) with, in this
//! order, `AZURE_STORAGE_KEY` (shared key), `AZURE_STORAGE_SAS_TOKEN`, or
//! else a Microsoft Entra ID (Azure AD) identity through the SDK's chain
//! ([`entra_credential`]). The endpoint defaults to the public cloud; `?endpoint=http://host:port/account`
//! (or `AZURE_STORAGE_ENDPOINT`) points at Azurite or a sovereign cloud.
//! Create-if-absent is `If-None-Match: *` on Put Blob and Put Block List.
//! The SDK's own retries are off: [`crate::retry::Resilient`] is the one
//! retry layer.

use async_trait::async_trait;
use std::sync::Arc;

use azure_core::auth::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::prelude::IfMatchCondition;
use azure_storage::{CloudLocation, StorageCredentials};
use azure_storage_blobs::prelude::*;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::error::{absent_ok, error_chain};
use crate::prefix::KeyPrefix;
use crate::{ByteStream, Location, ObjectMeta, ObjectPath, ObjectStore, PutMode, StoreError};

/// Size of one staged block: memory per streaming upload is one block.
const BLOCK_SIZE: usize = 16 << 20;

#[derive(Debug, Clone)]
pub struct AzureStore {
    container: ContainerClient,
    prefix: KeyPrefix,
    name: String,
}

impl AzureStore {
    pub fn connect(location: &Location) -> Result<Self, StoreError> {
        let invalid = |reason: String| StoreError::InvalidUrl { url: location.to_string(), reason };
        let account = location
            .account
            .clone()
            .or_else(|| std::env::var("AZURE_STORAGE_ACCOUNT").ok())
            .ok_or_else(|| invalid("no storage account: set AZURE_STORAGE_ACCOUNT or add ?account=NAME".into()))?;
        // An empty variable counts as unset (a wrapper clearing the account key).
        let set = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let http = crate::tls::azure_http_client(crate::tls::PrivateCa::of(location)?.as_ref()).map_err(invalid)?;
        let credentials = if let Some(key) = set("AZURE_STORAGE_KEY") {
            StorageCredentials::access_key(account.clone(), key)
        } else if let Some(sas) = set("AZURE_STORAGE_SAS_TOKEN") {
            StorageCredentials::sas_token(sas).map_err(|e| invalid(format!("AZURE_STORAGE_SAS_TOKEN is not a valid SAS token: {e}")))?
        } else {
            StorageCredentials::token_credential(entra_credential(http.clone()).map_err(|e| invalid(entra_hint(&e)))?)
        };
        let endpoint = location.endpoint.clone().or_else(|| std::env::var("AZURE_STORAGE_ENDPOINT").ok());
        let cloud = match &endpoint {
            Some(uri) => CloudLocation::Custom { account: account.clone(), uri: uri.trim_end_matches('/').to_string() },
            None => CloudLocation::Public { account: account.clone() },
        };
        let name = match &endpoint {
            Some(uri) => format!("az://{}/{} at {}", location.bucket, location.prefix, uri),
            None => format!("az://{}/{} (account {})", location.bucket, location.prefix, account),
        };
        let container = ClientBuilder::with_location(cloud, credentials)
            .retry(azure_core::RetryOptions::none())
            .transport(azure_core::TransportOptions::new(http))
            .container_client(location.bucket.clone());
        Ok(AzureStore { container, prefix: KeyPrefix::new(&location.prefix), name })
    }

    /// A container SAS token (the query string an agent puts in
    /// `AZURE_STORAGE_SAS_TOKEN`) valid until `expiry`, signed with the
    /// account key this store was opened with. `write_only`: read, add,
    /// create, write and list, but no delete of any kind, so the holder can
    /// back up and copy but not destroy backups; otherwise delete too (for
    /// retention).
    pub async fn sas_token(&self, write_only: bool, expiry: time::OffsetDateTime) -> Result<String, StoreError> {
        use azure_storage::shared_access_signature::{service_sas::BlobSasPermissions, SasToken};
        let permissions =
            BlobSasPermissions { read: true, add: true, create: true, write: true, list: true, delete: !write_only, ..Default::default() };
        let denied = |e: azure_core::Error| StoreError::AccessDenied {
            store: self.name.clone(),
            message: format!("a SAS token is signed with the account key (AZURE_STORAGE_KEY): {e}"),
        };
        self.container.shared_access_signature(permissions, expiry).await.and_then(|s| s.token()).map_err(denied)
    }

    fn blob(&self, path: &ObjectPath) -> BlobClient {
        self.container.blob_client(self.prefix.key(path))
    }

    fn err(&self, op: &'static str, path: &str, err: azure_core::Error) -> StoreError {
        classify(self.name.clone(), op, path, err)
    }
}

/// The Microsoft Entra ID identity the SDK's chain finds, its token
/// requests sent with `http` (so a private CA applies to them too):
/// `AZURE_CREDENTIAL_KIND` picks one kind; otherwise the first that works
/// of the environment (a client secret, or a workload identity's federated
/// token file), App Service and VM managed identity, and the Azure CLI.
/// `AZURE_AUTHORITY_HOST` points at a sovereign cloud's authority.
fn entra_credential(http: Arc<dyn azure_core::HttpClient>) -> azure_core::Result<Arc<dyn TokenCredential>> {
    let options = azure_identity::TokenCredentialOptions::from(http);
    if std::env::var_os(azure_identity::AZURE_CREDENTIAL_KIND).is_some() {
        return Ok(Arc::new(azure_identity::SpecificAzureCredential::create(options)?));
    }
    Ok(Arc::new(azure_identity::DefaultAzureCredentialBuilder::default().with_options(options).build()?))
}

/// What to do when no credential works.
fn entra_hint(err: &azure_core::Error) -> String {
    format!(
        "no usable credentials: AZURE_STORAGE_KEY and AZURE_STORAGE_SAS_TOKEN are unset and Microsoft Entra ID gave no token ({}); \
         set one of them, or give an identity (AZURE_TENANT_ID and AZURE_CLIENT_ID with AZURE_CLIENT_SECRET or \
         AZURE_FEDERATED_TOKEN_FILE, or a managed identity) holding a Storage Blob Data role on the container",
        error_chain(err)
    )
}

/// Map an SDK error of `op` on `path` in `store` onto the crate's classification.
fn classify(store: String, op: &'static str, path: &str, err: azure_core::Error) -> StoreError {
    let message = format!("{path}: {}", error_chain(&err));
    if let Some(untrusted) = crate::error::untrusted(&store, op, &message) {
        return untrusted;
    }
    match err.kind() {
        ErrorKind::HttpResponse { status, error_code } => match u16::from(*status) {
            404 => StoreError::NotFound { store, path: path.into() },
            409 if error_code.as_deref() == Some("BlobAlreadyExists") => StoreError::AlreadyExists { store, path: path.into() },
            // A container's time-based retention or a blob's version-level policy or legal hold, set outside Lifeboat.
            409 if error_code.as_deref().is_some_and(|c| c.starts_with("BlobImmutableDueTo")) => {
                let until = format!(" ({}: until the Azure policy or legal hold ends)", error_code.as_deref().unwrap_or_default());
                StoreError::Retained { store, path: path.into(), until }
            }
            412 => StoreError::AlreadyExists { store, path: path.into() },
            401 | 403 => StoreError::AccessDenied { store, message },
            429 | 503 => StoreError::Throttled { store, op, message, retry_after: None },
            408 | 500..=599 => StoreError::Transient { store, op, message },
            _ => StoreError::Permanent { store, op, message },
        },
        ErrorKind::Io => StoreError::Transient { store, op, message },
        ErrorKind::Credential => StoreError::AccessDenied { store, message: entra_hint(&err) },
        _ => StoreError::Permanent { store, op, message },
    }
}

fn block_id(index: usize) -> BlockId {
    BlockId::new(Bytes::from(format!("block-{index:08}")))
}

#[async_trait]
impl ObjectStore for AzureStore {
    fn describe(&self) -> String {
        self.name.clone()
    }

    async fn prepare(&self) -> Result<(), StoreError> {
        match self.container.create().await {
            Ok(_) => Ok(()),
            Err(e) => {
                if let ErrorKind::HttpResponse { status, .. } = e.kind() {
                    if u16::from(*status) == 409 {
                        return Ok(()); // the container exists
                    }
                }
                Err(self.err("create container", self.container.container_name(), e))
            }
        }
    }

    async fn put(&self, path: &ObjectPath, data: Bytes, mode: PutMode) -> Result<(), StoreError> {
        let mut req = self.blob(path).put_block_blob(data);
        if mode == PutMode::Create {
            req = req.if_match(IfMatchCondition::NotMatch("*".into()));
        }
        req.await.map_err(|e| self.err("put", path.as_str(), e))?;
        Ok(())
    }

    async fn put_stream(&self, path: &ObjectPath, mut data: ByteStream, mode: PutMode) -> Result<u64, StoreError> {
        if mode == PutMode::Create && self.head(path).await?.is_some() {
            return Err(StoreError::AlreadyExists { store: self.describe(), path: path.to_string() });
        }
        let blob = self.blob(path);
        let mut buf = BytesMut::with_capacity(BLOCK_SIZE);
        let mut blocks = Vec::new();
        let mut total = 0u64;
        let mut ended = false;
        while !ended {
            while buf.len() < BLOCK_SIZE {
                match data.next().await {
                    Some(piece) => buf.extend_from_slice(&piece?),
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            if buf.is_empty() {
                break;
            }
            let block = buf.split().freeze();
            total += block.len() as u64;
            let id = block_id(blocks.len());
            blob.put_block(id.clone(), block).await.map_err(|e| self.err("put", path.as_str(), e))?;
            blocks.push(BlobBlockType::new_uncommitted(id));
        }
        // An empty stream still commits an (empty) block list, creating the blob.
        let mut req = blob.put_block_list(BlockList { blocks });
        if mode == PutMode::Create {
            req = req.if_match(IfMatchCondition::NotMatch("*".into()));
        }
        req.await.map_err(|e| self.err("put", path.as_str(), e))?;
        Ok(total)
    }

    async fn get(&self, path: &ObjectPath) -> Result<Bytes, StoreError> {
        crate::collect(self.get_stream(path).await?).await
    }

    async fn get_stream(&self, path: &ObjectPath) -> Result<ByteStream, StoreError> {
        // Fail fast on a missing object, before handing out a stream; an empty
        // blob is answered here too (Azure refuses a range read of it with 416).
        match self.head(path).await? {
            None => return Err(StoreError::NotFound { store: self.describe(), path: path.to_string() }),
            Some(meta) if meta.size == 0 => return Ok(futures::stream::empty().boxed()),
            Some(_) => {}
        }
        let this = self.clone();
        let key = path.to_string();
        let pages = self.blob(path).get().chunk_size(8u64 << 20).into_stream();
        let stream = pages
            .map(move |page| match page {
                Ok(page) => {
                    let this = this.clone();
                    let key = key.clone();
                    page.data.map(move |r| r.map_err(|e| this.err("get", &key, e))).boxed()
                }
                Err(e) => futures::stream::once(futures::future::ready(Err(this.err("get", &key, e)))).boxed(),
            })
            .flatten();
        Ok(stream.boxed())
    }

    async fn head(&self, path: &ObjectPath) -> Result<Option<ObjectMeta>, StoreError> {
        let props = absent_ok(self.blob(path).get_properties().await.map_err(|e| self.err("head", path.as_str(), e)))?;
        Ok(props.map(|p| ObjectMeta {
            path: path.clone(),
            size: p.blob.properties.content_length,
            modified: Some(p.blob.properties.last_modified),
            md5: None, // Content-MD5 is whatever a writer set: not proof of content
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut pages = self.container.list_blobs().prefix(self.prefix.full(prefix)).into_stream();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.err("list", prefix, e))?;
            for blob in page.blobs.blobs() {
                let Some(path) = self.prefix.path_of(&blob.name) else { continue };
                let (size, modified) = (blob.properties.content_length, Some(blob.properties.last_modified));
                // Content-MD5 is whatever a writer set (Azure checks it only on some uploads): not proof of content.
                out.push(ObjectMeta { path, size, modified, md5: None });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn sync(&self) -> Result<(), StoreError> {
        Ok(()) // a successful PUT is durable
    }

    async fn delete(&self, path: &ObjectPath) -> Result<(), StoreError> {
        absent_ok(self.blob(path).delete().await.map_err(|e| self.err("delete", path.as_str(), e))).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http_error(status: u16, code: &str) -> azure_core::Error {
        let status = azure_core::StatusCode::try_from(status).unwrap();
        azure_core::Error::message(ErrorKind::HttpResponse { status, error_code: Some(code.into()) }, "refused")
    }

    /// Azure refuses to delete a blob under a container's time-based
    /// retention or a version-level policy or legal hold with 409 and one of
    /// these codes (Azurite does not implement immutability, so this is
    /// checked here, not against it): retention reports it as kept.
    #[test]
    fn immutable_blobs_are_retained_not_failures() {
        for code in ["BlobImmutableDueToPolicy", "BlobImmutableDueToLegalHold"] {
            let e = classify("az://c".into(), "delete", "chunks/ab/ab01", http_error(409, code));
            assert!(matches!(&e, StoreError::Retained { until, .. } if until.contains(code)), "{e:?}");
        }
        let e = classify("az://c".into(), "put", "chunks/ab/ab01", http_error(409, "BlobAlreadyExists"));
        assert!(matches!(e, StoreError::AlreadyExists { .. }), "{e:?}");
        let e = classify("az://c".into(), "delete", "chunks/ab/ab01", http_error(409, "LeaseIdMissing"));
        assert!(matches!(e, StoreError::Permanent { .. }), "{e:?}");
    }
}
