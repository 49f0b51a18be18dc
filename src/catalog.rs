//! The bucket model: images under uploads/ paired with their metadata
//! objects, built page by page as listings stream in.

use futures::stream::{self, Stream, StreamExt, TryStreamExt};
use serde::Serialize;

use crate::contract::{
    KeyKind, Layout, MAX_METADATA_BYTES, Malformed, ParsedMetadata, is_folder_placeholder,
    parse_metadata,
};
use crate::key_index::KeyIndex;
use crate::status::Status;
use crate::status::{ReviewRule, assess};
use crate::storage::{DynStore, ObjectInfo, StorageError};
use crate::summary::{DocSummary, SummaryRead, summarize};

/// An image and the metadata object paired with it.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    pub info: ObjectInfo,
    /// Index into the catalog's metadata objects, and how it matched.
    pub meta: Option<(u32, KeyKind)>,
}

/// Images and metadata objects of one bucket, paired.
///
/// Pairing is incremental: images are paired as they arrive, and images
/// still unpaired (or paired through a legacy key) are re-checked when new
/// metadata arrives, so the two listings may interleave in any order.
pub struct Catalog {
    layout: Layout,
    images: Vec<ImageEntry>,
    metas: Vec<ObjectInfo>,
    /// Metadata indices hashed by their rest (the key between prefix and
    /// `.json`); lookups hash a slice of the image key, so pairing
    /// allocates nothing and stores no second copy of any key.
    index: KeyIndex,
    /// Metadata added since the last re-pair of unpaired images.
    repair_needed: bool,
    placeholders: u64,
    ignored: u64,
}

