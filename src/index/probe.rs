//! Cut points for a key range the index knows nothing of (the first open
//! of a bucket): after a page, what remains of a range that is still long
//! is cut at points spread evenly between the last key listed and the
//! range's end, counting in the alphabet of the keys seen (a page shows
//! it: digits, a few letters, `/`), so the rest is listed side by side.
//! A cut where no key lies costs one empty request; a range cut again
//! after each page narrows in on where the keys are. The cuts only decide
//! how the work is shared: every key still falls in exactly one range.

/// The longest key (and so `start-after`) S3 takes, in bytes.
const MAX_KEY: usize = 1024;

/// Up to `pieces - 1` increasing cut points strictly between `lo` and `hi`
/// (`None`: the end of `prefix`, which `lo` starts with), spread evenly
/// over the keys between them as if their characters were digits in the
/// alphabet of `seen` (keys listed nearby). Empty when `lo` and `hi` are
/// too close to cut.
pub(crate) fn cuts<'a>(
    prefix: &str,
    lo: &str,
    hi: Option<&str>,
    seen: impl IntoIterator<Item = &'a str>,
    pieces: usize,
) -> Vec<String> {
    // Every key between lo and hi starts with what they share.
    let common = match hi {
        Some(hi) => common_prefix(lo, hi),
        None => prefix,
    };
    let rest =
        |k: &str| -> Vec<char> { k.get(common.len()..).unwrap_or_default().chars().collect() };
    let mut alphabet: Vec<char> = seen.into_iter().flat_map(rest).collect();
    alphabet.extend(rest(lo));
    alphabet.extend(hi.map(rest).unwrap_or_default());
    alphabet.sort_unstable();
    alphabet.dedup();
    if alphabet.is_empty() || pieces < 2 {
        return Vec::new();
    }
    let digits = Digits::new(alphabet);
    let tail = |k: &str| k.get(common.len()..).unwrap_or_default().to_string();
    let low = digits.value(&tail(lo));
    let high = hi.map_or(digits.top(), |h| digits.value(&tail(h)));
    let step = high.saturating_sub(low) / pieces as u128;
    if step == 0 {
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::with_capacity(pieces - 1);
    for i in 1..pieces as u128 {
        let cut = format!("{common}{}", digits.text(low + step * i));
        let inside = cut.as_str() > lo
            && hi.map_or(cut.starts_with(prefix), |h| cut.as_str() < h)
            && cut.len() <= MAX_KEY
            && out.last().is_none_or(|l| *l < cut);
        if inside {
            out.push(cut);
        }
    }
    out
}

fn common_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let n = a
        .char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((i, _), _)| i);
    &a[..n]
}

/// Strings as fixed-point numbers: each character a digit (its place in
/// the alphabet, plus one; 0 is the end of the string), as many digits as
/// fit in a `u128`.
struct Digits {
    alphabet: Vec<char>,
    base: u128,
    len: u32,
}

impl Digits {
    fn new(alphabet: Vec<char>) -> Digits {
        let base = alphabet.len() as u128 + 1;
        let mut len = 0;
        while base.checked_pow(len + 1).is_some_and(|v| v < u128::MAX / 4) {
            len += 1;
        }
        Digits {
            alphabet,
            base,
            len,
        }
    }

    /// Above every string's value.
    fn top(&self) -> u128 {
        self.base.pow(self.len)
    }

    /// A character outside the alphabet counts as the next one in it (or
    /// the last): the order of values is the order of strings, loosely.
    fn value(&self, s: &str) -> u128 {
        let mut chars = s.chars();
        let mut v = 0u128;
        for _ in 0..self.len {
            let d = chars.next().map_or(0, |c| {
                let i = self.alphabet.partition_point(|&a| a < c);
                i.min(self.alphabet.len() - 1) as u128 + 1
            });
            v = v * self.base + d;
        }
        v
    }

