//! `--theme auto`: asks the terminal for its background colour (OSC 11)
//! and picks the light theme on a light background.
//!
//! The question is followed by a Device Status Report request, which every
//! terminal (and tmux) answers: answers come back in order, so once the
//! DSR answer is in, a terminal that knows OSC 11 has answered it too, and
//! one that does not is not waited for. Reading polls stdin with a short
//! deadline and never leaves a reader blocked on it (that reader would eat
//! the operator's first keys). Keys typed while it waits are handed back
//! ([`Probe::typed`]); an answer that comes later is dropped from the event
//! stream by `ReplyFilter`.

use std::time::{Duration, Instant};

use crossterm::event::KeyEvent;

use super::replies::{REPLY_WAIT, Split, keys_of, split_probe};
use super::theme::Background;

/// How long the terminal gets to answer.
pub const TIMEOUT: Duration = Duration::from_millis(150);

/// The background colour in an OSC 11 answer, as 0.0-1.0 RGB:
/// `ESC ] 11 ; rgb:RRRR/GGGG/BBBB` ended by BEL or ST, 1 to 4 hex digits a
/// channel (`rgba:` too, alpha ignored). Anything else: None.
pub(crate) fn parse_reply(reply: &[u8]) -> Option<[f32; 3]> {
    let text = std::str::from_utf8(reply).ok()?;
    let start = text.find("\x1b]11;")? + 5;
    let body = &text[start..];
    let end = body.find(['\x07', '\x1b'])?;
    let spec = &body[..end];
    let channels = spec
        .strip_prefix("rgb:")
        .or_else(|| spec.strip_prefix("rgba:"))?;
    let mut rgb = [0.0f32; 3];
    let mut parts = channels.split('/');
    for c in &mut rgb {
        let hex = parts.next()?;
        if hex.is_empty() || hex.len() > 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let max = (1u32 << (4 * hex.len())) - 1;
        *c = u32::from_str_radix(hex, 16).ok()? as f32 / max as f32;
    }
    Some(rgb)
}

/// Light when the colour's luminance (Rec. 709 weights) is above one half.
pub(crate) fn background_of(rgb: [f32; 3]) -> Background {
    let luminance = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];
    if luminance > 0.5 {
        Background::Light
    } else {
        Background::Dark
    }
}

/// The background of a raw OSC 11 answer, if it is one.
pub(crate) fn background_from_reply(reply: &[u8]) -> Option<Background> {
    parse_reply(reply).map(background_of)
}

/// What the probe found.
#[derive(Debug, Default)]
pub struct Probe {
    /// None when stdin is not a terminal, or nothing usable came back in
    /// time.
    pub background: Option<Background>,
    /// Keys the operator typed while the probe read: the app's first keys.
    pub typed: Vec<KeyEvent>,
}

/// Asks the terminal (raw mode on, before the event reader starts).
pub fn query() -> Probe {
    let started = Instant::now();
    let Some(split) = ask() else {
        return Probe::default();
    };
    let found = background_from_reply(&split.reply);
    tracing::debug!(reply = %String::from_utf8_lossy(&split.reply).escape_debug(), "OSC 11 answer");
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        answered = found.is_some(),
        background = ?found,
        typed = split.typed.len(),
        "terminal background query"
    );
    // An escape sequence left unfinished is a key's (a lone Esc, an
    // arrow cut short) or a reply's rest, which the event stream drops.
    let mut typed = split.typed;
    typed.extend(split.pending);
    Probe {
        background: found,
        typed: keys_of(&typed),
    }
}

#[cfg(unix)]
fn ask() -> Option<Split> {
    use std::io::{IsTerminal, Write};
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return None;
    }
    let mut out = std::io::stdout();
    out.write_all(b"\x1b]11;?\x07\x1b[5n").ok()?;
    out.flush().ok()?;
    let mut deadline = Instant::now() + TIMEOUT;
    let mut extended = false;
    let mut reply = Vec::new();
    loop {
        let split = split_probe(&reply);
        if split.has_dsr() {
            return Some(split);
        }
        let mut left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() && !split.pending.is_empty() && !extended {
            // An answer is arriving: let it finish rather than leave its
            // rest to the key handler.
            extended = true;
            deadline += REPLY_WAIT;
            left = REPLY_WAIT;
        }
        if left.is_zero() || !readable(left) {
            return Some(split);
        }
        let mut buf = [0u8; 256];
        // Straight from the descriptor, unbuffered: bytes after the reply
        // (keys typed meanwhile) must stay for crossterm. Poll said stdin
        // has data, so this does not block.
        let n = match rustix::io::read(std::io::stdin(), &mut buf) {
            Ok(n) if n > 0 => n,
            _ => return Some(split_probe(&reply)),
        };
        reply.extend_from_slice(&buf[..n]);
    }
}

#[cfg(not(unix))]
fn ask() -> Option<Split> {
    None
}

/// Stdin has bytes within `wait`.
#[cfg(unix)]
fn readable(wait: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
    let wait = Timespec::try_from(wait.min(Duration::from_secs(1))).ok();
    poll(&mut fds, wait.as_ref()).is_ok_and(|n| n > 0) && fds[0].revents().contains(PollFlags::IN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn white_and_black_answers() {
        let white = b"\x1b]11;rgb:ffff/ffff/ffff\x07";
        assert_eq!(parse_reply(white), Some([1.0, 1.0, 1.0]));
        assert_eq!(background_from_reply(white), Some(Background::Light));
        let black = b"\x1b]11;rgb:00/00/00\x1b\\";
        assert_eq!(parse_reply(black), Some([0.0, 0.0, 0.0]));
        assert_eq!(background_from_reply(black), Some(Background::Dark));
    }

    #[test]
    fn real_palettes_and_the_dsr_after_the_answer() {
        // Solarized light (fdf6e3) and dark (002b36), one and four digits,
        // followed by the DSR answer as the terminal sends them.
        let light = b"\x1b]11;rgb:fdfd/f6f6/e3e3\x1b\\\x1b[0n";
        assert_eq!(background_from_reply(light), Some(Background::Light));
        assert_eq!(
            background_from_reply(b"\x1b]11;rgb:0/2/3\x07"),
            Some(Background::Dark)
        );
        assert_eq!(
            background_from_reply(b"\x1b]11;rgba:ffff/ffff/ffff/ffff\x07"),
            Some(Background::Light)
        );
        // Mid grey is not light.
        assert_eq!(background_of([0.5, 0.5, 0.5]), Background::Dark);
        assert!(split_probe(light).has_dsr());
        assert!(!split_probe(b"\x1b]11;rgb:0/0/0\x07").has_dsr());
    }

    #[test]
    fn garbage_is_no_answer() {
        for bad in [
            &b""[..],
            b"\x1b[0n",
            b"garbage",
            b"\x1b]11;rgb:ffff/ffff\x07",
            b"\x1b]11;rgb:fffff/0/0\x07",
            b"\x1b]11;rgb:zz/00/00\x07",
            b"\x1b]11;#ffffff\x07",
            b"\x1b]11;rgb:ff/ff/ff",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_reply(bad), None, "{bad:?}");
        }
    }
}
