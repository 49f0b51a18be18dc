//! Summaries as the index stores them: a few bytes each instead of JSON.
//! Label names are ids into the `labels` table (interned: a million
//! documents name a few thousand labels), a confidence is four bytes, an
//! MD5 source ETag sixteen. Written once per document ETag, decoded for
//! every row a query returns.

use rusqlite::{Connection, OptionalExtension};

use crate::contract::Shape;
use crate::summary::{DocSummary, LabelSummary, QualitySummary};

const FLAGGED: u8 = 1;
const REVIEWED: u8 = 2;
const HEADLINE: u8 = 4;
const ERROR: u8 = 8;
const SOURCE_KEY: u8 = 16;
const SOURCE_ETAG: u8 = 32;
const QUALITY: u8 = 64;

fn shape_code(s: Shape) -> u8 {
    match s {
        Shape::ImgTag => 0,
        Shape::DetectLabels => 1,
        Shape::Seed => 2,
        Shape::BareArray => 3,
    }
}

fn shape_of(code: u8) -> Option<Shape> {
    Some(match code {
        0 => Shape::ImgTag,
        1 => Shape::DetectLabels,
        2 => Shape::Seed,
        3 => Shape::BareArray,
        _ => return None,
    })
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_text(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_f32(out: &mut Vec<u8>, f: f32) {
    out.extend_from_slice(&f.to_le_bytes());
}

/// Encodes `s`, with `intern` giving each label name's id.
pub(crate) fn encode(
    s: &DocSummary,
    mut intern: impl FnMut(&str) -> rusqlite::Result<u32>,
) -> rusqlite::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64);
    let flags = [
        (s.flagged, FLAGGED),
        (s.reviewed, REVIEWED),
        (s.headline.is_some(), HEADLINE),
        (s.error.is_some(), ERROR),
        (s.source_key.is_some(), SOURCE_KEY),
        (s.source_etag.is_some(), SOURCE_ETAG),
        (s.quality.is_some(), QUALITY),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .fold(0, |f, (_, bit)| f | bit);
    out.extend([shape_code(s.shape), flags]);
    // The source key first: `claimed_by_other` reads it alone.
    if let Some(k) = &s.source_key {
        put_text(&mut out, k);
    }
    put_varint(&mut out, s.labels.len() as u64);
    for LabelSummary(name, conf, parents) in &s.labels {
        put_varint(&mut out, u64::from(intern(name)?));
        put_f32(&mut out, *conf);
        put_varint(&mut out, parents.len() as u64);
        for p in parents {
            put_varint(&mut out, u64::from(intern(p)?));
        }
    }
    if let Some(h) = s.headline {
        put_varint(&mut out, u64::from(h));
    }
    if let Some(e) = &s.error {
        put_text(&mut out, e);
    }
    if let Some(t) = &s.source_etag {
        match super::etag::md5_bytes(t) {
            Some(b) => {
                out.push(0);
                out.extend_from_slice(&b);
            }
            None => {
                out.push(1);
                put_text(&mut out, t);
            }
        }
    }
    if let Some(QualitySummary(b, sh)) = s.quality {
        out.push(u8::from(b.is_some()) | u8::from(sh.is_some()) << 1);
        for f in [b, sh].into_iter().flatten() {
            put_f32(&mut out, f);
        }
    }
    Ok(out)
}

/// A reader over an encoded summary; every method is None past the end.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn u32(&mut self) -> Option<u32> {
        self.varint()?.try_into().ok()
    }

    fn text(&mut self) -> Option<String> {
        let n = self.varint()?.try_into().ok()?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }

    fn f32(&mut self) -> Option<f32> {
        Some(f32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
}

/// The source key alone, without the label names.
pub(crate) fn source_key(bytes: &[u8]) -> Option<String> {
    let mut b = Bytes(bytes);
    b.byte()?;
    let flags = b.byte()?;
    (flags & SOURCE_KEY != 0).then(|| b.text()).flatten()
}

/// Decodes a summary, `name` giving each label id's name. None if the
/// bytes are not a summary (the document is then read again).
pub(crate) fn decode(
    bytes: &[u8],
    mut name: impl FnMut(u32) -> Option<String>,
) -> Option<DocSummary> {
    let mut b = Bytes(bytes);
    let shape = shape_of(b.byte()?)?;
    let flags = b.byte()?;
    let on = |bit| flags & bit != 0;
    let source_key = if on(SOURCE_KEY) {
        Some(b.text()?)
    } else {
        None
    };
    let n = b.varint()?;
    let mut labels = Vec::with_capacity(n.min(256) as usize);
    for _ in 0..n {
        let label = name(b.u32()?)?;
        let conf = b.f32()?;
        let parents = (0..b.varint()?)
            .map(|_| name(b.u32()?))
            .collect::<Option<Vec<_>>>()?;
        labels.push(LabelSummary(label, conf, parents));
    }
    let headline = if on(HEADLINE) { Some(b.u32()?) } else { None };
    let error = if on(ERROR) { Some(b.text()?) } else { None };
    let source_etag = if on(SOURCE_ETAG) {
        Some(match b.byte()? {
            0 => super::etag::md5_text(b.take(16)?),
            _ => b.text()?,
        })
    } else {
        None
    };
    let quality = if on(QUALITY) {
        let present = b.byte()?;
        let brightness = if present & 1 != 0 {
            Some(b.f32()?)
        } else {
            None
        };
        let sharpness = if present & 2 != 0 {
            Some(b.f32()?)
        } else {
            None
        };
        Some(QualitySummary(brightness, sharpness))
    } else {
        None
    };
    b.0.is_empty().then_some(DocSummary {
        shape,
        labels,
        headline,
        error,
        source_key,
        source_etag,
        flagged: on(FLAGGED),
        reviewed: on(REVIEWED),
        quality,
        // Kept apart, in `doc_text` (index::text), and attached per row.
        text: Vec::new(),
    })
}

/// The id of a label name, added if new. Label names are never dropped:
/// a vocabulary of thousands costs less than finding the unused ones.
pub(crate) fn intern(c: &Connection, name: &str) -> rusqlite::Result<u32> {
    c.prepare_cached("INSERT OR IGNORE INTO labels(name) VALUES (?1)")?
        .execute([name])?;
    c.prepare_cached("SELECT id FROM labels WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
}

/// Label names by id, fetched as first met and kept for one query (in
/// its read transaction: every id a summary holds is there).
#[derive(Default)]
pub(crate) struct Labels(Vec<Option<Box<str>>>);

impl Labels {
    pub(crate) fn name(&mut self, c: &Connection, id: u32) -> Option<String> {
        let i = id as usize;
        if self.0.get(i).is_none_or(Option::is_none) {
            let name: Option<String> = c
                .prepare_cached("SELECT name FROM labels WHERE id = ?1")
                .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
                .ok()
                .flatten();
            if self.0.len() <= i {
                self.0.resize(i + 1, None);
            }
            self.0[i] = Some(name?.into_boxed_str());
        }
        self.0[i].as_deref().map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(s: &DocSummary) -> Option<DocSummary> {
        let mut names: Vec<String> = Vec::new();
        let bytes = encode(s, |n| {
            Ok(match names.iter().position(|x| x == n) {
                Some(i) => i as u32,
                None => {
                    names.push(n.to_string());
                    names.len() as u32 - 1
                }
            })
        })
        .unwrap();
        assert_eq!(source_key(&bytes), s.source_key);
        decode(&bytes, |id| names.get(id as usize).cloned())
    }

    /// Every field comes back as it went in, absent or present, and
    /// truncated or extended bytes are not a summary.
    #[test]
    fn summaries_round_trip() {
        let full = DocSummary {
            shape: Shape::ImgTag,
            labels: vec![
                LabelSummary("Cat".into(), 91.25, vec!["Animal".into(), "Pet".into()]),
                LabelSummary("Animal".into(), f32::NAN, vec![]),
                LabelSummary("Été".into(), -0.0, vec!["Cat".into()]),
            ],
            headline: Some(2),
            error: Some("AccessDenied: no".into()),
            source_key: Some("uploads/ÉTÉ/a b.jpg".into()),
            source_etag: Some("\"0123456789abcdef0123456789abcdef\"".into()),
            flagged: true,
            reviewed: true,
            quality: Some(QualitySummary(Some(12.5), None)),
            text: Vec::new(),
        };
        let back = round_trip(&full).unwrap();
        assert!(back.labels[1].1.is_nan());
        let mut same = back.clone();
        same.labels[1].1 = 0.5;
        let mut want = full.clone();
        want.labels[1].1 = 0.5;
        assert_eq!(same, want);
        assert!(back.labels[2].1.is_sign_negative());
        for etag in ["\"abc-3\"", "\"0123456789ABCDEF0123456789ABCDEF\"", "e"] {
            let s = DocSummary {
                source_etag: Some(etag.into()),
                quality: Some(QualitySummary(None, Some(3.0))),
                ..full.clone()
            };
            assert_eq!(round_trip(&s).unwrap().source_etag.as_deref(), Some(etag));
        }
        let bare = DocSummary {
            shape: Shape::BareArray,
            labels: vec![],
            headline: None,
            error: None,
            source_key: None,
            source_etag: None,
            flagged: false,
            reviewed: false,
            quality: None,
            text: Vec::new(),
        };
        assert_eq!(round_trip(&bare), Some(bare.clone()));
        for s in [Shape::DetectLabels, Shape::Seed] {
            let s = DocSummary {
                shape: s,
                ..bare.clone()
            };
            assert_eq!(round_trip(&s), Some(s.clone()));
        }
        let bytes = encode(&full, |_| Ok(0)).unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut], |_| Some("x".into())), None, "{cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode(&longer, |_| Some("x".into())), None);
        assert_eq!(decode(&bytes, |_| None), None, "an unknown label id");
    }
}
