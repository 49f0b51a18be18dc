//! The persistent index: real SQLite on disk, a real S3 server on loopback.
//! A refresh agrees with a fresh audit, reads only what changed, follows
//! adds, deletes, replaced images and documents changed by another
//! writer, and a broken or foreign index file is rebuilt, never trusted.

use crate::common;
use common::fixtures::put;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use common::fixtures;
use common::s3mem::{self, MemS3};
use futures::TryStreamExt;
use imgtag::catalog::{Assessed, Filter, audit};
use imgtag::contract::Layout;
use imgtag::index::query::{Query, rows};
use imgtag::index::refresh::{RefreshOptions, RefreshStats, refresh};
use imgtag::index::{Index, IndexSpec, IndexedStore};
use imgtag::status::Status;
use imgtag::storage::{
    DynStore, LocalStore, Object, ObjectInfo, PutCondition, S3Store, Store, StoreKind,
};

fn spec(bucket: &str) -> IndexSpec {
    IndexSpec::new("http://127.0.0.1", bucket, &Layout::default())
}

async fn refreshed(index: &Arc<Index>, store: &DynStore) -> RefreshStats {
    refresh(
        index,
        store,
        &Layout::default(),
        &RefreshOptions::default(),
        &|_| {},
    )
    .await
    .unwrap()
}

async fn indexed_rows(index: &Index, filter: Filter) -> Vec<Assessed> {
    let q = Query {
        layout: Layout::default(),
        review: 70.0.into(),
        filter,
        unreadable: Arc::default(),
    };
    rows(index, q).try_collect().await.unwrap()
}

async fn audited(store: &DynStore) -> Vec<Assessed> {
    audit(store.clone(), Layout::default(), 70.0)
        .try_collect()
        .await
        .unwrap()
}

/// What an operator sees of each row: key, status, headline.
type View = Vec<(String, Option<Status>, Option<(String, f32)>)>;

fn view(rows: &[Assessed]) -> View {
    rows.iter()
        .map(|a| {
            (
                a.key().to_string(),
                a.status,
                a.headline().map(|(n, c)| (n.to_string(), c)),
            )
        })
        .collect()
}

/// Every label (and parent) the audit shows, asked of the index with and
/// without `--below`, must give what the filter gives on a fresh audit:
/// the name index and the pairs' document ids are kept in step by every
/// write, not only by a first open.
async fn label_queries_agree(index: &Index, store: &DynStore) {
    let fresh = audited(store).await;
    let mut names: Vec<String> = fresh
        .iter()
        .filter_map(|a| a.doc())
        .flat_map(|d| d.search_names())
        .collect();
    names.sort();
    names.dedup();
    assert!(!names.is_empty());
    for name in names {
        for below in [None, Some(70.0), Some(95.0)] {
            label_query_agrees(index, &fresh, &name, below).await;
        }
    }
}

/// `--label label --below below` from the index gives what the filter
/// gives on the `fresh` audit.
async fn label_query_agrees(index: &Index, fresh: &[Assessed], label: &str, below: Option<f32>) {
    let filter = Filter {
        label: Some(label.into()),
        below,
        ..Filter::default()
    };
    let want: Vec<_> = fresh
        .iter()
        .filter(|a| filter.matches(a))
        .cloned()
        .collect();
    let got = indexed_rows(index, filter).await;
    assert_eq!(view(&got), view(&want), "{label} {below:?}");
}

fn open(path: &Path, spec: &IndexSpec) -> (Arc<Index>, Option<String>) {
    let (ix, note) = Index::open(path, spec).unwrap();
    (Arc::new(ix), note)
}

async fn s3_bucket(mem: &MemS3, name: &str) -> (s3mem::TestServer, DynStore) {
    mem.create_bucket(name);
    let server = s3mem::serve(mem.clone()).await;
    let store = S3Store::from_client(s3mem::client(&server.endpoint()), name).with_page_size(4);
    (server, Arc::new(store))
}

