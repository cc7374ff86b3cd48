//! The S3 backend (`s3://bucket/prefix`), with `aws-sdk-s3`.
//!
//! Credentials and region come from the standard AWS chain (environment,
//! profile, instance metadata). A custom `endpoint` (with path-style
//! addressing, the default when an endpoint is given) serves S3-compatible
//! stores. Create-if-absent uses `If-None-Match: *` on `PutObject` and on
//! `CompleteMultipartUpload`, so concurrent writers cannot both win.
//! The SDK's own retries are off: [`crate::retry::Resilient`] is the one
//! retry layer.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream as SdkStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ObjectLockLegalHold, ObjectLockLegalHoldStatus, ObjectLockMode};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::error::{absent_ok, error_chain};
use crate::prefix::KeyPrefix;
use crate::{ByteStream, Location, ObjectLock, ObjectMeta, ObjectPath, ObjectStore, PutMode, StoreError};

/// Size of one multipart part: memory per streaming upload is one part.
const PART_SIZE: usize = 16 << 20;

#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: KeyPrefix,
    name: String,
    /// Object Lock mode and days every object but locks is retained.
    lock: Option<(ObjectLockMode, u32)>,
}

/// Credentials of `role`, assumed (STS AssumeRole, renewed before they
/// expire) with those the default chain gives; STS is asked at the
/// location's endpoint when it has one (an S3-compatible store with its own
/// STS), else where the SDK's configuration says (`AWS_ENDPOINT_URL_STS`).
async fn assumed_role(sdk: &aws_config::SdkConfig, role: &str, endpoint: Option<&str>) -> aws_config::sts::AssumeRoleProvider {
    let mut base = sdk.to_builder();
    if sdk.region().is_none() {
        base.set_region(Some(Region::new("us-east-1")));
    }
    if let Some(endpoint) = endpoint {
        base.set_endpoint_url(Some(endpoint.to_string()));
    }
    aws_config::sts::AssumeRoleProvider::builder(role).session_name("lifeboat").configure(&base.build()).build().await
}

