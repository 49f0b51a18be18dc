//! Amazon S3 and S3-compatible stores (MinIO, LocalStack, ...) through the
//! official SDK and the standard credential chain.

use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::EncodingType;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use super::{Object, ObjectInfo, PutCondition, Result, StorageError, Store, StoreKind};

/// How to reach S3. Unset fields fall back to the SDK's default chain
/// (environment, shared config and credentials files, SSO, IMDS).
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    pub profile: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// Path-style addressing (`http://host/bucket/key`), which most
    /// S3-compatible servers need.
    pub path_style: bool,
    /// Listings normally ask for URL-encoded keys, so that keys holding
    /// characters XML cannot carry survive. Some S3-compatible servers echo
    /// the request without encoding (s3s-fs does); for those, turn it off.
    pub no_url_encoded_listing: bool,
}

/// An S3 client from the default credential chain and the options, shared
/// by every bucket a process opens (the Lambda handler opens the bucket each
/// event names). Nothing is sent until the first request.
pub async fn sdk_client(opts: &S3Options) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        // Throttling and 5xx are retried with backoff by the SDK.
        .retry_config(RetryConfig::standard().with_max_attempts(4))
        // A server that goes away must produce an error, not a hang.
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .read_timeout(Duration::from_secs(60))
                .build(),
        );
    if let Some(p) = &opts.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = &opts.region {
        loader = loader.region(Region::new(r.clone()));
    }
    let shared = loader.load().await;
    let mut conf = aws_sdk_s3::config::Builder::from(&shared);
    if shared.region().is_none() {
        // S3-compatible servers rarely care; AWS answers with a redirect
        // error naming the right region, which we surface.
        conf = conf.region(Region::new("us-east-1"));
    }
    if let Some(url) = &opts.endpoint_url {
        conf = conf.endpoint_url(url);
    }
    conf = conf.force_path_style(opts.path_style);
    Client::from_conf(conf.build())
}

pub struct S3Store {
    client: Client,
    bucket: String,
    page_size: Option<i32>,
    url_encoded_listing: bool,
}

impl S3Store {
    /// Builds a client from the default credential chain and the options.
    /// Nothing is sent until the first request.
    pub async fn connect(bucket: &str, opts: &S3Options) -> Self {
        S3Store {
            client: sdk_client(opts).await,
            bucket: bucket.to_string(),
            page_size: None,
            url_encoded_listing: !opts.no_url_encoded_listing,
        }
    }

    /// Wraps an existing client (tests, Lambda).
    pub fn from_client(client: Client, bucket: &str) -> Self {
        S3Store {
            client,
            bucket: bucket.to_string(),
            page_size: None,
            url_encoded_listing: true,
        }
    }

    /// Asks for pages of at most `n` keys (S3's default and maximum is
    /// 1000); small pages exercise pagination in tests.
    pub fn with_page_size(mut self, n: i32) -> Self {
        self.page_size = Some(n);
        self
    }

    /// Whether listings ask for URL-encoded keys (see
    /// [`S3Options::no_url_encoded_listing`]).
    pub fn with_url_encoded_listing(mut self, on: bool) -> Self {
        self.url_encoded_listing = on;
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// Maps an SDK error to the store's error kinds, keeping the SDK's message.
fn map_err<E>(err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>, key: &str) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = crate::storage::error_chain(&err);
    match &err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("");
            match (status, code) {
                (_, "NoSuchBucket") => StorageError::NoSuchBucket {
                    bucket: String::new(),
                },
                (404, _) | (_, "NoSuchKey" | "NotFound") => StorageError::NotFound {
                    key: key.to_string(),
                },
                (412, _) | (_, "PreconditionFailed") => StorageError::Conflict {
                    key: key.to_string(),
                    reason: "precondition failed".into(),
                },
                (409, _) | (_, "ConditionalRequestConflict") => StorageError::Conflict {
                    key: key.to_string(),
                    reason: "concurrent conditional write".into(),
                },
                (403, _)
                | (
                    _,
                    "AccessDenied"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "ExpiredToken",
                ) => StorageError::AccessDenied { message },
                (429 | 503, _) | (_, "SlowDown" | "Throttling" | "ThrottlingException") => {
                    StorageError::Throttled { message }
                }
                (500..=599, _) => StorageError::Unavailable { message },
                (301, _) | (_, "PermanentRedirect" | "AuthorizationHeaderMalformed") => {
                    StorageError::Other {
                        message: format!(
                            "the bucket is in another region; pass --region ({message})"
                        ),
                    }
                }
                _ => StorageError::Other { message },
            }
        }
        // No credentials anywhere in the chain is a configuration problem,
        // not an outage.
        SdkError::DispatchFailure(_) if message.contains("credentials") => {
            StorageError::AccessDenied {
                message: format!(
                    "no usable AWS credentials (set a profile with --profile, run `aws sso login`, \
                     or export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY): {message}"
                ),
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            StorageError::Unavailable { message }
        }
        _ => StorageError::Other { message },
    }
}

