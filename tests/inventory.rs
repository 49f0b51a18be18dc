//! S3 Inventory reports as a listing source: a realistic report (manifest,
//! gzip CSV files out of key order, URL-encoded odd keys, versions and
//! delete markers) in a local bucket and in the S3 server, and every way a
//! report can be broken.

use crate::common;
use common::fixtures::put;

use std::io::Write;
use std::sync::Arc;

use common::s3mem::{self, MemS3};
use flate2::Compression;
use flate2::write::GzEncoder;
use futures::TryStreamExt;
use imgtag::inventory::{self, InventoryError, Listing, Manifest};
use imgtag::storage::{DynStore, LocalStore, ObjectInfo, S3Store, StorageError};
use md5::{Digest, Md5};

const VERSIONED: &str = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, \
     ETag, StorageClass, IsMultipartUploaded";
const BASE: &str = "inventory/photos/daily/";

/// S3 Inventory's key encoding (HTML-form style: `+` for a space). With
/// `slash`, `/` is escaped too: decoding must not care.
pub(crate) fn encode(key: &str, slash: bool) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(b as char)
            }
            b'/' if !slash => out.push('/'),
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub(crate) fn gzip(text: &str, level: Compression) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), level);
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

fn md5_hex(b: &[u8]) -> String {
    hex::encode(Md5::digest(b))
}

/// One versioned row, every field quoted as S3 writes it.
fn row(
    key: &str,
    slash: bool,
    v: &str,
    latest: bool,
    marker: bool,
    size: &str,
    etag: &str,
) -> String {
    format!(
        "\"photos\",\"{}\",\"{v}\",\"{latest}\",\"{marker}\",\"{size}\",\
         \"2026-11-24T10:00:{:02}.000Z\",\"{etag}\",\"STANDARD\",\"false\"\n",
        encode(key, slash),
        size.len(),
    )
}

pub(crate) fn manifest(schema: &str, format: &str, files: &[(&str, &[u8])]) -> String {
    manifest_of("photos", schema, format, files)
}

/// A manifest of a report of `bucket`.
pub(crate) fn manifest_of(
    bucket: &str,
    schema: &str,
    format: &str,
    files: &[(&str, &[u8])],
) -> String {
    let files: Vec<_> = files
        .iter()
        .map(|(k, b)| serde_json::json!({"key": k, "size": b.len(), "MD5checksum": md5_hex(b)}))
        .collect();
    serde_json::json!({
        "sourceBucket": bucket,
        "destinationBucket": "arn:aws:s3:::inventory-dest",
        "version": "2016-11-30",
        "creationTimestamp": "1764583200000",
        "fileFormat": format,
        "fileSchema": schema,
        "files": files,
    })
    .to_string()
}

fn etag(n: u32) -> String {
    format!("{n:032x}")
}

fn obj(key: &str, size: u64, n: u32) -> ObjectInfo {
    ObjectInfo {
        key: key.into(),
        size,
        etag: Some(format!("\"{}\"", etag(n)).into()),
        last_modified: None, // filled in by `expected`
    }
}

/// Keys that need encoding: (key, size, ETag number).
const ODD: [(&str, u64, u32); 6] = [
    ("uploads/cat pic.jpg", 11, 1),
    ("uploads/1+1=2.png", 12, 2),
    ("uploads/café/ñandú 🐦.jpg", 13, 3),
    ("uploads/100%.jpg", 14, 4),
    ("uploads/quote\"comma,.jpg", 15, 5),
    ("metadata/cat pic.jpg.json", 16, 6),
];