#[tokio::test]
async fn a_refreshed_index_agrees_with_an_audit_and_reopening_reads_nothing() {
    let mem = MemS3::new();
    let (_server, store) = s3_bucket(&mem, "ixb").await;
    fixtures::populate(&store).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ix.sqlite");

    let (index, note) = open(&path, &spec("ixb"));
    assert_eq!(note, None);
    let first = refreshed(&index, &store).await;
    assert!(first.read > 0 && first.added > 0, "{first:?}");
    let fresh = audited(&store).await;
    assert_eq!(
        view(&indexed_rows(&index, Filter::default()).await),
        view(&fresh)
    );
    drop(index);

    // Re-open in a new "process": nothing changed, so no document is read.
    let (index, note) = open(&path, &spec("ixb"));
    assert_eq!(note, None);
    let before = mem.requests();
    let second = refreshed(&index, &store).await;
    assert_eq!(
        (second.read, second.added, second.changed, second.removed),
        (0, 0, 0, 0)
    );
    let gets = mem.requests() - before;
    // Listing pages only (page size 4): far fewer requests than objects.
    assert!(
        gets <= second.listed / 4 + 3,
        "{gets} requests for {second:?}"
    );
    assert_eq!(
        view(&indexed_rows(&index, Filter::default()).await),
        view(&fresh)
    );
}

#[tokio::test]
async fn reconcile_follows_adds_deletes_replaced_images_and_changed_documents() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let store: DynStore = Arc::new(LocalStore::open(&bucket).unwrap().with_page_size(2));
    fixtures::populate(&store).await;
    let (index, _) = open(&dir.path().join("ix.sqlite"), &spec("local"));
    refreshed(&index, &store).await;

    // Another writer changes the bucket behind the index's back.
    let put = |k: &'static str, b: &'static [u8]| {
        let store = store.clone();
        async move {
            put(&store, k, Bytes::from_static(b)).await;
        }
    };
    put("uploads/new.jpg", b"new image").await;
    put("uploads/2024/cat.jpg", b"replaced bytes").await;
    std::fs::remove_file(bucket.join("uploads/broken.jpg")).unwrap();
    put(
        "metadata/weak cat.jpg.json",
        br#"{"Labels":[{"Name":"Cat","Confidence":99.0}]}"#,
    )
    .await;

    let stats = refreshed(&index, &store).await;
    assert_eq!(stats.added, 1, "{stats:?}");
    assert!(stats.removed >= 1 && stats.changed >= 2, "{stats:?}");
    assert_eq!(
        stats.read, 1,
        "only the changed document is read: {stats:?}"
    );
    let got = view(&indexed_rows(&index, Filter::default()).await);
    assert_eq!(got, view(&audited(&store).await));
    let status = |k: &str| got.iter().find(|r| r.0 == k).map(|r| r.1);
    assert_eq!(status("uploads/new.jpg"), Some(Some(Status::Untagged)));
    assert_eq!(status("uploads/2024/cat.jpg"), Some(Some(Status::Stale)));
    assert_eq!(status("uploads/broken.jpg"), None);
    // Its document is now an orphan.
    assert_eq!(
        status("metadata/broken.jpg.json"),
        Some(Some(Status::Orphan))
    );
    assert_eq!(status("uploads/weak cat.jpg"), Some(Some(Status::Tagged)));
    label_queries_agree(&index, &store).await;
}

