//! An in-memory S3 service for tests and benches, served over real HTTP on
//! loopback by the `s3s` protocol implementation (SigV4 auth, XML, ranges,
//! conditional headers). It keeps ETags in listings, which `s3s-fs` does
//! not, can inject faults (throttling, 5xx), misbehave in listings, and be
//! switched off. Network faults are `faulty_proxy`'s.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use futures::TryStreamExt;
use md5::{Digest, Md5};
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

pub const ACCESS_KEY: &str = "AKIAIMGTAGTEST";
pub const SECRET_KEY: &str = "imgtag-test-secret-key";
pub const REGION: &str = "us-east-1";

#[derive(Clone)]
pub struct MemObj {
    pub data: Bytes,
    pub etag: String,
    pub modified: SystemTime,
    /// A size claimed beyond `data` (which is then empty): the object
    /// reads as that many zero bytes, streamed, so a 5 GB object costs no
    /// memory and a client that reads it all takes as long as it would.
    pub claimed: Option<u64>,
}

impl MemObj {
    pub fn len(&self) -> u64 {
        self.claimed.unwrap_or(self.data.len() as u64)
    }

    /// Bytes `start..end` of the object as a response body.
    fn body(&self, start: u64, end: u64) -> StreamingBlob {
        if self.claimed.is_none() {
            let part = self.data.slice(start as usize..end as usize);
            return StreamingBlob::from(s3s::Body::from(part));
        }
        const CHUNK: u64 = 1 << 20;
        let zeros = Bytes::from(vec![0u8; CHUNK as usize]);
        let chunks = (start..end)
            .step_by(CHUNK as usize)
            .map(move |at| Ok::<_, std::io::Error>(zeros.slice(..(end - at).min(CHUNK) as usize)));
        StreamingBlob::wrap(futures::stream::iter(chunks))
    }
}

#[derive(Default)]
struct State {
    buckets: HashMap<String, BTreeMap<String, MemObj>>,
    faults: VecDeque<S3ErrorCode>,
    requests: u64,
    /// Answer 403 for missing objects, as S3 does to a caller without
    /// s3:ListBucket.
    deny_missing: bool,
    /// `X-Amzn-Trace-Id` of each request that had one (the SDK sends it
    /// from inside Lambda, for recursive-loop detection).
    trace_ids: Vec<String>,
    list_quirk: Option<ListQuirk>,
    /// Added before every answer: a server as far away as S3 is.
    latency: std::time::Duration,
    /// Listing requests that fail at random: the chance, and the draw.
    list_faults: Option<(f64, fastrand::Rng)>,
    /// Listing requests being answered now, and the most at once.
    lists_now: u64,
    lists_peak: u64,
}

/// Listing misbehaviours seen in S3-compatible servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListQuirk {
    /// Every page after the first hands back the continuation token it
    /// was asked with: a client that trusts it loops forever.
    RepeatToken,
    /// Every page is empty, says more follow, and carries a fresh token.
    EmptyPages,
}

#[derive(Clone, Default)]
pub struct MemS3 {
    state: Arc<Mutex<State>>,
}

pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

impl MemS3 {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn create_bucket(&self, name: &str) {
        self.state
            .lock()
            .unwrap()
            .buckets
            .entry(name.into())
            .or_default();
    }

    /// Inserts an object directly (test setup, no HTTP).
    pub fn insert(&self, bucket: &str, key: &str, data: impl Into<Bytes>) {
        let data = data.into();
        let obj = MemObj {
            etag: md5_hex(&data),
            data,
            modified: SystemTime::now(),
            claimed: None,
        };
        self.put(bucket, key, obj);
    }

    /// Inserts an object with the ETag (unquoted) another kind of server
    /// gives: multipart (`abc-3`), uppercase, not hex at all.
    pub fn insert_with_etag(&self, bucket: &str, key: &str, data: impl Into<Bytes>, etag: &str) {
        let obj = MemObj {
            etag: etag.into(),
            data: data.into(),
            modified: SystemTime::now(),
            claimed: None,
        };
        self.put(bucket, key, obj);
    }

    fn put(&self, bucket: &str, key: &str, obj: MemObj) {
        let mut st = self.state.lock().unwrap();
        let b = st.buckets.get_mut(bucket).expect("bucket exists");
        b.insert(key.into(), obj);
    }

