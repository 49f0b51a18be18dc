//! Terminal replies are not keys. `--theme auto` asks the terminal for its
//! background (OSC 11) and a status report (DSR); over ssh the answers can
//! come after the probe gave up, and crossterm then reads them as key
//! presses: `ESC ] 11 ; rgb:fdfd/f6f6/e3e3 ESC \` arrives as Alt+`]`,
//! `1`, `1`, `;`, `r`... which switched the status filter and typed into
//! prompts.
//!
//! Two guards:
//! - `split_probe`: the probe's raw bytes, split into the reply and what
//!   the operator typed meanwhile (`keys_of` turns that back into keys).
//! - `ReplyFilter`: in the event stream, at any time, a key sequence that
//!   spells a whole reply (OSC `ESC ] digits ; … BEL|ST`, or a DSR/cursor
//!   report `ESC [ digits(;digits) n|R` split so that crossterm saw the
//!   `ESC` alone) is dropped. Anything that stops matching is replayed as
//!   the keys it was, and a held `Esc` is let go after `ESC_WAIT`, so a
//!   real Esc press still works.

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;

/// How long a lone Esc is held in case it starts a reply split across
/// reads (a real Esc press acts this much later).
pub(crate) const ESC_WAIT: Duration = Duration::from_millis(80);
/// How long a reply may pause mid-way before it is taken for keys.
pub(crate) const REPLY_WAIT: Duration = Duration::from_millis(500);
/// Longest reply body held (an OSC 11 answer is about 25 characters).
const BODY_MAX: usize = 256;

// ---------------------------------------------------------------------------
// The probe's bytes

/// The probe's bytes, taken apart.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Split {
    /// Whole reply sequences (OSC strings, CSI reports), in order.
    pub reply: Vec<u8>,
    /// Everything else: what the operator typed.
    pub typed: Vec<u8>,
    /// An unfinished escape sequence at the end: more may be on its way.
    pub pending: Vec<u8>,
}

impl Split {
    /// The DSR answer (`ESC [ … n`) is among the replies: the terminal
    /// has answered everything asked before it.
    pub(crate) fn has_dsr(&self) -> bool {
        self.reply
            .split(|&b| b == ESC)
            .any(|s| s.first() == Some(&b'[') && s.last() == Some(&b'n'))
    }
}

/// Splits raw terminal input into replies and typed bytes.
pub(crate) fn split_probe(bytes: &[u8]) -> Split {
    let mut out = Split::default();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != ESC {
            out.typed.push(bytes[i]);
            i += 1;
            continue;
        }
        match sequence_at(&bytes[i..]) {
            Seq::Reply(n) => {
                out.reply.extend_from_slice(&bytes[i..i + n]);
                i += n;
            }
            Seq::Key(n) => {
                out.typed.extend_from_slice(&bytes[i..i + n]);
                i += n;
            }
            Seq::Open => {
                out.pending.extend_from_slice(&bytes[i..]);
                break;
            }
        }
    }
    out
}

enum Seq {
    /// A whole reply of this many bytes.
    Reply(usize),
    /// A key's escape sequence (or a lone Esc) of this many bytes.
    Key(usize),
    /// Unfinished.
    Open,
}

/// What the escape sequence at the start of `b` (`b[0]` is ESC) is.
fn sequence_at(b: &[u8]) -> Seq {
    match b.get(1) {
        None => Seq::Open,
        // OSC, DCS, APC: a string ended by BEL or ST (ESC \).
        Some(b']' | b'P' | b'_') => {
            let body = &b[2..];
            match body.iter().position(|&c| c == BEL || c == ESC) {
                Some(j) if body[j] == BEL => Seq::Reply(2 + j + 1),
                Some(j) if body.get(j + 1) == Some(&b'\\') => Seq::Reply(2 + j + 2),
                Some(j) if j + 1 == body.len() => Seq::Open,
                // ESC inside, not ST: not a string; the ESC starts a key.
                Some(_) => Seq::Key(1),
                None => Seq::Open,
            }
        }
        Some(b'[') => {
            let params = b[2..].iter().take_while(|c| (0x20..0x40).contains(*c));
            let n = 2 + params.count();
            match b.get(n) {
                None => Seq::Open,
                Some(b'n' | b'R' | b'c' | b't') => Seq::Reply(n + 1),
                Some(_) => Seq::Key(n + 1),
            }
        }
        Some(b'O') if b.len() == 2 => Seq::Open,
        Some(b'O') => Seq::Key(3),
        // Alt+key, or Esc then a key: the key is decoded on its own.
        Some(_) => Seq::Key(1),
    }
}