#[tokio::test]
async fn writes_through_the_indexed_store_show_without_a_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let inner: DynStore = Arc::new(LocalStore::open(&bucket).unwrap());
    put(&inner, "uploads/a.jpg", Bytes::from_static(b"img")).await;
    let (index, _) = open(&dir.path().join("ix.sqlite"), &spec("local"));
    refreshed(&index, &inner).await;
    let store = IndexedStore::wrap(inner, index.clone(), Layout::default());
    store
        .put(
            "metadata/a.jpg.json",
            Bytes::from_static(br#"{"Labels":[{"Name":"Dog","Confidence":88.0}]}"#),
            PutCondition::CreateOnly,
        )
        .await
        .unwrap();
    let got = view(&indexed_rows(&index, Filter::default()).await);
    assert_eq!(
        got,
        vec![(
            "uploads/a.jpg".to_string(),
            Some(Status::Tagged),
            Some(("Dog".to_string(), 88.0))
        )]
    );
    label_queries_agree(&index, &store).await;
    // A rewrite (another ETag, other labels) is searchable at once too.
    put(
        &store,
        "metadata/a.jpg.json",
        Bytes::from_static(br#"{"Labels":[{"Name":"Wolf","Confidence":61.0}]}"#),
    )
    .await;
    label_queries_agree(&index, &store).await;
    // And the next refresh reads nothing: the index already has it.
    assert_eq!(refreshed(&index, &store).await.read, 0);
    label_queries_agree(&index, &store).await;
}

#[tokio::test]
async fn label_search_answers_from_the_index_with_parents() {
    let mem = MemS3::new();
    let (_server, store) = s3_bucket(&mem, "labels").await;
    fixtures::populate(&store).await;
    let dir = tempfile::tempdir().unwrap();
    let (index, _) = open(&dir.path().join("ix.sqlite"), &spec("labels"));
    refreshed(&index, &store).await;
    let fresh = audited(&store).await;
    for (label, below) in [
        ("cat", None),
        ("FELINE", Some(70.0)),
        ("animal", None),
        ("nothing", None),
    ] {
        label_query_agrees(&index, &fresh, label, below).await;
    }
    let weak = indexed_rows(
        &index,
        Filter {
            label: Some("feline".into()),
            below: Some(70.0),
            ..Filter::default()
        },
    )
    .await;
    assert!(
        weak.iter().any(|a| a.key() == "uploads/weak cat.jpg"),
        "{:?}",
        view(&weak)
    );
}

#[tokio::test]
async fn a_broken_old_or_foreign_index_is_rebuilt_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let store: DynStore = Arc::new(LocalStore::open(&bucket).unwrap());
    fixtures::populate(&store).await;
    let path = dir.path().join("ix.sqlite");
    let want = view(&audited(&store).await);

    let (index, _) = open(&path, &spec("one"));
    refreshed(&index, &store).await;
    drop(index);
    // Another bucket's spec at the same path: never mixed in, never
    // deleted (a temporary index serves).
    let (index, note) = open(&path, &spec("two"));
    assert!(note.unwrap().contains("belongs to bucket"));
    assert_ne!(index.path(), path);
    assert!(indexed_rows(&index, Filter::default()).await.is_empty());
    drop(index);

    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "garbage",
            b"this is not a database at all, just text".repeat(200),
        ),
        ("empty", Vec::new()),
    ];
    let valid = std::fs::read(&path).unwrap();
    cases.push(("truncated", valid[..valid.len().min(1500)].to_vec()));
    for (what, bytes) in cases {
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        std::fs::write(&path, &bytes).unwrap();
        let (index, _note) = open(&path, &spec("two"));
        refreshed(&index, &store).await;
        assert_eq!(
            view(&indexed_rows(&index, Filter::default()).await),
            want,
            "{what}"
        );
    }

    // An index of an older schema version: rebuilt where it is (a newer
    // one is left alone: tests/index_files.rs).
    let older = imgtag::index::SCHEMA_VERSION - 1;
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", older).unwrap();
    }
    let (index, note) = open(&path, &spec("two"));
    assert!(note.unwrap().contains(&format!(
        "rebuilding the index {} (schema version {older}",
        path.display()
    )));
    assert_eq!(index.path(), path);
    refreshed(&index, &store).await;
    assert_eq!(view(&indexed_rows(&index, Filter::default()).await), want);
}

#[tokio::test]
async fn two_writers_on_one_index_agree() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let store: DynStore = Arc::new(LocalStore::open(&bucket).unwrap().with_page_size(3));
    fixtures::populate(&store).await;
    let path = dir.path().join("ix.sqlite");
    let (a, _) = open(&path, &spec("local"));
    let (b, _) = open(&path, &spec("local"));
    let (x, y) = tokio::join!(refreshed(&a, &store), refreshed(&b, &store));
    assert!(x.listed > 0 && y.listed > 0);
    let want = view(&audited(&store).await);
    assert_eq!(view(&indexed_rows(&a, Filter::default()).await), want);
    assert_eq!(view(&indexed_rows(&b, Filter::default()).await), want);
    label_queries_agree(&a, &store).await;
}