    /// Deletes an object directly (test setup, no HTTP).
    pub fn delete(&self, bucket: &str, key: &str) {
        let mut st = self.state.lock().unwrap();
        st.buckets
            .get_mut(bucket)
            .expect("bucket exists")
            .remove(key);
    }

    /// Inserts an object of `len` zero bytes that holds no memory.
    pub fn insert_zeros(&self, bucket: &str, key: &str, len: u64) {
        let obj = MemObj {
            data: Bytes::new(),
            etag: format!("{:032x}", len),
            modified: SystemTime::now(),
            claimed: Some(len),
        };
        self.put(bucket, key, obj);
    }

    /// Inserts an object that lists with this size and ETag (unquoted)
    /// but holds no bytes (it reads as zeros): a bucket of millions of
    /// objects whose listing is all that is asked of it.
    pub fn insert_listed(&self, bucket: &str, key: &str, size: u64, etag: String) {
        let obj = MemObj {
            data: Bytes::new(),
            etag,
            modified: SystemTime::now(),
            claimed: Some(size),
        };
        self.put(bucket, key, obj);
    }

    pub fn object(&self, bucket: &str, key: &str) -> Option<MemObj> {
        self.state
            .lock()
            .unwrap()
            .buckets
            .get(bucket)?
            .get(key)
            .cloned()
    }

    /// The next requests fail with these error codes, in order.
    pub fn inject_faults(&self, codes: impl IntoIterator<Item = S3ErrorCode>) {
        self.state.lock().unwrap().faults.extend(codes);
    }

    /// Behave as S3 does towards a role without s3:ListBucket: a missing
    /// object is AccessDenied, not NoSuchKey.
    pub fn deny_missing(&self, on: bool) {
        self.state.lock().unwrap().deny_missing = on;
    }

    /// Makes listings misbehave (or behave again with `None`).
    pub fn list_quirk(&self, quirk: Option<ListQuirk>) {
        self.state.lock().unwrap().list_quirk = quirk;
    }

    fn missing(&self) -> S3Error {
        if self.state.lock().unwrap().deny_missing {
            s3_error!(AccessDenied)
        } else {
            s3_error!(NoSuchKey)
        }
    }

    /// Fails each listing request with chance `p` (seeded), as a
    /// 500 InternalError or a 503 SlowDown.
    pub fn list_faults(&self, p: f64, seed: u64) {
        self.state.lock().unwrap().list_faults = Some((p, fastrand::Rng::with_seed(seed)));
    }

    /// The most listing requests answered at once so far.
    pub fn lists_peak(&self) -> u64 {
        self.state.lock().unwrap().lists_peak
    }

    /// Delays every answer by `d` (benchmarks: concurrency shows only
    /// when requests take time).
    pub fn set_latency(&self, d: std::time::Duration) {
        self.state.lock().unwrap().latency = d;
    }

    async fn delay(&self) {
        let d = self.state.lock().unwrap().latency;
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }

    /// The `X-Amzn-Trace-Id` headers received so far.
    pub fn trace_ids(&self) -> Vec<String> {
        self.state.lock().unwrap().trace_ids.clone()
    }

    /// [`MemS3::enter`] with the request's trace id.
    fn enter_with<T>(&self, req: &S3Request<T>) -> S3Result<()> {
        self.enter(
            req.headers
                .get("x-amzn-trace-id")
                .and_then(|v| v.to_str().ok()),
        )
    }

    /// A request's start: counted, failed if a fault is due, then delayed.
    async fn begin<T: Sync>(&self, req: &S3Request<T>) -> S3Result<()> {
        self.enter_with(req)?;
        self.delay().await;
        Ok(())
    }

    /// The object at `key`, or the error S3 gives for it.
    fn stored(&self, bucket: &str, key: &str) -> S3Result<MemObj> {
        let st = self.state.lock().unwrap();
        let b = st
            .buckets
            .get(bucket)
            .ok_or_else(|| s3_error!(NoSuchBucket))?;
        let obj = b.get(key).cloned();
        drop(st);
        obj.ok_or_else(|| self.missing())
    }

    fn enter(&self, trace_id: Option<&str>) -> S3Result<()> {
        let mut st = self.state.lock().unwrap();
        st.requests += 1;
        if let Some(t) = trace_id {
            st.trace_ids.push(t.to_string());
        }
        match st.faults.pop_front() {
            Some(code) => Err(S3Error::new(code)),
            None => Ok(()),
        }
    }
}