/// Versions: (key, version, latest, delete marker, size, ETag number).
/// The latest of dog.jpg is v2; gone.jpg's latest is a delete marker;
/// two keys are outside the prefixes.
const VERSIONS: [(&str, &str, bool, bool, &str, u32); 8] = [
    ("uploads/zebra.jpg", "v1", true, false, "21", 21),
    ("uploads/dog.jpg", "v1", false, false, "100", 99),
    ("other/x.txt", "v1", true, false, "5", 50),
    ("uploads/gone.jpg", "v2", true, true, "", 0),
    ("uploads/gone.jpg", "v1", false, false, "7", 51),
    ("uploadsX/y.jpg", "v1", true, false, "5", 52),
    ("uploads/dog.jpg", "v2", true, false, "200", 22),
    ("metadata/dog.jpg.json", "v1", true, false, "23", 23),
];

/// Three data files, rows out of key order.
fn report_files() -> Vec<(String, Vec<u8>)> {
    let f1: String = ODD
        .iter()
        .rev()
        .map(|(k, size, n)| row(k, true, "v1", true, false, &size.to_string(), &etag(*n)))
        .collect();
    let f2: String = VERSIONS
        .iter()
        .map(|(k, v, latest, marker, size, n)| {
            let e = if *marker { String::new() } else { etag(*n) };
            row(k, false, v, *latest, *marker, size, &e)
        })
        .collect();
    // Unquoted fields and no final newline are CSV too.
    let f3 = "photos,uploads/a.jpg,v1,true,false,31,2026-11-24T10:00:02.000Z,\
              0000000000000000000000000000001f,STANDARD,false\n\
              photos,metadata/a.jpg.json,v1,true,false,32,2026-11-24T10:00:02.000Z,\
              00000000000000000000000000000020-2,STANDARD,true";
    let file = |n: u32, body: &str, level| (format!("{BASE}data/f{n}.csv.gz"), gzip(body, level));
    vec![
        file(1, &f1, Compression::default()),
        file(2, &f2, Compression::best()),
        file(3, f3, Compression::fast()),
    ]
}

/// What the report holds under `uploads/` and `metadata/`, sorted.
fn expected() -> Vec<ObjectInfo> {
    let mut want: Vec<ObjectInfo> = ODD.iter().map(|(k, s, n)| obj(k, *s, *n)).collect();
    want.push(obj("uploads/zebra.jpg", 21, 21));
    want.push(obj("uploads/dog.jpg", 200, 22));
    want.push(obj("metadata/dog.jpg.json", 23, 23));
    want.push(obj("uploads/a.jpg", 31, 31));
    let mut multipart = obj("metadata/a.jpg.json", 32, 0);
    multipart.etag = Some("\"00000000000000000000000000000020-2\"".into());
    want.push(multipart);
    for o in &mut want {
        // `row` writes the size's length as the seconds; file 3 says 2.
        let sec = if o.key.ends_with("/a.jpg") || o.key.ends_with("/a.jpg.json") {
            2
        } else {
            o.size.to_string().len() as i64
        };
        o.last_modified = Some(1_795_514_400 + sec); // 2026-11-24T10:00:00Z
    }
    want.sort_by(|a, b| a.key.cmp(&b.key));
    want
}

/// Writes the report; returns its manifest key.
async fn write_report(store: &DynStore) -> String {
    let files = report_files();
    for (k, b) in &files {
        put(store, k, b.clone()).await;
    }
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(k, b)| (k.as_str(), &b[..])).collect();
    let key = format!("{BASE}2026-12-01T00-00Z/manifest.json");
    put(store, &key, manifest(VERSIONED, "CSV", &refs)).await;
    key
}

/// Pages are ascending, non-overlapping, at most `n` long, and together
/// exactly `want`.
fn check_pages(listing: &Listing, prefix: &str, n: usize, want: &[ObjectInfo]) {
    let pages: Vec<Vec<ObjectInfo>> = listing.pages(prefix, n).collect();
    assert!(pages.iter().all(|p| !p.is_empty() && p.len() <= n));
    let flat: Vec<ObjectInfo> = pages.concat();
    assert!(flat.windows(2).all(|w| w[0].key < w[1].key), "ascending");
    let want: Vec<ObjectInfo> = want
        .iter()
        .filter(|o| o.key.starts_with(prefix))
        .cloned()
        .collect();
    assert_eq!(flat, want);
}

