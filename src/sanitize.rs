//! Object keys, label names and error texts come from the bucket and are
//! untrusted: a key can carry terminal escape sequences or bidi overrides.
//! Everything shown on a terminal goes through [`for_terminal`].

use std::borrow::Cow;

/// Characters that reorder or hide text (bidi controls, zero-width and
/// separator characters): harmless to a terminal's parser but able to make
/// one key look like another.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// Whether a character must be escaped before it reaches a terminal.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() || is_invisible_format(c)
}

/// Makes text safe and visible on a terminal: C0/C1 controls, DEL, bidi
/// overrides and invisible format characters become `\x1b`-style or
/// `\u{202e}`-style escapes. Text without them is returned as is.
pub fn for_terminal(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A `serde_json` formatter that also escapes the characters a terminal
/// could act on (C1 controls, DEL, bidi overrides), which plain JSON leaves
/// raw. The output is still valid JSON that decodes to the same string.
#[derive(Default)]
pub(crate) struct TerminalSafeJson;

impl serde_json::ser::Formatter for TerminalSafeJson {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if is_unsafe(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                write!(writer, "\\u{:04x}", c as u32)?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// Serialises a value as one line of terminal-safe JSON.
pub fn json_line<T: serde::Serialize>(value: &T) -> String {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, TerminalSafeJson);
    value
        .serialize(&mut ser)
        .expect("serialising to memory cannot fail");
    String::from_utf8(buf).expect("serde_json writes UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_bidi() {
        assert_eq!(for_terminal("plain/key é.jpg"), "plain/key é.jpg");
        assert_eq!(for_terminal("a\x1b]0;pwned\x07b"), "a\\x1b]0;pwned\\x07b");
        assert_eq!(for_terminal("x\u{9b}31m"), "x\\x9b31m");
        assert_eq!(for_terminal("gpj.\u{202e}exe"), "gpj.\\u{202e}exe");
        assert_eq!(for_terminal("a\nb\x7f"), "a\\nb\\x7f");
        assert!(!for_terminal("\x1b[2J\u{2066}").chars().any(is_unsafe));
    }

    #[test]
    fn json_line_round_trips_and_is_terminal_safe() {
        let key = "up/\x1b[31mred\u{9b}\u{202e}.jpg";
        let line = json_line(&serde_json::json!({ "key": key }));
        assert!(!line.chars().any(is_unsafe), "{line}");
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["key"], key);
    }
}

/// A log writer that escapes, in each line it is given, what
/// [`for_terminal`] escapes, except the line's own final newline: keys and
/// error texts in log fields can then neither forge log lines (CR, LF) nor
/// act on a terminal that shows the log. Wraps any `io::Write`.
pub struct SafeLogWriter<W>(pub W);

impl<W: std::io::Write> std::io::Write for SafeLogWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, newline) = match text.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (text.as_ref(), ""),
        };
        self.0.write_all(for_terminal(body).as_bytes())?;
        self.0.write_all(newline.as_bytes())?;
        // The whole buffer was taken, escaped or not.
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod log_tests {
    use std::io::Write;

    use super::SafeLogWriter;

    #[test]
    fn log_lines_cannot_be_forged() {
        let mut w = SafeLogWriter(Vec::new());
        w.write_all(b"key=a\rb\nINFO forged \x1b[2J \xe2\x80\xae\n")
            .unwrap();
        let out = String::from_utf8(w.0).unwrap();
        assert_eq!(out.matches('\n').count(), 1, "{out:?}");
        assert!(out.ends_with('\n'));
        assert!(out.contains("\\r") && out.contains("\\n") && out.contains("\\x1b"));
        assert!(out.contains("\\u{202e}"), "{out:?}");
    }
}
