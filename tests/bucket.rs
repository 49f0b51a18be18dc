//! The opened bucket (src/bucket.rs): with its index or without, a front
//! end gets the same rows, selections and screen updates; a server that
//! fails mid-refresh ends the listing with an error, never with a list
//! that silently lacks rows.

use crate::common;
use common::fixtures::put;

use std::collections::BTreeMap;

use common::fixtures;
use common::s3mem;
use futures::TryStreamExt;
use imgtag::bucket::{Bucket, Update};
use imgtag::catalog::{Assessed, Filter, Selection};
use imgtag::contract::Layout;
use imgtag::index::{Index, IndexSpec};
use imgtag::status::Status;
use imgtag::storage::DynStore;

/// What an operator sees of a row: key, status, headline.
type View = BTreeMap<String, (Option<Status>, Option<(String, f32)>)>;

fn view<'a>(rows: impl IntoIterator<Item = &'a Assessed>) -> View {
    rows.into_iter()
        .map(|a| {
            let headline = a.headline().map(|(n, c)| (n.to_string(), c));
            (a.key().to_string(), (a.status, headline))
        })
        .collect()
}

fn plain(store: &DynStore) -> Bucket {
    Bucket::new(store.clone(), Layout::default(), 70.0.into())
}

fn indexed(store: &DynStore, dir: &tempfile::TempDir) -> Bucket {
    let spec = IndexSpec::new("http://127.0.0.1", "photos", &Layout::default());
    let (index, _) = Index::open(&dir.path().join("photos.sqlite"), &spec).unwrap();
    plain(store).with_index(std::sync::Arc::new(index))
}

async fn rows(bucket: &Bucket, filter: Filter, refresh: bool) -> (Vec<Assessed>, u64) {
    let (rows, listed) = bucket.rows(filter, refresh).await.unwrap();
    let rows: Vec<Assessed> = rows.try_collect().await.unwrap();
    (rows, listed.count())
}

/// What a screen is sent: rows in order, keys gone, rows announced.
#[derive(Debug, Default)]
struct Sent {
    rows: Vec<Assessed>,
    gone: Vec<String>,
    expected: Vec<u64>,
}

async fn screen(bucket: &Bucket) -> Result<Sent, String> {
    let mut sent = Sent::default();
    let mut updates = std::pin::pin!(bucket.updates());
    while let Some(u) = updates.try_next().await.map_err(|e| e.to_string())? {
        match u {
            Update::Rows(rows) => sent.rows.extend(rows),
            Update::Gone(keys) => sent.gone.extend(keys),
            Update::Expect(n) => {
                // Announced before any row.
                assert!(sent.rows.is_empty());
                sent.expected.push(n);
            }
        }
    }
    Ok(sent)
}

fn filters() -> Vec<Filter> {
    vec![
        Filter::default(),
        Filter::statuses(vec![Status::NeedsReview]),
        Filter::statuses(vec![Status::Untagged, Status::Stale]),
        Filter {
            label: Some("feline".into()),
            ..Filter::default()
        },
        Filter {
            below: Some(70.0),
            ..Filter::default()
        },
    ]
}

#[tokio::test]
async fn rows_and_selections_agree_with_and_without_the_index() {
    let (_server, _mem, store) = s3mem::bucket_store("photos").await;
    let expected = fixtures::populate(&store).await;
    let dir = tempfile::tempdir().unwrap();
    let (audited, with_index) = (plain(&store), indexed(&store, &dir));
    for filter in filters() {
        let (a, a_listed) = rows(&audited, filter.clone(), true).await;
        let (b, b_listed) = rows(&with_index, filter.clone(), true).await;
        assert_eq!(view(&a), view(&b), "{filter:?}");
        assert!(a.iter().all(|r| filter.matches(r)), "{filter:?}");
        assert_eq!(a_listed, b_listed, "{filter:?}");
        assert_eq!(a_listed as usize, expected.len(), "{filter:?}");
        let selection = Selection::Matching(filter.clone());
        let a = audited.select(&selection).await.unwrap();
        let b = with_index.select(&selection).await.unwrap();
        assert_eq!(a, b, "{filter:?}");
    }
    // The fixture has rows of each kind, so the comparisons above were
    // not of empty lists.
    let (all, _) = rows(&audited, Filter::default(), true).await;
    let statuses: std::collections::HashSet<_> = all.iter().filter_map(|a| a.status).collect();
    assert!(statuses.len() >= 4, "{statuses:?}");
    let all = with_index.select(&Selection::All).await.unwrap();
    assert_eq!(all.len(), all.iter().filter(|s| !s.key.is_empty()).count());
    let named = Selection::Keys(vec!["uploads/none such.jpg".into()]);
    let picked = with_index.select(&named).await.unwrap();
    assert_eq!(picked[0].key, "uploads/none such.jpg");
}