#[tokio::test]
async fn unreadable_documents_are_reported_and_read_again_next_time() {
    let mem = MemS3::new();
    let (_server, store) = s3_bucket(&mem, "flaky").await;
    fixtures::populate(&store).await;
    let dir = tempfile::tempdir().unwrap();
    let (index, _) = open(&dir.path().join("ix.sqlite"), &spec("flaky"));
    // The next requests fail with 500: the refresh either fails with a
    // storage error (listing) or names the documents it could not read.
    mem.inject_faults(std::iter::repeat_n(s3s::S3ErrorCode::InternalError, 8));
    for _ in 0..4 {
        match refresh(
            &index,
            &store,
            &Layout::default(),
            &RefreshOptions::default(),
            &|_| {},
        )
        .await
        {
            Err(e) => assert!(matches!(e, imgtag::index::IndexError::Storage(_)), "{e}"),
            Ok(stats) => {
                let rows = indexed_rows(&index, Filter::default()).await;
                for key in stats.unreadable.keys() {
                    assert!(
                        rows.iter()
                            .any(|a| a.metadata.as_ref().is_some_and(|m| &m.key == key))
                    );
                }
            }
        }
    }
    let stats = refreshed(&index, &store).await;
    assert!(stats.unreadable.is_empty(), "{stats:?}");
    assert_eq!(
        view(&indexed_rows(&index, Filter::default()).await),
        view(&audited(&store).await)
    );
    // Documents read late are found by label like the others.
    label_queries_agree(&index, &store).await;
}

/// The binary on an S3-compatible server: a second `ls` of an unchanged
/// bucket reads no document and prints what the first printed, which is
/// what `--no-index` prints; `imgtag index` says what it did; two
/// processes refreshing one index at once both succeed.
#[tokio::test]
async fn ls_through_the_index_prints_what_a_fresh_audit_prints() {
    use common::bin::{imgtag_async, stdout};
    let mem = MemS3::new();
    let (server, store) = s3_bucket(&mem, "binbucket").await;
    fixtures::populate(&store).await;
    let home = tempfile::tempdir().unwrap();
    let endpoint = server.endpoint();
    let common = [
        "--bucket",
        "binbucket",
        "--endpoint-url",
        &endpoint,
        "--path-style",
    ];
    let ls = |extra: &'static [&'static str]| {
        let mut args = vec!["ls", "--json"];
        args.extend(common);
        args.extend(extra);
        let home = home.path().to_path_buf();
        async move { stdout(&imgtag_async(&home, &args).await) }
    };
    let first = ls(&[]).await;
    let before = mem.requests();
    let second = ls(&[]).await;
    let second_requests = mem.requests() - before;
    let plain = ls(&["--no-index"]).await;
    assert_eq!(first, second);
    assert_eq!(first, plain);
    assert!(first.lines().count() >= 10, "{first}");
    // 21 objects, one listing page per prefix: no GET of any document.
    assert!(second_requests <= 4, "{second_requests} requests");
    let weak = ls(&["--label", "feline", "--below", "70"]).await;
    assert!(
        weak.contains("weak cat.jpg") && !weak.contains("2024/cat.jpg"),
        "{weak}"
    );

    let mut args = vec!["index"];
    args.extend(common);
    let (a, b) = tokio::join!(
        imgtag_async(home.path(), &args),
        imgtag_async(home.path(), &args)
    );
    for out in [a, b] {
        let text = stdout(&out);
        assert!(text.contains("0 documents read"), "{text}");
    }
}