/// The keys in typed bytes, decoded as crossterm decodes them: text,
/// Enter, Tab, Backspace, Ctrl+letter, Esc, Alt+key, arrows and the
/// editing keys. Sequences it does not know are dropped.
pub(crate) fn keys_of(bytes: &[u8]) -> Vec<KeyEvent> {
    let mut keys = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let (key, n) = key_at(&bytes[i..]);
        keys.extend(key);
        i += n.max(1);
    }
    keys
}

/// The key at the start of `b` and the bytes it takes.
fn key_at(b: &[u8]) -> (Option<KeyEvent>, usize) {
    let none = KeyModifiers::NONE;
    let key = |code, mods| Some(KeyEvent::new(code, mods));
    match b[0] {
        ESC => escape_key(b),
        b'\r' => (key(KeyCode::Enter, none), 1),
        b'\t' => (key(KeyCode::Tab, none), 1),
        0x7f => (key(KeyCode::Backspace, none), 1),
        0 => (key(KeyCode::Char(' '), KeyModifiers::CONTROL), 1),
        c @ 1..=0x1a => (
            key(KeyCode::Char((c - 1 + b'a') as char), KeyModifiers::CONTROL),
            1,
        ),
        c @ 0x1c..=0x1f => (
            key(
                KeyCode::Char((c - 0x1c + b'4') as char),
                KeyModifiers::CONTROL,
            ),
            1,
        ),
        _ => {
            let len = utf8_len(b[0]).min(b.len());
            match std::str::from_utf8(&b[..len])
                .ok()
                .and_then(|s| s.chars().next())
            {
                Some(c) if c.is_uppercase() => (key(KeyCode::Char(c), KeyModifiers::SHIFT), len),
                Some(c) => (key(KeyCode::Char(c), none), len),
                None => (None, 1),
            }
        }
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

/// An Esc, Alt+key, or a cursor or editing key's sequence.
fn escape_key(b: &[u8]) -> (Option<KeyEvent>, usize) {
    let esc = Some(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
    match b.get(1) {
        None | Some(&ESC) => (esc, 1),
        Some(b'[' | b'O') => {
            let params = b[2..]
                .iter()
                .take_while(|c| (0x20..0x40).contains(*c))
                .count();
            let Some(&last) = b.get(2 + params) else {
                return (None, b.len());
            };
            let code = match (last, &b[2..2 + params]) {
                (b'A', _) => Some(KeyCode::Up),
                (b'B', _) => Some(KeyCode::Down),
                (b'C', _) => Some(KeyCode::Right),
                (b'D', _) => Some(KeyCode::Left),
                (b'H', _) => Some(KeyCode::Home),
                (b'F', _) => Some(KeyCode::End),
                (b'~', b"3") => Some(KeyCode::Delete),
                (b'~', b"5") => Some(KeyCode::PageUp),
                (b'~', b"6") => Some(KeyCode::PageDown),
                _ => None,
            };
            let key = code.map(|c| KeyEvent::new(c, KeyModifiers::NONE));
            (key, 3 + params)
        }
        Some(_) => match key_at(&b[1..]) {
            (Some(mut k), n) => {
                k.modifiers |= KeyModifiers::ALT;
                (Some(k), 1 + n)
            }
            (None, n) => (None, 1 + n),
        },
    }
}

// ---------------------------------------------------------------------------
// The event stream

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    /// A lone Esc: a real press, or a reply's first byte read alone.
    Esc,
    /// In an OSC string (after `ESC ]`).
    Osc,
    /// An Esc inside an OSC string: `\` after it ends the string (ST).
    OscEsc,
    /// In a CSI report (after `ESC` then `[`).
    Csi,
}

/// Drops terminal replies from a stream of key presses (see the module
/// documentation). Feed every key to [`ReplyFilter::key`]; call
/// [`ReplyFilter::expire`] at [`ReplyFilter::deadline`], and
/// [`ReplyFilter::flush`] before any other event.
#[derive(Debug)]
pub(crate) struct ReplyFilter {
    state: State,
    /// The keys of the sequence so far: replayed if it is no reply.
    held: Vec<KeyEvent>,
    /// The sequence's text after its introducer (`11;rgb:…`).
    body: String,
    last: Instant,
    /// Replies dropped so far.
    pub dropped: u64,
}

impl Default for ReplyFilter {
    fn default() -> Self {
        ReplyFilter {
            state: State::Idle,
            held: Vec::new(),
            body: String::new(),
            last: Instant::now(),
            dropped: 0,
        }
    }
}

impl ReplyFilter {
    /// The keys to act on now, given key `k` at `now`.
    pub fn key(&mut self, k: KeyEvent, now: Instant) -> Vec<KeyEvent> {
        if k.kind != KeyEventKind::Press {
            let mut out = self.flush();
            out.push(k);
            return out;
        }
        let mut out = Vec::new();
        if self.state != State::Idle && now >= self.deadline_at() {
            out = self.flush();
        }
        match self.advance(&k) {
            Next::Hold(state) => {
                self.state = state;
                self.held.push(k);
                self.last = now;
            }
            Next::Drop => {
                tracing::debug!(reply = %self.body.escape_debug(), "terminal reply dropped");
                self.dropped += 1;
                self.reset();
            }
            Next::NotReply => {
                out.extend(self.flush());
                // The key may itself start a reply (an Esc after a
                // cancelled one).
                match self.advance(&k) {
                    Next::Hold(state) => {
                        self.state = state;
                        self.held.push(k);
                        self.last = now;
                    }
                    _ => out.push(k),
                }
            }
        }
        out
    }

    /// When the held keys must be let go, if any are held.
    pub fn deadline(&self) -> Option<Instant> {
        (self.state != State::Idle).then(|| self.deadline_at())
    }

    fn deadline_at(&self) -> Instant {
        let wait = if self.state == State::Esc {
            ESC_WAIT
        } else {
            REPLY_WAIT
        };
        self.last + wait
    }

    /// The held keys, if their deadline passed by `now`.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<KeyEvent> {
        match self.deadline() {
            Some(d) if now >= d => self.flush(),
            _ => Vec::new(),
        }
    }

    /// The held keys, given up as keys.
    pub fn flush(&mut self) -> Vec<KeyEvent> {
        let held = std::mem::take(&mut self.held);
        self.reset();
        held
    }

    fn reset(&mut self) {
        self.state = State::Idle;
        self.held.clear();
        self.body.clear();
    }

    /// Where key `k` takes the sequence.
    fn advance(&mut self, k: &KeyEvent) -> Next {
        let plain = k.modifiers.difference(KeyModifiers::SHIFT).is_empty();
        let ch = match k.code {
            KeyCode::Char(c) => Some(c),
            _ => None,
        };
        match (self.state, k.code) {
            (State::Idle | State::Esc, KeyCode::Esc) if k.modifiers.is_empty() => {
                // A second Esc: the first was a real press.
                match self.state {
                    State::Idle => Next::Hold(State::Esc),
                    _ => Next::NotReply,
                }
            }
            (State::Idle, KeyCode::Char(']')) if k.modifiers == KeyModifiers::ALT => {
                Next::Hold(State::Osc)
            }
            (State::Idle, _) => Next::NotReply,
            (State::Esc, KeyCode::Char(']')) if plain => Next::Hold(State::Osc),
            (State::Esc, KeyCode::Char('[')) if plain => Next::Hold(State::Csi),
            (State::Osc, KeyCode::Char('g')) if k.modifiers == KeyModifiers::CONTROL => {
                self.end_osc()
            }
            (State::Osc, KeyCode::Char('\\')) if k.modifiers == KeyModifiers::ALT => self.end_osc(),
            (State::Osc, KeyCode::Esc) if k.modifiers.is_empty() => Next::Hold(State::OscEsc),
            (State::Osc, _) if plain && ch.is_some_and(|c| self.osc_char(c)) => {
                self.body.extend(ch);
                Next::Hold(State::Osc)
            }
            (State::OscEsc, KeyCode::Char('\\')) if plain => self.end_osc(),
            (State::Csi, KeyCode::Char(c @ ('0'..='9' | ';' | '?'))) if plain => {
                self.body.push(c);
                if self.body.len() > BODY_MAX {
                    return Next::NotReply;
                }
                Next::Hold(State::Csi)
            }
            (State::Csi, KeyCode::Char('n' | 'R' | 'c' | 't'))
                if plain && !self.body.is_empty() =>
            {
                Next::Drop
            }
            _ => Next::NotReply,
        }
    }

    /// Whether `c` can come next in an OSC reply: digits, then `;`, then
    /// printable text.
    fn osc_char(&self, c: char) -> bool {
        if self.body.len() >= BODY_MAX || c.is_control() {
            return false;
        }
        if self.body.contains(';') {
            return true;
        }
        c.is_ascii_digit() || (c == ';' && !self.body.is_empty())
    }

    /// The string terminator: a reply if it had its `digits;` at least.
    fn end_osc(&self) -> Next {
        if self.body.contains(';') {
            Next::Drop
        } else {
            Next::NotReply
        }
    }
}

enum Next {
    Hold(State),
    Drop,
    NotReply,
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIGHT: &[u8] = b"\x1b]11;rgb:fdfd/f6f6/e3e3\x1b\\";

    #[test]
    fn the_probe_keeps_typed_keys_apart_from_the_reply() {
        let mut bytes = b"/ca".to_vec();
        bytes.extend_from_slice(LIGHT);
        bytes.extend_from_slice(b"t\x1b[0n\r\x1b[A");
        let s = split_probe(&bytes);
        assert_eq!(s.typed, b"/cat\r\x1b[A");
        assert_eq!(s.reply, [LIGHT, b"\x1b[0n"].concat());
        assert!(s.pending.is_empty() && s.has_dsr());
        let keys = keys_of(&s.typed);
        let codes: Vec<KeyCode> = keys.iter().map(|k| k.code).collect();
        assert_eq!(
            codes,
            [
                KeyCode::Char('/'),
                KeyCode::Char('c'),
                KeyCode::Char('a'),
                KeyCode::Char('t'),
                KeyCode::Enter,
                KeyCode::Up,
            ]
        );
    }

    #[test]
    fn an_unfinished_reply_is_pending_and_bel_ends_one() {
        let s = split_probe(b"x\x1b]11;rgb:ff");
        assert_eq!(
            (s.typed.as_slice(), s.pending.as_slice()),
            (&b"x"[..], &b"\x1b]11;rgb:ff"[..])
        );
        assert!(!s.has_dsr());
        let s = split_probe(b"\x1b]11;rgb:0/0/0\x07\x1b");
        assert_eq!(s.reply, b"\x1b]11;rgb:0/0/0\x07");
        assert_eq!(s.pending, b"\x1b");
        // A cursor report is a reply; an arrow key is not.
        let s = split_probe(b"\x1b[12;40R\x1b[Bq");
        assert_eq!(
            (s.reply.as_slice(), s.typed.as_slice()),
            (&b"\x1b[12;40R"[..], &b"\x1b[Bq"[..])
        );
    }

    #[test]
    fn typed_bytes_decode_as_crossterm_would() {
        let k = |code, m| KeyEvent::new(code, m);
        let none = KeyModifiers::NONE;
        assert_eq!(
            keys_of("É\x7f\x03\x1bx\x1b\t".as_bytes()),
            [
                k(KeyCode::Char('É'), KeyModifiers::SHIFT),
                k(KeyCode::Backspace, none),
                k(KeyCode::Char('c'), KeyModifiers::CONTROL),
                k(KeyCode::Char('x'), KeyModifiers::ALT),
                k(KeyCode::Tab, KeyModifiers::ALT),
            ]
        );
        assert_eq!(keys_of(b"\x1b"), [k(KeyCode::Esc, none)]);
        assert_eq!(keys_of(b"\x1b[5~\x1b[99z"), [k(KeyCode::PageUp, none)]);
    }

    /// The keys crossterm makes of `bytes` when they arrive in one read.
    fn as_crossterm(bytes: &[u8]) -> Vec<KeyEvent> {
        keys_of(bytes)
    }

    fn feed(f: &mut ReplyFilter, keys: &[KeyEvent], at: Instant) -> Vec<KeyEvent> {
        keys.iter().flat_map(|&k| f.key(k, at)).collect()
    }

    fn chars(s: &str) -> Vec<KeyEvent> {
        keys_of(s.as_bytes())
    }

    #[test]
    fn a_late_osc_reply_in_one_read_is_dropped() {
        let t = Instant::now();
        let mut f = ReplyFilter::default();
        let keys = as_crossterm(LIGHT);
        // Alt+], then the text, then Alt+\.
        assert_eq!(
            keys[0],
            KeyEvent::new(KeyCode::Char(']'), KeyModifiers::ALT)
        );
        assert!(feed(&mut f, &keys, t).is_empty());
        assert_eq!((f.dropped, f.deadline()), (1, None));
        // With BEL, among typed keys.
        let mut keys = chars("a");
        keys.extend(as_crossterm(b"\x1b]11;rgb:0/0/0\x07"));
        keys.extend(chars("b"));
        assert_eq!(feed(&mut f, &keys, t), chars("ab"));
        assert_eq!(f.dropped, 2);
    }

    #[test]
    fn a_reply_split_across_reads_is_dropped() {
        let t = Instant::now();
        let mut f = ReplyFilter::default();
        // ESC read alone (crossterm: Esc), the rest in later reads.
        let mut keys = as_crossterm(b"\x1b");
        keys.extend(chars("]11;rgb:fdfd/f6f6/e3e3"));
        keys.extend(as_crossterm(b"\x1b"));
        keys.extend(chars("\\"));
        for (n, k) in keys.iter().enumerate() {
            let at = t + Duration::from_millis(n as u64);
            assert!(f.key(*k, at).is_empty(), "key {n}");
        }
        assert_eq!(f.dropped, 1);
        // A DSR answer and a cursor report read after their ESC.
        for report in ["[0n", "[24;80R"] {
            let mut keys = as_crossterm(b"\x1b");
            keys.extend(chars(report));
            assert!(feed(&mut f, &keys, t).is_empty(), "{report}");
        }
        assert_eq!(f.dropped, 3);
    }

    #[test]
    fn a_real_esc_acts_after_the_wait() {
        let t = Instant::now();
        let mut f = ReplyFilter::default();
        let esc = KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE);
        assert!(f.key(esc, t).is_empty());
        assert_eq!(f.deadline(), Some(t + ESC_WAIT));
        assert!(f.expire(t + ESC_WAIT / 2).is_empty());
        assert_eq!(f.expire(t + ESC_WAIT), [esc]);
        assert_eq!(f.deadline(), None);
        // Esc then a key that starts no reply: both, in order, at once.
        assert!(f.key(esc, t).is_empty());
        assert_eq!(feed(&mut f, &chars("q"), t), [esc, chars("q")[0]]);
        // Esc then `]` after the wait: the Esc alone, then `]`.
        assert!(f.key(esc, t).is_empty());
        let late = t + ESC_WAIT * 2;
        assert_eq!(feed(&mut f, &chars("]"), late), [esc, chars("]")[0]]);
        // Esc Esc: the first is a press, the second may start a reply.
        assert!(f.key(esc, t).is_empty());
        assert_eq!(f.key(esc, t), [esc]);
        assert_eq!(f.flush(), [esc]);
        assert_eq!(f.dropped, 0);
    }

    #[test]
    fn what_stops_looking_like_a_reply_is_replayed() {
        let t = Instant::now();
        let mut f = ReplyFilter::default();
        let alt = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::ALT);
        // Alt+] then a letter: no OSC starts with a letter.
        assert_eq!(
            feed(&mut f, &[alt(']'), chars("x")[0]], t),
            [alt(']'), chars("x")[0]]
        );
        // Esc [ then a key that ends no report (an arrow typed slowly).
        let mut keys = as_crossterm(b"\x1b");
        keys.extend(chars("[A"));
        assert_eq!(feed(&mut f, &keys, t), keys);
        // An OSC without `digits;` before its end is no reply.
        let keys = [
            alt(']'),
            chars("1")[0],
            KeyEvent::new(KeyCode::Char('g'), KeyModifiers::CONTROL),
        ];
        assert_eq!(feed(&mut f, &keys, t), keys);
        // A reply cut off for longer than the wait: given back as keys.
        let keys = [alt(']'), chars("1")[0], chars("1")[0]];
        assert!(feed(&mut f, &keys, t).is_empty());
        assert_eq!(f.expire(t + REPLY_WAIT), keys);
        assert_eq!(f.dropped, 0);
    }
}
