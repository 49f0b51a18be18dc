//! Property tests over the parts that read untrusted input (issue 12):
//! the metadata reader, the key mapping, S3 event key decoding, the
//! headline and the terminal sanitiser. Arbitrary input never panics, and
//! what imgtag writes reads back the same. Case counts stay modest so CI
//! stays fast.

use imgtag::contract::{
    ErrorInfo, KeyKind, Label, Layout, MAX_KEY_BYTES, NameRef, Review, SourceRef, decode_form_key,
    parse_metadata,
};
use imgtag::headline::headline;
use imgtag::pipeline::{TagOptions, build_document};
use imgtag::sanitize::{for_terminal, is_unsafe};
use imgtag::taxonomy::Taxonomy;
use proptest::prelude::*;

/// Names as a bucket may hold them: any unicode, controls and bidi
/// overrides included, plus the names the taxonomy knows.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[A-Za-z ]{1,12}",
        prop::sample::select(vec!["Animal", "Mammal", "Cat", "Feline", "Pet", "Coffee"])
            .prop_map(str::to_string),
        Just("\u{1b}[2J\u{202e}gpj.exe".to_string()),
    ]
}

fn confidence() -> impl Strategy<Value = f32> {
    prop_oneof![0.0f32..=100.0, Just(100.0), Just(0.0)]
}

fn label() -> impl Strategy<Value = Label> {
    (name(), confidence(), prop::collection::vec(name(), 0..4)).prop_map(|(n, c, parents)| {
        let mut l = Label::new(n, c);
        l.parents = parents.into_iter().map(NameRef::new).collect();
        l
    })
}

fn review() -> impl Strategy<Value = Option<Review>> {
    prop::option::of(
        (
            prop::collection::vec(name(), 0..3),
            prop::collection::vec(name(), 0..3),
        )
            .prop_map(|(added, removed)| Review {
                added,
                removed,
                ..Review::default()
            }),
    )
}

/// A key's part after the prefix: any unicode, `..`, `%`, `+`, spaces.
fn rest() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9 +%./_-]{1,40}",
        "(\\.\\./){1,3}[a-z]{1,8}\\.jpg",
    ]
    .prop_filter("a file, not a folder", |r| {
        !r.is_empty() && !r.ends_with('/')
    })
}

/// A key percent-encoded as S3 encodes keys in event notifications and
/// `encoding-type=url` listings (space as `+`).
fn form_encode(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_reader_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_metadata(&bytes);
    }

    /// JSON-looking text: brackets, quotes, the contract's field names.
    #[test]
    fn the_reader_never_panics_on_json_like_text(
        text in r#"[\[\]{}",:0-9.eE+-]{0,20}("Labels"|"Name"|"Confidence"|"ImgTag"|"Parents"|null|true|-1e999|1e400|\[|\]|\{|\}|,|:|"x"){0,30}"#
    ) {
        let _ = parse_metadata(text.as_bytes());
    }

    /// Whatever imgtag writes, it reads back as the same document.
    #[test]
    fn a_written_document_reads_back_equal(
        labels in prop::collection::vec(label(), 0..12),
        review in review(),
        key in rest(),
        etag in prop::option::of("\"[0-9a-f]{32}\""),
        error in prop::option::of((name(), name())),
        max_labels in prop::option::of(1u32..1000),
    ) {
        let mut opts = TagOptions::new(Layout::default(), "imgtag");
        opts.max_labels = max_labels;
        let source = SourceRef {
            bucket: "b".into(),
            key: format!("uploads/{key}"),
            etag,
            size: Some(1),
        };
        let result = match error {
            Some((code, message)) => Err(ErrorInfo { code, message }),
            None => Ok((labels, Some("3.0".to_string()))),
        };
        let doc = build_document(source, "local", &opts, result, review);
        let parsed = parse_metadata(&doc.to_json_bytes()).expect("readable");
        prop_assert_eq!(parsed.doc, doc);
    }

    /// Image key -> metadata key -> back, for any key and layout.
    #[test]
    fn the_key_mapping_goes_there_and_back(
        rest in rest(),
        uploads in "[a-z]{1,8}(/[a-z]{1,8})?/?",
        metadata in "[A-Z]{1,8}/?",
    ) {
        let layout = Layout::new(&uploads, &metadata).unwrap();
        let image = format!("{}{rest}", layout.uploads_prefix());
        prop_assert_eq!(layout.image_rest(&image), Some(rest.as_str()));
        match layout.metadata_key(&image) {
            Ok(meta) => {
                prop_assert!(meta.len() <= MAX_KEY_BYTES);
                prop_assert!(meta.starts_with(layout.metadata_prefix()));
                let back = layout.metadata_rest(&meta).unwrap();
                prop_assert_eq!(back, rest.as_str());
                prop_assert_eq!(layout.image_key(back), image.clone());
                prop_assert_eq!(layout.key_kind(&image, &meta), Some(KeyKind::Canonical));
                // The metadata key is never an image key: writing it never
                // triggers tagging.
                prop_assert_eq!(layout.image_rest(&meta), None);
            }
            Err(_) => prop_assert!(
                layout.metadata_prefix().len() + rest.len() + ".json".len() > MAX_KEY_BYTES
            ),
        }
        // Every candidate pairs back with the image.
        for (kind, cand) in layout.metadata_candidates(&image) {
            prop_assert_eq!(layout.key_kind(&image, &cand).is_some(), true, "{:?} {}", kind, cand);
        }
    }

    /// An encoded key decodes to itself; any raw text decodes or is
    /// refused, never a panic.
    #[test]
    fn event_keys_decode_to_what_was_encoded(key in any::<String>(), raw in any::<String>()) {
        prop_assert_eq!(decode_form_key(&form_encode(&key)), Some(key));
        let _ = decode_form_key(&raw);
    }

    #[test]
    fn the_headline_never_panics_and_is_a_label(labels in prop::collection::vec(label(), 0..24)) {
        let h = headline(&labels, Taxonomy::shipped());
        prop_assert_eq!(h.is_none(), labels.is_empty());
        if let Some(h) = h {
            prop_assert!(h.index < labels.len() && h.root < labels.len());
            prop_assert_eq!(h.chain.first(), Some(&h.root));
            prop_assert_eq!(h.chain.last(), Some(&h.index));
            prop_assert!(h.chain.iter().all(|&i| i < labels.len()));
        }
    }

    /// Nothing a terminal acts on survives, and safe text is kept as is.
    #[test]
    fn the_sanitiser_leaves_nothing_a_terminal_acts_on(s in any::<String>(), safe in "[ -~é漢]{0,40}") {
        let out = for_terminal(&s);
        prop_assert!(!out.chars().any(is_unsafe), "{:?}", out);
        let bidi = |c: char| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        let raw = out.chars().any(|c| c.is_control() || bidi(c));
        prop_assert!(!raw, "{:?}", out);
        // Escaping is stable: already-safe text comes back unchanged.
        prop_assert_eq!(for_terminal(&out).into_owned(), out.clone().into_owned());
        prop_assert_eq!(for_terminal(&safe).into_owned(), safe.clone());
    }
}
