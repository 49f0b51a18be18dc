//! A store that tells the index about every metadata document imgtag
//! writes: whichever front end tags or reviews, the index sees the new
//! document without waiting for a refresh.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use super::Index;
use crate::contract::{Layout, parse_metadata};
use crate::storage::{DynStore, Object, ObjectInfo, PutCondition, Result, Store, StoreKind};
use crate::summary::summarize;

pub struct IndexedStore {
    inner: DynStore,
    index: Arc<Index>,
    layout: Layout,
}

impl IndexedStore {
    pub fn wrap(inner: DynStore, index: Arc<Index>, layout: Layout) -> DynStore {
        Arc::new(IndexedStore {
            inner,
            index,
            layout,
        })
    }

    fn record(&self, key: &str, body: &Bytes, etag: &str) {
        if self.layout.metadata_rest(key).is_none() {
            return;
        }
        let info = ObjectInfo {
            key: key.to_string(),
            size: body.len() as u64,
            etag: Some(etag.into()),
            last_modified: Some(time::OffsetDateTime::now_utc().unix_timestamp()),
        };
        let doc = summarize(&parse_metadata(body));
        // The write itself succeeded; an index that cannot follow is
        // corrected by the next refresh, so this is a warning only.
        if let Err(e) = self.index.record_document(&self.layout, &info, &doc) {
            // The log writer escapes control characters (SafeLogWriter).
            tracing::warn!("index not updated for {key:?}: {e}");
        }
    }
}

#[async_trait]
impl Store for IndexedStore {
    fn kind(&self) -> StoreKind {
        self.inner.kind()
    }
    fn aws_readable(&self) -> bool {
        self.inner.aws_readable()
    }
    fn bucket_name(&self) -> &str {
        self.inner.bucket_name()
    }
    fn endpoint(&self) -> &str {
        self.inner.endpoint()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn list(&self, prefix: &str) -> BoxStream<'static, Result<Vec<ObjectInfo>>> {
        self.inner.list(prefix)
    }
    fn seeks(&self) -> bool {
        self.inner.seeks()
    }
    fn list_after(
        &self,
        prefix: &str,
        after: Option<&str>,
    ) -> BoxStream<'static, Result<Vec<ObjectInfo>>> {
        self.inner.list_after(prefix, after)
    }
    async fn get(&self, key: &str, limit: u64) -> Result<Object> {
        self.inner.get(key, limit).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.inner.get_range(key, range).await
    }
    async fn head(&self, key: &str) -> Result<ObjectInfo> {
        self.inner.head(key).await
    }
    async fn put(&self, key: &str, body: Bytes, condition: PutCondition) -> Result<String> {
        let etag = self.inner.put(key, body.clone(), condition).await?;
        self.record(key, &body, &etag);
        Ok(etag)
    }
}