/// S3's `encoding-type=url`: form-style, `+` for space.
fn url_encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[async_trait::async_trait]
impl S3 for MemS3 {
    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.enter_with(&req)?;
        {
            let mut st = self.state.lock().unwrap();
            if let Some((p, rng)) = &mut st.list_faults
                && rng.f64() < *p
            {
                return Err(if rng.bool() {
                    s3_error!(InternalError)
                } else {
                    s3_error!(SlowDown)
                });
            }
            st.lists_now += 1;
            st.lists_peak = st.lists_peak.max(st.lists_now);
        }
        self.delay().await;
        let input = req.input;
        let mut st = self.state.lock().unwrap();
        st.lists_now -= 1;
        if st.list_quirk == Some(ListQuirk::EmptyPages) {
            return Ok(S3Response::new(ListObjectsV2Output {
                name: Some(input.bucket),
                key_count: Some(0),
                is_truncated: Some(true),
                next_continuation_token: Some(hex::encode(format!("empty-{}", st.requests))),
                continuation_token: input.continuation_token,
                ..Default::default()
            }));
        }
        let objs = st
            .buckets
            .get(&input.bucket)
            .ok_or_else(|| s3_error!(NoSuchBucket))?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let max = input.max_keys.unwrap_or(1000).clamp(1, 1000) as usize;
        // Tokens are opaque (hex of the last key), as S3's are: a raw key
        // could hold characters XML cannot carry.
        let token_key = match &input.continuation_token {
            Some(t) => Some(
                String::from_utf8(hex::decode(t).map_err(|_| s3_error!(InvalidArgument))?)
                    .map_err(|_| s3_error!(InvalidArgument))?,
            ),
            None => None,
        };
        let after = token_key.or(input.start_after.clone());
        let start = match &after {
            Some(a) if a.as_str() >= prefix.as_str() => Bound::Excluded(a.clone()),
            _ => Bound::Included(prefix.clone()),
        };
        let encode = input
            .encoding_type
            .as_ref()
            .is_some_and(|e| e.as_str() == EncodingType::URL);
        let mut contents = Vec::new();
        let mut truncated = false;
        let mut last = None;
        for (k, o) in objs.range((start, Bound::Unbounded)) {
            if !k.starts_with(&prefix) {
                break;
            }
            if contents.len() == max {
                truncated = true;
                break;
            }
            last = Some(k.clone());
            contents.push(Object {
                key: Some(if encode { url_encode_key(k) } else { k.clone() }),
                size: Some(o.len() as i64),
                e_tag: Some(ETag::Strong(o.etag.clone())),
                last_modified: Some(Timestamp::from(o.modified)),
                ..Default::default()
            });
        }
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: input.prefix,
            key_count: Some(contents.len() as i32),
            max_keys: Some(max as i32),
            contents: Some(contents),
            is_truncated: Some(
                truncated
                    || (input.continuation_token.is_some()
                        && st.list_quirk == Some(ListQuirk::RepeatToken)),
            ),
            next_continuation_token: match (&input.continuation_token, st.list_quirk) {
                (Some(t), Some(ListQuirk::RepeatToken)) => Some(t.clone()),
                _ if truncated => last.map(hex::encode),
                _ => None,
            },
            continuation_token: input.continuation_token,
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.begin(&req).await?;
        let input = req.input;
        let obj = self.stored(&input.bucket, &input.key)?;
        let len = obj.len();
        let (start, end, content_range) = match input.range {
            None => (0, len, None),
            Some(r) => {
                let rr = r.check(len)?;
                let range = format!("bytes {}-{}/{}", rr.start, rr.end - 1, len);
                (rr.start, rr.end, Some(range))
            }
        };
        Ok(S3Response::new(GetObjectOutput {
            content_length: Some((end - start) as i64),
            content_range,
            e_tag: Some(ETag::Strong(obj.etag.clone())),
            last_modified: Some(Timestamp::from(obj.modified)),
            body: Some(obj.body(start, end)),
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.begin(&req).await?;
        let input = req.input;
        let obj = self.stored(&input.bucket, &input.key)?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(obj.len() as i64),
            e_tag: Some(ETag::Strong(obj.etag.clone())),
            last_modified: Some(Timestamp::from(obj.modified)),
            ..Default::default()
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.begin(&req).await?;
        let input = req.input;
        let body = match input.body {
            Some(b) => {
                let chunks: Vec<Bytes> = b
                    .try_collect()
                    .await
                    .map_err(|_| s3_error!(IncompleteBody))?;
                Bytes::from(chunks.concat())
            }
            None => Bytes::new(),
        };
        let etag = md5_hex(&body);
        // Check and write under one lock: conditional writes are atomic.
        let mut st = self.state.lock().unwrap();
        let b = st
            .buckets
            .get_mut(&input.bucket)
            .ok_or_else(|| s3_error!(NoSuchBucket))?;
        let current = b.get(&input.key);
        if let Some(c) = &input.if_none_match
            && c.is_any()
            && current.is_some()
        {
            return Err(s3_error!(PreconditionFailed, "object exists"));
        }
        if let Some(c) = &input.if_match {
            let Some(cur) = current else {
                return Err(s3_error!(NoSuchKey, "object does not exist"));
            };
            let ok = match c {
                ETagCondition::Any => true,
                ETagCondition::ETag(e) => e.value() == cur.etag,
            };
            if !ok {
                return Err(s3_error!(PreconditionFailed, "ETag does not match"));
            }
        }
        b.insert(
            input.key,
            MemObj {
                data: body,
                etag: etag.clone(),
                modified: SystemTime::now(),
                claimed: None,
            },
        );
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    /// As S3: deleting a missing key succeeds, unless `If-Match` asks for
    /// an object (then NoSuchKey); a mismatched `If-Match` is refused.
    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.begin(&req).await?;
        let input = req.input;
        let mut st = self.state.lock().unwrap();
        let b = st
            .buckets
            .get_mut(&input.bucket)
            .ok_or_else(|| s3_error!(NoSuchBucket))?;
        if let Some(c) = &input.if_match {
            let Some(cur) = b.get(&input.key) else {
                return Err(s3_error!(NoSuchKey, "object does not exist"));
            };
            if let ETagCondition::ETag(e) = c
                && e.value() != cur.etag
            {
                return Err(s3_error!(PreconditionFailed, "ETag does not match"));
            }
        }
        b.remove(&input.key);
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }
}

/// An S3 service listening on 127.0.0.1; stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections (a server that goes away).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves any `s3s::S3` implementation over HTTP/1.1 on loopback, with
/// SigV4 authentication for the test key pair.
pub async fn serve(s3: impl S3) -> TestServer {
    serve_at(s3, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// Serves on a given address: after [`TestServer::stop`], serving the same
/// `MemS3` (a clone shares its objects) at the old address brings the
/// server back, as a restarted server would come back.
pub async fn serve_at(s3: impl S3, addr: SocketAddr) -> TestServer {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;

    let mut b = s3s::service::S3ServiceBuilder::new(s3);
    b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = b.build();
    // A stopped server's listener closes when its aborted task is next
    // dropped by the runtime: give it a moment.
    let mut tries = 0;
    let listener = loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) if tries < 100 && e.kind() == std::io::ErrorKind::AddrInUse => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("binding {addr}: {e}"),
        }
    };
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let service = service.clone();
            conns.spawn(async move {
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(sock), service)
                    .await;
            });
        }
    });
    TestServer { addr, task }
}

