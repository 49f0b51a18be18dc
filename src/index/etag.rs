//! ETags as the index stores them: the usual quoted 32-hex-digit MD5 as
//! its 16 bytes (half the size, in every table and index that holds one),
//! anything else (a multipart `"…-3"`, another server's form, uppercase
//! hex, the `~size:time` identity of an object without one) as the text
//! itself. A BLOB never equals a TEXT in SQLite, so equality on the
//! stored form is equality on the ETag.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// An ETag (or identity) to bind: stored compactly when it can be.
pub(crate) struct Tag<'a>(pub &'a str);

/// The 16 bytes of `"` + 32 lowercase hex digits + `"`; None for anything
/// else, which is stored as text (so it reads back exactly).
pub(crate) fn md5_bytes(etag: &str) -> Option<[u8; 16]> {
    let hex = etag.strip_prefix('"')?.strip_suffix('"')?.as_bytes();
    if hex.len() != 32 {
        return None;
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 16];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// The quoted lowercase hex of an MD5's bytes.
pub(crate) fn md5_text(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * bytes.len() + 2);
    s.push('"');
    for byte in bytes {
        s.push(HEX[usize::from(byte >> 4)] as char);
        s.push(HEX[usize::from(byte & 15)] as char);
    }
    s.push('"');
    s
}

impl ToSql for Tag<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match md5_bytes(self.0) {
            Some(b) => ToSqlOutput::from(b.to_vec()),
            None => ToSqlOutput::from(self.0),
        })
    }
}

/// An ETag (or identity) read back, as the store gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredTag(pub String);

impl FromSql for StoredTag {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            ValueRef::Blob(b) if b.len() == 16 => Ok(StoredTag(md5_text(b))),
            ValueRef::Text(t) => std::str::from_utf8(t)
                .map(|t| StoredTag(t.to_string()))
                .map_err(|e| FromSqlError::Other(Box::new(e))),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// Every form an ETag takes round-trips exactly; only the usual MD5
    /// is stored as 16 bytes, and equality on the stored form holds.
    #[test]
    fn etags_of_every_form_round_trip() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t(e NOT NULL)").unwrap();
        let md5 = "\"d41d8cd98f00b204e9800998ecf8427e\"";
        for (etag, kind) in [
            (md5, "blob"),
            ("\"d41d8cd98f00b204e9800998ecf8427e-3\"", "text"),
            ("\"abc-3\"", "text"),
            ("\"D41D8CD98F00B204E9800998ECF8427E\"", "text"),
            ("d41d8cd98f00b204e9800998ecf8427e", "text"),
            ("\"d41d8cd98f00b204e9800998ecf8427\"", "text"),
            ("\"g41d8cd98f00b204e9800998ecf8427e\"", "text"),
            ("\"0123456789abcdef0123456789abcdef\"", "blob"),
            ("W/\"0123456789abcdef0123456789abcdef\"", "text"),
            ("~12:1700000000", "text"),
            ("\"\u{e9}t\u{e9}\"", "text"),
            ("", "text"),
        ] {
            c.execute("DELETE FROM t", []).unwrap();
            c.execute("INSERT INTO t VALUES (?1)", [Tag(etag)]).unwrap();
            let (back, stored): (StoredTag, String) = c
                .query_row("SELECT e, typeof(e) FROM t", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap();
            assert_eq!((back.0.as_str(), stored.as_str()), (etag, kind));
            let same: bool = c
                .query_row("SELECT e = ?1 FROM t", [Tag(etag)], |r| r.get(0))
                .unwrap();
            assert!(same, "{etag}");
            let other: bool = c
                .query_row("SELECT e = ?1 FROM t", [Tag(md5)], |r| r.get(0))
                .unwrap();
            assert_eq!(other, etag == md5, "{etag}");
        }
    }
}