/// An S3 Inventory report as the listing: the index it builds is the one
/// a listing builds, and refreshing from it sends no LIST to the bucket.
#[tokio::test]
async fn an_inventory_report_serves_as_the_listing() {
    use crate::inventory::{encode, gzip, manifest_of};
    let mem = MemS3::new();
    let (_server, store) = s3_bucket(&mem, "invsrc").await;
    fixtures::populate(&store).await;
    let mut csv = String::new();
    for prefix in ["uploads/", "metadata/"] {
        let mut pages = store.list(prefix);
        while let Some(page) = pages.try_next().await.unwrap() {
            for o in page {
                let etag = o
                    .etag
                    .as_deref()
                    .unwrap_or("")
                    .trim_matches('"')
                    .to_string();
                csv.push_str(&format!(
                    "\"invsrc\",\"{}\",\"{}\",\"2026-11-24T10:00:00.000Z\",\"{etag}\"\n",
                    encode(&o.key, false),
                    o.size
                ));
            }
        }
    }
    let dest_dir = tempfile::tempdir().unwrap();
    let dest: DynStore = Arc::new(LocalStore::open(dest_dir.path()).unwrap());
    let data = gzip(&csv, flate2::Compression::default());
    let key = "inv/invsrc/all/data/part-0.csv.gz";
    put(&dest, key, Bytes::from(data.clone())).await;
    let m = manifest_of(
        "invsrc",
        "Bucket, Key, Size, LastModifiedDate, ETag",
        "CSV",
        &[(key, &data)],
    );
    put(
        &dest,
        "inv/invsrc/all/2026-11-24T10-00Z/manifest.json",
        Bytes::from(m),
    )
    .await;
    let listing = imgtag::inventory::load(&dest, "inv/invsrc/all/2026-11-24T10-00Z/manifest.json")
        .await
        .unwrap()
        .read(&dest, "invsrc", &["uploads/", "metadata/"])
        .await
        .unwrap();
    let opts = RefreshOptions {
        inventory: Some(Arc::new(listing)),
        ..RefreshOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let (index, _) = open(&dir.path().join("ix.sqlite"), &spec("invsrc"));
    let layout = Layout::default();
    let refresh_from_report = || refresh(&index, &store, &layout, &opts, &|_| {});
    let first = refresh_from_report().await.unwrap();
    assert!(first.read > 0);
    let want = view(&audited(&store).await);
    assert_eq!(view(&indexed_rows(&index, Filter::default()).await), want);
    let before = mem.requests();
    let again = refresh_from_report().await.unwrap();
    assert_eq!((again.read, again.added, again.removed), (0, 0, 0));
    assert_eq!(mem.requests(), before, "no request reaches the bucket");
}

/// A store whose listing of `metadata/` is taken whole, then a write goes
/// through the index, then the pages (listed before it) are handed over:
/// a refresh racing a write.
struct WriteMidListing {
    inner: DynStore,
    write: std::sync::Mutex<Option<(DynStore, &'static str, Bytes)>>,
}

#[async_trait::async_trait]
impl Store for WriteMidListing {
    fn kind(&self) -> StoreKind {
        self.inner.kind()
    }
    fn bucket_name(&self) -> &str {
        self.inner.bucket_name()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn list(
        &self,
        prefix: &str,
    ) -> futures::stream::BoxStream<'static, imgtag::storage::Result<Vec<ObjectInfo>>> {
        use futures::StreamExt;
        let pages = self.inner.list(prefix);
        let write = match prefix {
            "metadata/" => self.write.lock().unwrap().take(),
            _ => None,
        };
        let listed = async move {
            let pages: Vec<Vec<ObjectInfo>> = pages.try_collect().await?;
            if let Some((store, key, body)) = write {
                store.put(key, body, PutCondition::None).await?;
            }
            Ok(futures::stream::iter(pages.into_iter().map(Ok)))
        };
        futures::stream::once(listed).try_flatten().boxed()
    }
    async fn get(&self, key: &str, limit: u64) -> imgtag::storage::Result<Object> {
        self.inner.get(key, limit).await
    }
    async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> imgtag::storage::Result<Bytes> {
        self.inner.get_range(key, range).await
    }
    async fn head(&self, key: &str) -> imgtag::storage::Result<ObjectInfo> {
        self.inner.head(key).await
    }
    async fn put(
        &self,
        key: &str,
        body: Bytes,
        condition: PutCondition,
    ) -> imgtag::storage::Result<String> {
        self.inner.put(key, body, condition).await
    }
    async fn delete(&self, key: &str, if_match: Option<&str>) -> imgtag::storage::Result<()> {
        self.inner.delete(key, if_match).await
    }
}

/// A page listed before a write and reconciled after it must not put the
/// old ETag back: the index shows the written document.
#[tokio::test]
async fn a_page_listed_before_a_write_does_not_roll_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let inner: DynStore = Arc::new(LocalStore::open(&bucket).unwrap());
    for (key, body) in [
        ("uploads/a.jpg", &b"img"[..]),
        (
            "metadata/a.jpg.json",
            br#"{"Labels":[{"Name":"Dog","Confidence":88.0}]}"#,
        ),
    ] {
        put(&inner, key, Bytes::copy_from_slice(body)).await;
    }
    let (index, _) = open(&dir.path().join("ix.sqlite"), &spec("local"));
    refreshed(&index, &inner).await;
    let edit = Bytes::from_static(br#"{"Labels":[{"Name":"Wolf","Confidence":91.0}]}"#);
    let racing: DynStore = Arc::new(WriteMidListing {
        inner: inner.clone(),
        write: std::sync::Mutex::new(Some((
            IndexedStore::wrap(inner.clone(), index.clone(), Layout::default()),
            "metadata/a.jpg.json",
            edit,
        ))),
    });
    refreshed(&index, &racing).await;
    let wolf = vec![(
        "uploads/a.jpg".to_string(),
        Some(Status::Tagged),
        Some(("Wolf".to_string(), 91.0)),
    )];
    assert_eq!(view(&indexed_rows(&index, Filter::default()).await), wolf);
    // The next refresh lists after the write and agrees.
    refreshed(&index, &inner).await;
    assert_eq!(view(&indexed_rows(&index, Filter::default()).await), wolf);
    label_queries_agree(&index, &inner).await;
}

fn names_in(path: &Path) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row("SELECT count(*) FROM names", [], |r| r.get(0))
        .unwrap()
}

/// Documents full of unique names come and go (deleted, or rewritten
/// with other names): the names table returns to what the bucket uses.
#[tokio::test]
async fn names_no_document_uses_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let store: DynStore = Arc::new(LocalStore::open(&bucket).unwrap());
    fixtures::populate(&store).await;
    let path = dir.path().join("ix.sqlite");
    let (index, _) = open(&path, &spec("local"));
    refreshed(&index, &store).await;
    let baseline = names_in(&path);
    let doc = |round: u32, i: u32| {
        format!(
            r#"{{"Labels":[{{"Name":"Only{round}x{i}","Confidence":90.0,"Parents":[{{"Name":"Kin{round}x{i}"}}]}}]}}"#
        )
    };
    for round in 0..3 {
        for i in 0..10 {
            let (img, meta) = (
                format!("uploads/u{i}.jpg"),
                format!("metadata/u{i}.jpg.json"),
            );
            put(&store, &img, Bytes::from("i")).await;
            put(&store, &meta, Bytes::from(doc(round, i))).await;
        }
        refreshed(&index, &store).await;
        // This round's 20 names; the last round's went with its documents.
        assert_eq!(names_in(&path), baseline + 20, "round {round}");
    }
    for i in 0..10 {
        for key in [
            format!("uploads/u{i}.jpg"),
            format!("metadata/u{i}.jpg.json"),
        ] {
            std::fs::remove_file(bucket.join(key)).unwrap();
        }
    }
    refreshed(&index, &store).await;
    assert_eq!(names_in(&path), baseline);
    label_queries_agree(&index, &store).await;
}

