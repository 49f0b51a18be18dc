//! A short lease on one image while a paid detector looks at it, so that
//! two runs at once (two operators, a backfill beside the Lambda, an S3
//! event delivered twice) pay for it once (docs/format.md, "Claims").
//!
//! The claim is a small JSON object beside the image's canonical metadata
//! key (`metadata/a.jpg.lock` for `metadata/a.jpg.json`), created with
//! `If-None-Match: *`, taken over with `If-Match` once its lease is over,
//! and deleted with `If-Match` after the document is written.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::storage::{DynStore, PutCondition, StorageError};

/// The lease front ends take: longer than one detection with its retries
/// and the write after it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(300);

/// A claim larger than this is not one of ours.
const MAX_CLAIM_BYTES: u64 = 4096;

/// The claim key for a canonical metadata key: the same key with `.lock`
/// for `.json`, so it is as long, under the same prefix (and the same
/// permissions), and never read as a document.
pub fn claim_key(metadata_key: &str) -> String {
    let stem = metadata_key.strip_suffix(".json").unwrap_or(metadata_key);
    format!("{stem}.lock")
}

/// What a claim object holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ClaimDoc {
    /// Who holds it (`TaggedBy`: imgtag, imgtag-lambda, ...).
    by: String,
    /// Unique per claim, so that our own body is never another's.
    token: String,
    at: String,
    until: String,
}

/// The result of asking for a claim.
#[derive(Debug)]
pub enum Claim {
    /// Ours until released.
    Held { key: String, etag: String },
    /// Another run holds a live lease: this run must not detect.
    Busy { message: String },
    /// Something that is not a claim sits at the key: left alone, and the
    /// image is tagged without one.
    Foreign,
}

/// Takes the claim at `key` for `lease`: creates it, or takes over one
/// whose lease is over. A storage failure is returned as it is, after
/// deleting the claim if the failed write landed all the same.
pub async fn take(
    store: &DynStore,
    key: &str,
    by: &str,
    lease: Duration,
) -> Result<Claim, StorageError> {
    let now = OffsetDateTime::now_utc();
    let (body, token) = claim_body(by, now, lease);
    match take_with(store, key, &body, &token, now).await {
        Err(e) => {
            forget(store, key, &token).await;
            Err(e)
        }
        claim => claim,
    }
}

async fn take_with(
    store: &DynStore,
    key: &str,
    body: &Bytes,
    token: &str,
    now: OffsetDateTime,
) -> Result<Claim, StorageError> {
    let mut condition = PutCondition::CreateOnly;
    // A claim released between our create and our read is created again;
    // a key that keeps changing under us is another run's.
    for _ in 0..3 {
        match store.put(key, body.clone(), condition).await {
            Ok(etag) => return Ok(held(key, etag)),
            Err(StorageError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
        let Some((doc, etag)) = read(store, key).await? else {
            condition = PutCondition::CreateOnly;
            continue;
        };
        let Some((doc, etag)) = doc.zip(etag) else {
            return Ok(Claim::Foreign);
        };
        // Ours: a write that landed but whose reply was lost.
        if doc.token == token {
            return Ok(held(key, etag));
        }
        let until = OffsetDateTime::parse(&doc.until, &Rfc3339).ok();
        if until.is_some_and(|u| u > now) {
            return Ok(Claim::Busy {
                message: busy_message(&doc),
            });
        }
        condition = PutCondition::IfMatch(etag);
    }
    Ok(Claim::Busy {
        message: "another run is claiming this image at the same moment: \
                  not sent to the detector twice"
            .into(),
    })
}

/// The claim at `key` and its ETag (`None` inside when it is not one of
/// ours), or `None` when there is none.
async fn read(
    store: &DynStore,
    key: &str,
) -> Result<Option<(Option<ClaimDoc>, Option<String>)>, StorageError> {
    match store.get(key, MAX_CLAIM_BYTES).await {
        Ok(obj) => Ok(Some((
            serde_json::from_slice(&obj.body).ok(),
            obj.info.etag.map(Into::into),
        ))),
        Err(StorageError::NotFound { .. }) => Ok(None),
        Err(StorageError::TooLarge { .. }) => Ok(Some((None, None))),
        Err(e) => Err(e),
    }
}

/// Deletes the claim at `key` if it holds `token`: a claim whose write
/// failed may have landed, and nobody else would release it.
async fn forget(store: &DynStore, key: &str, token: &str) {
    if let Ok(Some((Some(doc), Some(etag)))) = read(store, key).await
        && doc.token == token
    {
        release(store, &held(key, etag)).await;
    }
}

/// Deletes a held claim if it is still ours. A failure only costs the
/// lease's time: the claim expires, and the next run takes it over.
pub async fn release(store: &DynStore, claim: &Claim) {
    let Claim::Held { key, etag } = claim else {
        return;
    };
    match store.delete(key, Some(etag)).await {
        Ok(()) | Err(StorageError::Conflict { .. }) => {}
        // The log writer escapes control characters (SafeLogWriter).
        Err(e) => tracing::warn!("claim {key:?} not released (it expires): {e}"),
    }
}

fn held(key: &str, etag: String) -> Claim {
    Claim::Held {
        key: key.to_string(),
        etag,
    }
}

/// A claim's body, and its token.
fn claim_body(by: &str, now: OffsetDateTime, lease: Duration) -> (Bytes, String) {
    let stamp = |t: OffsetDateTime| {
        let t = t.replace_nanosecond(0).unwrap_or(t);
        t.format(&Rfc3339).unwrap_or_default()
    };
    let doc = ClaimDoc {
        by: by.to_string(),
        token: format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
        at: stamp(now),
        until: stamp(now + lease),
    };
    let body = Bytes::from(serde_json::to_vec(&doc).expect("a claim serializes"));
    (body, doc.token)
}

/// Who holds the claim and until when. Untrusted text, escaped where it
/// is shown, like every outcome's message.
fn busy_message(doc: &ClaimDoc) -> String {
    format!(
        "another run is tagging it ({}, claimed {}, until {}): not sent to the detector twice",
        doc.by, doc.at, doc.until
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_claim_key_sits_beside_the_document() {
        assert_eq!(claim_key("metadata/a/b.jpg.json"), "metadata/a/b.jpg.lock");
        assert_eq!(
            claim_key("metadata/a.jpg.json").len(),
            "metadata/a.jpg.json".len()
        );
    }

    #[test]
    fn two_claims_made_in_the_same_second_differ() {
        let now = OffsetDateTime::now_utc();
        let lease = Duration::from_secs(60);
        assert_ne!(claim_body("x", now, lease), claim_body("x", now, lease));
        let (body, token) = claim_body("x", now, lease);
        let doc: ClaimDoc = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc.token, token);
    }
}
