//! A store that tells the index about every metadata document imgtag
//! writes: whichever front end tags or reviews, the index sees the new
//! document without waiting for a refresh.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::Index;
use crate::contract::{Layout, parse_metadata};
use crate::storage::{DynStore, Layer, ObjectInfo, PutCondition, Result};
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
impl Layer for IndexedStore {
    fn inner(&self) -> &DynStore {
        &self.inner
    }
    async fn put(&self, key: &str, body: Bytes, condition: PutCondition) -> Result<String> {
        let etag = self.inner.put(key, body.clone(), condition).await?;
        self.record(key, &body, &etag);
        Ok(etag)
    }
}