#[tokio::test]
async fn a_screen_gets_the_index_at_once_then_only_what_changed() {
    let (_server, mem, store) = s3mem::bucket_store("photos").await;
    fixtures::populate(&store).await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = indexed(&store, &dir);
    // First open: the index is empty, so everything comes after the refresh.
    let Sent {
        rows: first,
        gone,
        expected,
    } = screen(&bucket).await.unwrap();
    assert_eq!(expected, [0], "the new index holds nothing yet");
    assert_eq!(
        view(&first),
        view(&rows(&plain(&store), Filter::default(), true).await.0)
    );
    assert!(gone.is_empty(), "{gone:?}");

    // Another writer changes the bucket: one image gone, one new, one
    // document rewritten.
    mem.delete("photos", "uploads/legacy.png");
    let new = bytes::Bytes::from_static(b"a new image");
    put(&store, "uploads/new.jpg", new).await;
    let confident = r#"{"Labels":[{"Name":"Cat","Confidence":99.0}]}"#;
    let doc = bytes::Bytes::from_static(confident.as_bytes());
    put(&store, "metadata/weak cat.jpg.json", doc).await;

    let Sent {
        rows: second,
        gone,
        expected,
    } = screen(&bucket).await.unwrap();
    // The screen makes room for what the index holds, once.
    assert_eq!(expected, [first.len() as u64]);
    // What the index held comes first, whole; then only the changed rows.
    let (snapshot, changed) = second.split_at(first.len());
    assert_eq!(view(snapshot), view(&first));
    let changed: Vec<&str> = changed.iter().map(|a| a.key()).collect();
    // The removed image's document is an orphan now: a changed row too.
    assert_eq!(
        changed,
        [
            "uploads/new.jpg",
            "uploads/weak cat.jpg",
            "metadata/legacy.json"
        ]
    );
    assert!(gone.contains(&"uploads/legacy.png".to_string()), "{gone:?}");

    // Applied in order, the screen equals a fresh audit.
    let mut on_screen = view(snapshot);
    on_screen.extend(view(second[first.len()..].iter()));
    for k in &gone {
        on_screen.remove(k);
    }
    let fresh = rows(&plain(&store), Filter::default(), true).await.0;
    assert_eq!(on_screen, view(&fresh));
}

#[tokio::test]
async fn a_failing_server_ends_the_listing_with_an_error() {
    let (_server, mem, store) = s3mem::bucket_store("photos").await;
    fixtures::populate(&store).await;
    let dir = tempfile::tempdir().unwrap();
    let bucket = indexed(&store, &dir);
    let (known, _) = rows(&bucket, Filter::default(), true).await;
    assert!(!known.is_empty());

    // Every listing fails (500 or SlowDown), past the client's retries.
    mem.list_faults(1.0, 7);
    let err = screen(&bucket).await.unwrap_err();
    assert!(
        err.contains("InternalError") || err.contains("SlowDown") || err.contains("list"),
        "{err}"
    );
    assert!(bucket.rows(Filter::default(), true).await.is_err());
    assert!(bucket.select(&Selection::All).await.is_err());
    assert!(plain(&store).select(&Selection::All).await.is_err());
    // Without a refresh the index still answers what it knew.
    let (cached, _) = rows(&bucket, Filter::default(), false).await;
    assert_eq!(view(&cached), view(&known));

    // The server recovers: the same rows again, nothing lost.
    mem.list_faults(0.0, 7);
    let (again, _) = rows(&bucket, Filter::default(), true).await;
    assert_eq!(view(&again), view(&known));
}