fn timestamp_secs(t: Option<&aws_sdk_s3::primitives::DateTime>) -> Option<i64> {
    t.map(|d| d.secs())
}

#[async_trait]
impl Store for S3Store {
    fn kind(&self) -> StoreKind {
        StoreKind::S3
    }

    fn bucket_name(&self) -> &str {
        &self.bucket
    }

    fn describe(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<Vec<ObjectInfo>>> {
        // Keys may hold characters XML 1.0 cannot carry, so ask for
        // URL-encoded keys; decode only if the server says it encoded them.
        let pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_encoding_type(self.url_encoded_listing.then_some(EncodingType::Url))
            .set_max_keys(self.page_size)
            .into_paginator()
            .send();
        let bucket = self.bucket.clone();
        let decode = self.url_encoded_listing;
        stream::unfold(Some(pages), move |state| {
            let bucket = bucket.clone();
            async move {
                let mut pages = state?;
                // Empty pages (an empty prefix) are skipped, not yielded.
                loop {
                    let out = match pages.next().await? {
                        Ok(out) => out,
                        Err(e) => {
                            let mut err = map_err(e, "");
                            if let StorageError::NoSuchBucket { bucket: b } = &mut err {
                                *b = bucket;
                            }
                            // An error ends the listing.
                            return Some((Err(err), None));
                        }
                    };
                    let encoded = decode && out.encoding_type() == Some(&EncodingType::Url);
                    let objs: Vec<ObjectInfo> = out
                        .contents()
                        .iter()
                        .filter_map(|o| {
                            let raw = o.key()?;
                            let key = if encoded {
                                crate::contract::decode_form_key(raw)?
                            } else {
                                raw.to_string()
                            };
                            Some(ObjectInfo {
                                key,
                                size: o.size().unwrap_or(0).max(0) as u64,
                                etag: o.e_tag().map(Into::into),
                                last_modified: timestamp_secs(o.last_modified()),
                            })
                        })
                        .collect();
                    if !objs.is_empty() {
                        return Some((Ok(objs), Some(pages)));
                    }
                }
            }
        })
        .boxed()
    }

    async fn get(&self, key: &str, limit: u64) -> Result<Object> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.fix_bucket(map_err(e, key)))?;
        let size = out.content_length().unwrap_or(0).max(0) as u64;
        if size > limit {
            return Err(StorageError::TooLarge {
                key: key.into(),
                size,
                limit,
            });
        }
        let info = ObjectInfo {
            key: key.to_string(),
            size,
            etag: out.e_tag().map(Into::into),
            last_modified: timestamp_secs(out.last_modified()),
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| StorageError::Unavailable {
                message: format!("reading {key:?}: {e}"),
            })?
            .into_bytes();
        Ok(Object { info, body })
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(|e| self.fix_bucket(map_err(e, key)))?;
        Ok(out
            .body
            .collect()
            .await
            .map_err(|e| StorageError::Unavailable {
                message: format!("reading {key:?}: {e}"),
            })?
            .into_bytes())
    }

    async fn head(&self, key: &str) -> Result<ObjectInfo> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.fix_bucket(map_err(e, key)))?;
        Ok(ObjectInfo {
            key: key.to_string(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: out.e_tag().map(Into::into),
            last_modified: timestamp_secs(out.last_modified()),
        })
    }

    async fn put(&self, key: &str, body: Bytes, condition: PutCondition) -> Result<String> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(super::content_type_for(key))
            .body(ByteStream::from(body));
        let if_match = matches!(condition, PutCondition::IfMatch(_));
        req = match condition {
            PutCondition::None => req,
            PutCondition::CreateOnly => req.if_none_match("*"),
            PutCondition::IfMatch(etag) => req.if_match(etag),
        };
        let out = req.send().await.map_err(|e| match map_err(e, key) {
            // If-Match on an object that is gone: someone deleted it.
            StorageError::NotFound { key } if if_match => StorageError::Conflict {
                key,
                reason: "object does not exist".into(),
            },
            e => self.fix_bucket(e),
        })?;
        Ok(out.e_tag().unwrap_or_default().to_string())
    }
}

impl S3Store {
    fn fix_bucket(&self, mut err: StorageError) -> StorageError {
        if let StorageError::NoSuchBucket { bucket } = &mut err {
            *bucket = self.bucket.clone();
        }
        err
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn listed_keys_decode_plus_before_percent() {
        assert_eq!(
            crate::contract::decode_form_key("a+b%2Bc.jpg").unwrap(),
            "a b+c.jpg"
        );
        assert_eq!(
            crate::contract::decode_form_key("caf%C3%A9%25.png").unwrap(),
            "café%.png"
        );
        assert_eq!(
            crate::contract::decode_form_key("ctl%1B.jpg").unwrap(),
            "ctl\x1b.jpg"
        );
        assert!(crate::contract::decode_form_key("bad%FF.jpg").is_none());
    }
}