impl S3Store {
    pub async fn connect(location: &Location) -> Result<Self, StoreError> {
        let ca = crate::tls::PrivateCa::of(location)?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(crate::tls::s3_http_client(ca.as_ref())?);
        if let Some(region) = &location.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let sdk = loader.load().await;
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk)
            .retry_config(RetryConfig::disabled())
            .timeout_config(TimeoutConfig::builder().connect_timeout(Duration::from_secs(5)).read_timeout(Duration::from_secs(60)).build());
        if sdk.region().is_none() {
            conf = conf.region(Region::new("us-east-1"));
        }
        if let Some(endpoint) = &location.endpoint {
            conf = conf.endpoint_url(endpoint);
        }
        if let Some(role) = &location.role_arn {
            conf = conf.credentials_provider(assumed_role(&sdk, role, location.endpoint.as_deref()).await);
        }
        conf = conf.force_path_style(location.path_style.unwrap_or(location.endpoint.is_some()));
        let name = match &location.endpoint {
            Some(ep) => format!("s3://{}/{} at {}", location.bucket, location.prefix, ep),
            None => format!("s3://{}/{}", location.bucket, location.prefix),
        };
        Ok(S3Store {
            client: Client::from_conf(conf.build()),
            bucket: location.bucket.clone(),
            prefix: KeyPrefix::new(&location.prefix),
            name,
            lock: location.object_lock.map(|(mode, days)| {
                let mode = match mode {
                    ObjectLock::Governance => ObjectLockMode::Governance,
                    ObjectLock::Compliance => ObjectLockMode::Compliance,
                };
                (mode, days)
            }),
        })
    }

    /// The Object Lock mode and retain-until date for a new object at
    /// `path` (None: no lock configured, or a lock object, which its holder
    /// must be able to delete).
    fn retention_for(&self, path: &ObjectPath) -> Option<(ObjectLockMode, aws_sdk_s3::primitives::DateTime)> {
        let (mode, days) = self.lock.clone()?;
        if path.as_str().starts_with("locks/") || days == 0 {
            return None;
        }
        let until = std::time::SystemTime::now() + Duration::from_secs(u64::from(days) * 86_400);
        Some((mode, aws_sdk_s3::primitives::DateTime::from(until)))
    }

    /// Delete the current version of an object under Object Lock by its
    /// version id (a plain delete would only hide it behind a delete
    /// marker): refused while its retain-until date lies ahead.
    async fn delete_version(&self, path: &ObjectPath) -> Result<(), StoreError> {
        let key = self.key(path);
        let head = match self.client.head_object().bucket(&self.bucket).key(&key).send().await {
            Ok(h) => h,
            Err(e) => return absent_ok::<()>(Err(self.err("delete", path.as_str(), e))).map(|_| ()),
        };
        let mut until = head.object_lock_retain_until_date().map(|d| format!(" until {d}")).unwrap_or_default();
        if head.object_lock_legal_hold_status() == Some(&ObjectLockLegalHoldStatus::On) {
            until = " (a legal hold: until `repo hold --release`)".into();
        }
        let mut req = self.client.delete_object().bucket(&self.bucket).key(&key);
        if let Some(version) = head.version_id() {
            req = req.version_id(version);
        }
        match req.send().await.map_err(|e| self.err("delete", path.as_str(), e)) {
            Err(StoreError::AccessDenied { .. }) if !until.is_empty() => {
                Err(StoreError::Retained { store: self.describe(), path: path.to_string(), until })
            }
            other => absent_ok(other).map(|_| ()),
        }
    }

    fn key(&self, path: &ObjectPath) -> String {
        self.prefix.key(path)
    }

    async fn get_body(&self, path: &ObjectPath) -> Result<SdkStream, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.key(path))
            .send()
            .await
            .map_err(|e| self.err("get", path.as_str(), e))?;
        Ok(out.body)
    }

    /// Map an SDK error onto the crate's classification.
    fn err<E>(&self, op: &'static str, path: &str, err: SdkError<E, HttpResponse>) -> StoreError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let store = self.name.clone();
        let status = match &err {
            SdkError::ServiceError(e) => Some(e.raw().status().as_u16()),
            _ => None,
        };
        let message = format!("{path}: {}", error_chain(&err));
        if message.contains("loading credentials") {
            return StoreError::AccessDenied {
                store,
                message: "no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)".into(),
            };
        }
        if let Some(untrusted) = crate::error::untrusted(&store, op, &message) {
            return untrusted;
        }
        match (&err, status) {
            (SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_), _) => {
                StoreError::Transient { store, op, message }
            }
            (_, Some(404)) => StoreError::NotFound { store, path: path.into() },
            (_, Some(412)) => StoreError::AlreadyExists { store, path: path.into() },
            (_, Some(401 | 403)) => StoreError::AccessDenied { store, message },
            (SdkError::ServiceError(e), Some(429 | 503)) => {
                let retry_after = e.raw().headers().get("retry-after").and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
                StoreError::Throttled { store, op, message, retry_after }
            }
            (_, Some(409 | 429 | 500..=599)) => StoreError::Transient { store, op, message },
            _ => StoreError::Permanent { store, op, message },
        }
    }

    async fn put_multipart(
        &self,
        path: &ObjectPath,
        first: Bytes,
        mut rest: ByteStream,
        mut pending: BytesMut,
        mode: PutMode,
    ) -> Result<u64, StoreError> {
        let key = self.key(path);
        let mut create = self.client.create_multipart_upload().bucket(&self.bucket).key(&key);
        if let Some((mode, until)) = self.retention_for(path) {
            create = create.object_lock_mode(mode).object_lock_retain_until_date(until);
        }
        let created = create.send().await.map_err(|e| self.err("put", path.as_str(), e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let result: Result<u64, StoreError> = async {
            let mut parts = Vec::new();
            let mut total = 0u64;
            let mut next = Some(first);
            let mut ended = false;
            while let Some(part) = next.take() {
                total += part.len() as u64;
                let number = parts.len() as i32 + 1;
                let uploaded = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(SdkStream::from(part))
                    .send()
                    .await
                    .map_err(|e| self.err("put", path.as_str(), e))?;
                parts.push(CompletedPart::builder().part_number(number).set_e_tag(uploaded.e_tag().map(String::from)).build());
                if !ended {
                    ended = fill(&mut rest, &mut pending, PART_SIZE).await?;
                }
                if !pending.is_empty() {
                    next = Some(pending.split().freeze());
                }
            }
            let mut complete = self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&key)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build());
            if mode == PutMode::Create {
                complete = complete.if_none_match("*");
            }
            complete.send().await.map_err(|e| self.err("put", path.as_str(), e))?;
            Ok(total)
        }
        .await;
        if result.is_err() {
            let _ = self.client.abort_multipart_upload().bucket(&self.bucket).key(&key).upload_id(&upload_id).send().await;
        }
        result
    }
}

/// Read from `stream` into `buf` until it holds `limit` bytes or the stream
/// ends. Returns true when the stream has ended.
async fn fill(stream: &mut ByteStream, buf: &mut BytesMut, limit: usize) -> Result<bool, StoreError> {
    while buf.len() < limit {
        match stream.next().await {
            Some(piece) => buf.extend_from_slice(&piece?),
            None => return Ok(true),
        }
    }
    Ok(false)
}