async fn exercise(store: DynStore) {
    let key = write_report(&store).await;
    let want = expected();
    let m = inventory::load(&store, &key).await.unwrap();
    assert_eq!(m.source_bucket, "photos");
    assert_eq!(m.files.len(), 3);
    assert_eq!(m.creation_timestamp_ms, Some(1_764_583_200_000));
    let listing = m
        .read(&store, "photos", &["uploads/", "metadata/"])
        .await
        .unwrap();
    assert_eq!(listing.len(), want.len());
    for n in [1, 2, 3, 1000] {
        check_pages(&listing, "uploads/", n, &want);
        check_pages(&listing, "metadata/", n, &want);
    }
    let uploads = listing.objects("uploads/");
    let keys: Vec<&str> = uploads.iter().map(|o| o.key.as_str()).collect();
    for k in [
        "uploads/cat pic.jpg",
        "uploads/1+1=2.png",
        "uploads/café/ñandú 🐦.jpg",
    ] {
        assert!(keys.contains(&k), "{k} decoded");
    }
    assert!(
        !keys.contains(&"uploads/gone.jpg"),
        "a delete marker hides the key"
    );
    let dog = uploads.iter().find(|o| o.key == "uploads/dog.jpg").unwrap();
    assert_eq!(dog.size, 200, "only the latest version");
    assert!(
        listing.objects("other/").is_empty(),
        "rows outside the prefixes are not kept"
    );
    assert_eq!(
        listing.outside, 2,
        "other/x.txt and uploadsX/y.jpg, counted"
    );
    // The stream shape of Store::list gives the same pages.
    let listing = Arc::new(listing);
    let streamed: Vec<Vec<ObjectInfo>> = listing.list("uploads/", 2).try_collect().await.unwrap();
    assert_eq!(streamed, listing.pages("uploads/", 2).collect::<Vec<_>>());
    // Reading for one prefix keeps only that prefix.
    let only = m.read(&store, "photos", &["metadata/"]).await.unwrap();
    assert!(only.objects("uploads/").is_empty());
    assert_eq!(only.len(), listing.objects("metadata/").len());
}

fn local() -> (tempfile::TempDir, DynStore) {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(LocalStore::open(dir.path()).unwrap());
    (dir, store)
}

async fn s3() -> (s3mem::TestServer, MemS3, DynStore) {
    let mem = MemS3::new();
    mem.create_bucket("inventory-dest");
    let server = s3mem::serve(mem.clone()).await;
    let store: DynStore = Arc::new(S3Store::from_client(
        s3mem::client(&server.endpoint()),
        "inventory-dest",
    ));
    (server, mem, store)
}

#[tokio::test]
async fn a_report_in_a_local_bucket_lists_sorted_decoded_current_objects() {
    let (_dir, store) = local();
    exercise(store).await;
}

#[tokio::test]
async fn a_report_in_s3_lists_sorted_decoded_current_objects() {
    let (_server, _mem, store) = s3().await;
    exercise(store).await;
}

/// S3 Inventory encodes keys as HTML forms do: `+` is a space and `%2B` a
/// plus, and `/` may come escaped or not.
#[tokio::test]
async fn keys_are_form_decoded_plus_is_a_space() {
    let (_dir, store) = local();
    let cases = [
        ("uploads/a+b", "uploads/a b"),
        ("uploads/a%2Bb", "uploads/a+b"),
        ("uploads%2Fcaf%C3%A9", "uploads/café"),
        ("uploads/100%25", "uploads/100%"),
        ("uploads/%E2%80%AEevil", "uploads/\u{202e}evil"),
    ];
    let text: String = cases
        .iter()
        .map(|(raw, _)| format!("\"photos\",\"{raw}\",\"1\",\"abc\"\n"))
        .collect();
    let body = gzip(&text, Compression::default());
    let m = one_file(&store, body.clone(), body.len(), &md5_hex(&body)).await;
    let listing = m.read(&store, "photos", &["uploads/"]).await.unwrap();
    let mut want: Vec<&str> = cases.iter().map(|(_, k)| *k).collect();
    want.sort();
    let got: Vec<&str> = listing.objects("").iter().map(|o| o.key.as_str()).collect();
    assert_eq!(got, want);
    assert_eq!(listing.objects("")[0].etag.as_deref(), Some("\"abc\""));
}