    /// The string of a value, up to its first end digit.
    fn text(&self, v: u128) -> String {
        let mut ds = Vec::with_capacity(self.len as usize);
        let mut v = v;
        for _ in 0..self.len {
            ds.push((v % self.base) as usize);
            v /= self.base;
        }
        ds.iter()
            .rev()
            .take_while(|&&d| d != 0)
            .map(|&d| self.alphabet[d - 1])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("uploads/2024/{i:07}-photo.jpg"))
            .collect()
    }

    fn check(prefix: &str, lo: &str, hi: Option<&str>, cuts: &[String]) {
        for w in cuts.windows(2) {
            assert!(w[0] < w[1], "{cuts:?}");
        }
        for c in cuts {
            assert!(c.as_str() > lo, "{c:?} <= {lo:?}");
            assert!(c.starts_with(prefix), "{c:?}");
            if let Some(h) = hi {
                assert!(c.as_str() < h, "{c:?} >= {h:?}");
            }
        }
    }

    #[test]
    fn cuts_fall_strictly_inside_and_in_order() {
        let seen = keys(1000);
        let seen = seen.iter().map(String::as_str);
        let lo = "uploads/2024/0000999-photo.jpg";
        let c = cuts("uploads/", lo, None, seen.clone(), 8);
        assert_eq!(c.len(), 7, "{c:?}");
        check("uploads/", lo, None, &c);
        let hi = "uploads/2024/0500000-photo.jpg";
        let c = cuts("uploads/", lo, Some(hi), seen, 8);
        assert_eq!(c.len(), 7, "{c:?}");
        check("uploads/", lo, Some(hi), &c);
    }

    /// Cut after cut of the piece that holds the keys (as the range that
    /// lists it cuts it again after its next page), the pieces soon share
    /// the keys: what a listing that splits after each page does.
    #[test]
    fn repeated_cuts_narrow_in_on_the_keys() {
        let all = keys(500_000);
        let count = |after: &str, until: Option<&str>| {
            let from = all.partition_point(|k| k.as_str() <= after);
            let to = until.map_or(all.len(), |u| all.partition_point(|k| k.as_str() <= u));
            (from, to)
        };
        let (mut lo, mut hi): (String, Option<String>) = (all[999].clone(), None);
        for round in 1.. {
            assert!(round < 20, "no cut among the keys after {round} rounds");
            let seen = all[..1000].iter().map(String::as_str);
            let c = cuts("uploads/", &lo, hi.as_deref(), seen, 16);
            check("uploads/", &lo, hi.as_deref(), &c);
            assert!(!c.is_empty());
            let mut bounds: Vec<Option<String>> = vec![Some(lo.clone())];
            bounds.extend(c.into_iter().map(Some));
            bounds.push(hi.clone());
            // Each piece's end and the keys it holds.
            let full: Vec<(Option<String>, (usize, usize))> = bounds
                .windows(2)
                .map(|w| {
                    (
                        w[1].clone(),
                        count(w[0].as_deref().unwrap(), w[1].as_deref()),
                    )
                })
                .filter(|(_, (from, to))| to > from)
                .collect();
            if full.len() >= 2 {
                return;
            }
            // One piece holds every key: it is cut again after a page.
            let (end, (from, to)) = full[0].clone();
            assert!(to - from > 1000, "the keys ran out first");
            lo = all[from + 999].clone();
            hi = end;
        }
    }

    #[test]
    fn odd_keys_give_cuts_inside() {
        let seen = ["p/日本/猫.jpg", "p/🐈.jpg", "p/a+b%.jpg", "p/\u{ffff}.jpg"];
        let lo = "p/a+b%.jpg";
        let c = cuts("p/", lo, None, seen, 8);
        assert!(!c.is_empty());
        check("p/", lo, None, &c);
        let c = cuts("p/", lo, Some("p/日本/猫.jpg"), seen, 8);
        check("p/", lo, Some("p/日本/猫.jpg"), &c);
        // Nothing fits between neighbours.
        assert!(cuts("p/", "p/a", Some("p/a\u{0}"), seen, 8).is_empty());
        // A long common prefix: no cut past S3's longest key.
        let long = format!("p/{}", "ü".repeat(509));
        let c = cuts(
            "p/",
            &format!("{long}a"),
            Some(&format!("{long}z")),
            seen,
            8,
        );
        assert!(c.iter().all(|k| k.len() <= MAX_KEY), "{c:?}");
    }
}