#[async_trait]
impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        self.name.clone()
    }

    async fn prepare(&self) -> Result<(), StoreError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => match self.err("prepare", &self.bucket, e) {
                StoreError::NotFound { .. } => {
                    // A location with object_lock gets a bucket with Object Lock enabled.
                    self.client
                        .create_bucket()
                        .bucket(&self.bucket)
                        .object_lock_enabled_for_bucket(self.lock.is_some())
                        .send()
                        .await
                        .map_err(|e| self.err("create bucket", &self.bucket, e))?;
                    Ok(())
                }
                other => Err(other),
            },
        }
    }

    async fn put(&self, path: &ObjectPath, data: Bytes, mode: PutMode) -> Result<(), StoreError> {
        let mut req = self.client.put_object().bucket(&self.bucket).key(self.key(path)).body(SdkStream::from(data));
        if mode == PutMode::Create {
            req = req.if_none_match("*");
        }
        if let Some((mode, until)) = self.retention_for(path) {
            // S3 wants a content checksum on writes with Object Lock.
            req = req
                .object_lock_mode(mode)
                .object_lock_retain_until_date(until)
                .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32);
        }
        req.send().await.map_err(|e| self.err("put", path.as_str(), e))?;
        Ok(())
    }

    async fn put_stream(&self, path: &ObjectPath, mut data: ByteStream, mode: PutMode) -> Result<u64, StoreError> {
        if mode == PutMode::Create && self.head(path).await?.is_some() {
            return Err(StoreError::AlreadyExists { store: self.describe(), path: path.to_string() });
        }
        let mut buf = BytesMut::with_capacity(PART_SIZE);
        let ended = fill(&mut data, &mut buf, PART_SIZE).await?;
        if ended {
            let len = buf.len() as u64;
            self.put(path, buf.freeze(), mode).await?;
            return Ok(len);
        }
        let first = buf.split().freeze();
        self.put_multipart(path, first, data, buf, mode).await
    }

    async fn get(&self, path: &ObjectPath) -> Result<Bytes, StoreError> {
        let body = self.get_body(path).await?.collect().await.map_err(|e| StoreError::Transient {
            store: self.describe(),
            op: "get",
            message: format!("{path}: reading body: {e}"),
        })?;
        Ok(body.into_bytes())
    }

    async fn get_stream(&self, path: &ObjectPath) -> Result<ByteStream, StoreError> {
        let body = self.get_body(path).await?;
        let store = self.describe();
        let key = path.to_string();
        let stream = futures::stream::unfold(body, move |mut body| {
            let store = store.clone();
            let key = key.clone();
            async move {
                let piece = body.next().await?;
                let piece = piece.map_err(|e| StoreError::Transient { store, op: "get", message: format!("{key}: reading body: {e}") });
                Some((piece, body))
            }
        });
        Ok(stream.boxed())
    }

    async fn head(&self, path: &ObjectPath) -> Result<Option<ObjectMeta>, StoreError> {
        let out = self.client.head_object().bucket(&self.bucket).key(self.key(path)).send().await;
        let out = absent_ok(out.map_err(|e| self.err("head", path.as_str(), e)))?;
        Ok(out.map(|o| ObjectMeta {
            path: path.clone(),
            size: o.content_length().unwrap_or(0) as u64,
            modified: o.last_modified().and_then(smithy_time),
            md5: ObjectMeta::md5_of_etag(o.e_tag()),
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(self.prefix.full(prefix)).into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.err("list", prefix, e))?;
            for obj in page.contents() {
                let Some(path) = obj.key().and_then(|k| self.prefix.path_of(k)) else { continue };
                let (size, modified) = (obj.size().unwrap_or(0) as u64, obj.last_modified().and_then(smithy_time));
                out.push(ObjectMeta { path, size, modified, md5: ObjectMeta::md5_of_etag(obj.e_tag()) });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn sync(&self) -> Result<(), StoreError> {
        Ok(()) // a successful PUT is durable
    }

    async fn set_legal_hold(&self, path: &ObjectPath, on: bool) -> Result<bool, StoreError> {
        if self.lock.is_none() {
            return Ok(false);
        }
        let status = if on { ObjectLockLegalHoldStatus::On } else { ObjectLockLegalHoldStatus::Off };
        let hold = ObjectLockLegalHold::builder().status(status).build();
        let req = self.client.put_object_legal_hold().bucket(&self.bucket).key(self.key(path)).legal_hold(hold);
        req.send().await.map_err(|e| self.err("legal hold", path.as_str(), e))?;
        Ok(true)
    }

    async fn delete(&self, path: &ObjectPath) -> Result<(), StoreError> {
        if self.lock.is_some() {
            return self.delete_version(path).await;
        }
        let out = self.client.delete_object().bucket(&self.bucket).key(self.key(path)).send().await;
        absent_ok(out.map_err(|e| self.err("delete", path.as_str(), e))).map(|_| ())
    }
}

fn smithy_time(t: &aws_sdk_s3::primitives::DateTime) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp_nanos(t.as_nanos()).ok()
}