impl Catalog {
    pub fn new(layout: Layout) -> Self {
        Catalog {
            layout,
            images: Vec::new(),
            metas: Vec::new(),
            index: KeyIndex::new(),
            repair_needed: false,
            placeholders: 0,
            ignored: 0,
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn images(&self) -> &[ImageEntry] {
        &self.images
    }

    pub fn metadata(&self, idx: u32) -> &ObjectInfo {
        &self.metas[idx as usize]
    }

    pub fn metadata_count(&self) -> usize {
        self.metas.len()
    }

    /// Folder placeholders seen (and not listed as images).
    pub fn placeholders(&self) -> u64 {
        self.placeholders
    }

    /// Objects under the metadata prefix that are not `.json`.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Adds a listing page of either prefix.
    pub fn add_page(&mut self, page: Vec<ObjectInfo>) {
        for obj in page {
            self.add(obj);
        }
        self.repair();
    }

    fn add(&mut self, obj: ObjectInfo) {
        if is_folder_placeholder(&obj.key) {
            self.placeholders += 1;
        } else if self.layout.image_rest(&obj.key).is_some() {
            let meta = self.lookup(&obj.key);
            self.images.push(ImageEntry { info: obj, meta });
        } else if let Some(rest) = self.layout.metadata_rest(&obj.key) {
            let idx = self.metas.len() as u32;
            let (layout, metas) = (&self.layout, &self.metas);
            let rest_of = |i: u32| {
                layout
                    .metadata_rest(&metas[i as usize].key)
                    .expect("indexed keys are metadata keys")
            };
            if self.index.find(rest, rest_of).is_some() {
                return;
            }
            self.index.insert_unique(rest, idx, rest_of);
            self.metas.push(obj);
            self.repair_needed = true;
        } else {
            self.ignored += 1;
        }
    }

    fn lookup(&self, image_key: &str) -> Option<(u32, KeyKind)> {
        let rest = self.layout.image_rest(image_key)?;
        Layout::candidate_rests(rest).find_map(|(kind, cand)| {
            self.index
                .find(cand, |i| {
                    self.layout
                        .metadata_rest(&self.metas[i as usize].key)
                        .expect("indexed keys are metadata keys")
                })
                .map(|i| (i, kind))
        })
    }

    fn repair(&mut self) {
        if !std::mem::take(&mut self.repair_needed) {
            return;
        }
        for i in 0..self.images.len() {
            if !matches!(self.images[i].meta, Some((_, KeyKind::Canonical))) {
                let found = self.lookup(&self.images[i].info.key);
                self.images[i].meta = found;
            }
        }
    }

    /// Metadata objects no image claims, in key order.
    pub fn orphans(&self) -> Vec<u32> {
        let mut claimed = vec![false; self.metas.len()];
        for img in &self.images {
            if let Some((i, _)) = img.meta {
                claimed[i as usize] = true;
            }
        }
        let mut out: Vec<u32> = (0..self.metas.len() as u32)
            .filter(|&i| !claimed[i as usize])
            .collect();
        out.sort_by(|a, b| {
            self.metas[*a as usize]
                .key
                .cmp(&self.metas[*b as usize].key)
        });
        out
    }
}

// ---------------------------------------------------------------------------
// Reading metadata and assessing images

/// The result of reading one metadata object.
pub(crate) type MetadataRead = Result<ParsedMetadata, Malformed>;

/// Reads and parses a metadata object. Objects too large to be metadata
/// are reported as malformed, not fetched.
pub(crate) async fn read_metadata(
    store: &DynStore,
    key: &str,
) -> Result<(MetadataRead, ObjectInfo), StorageError> {
    read_metadata_bytes(store, key)
        .await
        .map(|(read, info, _)| (read, info))
}

/// [`read_metadata`], with the bytes as stored (empty when over the
/// limit): what an undo puts back.
pub(crate) async fn read_metadata_bytes(
    store: &DynStore,
    key: &str,
) -> Result<(MetadataRead, ObjectInfo, bytes::Bytes), StorageError> {
    match store.get(key, MAX_METADATA_BYTES).await {
        Ok(obj) => Ok((parse_metadata(&obj.body), obj.info, obj.body)),
        Err(StorageError::TooLarge { size, limit, .. }) => Ok((
            Err(Malformed {
                reason: format!("{size} bytes, over the {limit} byte limit for metadata"),
            }),
            store.head(key).await?,
            bytes::Bytes::new(),
        )),
        Err(e) => Err(e),
    }
}

/// An image's metadata document, as `find_metadata` found it.
#[derive(Debug, Clone)]
pub struct FoundMetadata {
    /// Its key, and how that key pairs with the image.
    pub key: String,
    pub kind: KeyKind,
    /// The object as read (its ETag is the If-Match of a rewrite).
    pub info: ObjectInfo,
    pub read: MetadataRead,
    /// The bytes as read (empty when over the size limit).
    pub body: bytes::Bytes,
}

/// The image a document names as its own (`ImgTag.Source.Key`), if any.
fn source_key(read: &MetadataRead) -> Option<&str> {
    let t = read.as_ref().ok()?.doc.imgtag.as_ref()?;
    Some(t.source.key.as_str())
}

/// Whether the document read at `metadata_key` is another image's
/// ([`Layout::owned_by_other`]).
pub(crate) fn claimed_by_other(
    layout: &Layout,
    metadata_key: &str,
    read: &MetadataRead,
    image_key: &str,
) -> bool {
    layout.owned_by_other(metadata_key, source_key(read), image_key)
}

/// What `find_metadata` found for an image.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The image's own document (boxed: it holds the parsed document).
    Found(Box<FoundMetadata>),
    /// No document of its own. `taken` is set when its canonical key holds
    /// another image's document: no writer may create one there.
    Absent { taken: Option<Taken> },
}

/// A canonical key that holds another image's document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Taken {
    pub key: String,
    /// The image the document names as its own.
    pub owner: String,
}

impl Taken {
    /// Why a writer leaves the image alone. Untrusted keys: sanitise
    /// before a terminal sees it.
    pub fn reason(&self) -> String {
        format!(
            "{} holds the metadata of {:?}: not rewritten for this image (move or delete that document first)",
            self.key, self.owner
        )
    }
}

impl Lookup {
    /// The image's own document, if any.
    pub fn found(self) -> Option<FoundMetadata> {
        match self {
            Lookup::Found(f) => Some(*f),
            Lookup::Absent { .. } => None,
        }
    }
}