/// A report whose one file is `body` (as stored) with a manifest saying
/// `size` and `md5`.
async fn one_file(store: &DynStore, body: Vec<u8>, size: usize, md5: &str) -> Manifest {
    let key = format!("{BASE}data/only.csv.gz");
    put(store, &key, body).await;
    let json = serde_json::json!({
        "sourceBucket": "photos",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size, ETag",
        "files": [{"key": key, "size": size, "MD5checksum": md5}],
    });
    Manifest::parse("m.json", json.to_string().as_bytes()).unwrap()
}

#[tokio::test]
async fn a_wrong_md5_is_refused() {
    let (_dir, store) = local();
    let body = gzip("photos,uploads/a.jpg,1,abc\n", Compression::default());
    let m = one_file(&store, body.clone(), body.len(), &"0".repeat(32)).await;
    let err = m.read(&store, "photos", &["uploads/"]).await.unwrap_err();
    match err {
        InventoryError::ChecksumMismatch { key, actual, .. } => {
            assert!(key.ends_with("only.csv.gz"));
            assert_eq!(actual, md5_hex(&body));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_truncated_gzip_is_refused_even_when_the_manifest_agrees() {
    let (_dir, store) = local();
    let full = gzip(
        "photos,uploads/a.jpg,1,abc\nphotos,uploads/b.jpg,2,def\n",
        Compression::default(),
    );
    let cut = full[..full.len() - 6].to_vec();
    let m = one_file(&store, cut.clone(), cut.len(), &md5_hex(&cut)).await;
    let err = m.read(&store, "photos", &["uploads/"]).await.unwrap_err();
    assert!(matches!(err, InventoryError::Gzip { .. }), "{err:?}");
    assert!(err.to_string().contains("not a whole gzip file"), "{err}");
}

#[tokio::test]
async fn a_file_shorter_than_the_manifest_says_is_refused() {
    let (_dir, store) = local();
    let body = gzip("photos,uploads/a.jpg,1,abc\n", Compression::default());
    let m = one_file(&store, body.clone(), body.len() + 10, &md5_hex(&body)).await;
    let err = m.read(&store, "photos", &["uploads/"]).await.unwrap_err();
    match err {
        InventoryError::SizeMismatch {
            expected, actual, ..
        } => assert_eq!(
            (expected, actual),
            (body.len() as u64 + 10, body.len() as u64)
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn not_gzip_at_all_is_refused() {
    let (_dir, store) = local();
    let body = b"photos,uploads/a.jpg,1,abc\n".to_vec();
    let m = one_file(&store, body.clone(), body.len(), &md5_hex(&body)).await;
    let err = m.read(&store, "photos", &["uploads/"]).await.unwrap_err();
    assert!(matches!(err, InventoryError::Gzip { .. }), "{err:?}");
}

#[tokio::test]
async fn bad_rows_are_errors_with_their_row_number() {
    let (_dir, store) = local();
    for (text, row, says) in [
        (
            "photos,uploads/a.jpg,1,abc\nphotos,uploads/b.jpg,2\n",
            2,
            "3 fields",
        ),
        ("photos,uploads/%FF.jpg,1,abc\n", 1, "not UTF-8"),
        ("photos,uploads/a.jpg,big,abc\n", 1, "not a number"),
    ] {
        let body = gzip(text, Compression::default());
        let m = one_file(&store, body.clone(), body.len(), &md5_hex(&body)).await;
        match m.read(&store, "photos", &["uploads/"]).await.unwrap_err() {
            InventoryError::BadRow { row: r, reason, .. } => {
                assert_eq!(r, row, "{text}");
                assert!(reason.contains(says), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn a_missing_data_file_is_a_storage_error_naming_it() {
    for s3_backed in [false, true] {
        let (_dir, local_store) = local();
        let (_server, _mem, s3_store) = s3().await;
        let store = if s3_backed { s3_store } else { local_store };
        let lost = format!("{BASE}data/lost.csv.gz");
        let json = manifest(VERSIONED, "CSV", &[(lost.as_str(), &b"xx"[..])]);
        put(&store, "m.json", json).await;
        let m = inventory::load(&store, "m.json").await.unwrap();
        match m.read(&store, "photos", &["uploads/"]).await.unwrap_err() {
            InventoryError::Storage { key, source } => {
                assert!(key.ends_with("lost.csv.gz"));
                assert!(
                    matches!(source, StorageError::NotFound { .. }),
                    "{source:?}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn manifests_that_cannot_serve_as_a_listing_are_refused() {
    let (_dir, store) = local();
    // A foreign schema without ETag: the index could not reconcile.
    put(
        &store,
        "noetag.json",
        manifest("Bucket, Key, Size, LastModifiedDate", "CSV", &[]),
    )
    .await;
    let err = inventory::load(&store, "noetag.json").await.unwrap_err();
    assert!(
        matches!(err, InventoryError::MissingColumn { column: "ETag", .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("LastModifiedDate"), "{err}");
    for format in ["Parquet", "ORC"] {
        put(&store, "p.json", manifest(VERSIONED, format, &[])).await;
        let err = inventory::load(&store, "p.json").await.unwrap_err();
        assert!(
            matches!(err, InventoryError::UnsupportedFormat { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("CSV"), "{err}");
    }
    put(&store, "junk.json", "{\"not\": \"a manifest\"}").await;
    let err = inventory::load(&store, "junk.json").await.unwrap_err();
    assert!(matches!(err, InventoryError::BadManifest { .. }), "{err:?}");
    let err = inventory::load(&store, "absent.json").await.unwrap_err();
    assert!(
        matches!(
            err,
            InventoryError::Storage {
                source: StorageError::NotFound { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

/// A file bigger than one ranged read: rows cross the chunk boundary.
#[tokio::test]
async fn a_file_spanning_several_ranged_reads_loses_no_row() {
    let rows = 120_000u32;
    let mut text = String::new();
    for i in (0..rows).rev() {
        text += &format!(
            "\"photos\",\"uploads/{i:08}+x.jpg\",\"{i}\",\"{}\"\n",
            etag(i)
        );
    }
    let body = gzip(&text, Compression::none()); // stored: > CHUNK_BYTES
    assert!(body.len() as u64 > inventory::CHUNK_BYTES);
    let (_server, mem, store) = s3().await;
    let m = one_file(&store, body.clone(), body.len(), &md5_hex(&body)).await;
    let before = mem.requests();
    let listing = m.read(&store, "photos", &["uploads/"]).await.unwrap();
    assert_eq!(mem.requests() - before, 2, "two ranged GETs");
    assert_eq!(listing.len(), rows as usize);
    let all = listing.objects("uploads/");
    for (i, o) in all.iter().enumerate() {
        assert_eq!(o.key, format!("uploads/{i:08} x.jpg"));
        assert_eq!(o.size, i as u64);
    }
}

#[tokio::test]
async fn the_latest_manifest_is_found_by_its_folder_name() {
    let (_dir, store) = local();
    assert_eq!(
        inventory::latest_manifest(&store, BASE).await.unwrap(),
        None
    );
    for day in [
        "2026-11-30T00-00Z",
        "2026-12-01T00-00Z",
        "2026-11-29T00-00Z",
    ] {
        put(&store, &format!("{BASE}{day}/manifest.json"), "{}").await;
        put(&store, &format!("{BASE}{day}/manifest.checksum"), "x").await;
    }
    put(&store, &format!("{BASE}data/zzz.csv.gz"), "x").await;
    put(
        &store,
        &format!("{BASE}hive/dt=2026-12-02-00-00/manifest.json"),
        "x",
    )
    .await;
    let want = Some(format!("{BASE}2026-12-01T00-00Z/manifest.json"));
    assert_eq!(
        inventory::latest_manifest(&store, BASE).await.unwrap(),
        want
    );
    let no_slash = BASE.trim_end_matches('/');
    assert_eq!(
        inventory::latest_manifest(&store, no_slash).await.unwrap(),
        want
    );
}

/// deploy/athena.sql reads metadata documents with the OpenX JSON SerDe,
/// which needs one document per line and silently yields NULL for fields
/// the table does not declare: imgtag writes one line per document, and the
/// table declares every field imgtag writes.
#[test]
fn the_athena_table_declares_every_field_imgtag_writes_on_one_line() {
    let doc: imgtag::contract::MetadataDoc = serde_json::from_value(serde_json::json!({
        "Labels": [{
            "Name": "Cat", "Confidence": 91.2,
            "Parents": [{"Name": "Feline"}], "Aliases": [{"Name": "Kitty"}],
            "Categories": [{"Name": "Animals and Pets"}],
            "Instances": [{"BoundingBox": {"Width": 0.5, "Height": 0.5, "Left": 0.1, "Top": 0.2},
                           "Confidence": 90.0}]
        }],
        "LabelModelVersion": "3.0",
        "ImgTag": {
            "SchemaVersion": 1,
            "Source": {"Bucket": "b", "Key": "uploads/cat\npic.jpg", "ETag": "\"e\"", "Size": 1},
            "Detector": "rekognition", "MinConfidence": 55.0, "MaxLabels": 10,
            "TaggedAt": "2026-11-24T10:00:00Z", "TaggedBy": "imgtag",
            "Review": {"Added": ["Cat"], "Removed": ["Pet"], "Flagged": ["Cat"],
                       "ReviewedAt": "2026-11-24T10:05:00Z"},
            "Error": {"Code": "NotAnImage", "Message": "line one\nline two"}
        }
    }))
    .unwrap();
    let bytes = doc.to_json_bytes();
    let newlines = bytes.iter().filter(|&&b| b == b'\n').count();
    assert_eq!(newlines, 1, "one line per document");
    assert_eq!(bytes.last(), Some(&b'\n'));

    let sql =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/athena.sql")).unwrap();
    let start = sql.find("CREATE EXTERNAL TABLE").expect("the table");
    let end = start + sql[start..].find("ROW FORMAT").expect("its SerDe");
    let ddl = &sql[start..end];
    let declared: std::collections::HashSet<String> = ddl
        .lines()
        .map(|l| l.split("--").next().unwrap_or_default())
        .flat_map(|l| l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .map(str::to_ascii_lowercase)
        .collect();
    let mut keys = Vec::new();
    collect_keys(&serde_json::from_slice(&bytes).unwrap(), &mut keys);
    assert!(keys.len() > 30, "{keys:?}");
    for k in keys {
        assert!(
            declared.contains(&k.to_ascii_lowercase()),
            "{k} is not in the Athena table"
        );
    }
    assert!(sql[end..].starts_with("ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'"));
}

fn collect_keys(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                out.push(k.clone());
                collect_keys(v, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_keys(v, out)),
        _ => {}
    }
}

/// A report of bucket B named for bucket A would drop every key of A as
/// gone and list B's as A's: refused before a data file is read.
#[tokio::test]
async fn a_report_of_another_bucket_is_refused() {
    let (_dir, store) = local();
    let key = write_report(&store).await;
    let m = inventory::load(&store, &key).await.unwrap();
    let err = m
        .read(&store, "bucket-a", &["uploads/", "metadata/"])
        .await
        .unwrap_err();
    match &err {
        InventoryError::OtherBucket { listed, bucket, .. } => {
            assert_eq!((listed.as_str(), bucket.as_str()), ("photos", "bucket-a"))
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("\"photos\"") && text.contains("\"bucket-a\""),
        "{text}"
    );

    // A manifest that names the right bucket over rows of another.
    let body = gzip(
        "photos,uploads/a.jpg,1,abc\nother,uploads/b.jpg,2,def\n",
        Compression::default(),
    );
    let m = one_file(&store, body.clone(), body.len(), &md5_hex(&body)).await;
    match m.read(&store, "photos", &["uploads/"]).await.unwrap_err() {
        InventoryError::BadRow { row, reason, .. } => {
            assert_eq!(row, 2);
            assert!(reason.contains("\"other\""), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

/// A report filtered to another prefix has objects but none under the
/// prefixes: refused, where an empty bucket's empty report is a listing.
#[tokio::test]
async fn a_report_with_nothing_under_the_prefixes_is_refused() {
    let (_dir, store) = local();
    let body = gzip(
        "photos,logs/a.txt,1,abc\nphotos,uploadsX/b.jpg,2,def\n",
        Compression::default(),
    );
    let m = one_file(&store, body.clone(), body.len(), &md5_hex(&body)).await;
    match m.read(&store, "photos", &["uploads/", "metadata/"]).await {
        Err(InventoryError::NothingUnderPrefixes { rows, prefixes, .. }) => {
            assert_eq!(rows, 2);
            assert_eq!(prefixes, "uploads/ or metadata/");
        }
        other => panic!("{other:?}"),
    }
    let empty = gzip("", Compression::default());
    let m = one_file(&store, empty.clone(), empty.len(), &md5_hex(&empty)).await;
    let listing = m.read(&store, "photos", &["uploads/"]).await.unwrap();
    assert!(listing.is_empty());
}

/// `imgtag index --bucket A` with a report of bucket B fails with the
/// reason, and A's index is as it was.
#[tokio::test]
async fn the_cli_refuses_another_buckets_report_and_keeps_the_index() {
    let home = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let a = root.path().join("bucket-a");
    std::fs::create_dir(&a).unwrap();
    let a_store: DynStore = Arc::new(LocalStore::open(&a).unwrap());
    put(&a_store, "uploads/a.jpg", "image a").await;
    let a_arg = a.to_str().unwrap();
    let first = common::bin::imgtag_async(home.path(), &["index", "--bucket", a_arg]).await;
    assert!(common::bin::stdout(&first).contains("1 new"));

    let (dest_dir, dest) = local();
    let body = gzip("bucket-b,uploads/b.jpg,3,abc\n", Compression::default());
    let data = "inv/bucket-b/all/data/f.csv.gz";
    put(&dest, data, body.clone()).await;
    let m = manifest_of(
        "bucket-b",
        "Bucket, Key, Size, ETag",
        "CSV",
        &[(data, &body)],
    );
    put(&dest, "inv/bucket-b/all/manifest.json", m).await;
    let args = [
        "index",
        "--bucket",
        a_arg,
        "--inventory-bucket",
        dest_dir.path().to_str().unwrap(),
        "--inventory-manifest",
        "inv/bucket-b/all/manifest.json",
    ];
    let out = common::bin::imgtag_async(home.path(), &args).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lists bucket \"bucket-b\", not \"bucket-a\""),
        "{err}"
    );
    let again = common::bin::imgtag_async(home.path(), &["index", "--bucket", a_arg]).await;
    let text = common::bin::stdout(&again);
    assert!(text.contains("(0 new, 0 changed, 0 gone)"), "{text}");
}