/// An SDK client for a test server, with static credentials and a retry
/// quota of its own.
pub fn client(endpoint: &str) -> aws_sdk_s3::Client {
    let creds = aws_sdk_s3::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test");
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .credentials_provider(creds)
        .region(aws_sdk_s3::config::Region::new(REGION))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .retry_config(
            aws_sdk_s3::config::retry::RetryConfig::standard()
                .with_max_attempts(4)
                .with_initial_backoff(std::time::Duration::from_millis(10)),
        )
        // The SDK keeps one retry quota per partition for the whole
        // process: shared, the tests that inject failures would spend it
        // for each other and a test's retries would stop at random.
        .retry_partition(aws_sdk_s3::config::retry::RetryPartition::new(format!(
            "s3mem {endpoint}"
        )))
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A fresh server holding one empty bucket, and a store on it: the server
/// stops when the returned `TestServer` is dropped.
pub async fn bucket_store(bucket: &str) -> (TestServer, MemS3, imgtag::storage::DynStore) {
    let mem = MemS3::new();
    mem.create_bucket(bucket);
    let server = serve(mem.clone()).await;
    let store: imgtag::storage::DynStore = std::sync::Arc::new(
        imgtag::storage::S3Store::from_client(client(&server.endpoint()), bucket),
    );
    (server, mem, store)
}