/// Finds an image's metadata: the one lookup every path uses (tag, review,
/// show, ls, the TUI). Tries `hint` first (the key a listing paired), then
/// the canonical key, then the legacy ones; a document that another image
/// owns is passed over, and reported when it sits at the canonical key.
pub(crate) async fn find_metadata(
    store: &DynStore,
    layout: &Layout,
    image_key: &str,
    hint: Option<&str>,
) -> Result<Lookup, StorageError> {
    let mut candidates = layout.metadata_candidates(image_key);
    if let Some(h) = hint {
        candidates.retain(|(_, k)| k != h);
        let kind = layout.key_kind(image_key, h).unwrap_or(KeyKind::Canonical);
        candidates.insert(0, (kind, h.to_string()));
    }
    let mut taken = None;
    for (kind, key) in candidates {
        match read_metadata_bytes(store, &key).await {
            Ok((read, info, body)) if !claimed_by_other(layout, &key, &read, image_key) => {
                return Ok(Lookup::Found(Box::new(FoundMetadata {
                    key,
                    kind,
                    info,
                    read,
                    body,
                })));
            }
            Ok((read, _, _)) => {
                if kind == KeyKind::Canonical {
                    let owner = source_key(&read).unwrap_or_default().to_string();
                    taken = Some(Taken { key, owner });
                }
            }
            Err(StorageError::NotFound { .. } | StorageError::InvalidKey { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(Lookup::Absent { taken })
}

/// One line of an audit: an image with its status, or an orphan.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessed {
    /// The image (None for orphan metadata).
    pub image: Option<ObjectInfo>,
    pub metadata: Option<ObjectInfo>,
    pub key_kind: Option<KeyKind>,
    /// None when the metadata could not be read (see `read_error`).
    pub status: Option<Status>,
    /// The metadata document as the audit keeps it.
    pub doc: Option<SummaryRead>,
    pub read_error: Option<String>,
}

impl Assessed {
    /// An image with no document of its own (none found, one deleted since
    /// the listing, or another image's).
    pub(crate) fn undocumented(image: ObjectInfo, status: Status) -> Assessed {
        Assessed {
            status: Some(status),
            image: Some(image),
            metadata: None,
            key_kind: None,
            doc: None,
            read_error: None,
        }
    }

    pub fn key(&self) -> &str {
        self.image
            .as_ref()
            .or(self.metadata.as_ref())
            .map(|o| o.key.as_str())
            .unwrap_or("")
    }

    pub fn doc(&self) -> Option<&DocSummary> {
        self.doc.as_ref().and_then(|r| r.as_ref().ok())
    }

    /// (name, confidence) of the headline label.
    pub fn headline(&self) -> Option<(&str, f32)> {
        self.doc().and_then(DocSummary::headline)
    }

    /// Why the metadata is unreadable, malformed or a recorded failure.
    pub fn problem(&self) -> Option<String> {
        self.read_error
            .clone()
            .or_else(|| {
                self.doc
                    .as_ref()
                    .and_then(|r| r.as_ref().err())
                    .map(|m| m.to_string())
            })
            .or_else(|| self.doc().and_then(|d| d.error.clone()))
    }
}

#[derive(Debug, Serialize)]
pub struct LabelJson<'a> {
    pub name: &'a str,
    pub confidence: f32,
}

/// A machine-readable audit line (`--json`).
#[derive(Debug, Serialize)]
pub struct AssessedJson<'a> {
    pub key: &'a str,
    pub status: &'a str,
    pub metadata_key: Option<&'a str>,
    pub metadata_match: Option<KeyKind>,
    /// The headline label's name and confidence.
    pub headline: Option<&'a str>,
    pub confidence: Option<f32>,
    pub labels: Vec<LabelJson<'a>>,
    pub size: Option<u64>,
    pub etag: Option<&'a str>,
    pub shape: Option<crate::contract::Shape>,
    pub error: Option<String>,
}

impl Assessed {
    pub fn to_json(&self) -> AssessedJson<'_> {
        let doc = self.doc();
        AssessedJson {
            key: self.key(),
            status: self.status.map_or("unknown", Status::as_str),
            metadata_key: self.metadata.as_ref().map(|m| m.key.as_str()),
            metadata_match: self.key_kind,
            headline: self.headline().map(|b| b.0),
            confidence: self.headline().map(|b| b.1),
            labels: doc
                .map(|d| {
                    d.labels
                        .iter()
                        .map(|l| LabelJson {
                            name: l.name(),
                            confidence: l.confidence(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            size: self.image.as_ref().map(|i| i.size),
            etag: self.image.as_ref().and_then(|i| i.etag.as_deref()),
            shape: doc.map(|d| d.shape),
            error: self.problem(),
        }
    }
}

/// How many metadata objects are read at once during an audit.
pub(crate) const READ_CONCURRENCY: usize = 16;

/// Audits a bucket: lists the metadata prefix, then streams the images in
/// key order with their status (reading metadata concurrently), then the
/// orphans. Listing errors end the stream with an error; a metadata object
/// that cannot be read yields an entry with `read_error` and goes on.
pub fn audit(
    store: DynStore,
    layout: Layout,
    rule: impl Into<ReviewRule>,
) -> impl Stream<Item = Result<Assessed, StorageError>> {
    let rule = rule.into();
    let meta_prefix = layout.metadata_prefix().to_string();
    let uploads_prefix = layout.uploads_prefix().to_string();
    let catalog = Catalog::new(layout.clone());

    let build = {
        let store = store.clone();
        async move {
            let mut catalog = catalog;
            let mut pages = store.list(&meta_prefix);
            while let Some(page) = pages.try_next().await? {
                catalog.add_page(page);
            }
            Ok::<_, StorageError>(std::sync::Arc::new(std::sync::Mutex::new(catalog)))
        }
    };

    stream::once(build)
        .map_ok(move |catalog| {
            let (store2, layout, rule) = (store.clone(), layout.clone(), rule.clone());
            let cat2 = catalog.clone();
            let images = store
                .list(&uploads_prefix)
                .map_ok(move |page| {
                    let mut cat = catalog.lock().expect("catalog");
                    let start = cat.images().len();
                    cat.add_page(page);
                    let rows: Vec<_> = cat.images()[start..]
                        .iter()
                        .map(|img| {
                            let meta = img.meta.map(|(m, k)| (cat.metadata(m).clone(), k));
                            (img.info.clone(), meta)
                        })
                        .collect();
                    stream::iter(rows.into_iter().map(Ok::<_, StorageError>))
                })
                .try_flatten()
                .map_ok(move |(image, meta)| {
                    let (store, layout, rule) = (store2.clone(), layout.clone(), rule.clone());
                    async move { Ok(assess_one(&store, &layout, image, meta, rule).await) }
                })
                .try_buffered(READ_CONCURRENCY);
            let orphans = stream::once(async move {
                let cat = cat2.lock().expect("catalog");
                let rows: Vec<_> = cat
                    .orphans()
                    .into_iter()
                    .map(|m| {
                        Ok(Assessed {
                            image: None,
                            metadata: Some(cat.metadata(m).clone()),
                            key_kind: None,
                            status: Some(Status::Orphan),
                            doc: None,
                            read_error: None,
                        })
                    })
                    .collect();
                stream::iter(rows)
            })
            .flatten();
            images.chain(orphans)
        })
        .try_flatten()
}

async fn assess_one(
    store: &DynStore,
    layout: &Layout,
    image: ObjectInfo,
    meta: Option<(ObjectInfo, KeyKind)>,
    rule: ReviewRule,
) -> Assessed {
    let Some((meta, kind)) = meta else {
        let status = assess(None, image.etag.as_deref(), rule);
        return Assessed::undocumented(image, status);
    };
    match read_metadata(store, &meta.key).await {
        // Another image's document: this image has none.
        Ok((read, _)) if claimed_by_other(layout, &meta.key, &read, &image.key) => {
            Assessed::undocumented(image, Status::Untagged)
        }
        Ok((read, _)) => Assessed {
            status: Some(assess(Some(&read), image.etag.as_deref(), rule)),
            image: Some(image),
            metadata: Some(meta),
            key_kind: Some(kind),
            doc: Some(summarize(&read)),
            read_error: None,
        },
        // Deleted between listing and reading: the image is untagged now.
        Err(StorageError::NotFound { .. }) => Assessed::undocumented(image, Status::Untagged),
        Err(e) => Assessed {
            status: None,
            image: Some(image),
            metadata: Some(meta),
            key_kind: Some(kind),
            doc: None,
            read_error: Some(e.to_string()),
        },
    }
}

/// One image assessed afresh (after a write): its HEAD, then its metadata
/// at `metadata_key` or, when not given, at the first candidate key that
/// exists. An image that is gone comes back with `image: None`.
pub(crate) async fn reassess(
    store: &DynStore,
    layout: &Layout,
    image_key: &str,
    metadata_key: Option<&str>,
    rule: impl Into<ReviewRule>,
) -> Result<Assessed, StorageError> {
    let rule = rule.into();
    let image = match store.head(image_key).await {
        Ok(i) => Some(i),
        Err(StorageError::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let found = find_metadata(store, layout, image_key, metadata_key).await?;
    Ok(match found.found() {
        Some(f) => Assessed {
            status: Some(match &image {
                Some(img) => assess(Some(&f.read), img.etag.as_deref(), rule),
                None => Status::Orphan,
            }),
            image,
            metadata: Some(f.info),
            key_kind: Some(f.kind),
            doc: Some(summarize(&f.read)),
            read_error: None,
        },
        None => Assessed {
            status: image.as_ref().map(|_| Status::Untagged),
            image,
            metadata: None,
            key_kind: None,
            doc: None,
            read_error: None,
        },
    })
}

// ---------------------------------------------------------------------------
// Selections

/// Which audited images a listing shows or a bulk operation takes: all
/// conditions must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Only these statuses (empty: all).
    pub statuses: Vec<Status>,
    /// Only images with a label (or a parent of one) of this name,
    /// case-insensitive.
    pub label: Option<String>,
    /// Only tagged images whose headline label is below this confidence.
    pub below: Option<f32>,
    /// Only images whose recognised text (`ImgTag.Text`) has a line
    /// containing this, case-insensitive.
    pub text: Option<String>,
}

impl Filter {
    pub fn statuses(statuses: Vec<Status>) -> Self {
        Filter {
            statuses,
            ..Filter::default()
        }
    }

    pub fn matches(&self, a: &Assessed) -> bool {
        if !self.statuses.is_empty() && !a.status.is_some_and(|s| self.statuses.contains(&s)) {
            return false;
        }
        if let Some(want) = &self.label
            && !a.doc().is_some_and(|d| d.has_label(want))
        {
            return false;
        }
        if let Some(want) = &self.text
            && !a.doc().is_some_and(|d| d.has_text(want))
        {
            return false;
        }
        if let Some(below) = self.below {
            let Some(doc) = a.doc() else { return false };
            if doc.error.is_some() || a.headline().is_some_and(|(_, c)| c >= below) {
                return false;
            }
        }
        true
    }
}

/// Which images a bulk operation (tag, review, backfill, watch's first
/// scan) works on.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These keys, as they are.
    Keys(Vec<String>),
    /// The images of an audit that match.
    Matching(Filter),
    All,
}

/// An image a selection names, with the metadata key the listing paired.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected {
    pub key: String,
    pub metadata_key: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size: 1,
            etag: Some("\"e\"".into()),
            last_modified: None,
        }
    }

    #[test]
    fn pairs_in_any_order_and_prefers_canonical() {
        let mut c = Catalog::new(Layout::default());
        c.add_page(vec![
            obj("uploads/"),
            obj("uploads/2024/"),
            obj("uploads/2024/cat.jpg"),
            obj("uploads/a.jpg"),
            obj("uploads/a.png"),
            obj("uploads/dog.jpg"),
        ]);
        assert_eq!(c.placeholders(), 2);
        assert_eq!(c.images().len(), 4);
        assert!(c.images().iter().all(|i| i.meta.is_none()));
        // Legacy metadata arrives first, then the canonical one.
        c.add_page(vec![obj("metadata/a.json"), obj("metadata/cat.json")]);
        let kinds: Vec<_> = c.images().iter().map(|i| i.meta.map(|m| m.1)).collect();
        assert_eq!(
            kinds,
            vec![
                Some(KeyKind::FlatStem),
                Some(KeyKind::Stem),
                Some(KeyKind::Stem),
                None
            ]
        );
        c.add_page(vec![
            obj("metadata/a.png.json"),
            obj("metadata/zz.jpg.json"),
            obj("metadata/x.txt"),
        ]);
        assert_eq!(c.images()[2].meta.unwrap().1, KeyKind::Canonical);
        assert_eq!(
            c.metadata(c.images()[2].meta.unwrap().0).key,
            "metadata/a.png.json"
        );
        let orphans: Vec<_> = c
            .orphans()
            .into_iter()
            .map(|i| c.metadata(i).key.clone())
            .collect();
        assert_eq!(orphans, vec!["metadata/zz.jpg.json"]);
        assert_eq!(c.ignored(), 1);
    }
}
