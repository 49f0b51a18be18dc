//! Wall-clock timestamps as imgtag writes them.

/// Now, UTC, whole seconds, RFC 3339 (`2026-11-24T10:00:00Z`).
pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}
