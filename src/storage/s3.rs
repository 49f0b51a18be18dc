//! Amazon S3 and S3-compatible stores (MinIO, LocalStack, ...) through the
//! official SDK and the standard credential chain.

use std::collections::HashSet;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::EncodingType;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};
use md5::{Digest, Md5};

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

/// Whether the environment points the SDK at another S3 endpoint.
fn endpoint_in_env() -> bool {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
}

/// The AWS configuration every client of a run starts from (S3,
/// Rekognition, S3 Control): the default credential chain, with the
/// profile and region the user chose, and the caller's retries and
/// timeouts (each service needs its own: see the callers).
pub async fn aws_config(
    opts: &S3Options,
    retry: RetryConfig,
    timeouts: TimeoutConfig,
) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(retry)
        .timeout_config(timeouts);
    if let Some(p) = &opts.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = &opts.region {
        loader = loader.region(Region::new(r.clone()));
    }
    loader.load().await
}

/// An S3 client from the default credential chain and the options, shared
/// by every bucket a process opens (the Lambda handler opens the bucket each
/// event names). Nothing is sent until the first request.
pub async fn sdk_client(opts: &S3Options) -> Client {
    client_and_endpoint(opts).await.0
}

/// [`sdk_client`], and the endpoint it sends requests to (see
/// [`resolved_endpoint`]).
async fn client_and_endpoint(opts: &S3Options) -> (Client, Option<String>) {
    let shared = aws_config(
        opts,
        // Throttling and 5xx are retried with backoff by the SDK.
        RetryConfig::standard().with_max_attempts(4),
        // A server that goes away must produce an error, not a hang. The
        // read timeout only covers the wait for a reply's headers; bodies
        // are guarded by `S3Store`'s idle timeout.
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(60))
            .operation_attempt_timeout(Duration::from_secs(120))
            .build(),
    )
    .await;
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
    let endpoint = resolved_endpoint(&shared, opts);
    (Client::from_conf(conf.build()), endpoint)
}

/// The endpoint URL an S3 client built from `shared` and `opts` uses, or
/// `None` for AWS S3's own. The s3 config cannot be read back once built,
/// so this follows its builder (`From<&SdkConfig>`): the flag, else the
/// S3-specific setting (`AWS_ENDPOINT_URL_S3`, a profile's `services`
/// section), else the general one (`AWS_ENDPOINT_URL`, a profile's
/// `endpoint_url`), each as aws-config loaded it.
fn resolved_endpoint(shared: &aws_config::SdkConfig, opts: &S3Options) -> Option<String> {
    let key = aws_types::service_config::ServiceConfigKey::builder()
        .service_id("S3")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .expect("every field set");
    opts.endpoint_url
        .clone()
        .or_else(|| shared.service_config().and_then(|c| c.load_config(key)))
        .or_else(|| shared.endpoint_url().map(str::to_string))
        .filter(|u| !u.trim().is_empty())
}

/// What names an endpoint in an index's identity: the URL (without a
/// trailing `/`) and, for path-style addressing, a mark (a server may
/// answer `host/bucket` and `bucket.host` with different buckets). Empty
/// for AWS S3 itself, where a bucket name is global.
fn endpoint_identity(endpoint: Option<&str>, path_style: bool) -> String {
    match endpoint {
        None => String::new(),
        Some(url) if path_style => format!("{} path-style", url.trim_end_matches('/')),
        Some(url) => url.trim_end_matches('/').to_string(),
    }
}

/// Attempts at a GET whose body breaks off after the headers arrived: the
/// SDK retries failed requests, but not a body that fails while streaming.
const BODY_ATTEMPTS: u32 = 3;
/// First pause between such attempts; doubled each time.
const BODY_BACKOFF: Duration = Duration::from_millis(50);
/// A body that sends nothing for this long is given up (and retried).
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// S3 may return empty pages that say "truncated"; this many in a row
/// means a server that would never end the listing.
const MAX_EMPTY_PAGES: u32 = 100;

pub struct S3Store {
    client: Client,
    bucket: String,
    page_size: Option<i32>,
    url_encoded_listing: bool,
    body_idle_timeout: Duration,
    /// Whether AWS services (Rekognition) can read this bucket by
    /// reference: only AWS S3 itself, never a custom endpoint (MinIO, ...),
    /// where a reference would name a same-named bucket in AWS.
    aws_readable: bool,
    /// The endpoint, for the index's identity (see [`Store::endpoint`]).
    endpoint: String,
}