/// What each row holds of its objects: key, then each object's key, size,
/// ETag and time (the listing fields the index stores compactly).
type Fields = Vec<(String, Vec<(String, u64, Option<String>, Option<i64>)>)>;

fn fields(rows: &[Assessed]) -> Fields {
    rows.iter()
        .map(|a| {
            let objects = [&a.image, &a.metadata]
                .into_iter()
                .flatten()
                .map(|o| {
                    let etag = o.etag.as_deref().map(str::to_string);
                    (o.key.clone(), o.size, etag, o.last_modified)
                })
                .collect();
            (a.key().to_string(), objects)
        })
        .collect()
}

/// ETags of every form (the usual MD5, multipart, uppercase, not hex at
/// all, as MinIO and others give) and times come back from the index
/// exactly as the listing gave them, and a re-open finds nothing changed:
/// the compact form (16 bytes for an MD5) compares as the ETag does.
#[tokio::test]
async fn etags_of_every_form_and_times_round_trip_through_the_index() {
    let mem = MemS3::new();
    let (_server, store) = s3_bucket(&mem, "etags").await;
    let etags = [
        "0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef-3",
        "abc-3",
        "0123456789ABCDEF0123456789ABCDEF",
        "minio-not-hex-0123456789abcdef01",
        "",
    ];
    // The documents' own, distinct (one ETag is one content to the index).
    let doc_etags = [
        "fedcba9876543210fedcba9876543210",
        "fedcba9876543210fedcba9876543210-2",
        "def-2",
        "FEDCBA9876543210FEDCBA9876543210",
        "minio-doc-not-hex-fedcba98765432",
        "00000000000000000000000000000000",
    ];
    for (n, (etag, doc_etag)) in etags.iter().zip(doc_etags).enumerate() {
        let image = format!("uploads/img{n}.jpg");
        mem.insert_with_etag("etags", &image, "i", etag);
        let labels = r#"[{"Name":"Cat","Confidence":91.5}]"#;
        let doc = fixtures::tagged_doc(&image, &format!("\"{etag}\""), labels);
        let meta = format!("metadata/img{n}.jpg.json");
        mem.insert_with_etag("etags", &meta, doc, doc_etag);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ix.sqlite");
    let (index, _) = open(&path, &spec("etags"));
    refreshed(&index, &store).await;
    let fresh = audited(&store).await;
    let got = indexed_rows(&index, Filter::default()).await;
    assert_eq!(fields(&got), fields(&fresh));
    assert_eq!(view(&got), view(&fresh));
    assert!(
        fresh
            .iter()
            .filter(|a| a.status == Some(Status::Tagged))
            .count()
            >= 5
    );
    drop(index);
    let (index, _) = open(&path, &spec("etags"));
    let again = refreshed(&index, &store).await;
    assert_eq!(
        (again.read, again.added, again.changed, again.removed),
        (0, 0, 0, 0)
    );
    let cats = indexed_rows(
        &index,
        Filter {
            label: Some("cat".into()),
            ..Filter::default()
        },
    )
    .await;
    assert_eq!(fields(&cats), fields(&fresh));
}

/// The schema 6 layout (ETags as text, pairs with copies of both objects'
/// fields, as 0.x builds wrote it), with a row in it: opened by this
/// build, it is rebuilt in place with a message and then lists what a
/// fresh audit lists.
#[tokio::test]
async fn a_schema_6_index_is_rebuilt_and_lists_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let store: DynStore = Arc::new(LocalStore::open(&bucket).unwrap());
    fixtures::populate(&store).await;
    let path = dir.path().join("ix.sqlite");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE info(k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
             CREATE TABLE objects(key TEXT PRIMARY KEY, size INTEGER NOT NULL,
                 etag TEXT NOT NULL, modified INTEGER) WITHOUT ROWID;
             CREATE TABLE pairs(image TEXT PRIMARY KEY, meta TEXT NOT NULL,
                 kind INTEGER NOT NULL, isize INTEGER NOT NULL, ietag TEXT NOT NULL,
                 imod INTEGER, msize INTEGER NOT NULL, metag TEXT NOT NULL, mmod INTEGER,
                 mdoc INTEGER) WITHOUT ROWID;
             CREATE INDEX pairs_meta ON pairs(meta);
             CREATE INDEX pairs_doc
                 ON pairs(mdoc, image, meta, kind, isize, ietag, imod, msize, mmod);
             CREATE TABLE docs(id INTEGER PRIMARY KEY, etag TEXT NOT NULL UNIQUE,
                 summary TEXT, malformed TEXT);
             CREATE TABLE names(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
             CREATE TABLE doc_names(name INTEGER NOT NULL, rank REAL NOT NULL,
                 doc INTEGER NOT NULL, PRIMARY KEY(name, rank, doc)) WITHOUT ROWID;
             CREATE TABLE writes(seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 key TEXT NOT NULL UNIQUE, at INTEGER NOT NULL);
             INSERT INTO objects VALUES ('uploads/old.jpg', 1, '\"0123456789abcdef0123456789abcdef\"', 5);
             INSERT INTO pairs VALUES ('uploads/old.jpg', 'metadata/old.jpg.json', 0, 1,
                 '\"0123456789abcdef0123456789abcdef\"', 5, 1, '\"e\"', 5, NULL);
             PRAGMA user_version = 6;",
        )
        .unwrap();
        let spec = spec("six");
        for (k, v) in [
            ("endpoint", &spec.endpoint),
            ("bucket", &spec.bucket),
            ("uploads", &spec.uploads),
            ("metadata", &spec.metadata),
        ] {
            c.execute("INSERT INTO info(k, v) VALUES (?1, ?2)", [k, v.as_str()])
                .unwrap();
        }
    }
    let (index, note) = open(&path, &spec("six"));
    let why = format!(
        "(schema version 6, this build uses {})",
        imgtag::index::SCHEMA_VERSION
    );
    assert!(
        note.as_deref().is_some_and(|n| n.contains(&why)),
        "{note:?}"
    );
    assert_eq!(index.path(), path);
    refreshed(&index, &store).await;
    let fresh = audited(&store).await;
    let got = indexed_rows(&index, Filter::default()).await;
    assert_eq!(view(&got), view(&fresh));
    assert_eq!(fields(&got), fields(&fresh));
    label_queries_agree(&index, &store).await;
}