impl S3Store {
    /// Builds a client from the default credential chain and the options.
    /// Nothing is sent until the first request.
    pub async fn connect(bucket: &str, opts: &S3Options) -> Self {
        let (client, endpoint) = client_and_endpoint(opts).await;
        S3Store {
            client,
            bucket: bucket.to_string(),
            page_size: None,
            url_encoded_listing: !opts.no_url_encoded_listing,
            body_idle_timeout: BODY_IDLE_TIMEOUT,
            // Whatever set the endpoint: the flag, the environment or a
            // profile.
            aws_readable: endpoint.is_none(),
            endpoint: endpoint_identity(endpoint.as_deref(), opts.path_style),
        }
    }

    /// Wraps an existing client (tests, Lambda).
    pub fn from_client(client: Client, bucket: &str) -> Self {
        S3Store {
            // The client's endpoint cannot be read back; a caller that set
            // one says so with `with_aws_readable(false)`.
            aws_readable: !endpoint_in_env(),
            endpoint: String::new(),
            client,
            bucket: bucket.to_string(),
            page_size: None,
            url_encoded_listing: true,
            body_idle_timeout: BODY_IDLE_TIMEOUT,
        }
    }

    /// Overrides whether AWS services can read the bucket by reference
    /// (tests that stand a loopback server in for AWS S3).
    pub fn with_aws_readable(mut self, on: bool) -> Self {
        self.aws_readable = on;
        self
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

    /// Gives up on a reply body that sends nothing for `d` (and retries
    /// the request); 30 s by default.
    pub fn with_body_idle_timeout(mut self, d: Duration) -> Self {
        self.body_idle_timeout = d;
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
                (429 | 503, _)
                | (
                    _,
                    "SlowDown"
                    | "Throttling"
                    | "ThrottlingException"
                    | "TooManyRequests"
                    | "RequestLimitExceeded",
                ) => StorageError::Throttled { message },
                // S3 answers 400 RequestTimeout to a client that sent its
                // body too slowly: the network's fault, not the request's.
                (500..=599, _) | (_, "RequestTimeout" | "InternalError") => {
                    StorageError::Unavailable { message }
                }
                (301, _) | (_, "PermanentRedirect" | "AuthorizationHeaderMalformed") => {
                    StorageError::Other {
                        message: format!(
                            "the bucket is in another region; pass --region ({message})"
                        ),
                    }
                }
                (400..=499, _) => StorageError::Rejected {
                    key: key.to_string(),
                    status,
                    message,
                },
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

/// Pages through a listing with our own loop rather than the SDK's
/// paginator, which stops silently (a truncated listing that looks whole)
/// when a server repeats a continuation token.
struct Lister {
    client: Client,
    bucket: String,
    prefix: String,
    page_size: Option<i32>,
    url_encoded: bool,
    token: Option<String>,
    /// Where the listing starts (`start-after`): only keys after it.
    start_after: Option<String>,
    /// Every continuation token seen: one coming back means a loop. A few
    /// hundred bytes per 1,000 keys.
    seen: HashSet<String>,
    empty_run: u32,
    done: bool,
}

impl Lister {
    /// The next non-empty page; `None` once the listing is over or after
    /// an error.
    async fn next_page(&mut self) -> Option<Result<Vec<ObjectInfo>>> {
        while !self.done {
            let step = match self.fetch().await {
                Ok(out) => self.advance(&out).map(|()| self.objects(&out)),
                Err(e) => Err(e),
            };
            match step {
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok(objs) if !objs.is_empty() => return Some(Ok(objs)),
                // Empty pages are skipped, not yielded.
                Ok(_) => {}
            }
        }
        None
    }

    /// One page. The SDK has retried throttling, 5xx and replies that broke
    /// off (it reads a listing's body itself): no second retry layer here.
    async fn fetch(&self) -> Result<ListObjectsV2Output> {
        self.client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .set_encoding_type(self.url_encoded.then_some(EncodingType::Url))
            .set_max_keys(self.page_size)
            .set_continuation_token(self.token.clone())
            .set_start_after(self.start_after.clone())
            .send()
            .await
            .map_err(|e| {
                let mut err = map_err(e, &self.prefix);
                if let StorageError::NoSuchBucket { bucket } = &mut err {
                    bucket.clone_from(&self.bucket);
                }
                err
            })
    }

    /// Moves to the next page, refusing a server that would never end.
    fn advance(&mut self, out: &ListObjectsV2Output) -> Result<()> {
        if !out.is_truncated().unwrap_or(false) {
            self.done = true;
            return Ok(());
        }
        let stop = |reason: String| StorageError::BrokenListing {
            store: format!("s3://{}", self.bucket),
            prefix: self.prefix.clone(),
            reason,
        };
        if out.contents().is_empty() {
            self.empty_run += 1;
            if self.empty_run > MAX_EMPTY_PAGES {
                return Err(stop(format!(
                    "the server sent {} empty pages in a row, each saying more follow",
                    self.empty_run
                )));
            }
        } else {
            self.empty_run = 0;
        }
        let next = match out.next_continuation_token() {
            Some(t) if !t.is_empty() => t,
            _ => {
                return Err(stop(
                    "the server said more keys follow but gave no continuation token".into(),
                ));
            }
        };
        if !self.seen.insert(next.to_string()) {
            return Err(stop(
                "the server sent a continuation token it had sent before; the listing would \
                 never end"
                    .into(),
            ));
        }
        self.token = Some(next.to_string());
        Ok(())
    }

    fn objects(&self, out: &ListObjectsV2Output) -> Vec<ObjectInfo> {
        // Decode only if the server says it encoded the keys.
        let encoded = self.url_encoded && out.encoding_type() == Some(&EncodingType::Url);
        out.contents()
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
            .collect()
    }
}

fn interrupted(key: &str, message: String) -> StorageError {
    StorageError::Interrupted {
        key: key.to_string(),
        attempts: 1,
        message,
    }
}

/// Reads a reply body, giving up on one that stalls for `idle` and never
/// holding more than `limit` bytes, whatever the headers claimed.
async fn read_body(
    mut body: ByteStream,
    key: &str,
    claimed: Option<u64>,
    limit: u64,
    idle: Duration,
) -> Result<Bytes> {
    let mut buf = BytesMut::with_capacity(claimed.unwrap_or(0).min(limit).min(1 << 26) as usize);
    loop {
        let chunk = match tokio::time::timeout(idle, body.next()).await {
            Err(_) => return Err(interrupted(key, format!("no data for {idle:?}"))),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(interrupted(key, super::error_chain(&e))),
            Ok(Some(Ok(chunk))) => chunk,
        };
        let size = (buf.len() + chunk.len()) as u64;
        if size > limit {
            return Err(StorageError::TooLarge {
                key: key.to_string(),
                size: claimed.unwrap_or(0).max(size),
                limit,
            });
        }
        buf.extend_from_slice(&chunk);
    }
    match claimed {
        Some(n) if n != buf.len() as u64 => Err(interrupted(
            key,
            format!("the body ended after {} of {n} bytes", buf.len()),
        )),
        _ => Ok(buf.freeze()),
    }
}

/// Runs a GET again when its body broke off, which the SDK does not retry.
async fn with_body_retries<T, F, Fut>(mut attempt_once: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match attempt_once().await {
            Err(StorageError::Interrupted { key, message, .. }) => {
                if attempt >= BODY_ATTEMPTS {
                    return Err(StorageError::Interrupted {
                        key,
                        attempts: attempt,
                        message,
                    });
                }
                tracing::debug!(key, attempt, %message, "reply body broke off, retrying");
                tokio::time::sleep(BODY_BACKOFF * 2u32.pow(attempt - 1)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[async_trait]
impl Store for S3Store {
    fn kind(&self) -> StoreKind {
        StoreKind::S3
    }

    fn aws_readable(&self) -> bool {
        self.aws_readable
    }

    fn bucket_name(&self) -> &str {
        &self.bucket
    }

    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn describe(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    fn list(&self, prefix: &str) -> BoxStream<'static, Result<Vec<ObjectInfo>>> {
        self.list_after(prefix, None)
    }

    fn seeks(&self) -> bool {
        true
    }

    fn list_after(
        &self,
        prefix: &str,
        after: Option<&str>,
    ) -> BoxStream<'static, Result<Vec<ObjectInfo>>> {
        // Keys may hold characters XML 1.0 cannot carry, so ask for
        // URL-encoded keys.
        let lister = Lister {
            start_after: after.map(str::to_string),
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            prefix: prefix.to_string(),
            page_size: self.page_size,
            url_encoded: self.url_encoded_listing,
            token: None,
            seen: HashSet::new(),
            empty_run: 0,
            done: false,
        };
        stream::unfold(lister, |mut l| async move {
            let page = l.next_page().await?;
            Some((page, l))
        })
        .boxed()
    }

    async fn get(&self, key: &str, limit: u64) -> Result<Object> {
        with_body_retries(|| self.get_once(key, None, limit)).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let obj = with_body_retries(|| self.get_once(key, Some(&range), u64::MAX)).await?;
        Ok(obj.body)
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
        // `If-Match: ""` is taken as "any" by some servers: an empty ETag
        // is never a condition to write under.
        if let PutCondition::IfMatch(etag) = &condition
            && crate::contract::normalize_etag(etag).is_empty()
        {
            return Err(StorageError::Conflict {
                key: key.to_string(),
                reason: "no ETag to match (the store gave an empty one): not rewritten blind"
                    .into(),
            });
        }
        let if_match = matches!(condition, PutCondition::IfMatch(_));
        // S3's ETag of a single-part PUT is the MD5 of its body.
        let sent_md5 = (condition != PutCondition::None).then(|| hex::encode(Md5::digest(&body)));
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(super::content_type_for(key))
            .body(ByteStream::from(body));
        req = match condition {
            PutCondition::None => req,
            PutCondition::CreateOnly => req.if_none_match("*"),
            PutCondition::IfMatch(etag) => req.if_match(etag),
        };
        let attempts = AttemptCounter::default();
        let err = match req.customize().interceptor(attempts.clone()).send().await {
            Ok(out) => return Ok(out.e_tag().unwrap_or_default().to_string()),
            Err(e) => map_err(e, key),
        };
        match err {
            // Only a retry can have met our own earlier attempt: on the
            // first attempt an identical body is another writer's (two runs
            // can build the same document), and theirs is not ours to claim.
            StorageError::Conflict { key, reason } if attempts.sent() > 1 => {
                match self.holds_our_body(&key, sent_md5.as_deref()).await {
                    Some(etag) => Ok(etag),
                    None => Err(StorageError::Conflict { key, reason }),
                }
            }
            // If-Match on an object that is gone: someone deleted it.
            StorageError::NotFound { key } if if_match => Err(StorageError::Conflict {
                key,
                reason: "object does not exist".into(),
            }),
            e => Err(self.fix_bucket(e)),
        }
    }

    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<()> {
        let res = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .set_if_match(if_match.map(str::to_string))
            .send()
            .await;
        match res.map_err(|e| map_err(e, key)) {
            // Already gone (a retried DELETE whose first reply was lost
            // lands here with If-Match): nothing left to delete.
            Ok(_) | Err(StorageError::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fix_bucket(e)),
        }
    }
}

/// Counts the attempts one request sent (the SDK retries on its own), so
/// that a refused condition can be told from our own earlier attempt.
#[derive(Debug, Clone, Default)]
struct AttemptCounter(std::sync::Arc<std::sync::atomic::AtomicU32>);

impl AttemptCounter {
    fn sent(&self) -> u32 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl aws_sdk_s3::config::Intercept for AttemptCounter {
    fn name(&self) -> &'static str {
        "AttemptCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

impl S3Store {
    fn fix_bucket(&self, mut err: StorageError) -> StorageError {
        if let StorageError::NoSuchBucket { bucket } = &mut err {
            *bucket = self.bucket.clone();
        }
        err
    }

    /// One GET, headers and body; `limit` bounds what is read.
    async fn get_once(&self, key: &str, range: Option<&Range<u64>>, limit: u64) -> Result<Object> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(range.map(|r| format!("bytes={}-{}", r.start, r.end - 1)))
            .send()
            .await
            .map_err(|e| self.fix_bucket(map_err(e, key)))?;
        let claimed = out.content_length().map(|n| n.max(0) as u64);
        let size = claimed.unwrap_or(0);
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
        let body = read_body(out.body, key, claimed, limit, self.body_idle_timeout).await?;
        Ok(Object { info, body })
    }

    /// The object's ETag if it now holds exactly the body whose MD5 we
    /// sent. A PUT can land and lose its reply; the SDK then retries it and
    /// the retry fails its own precondition. Only an identical body counts,
    /// so a writer with a different document is still a conflict.
    async fn holds_our_body(&self, key: &str, sent_md5: Option<&str>) -> Option<String> {
        let sent_md5 = sent_md5?;
        let etag = self.head(key).await.ok()?.etag?;
        let bare = etag.trim().trim_start_matches("W/").trim_matches('"');
        bare.eq_ignore_ascii_case(sent_md5).then(|| etag.into())
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
