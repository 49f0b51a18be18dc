//! Replacements for a weak headline, numbered for the review queue's
//! one-key corrections (`1`-`9` in the TUI, `imgtag review --replace`).
//!
//! Ranked, best first: the labels this operator picked recently that are
//! more specific than the headline (a queue of cats picked as `Cat` offers
//! `Cat` first), then the headline's children and grandchildren in the
//! shipped taxonomy (`Feline` -> Cat, Big Cat, Kitten, ...), then the other
//! recent picks. Names already in the document are not offered.

use std::collections::HashSet;
use std::sync::LazyLock;

use crate::contract::MetadataDoc;
use crate::taxonomy::Taxonomy;

/// At most this many suggestions: one digit each.
pub const MAX_SUGGESTIONS: usize = 9;

/// The suggested replacements for `doc`'s headline, best first, at most
/// [`MAX_SUGGESTIONS`]. `recent` is the operator's picks, newest first.
pub fn suggestions(doc: &MetadataDoc, recent: &[String]) -> Vec<String> {
    let Some(headline) = doc.headline() else {
        return Vec::new();
    };
    let tax = Taxonomy::shipped();
    let mut seen: HashSet<String> = doc.labels.iter().map(|l| l.name.to_lowercase()).collect();
    let mut out = Vec::new();
    let mut offer = |name: &str, out: &mut Vec<String>| {
        if out.len() < MAX_SUGGESTIONS && seen.insert(name.to_lowercase()) {
            out.push(name.to_string());
        }
    };
    let below = |name: &str| tax.is_ancestor(&headline.name, name);
    for name in recent.iter().filter(|n| below(n)) {
        offer(name, &mut out);
    }
    // Children first, then grandchildren (`Feline` -> Cat, Big Cat, then
    // Lion, Tiger, ...): the more specific names a weak generic label hides.
    let kids = children(tax, &headline.name);
    let grandkids: Vec<&str> = kids.iter().flat_map(|k| children(tax, k)).collect();
    for name in kids.iter().chain(&grandkids) {
        offer(name, &mut out);
    }
    for name in recent {
        offer(name, &mut out);
    }
    out
}

/// Every name of the shipped taxonomy, sorted case-insensitively: what
/// the edit prompt completes from.
static NAMES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let tax = Taxonomy::shipped();
    let mut names: Vec<&'static str> = (0..tax.len() as u32)
        .filter_map(|id| tax.name(id))
        .collect();
    names.sort_by_key(|n| n.to_lowercase());
    names
});

/// The first label name starting with `prefix` (any case): a recent pick
/// first, then the taxonomy's, alphabetically.
pub fn complete(prefix: &str, recent: &[String]) -> Option<String> {
    if prefix.is_empty() {
        return None;
    }
    let starts = |n: &str| {
        n.len() >= prefix.len()
            && n.is_char_boundary(prefix.len())
            && n[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    recent
        .iter()
        .map(String::as_str)
        .chain(NAMES.iter().copied())
        .find(|n| starts(n))
        .map(str::to_string)
}

/// Completes the last word of an edit prompt (`+Fel` -> `+Feline`,
/// `-big_c` -> `-Big_Cat`), keeping its sign; spaces in the name become
/// `_` as the prompt writes them. `None` when nothing matches.
pub fn complete_edit(buf: &str, recent: &[String]) -> Option<String> {
    let start = buf.rfind(char::is_whitespace).map_or(0, |i| i + 1);
    let (head, word) = buf.split_at(start);
    let (sign, name) = match word.chars().next() {
        Some(c @ ('+' | '-' | '!')) => (c.to_string(), &word[1..]),
        _ => (String::new(), word),
    };
    let done = complete(&name.replace('_', " "), recent)?;
    Some(format!("{head}{sign}{}", done.replace(' ', "_")))
}

/// The direct children of `name` in the taxonomy, in its order.
fn children<'t>(tax: &'t Taxonomy, name: &str) -> Vec<&'t str> {
    let Some(parent) = tax.id(name) else {
        return Vec::new();
    };
    (0..tax.len() as u32)
        .filter(|&id| tax.parent_ids(id).contains(&parent))
        .filter_map(|id| tax.name(id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> MetadataDoc {
        serde_json::from_str(
            r#"{"Labels":[{"Name":"Animal","Confidence":98.2},{"Name":"Mammal","Confidence":95.7},
            {"Name":"Pet","Confidence":91.4},{"Name":"Feline","Confidence":65.3}]}"#,
        )
        .unwrap()
    }

    /// The seed's weak `Feline` is offered its children, `Cat` among them,
    /// never a label it already has.
    #[test]
    fn a_weak_feline_is_offered_cat() {
        let s = suggestions(&seed(), &[]);
        assert!(s.iter().any(|n| n == "Cat"), "{s:?}");
        assert!(s.len() <= MAX_SUGGESTIONS);
        for have in ["Animal", "Mammal", "Pet", "Feline"] {
            assert!(!s.iter().any(|n| n == have), "{s:?}");
        }
        let tax = Taxonomy::shipped();
        assert!(s.iter().all(|n| tax.is_ancestor("Feline", n)), "{s:?}");
    }

    /// Recent picks below the headline come first; other recent picks
    /// after the taxonomy's children; no name twice.
    #[test]
    fn recent_picks_rank_first_when_they_fit() {
        let recent = vec!["Dog".to_string(), "Cat".to_string(), "cat".to_string()];
        let s = suggestions(&seed(), &recent);
        assert_eq!(s[0], "Cat", "{s:?}");
        let lower: HashSet<String> = s.iter().map(|n| n.to_lowercase()).collect();
        assert_eq!(lower.len(), s.len(), "{s:?}");
        if s.len() < MAX_SUGGESTIONS {
            assert_eq!(s.last().map(String::as_str), Some("Dog"), "{s:?}");
        }
    }

    /// Tab in the edit prompt: the word being typed, completed.
    #[test]
    fn the_edit_prompt_completes_names() {
        assert_eq!(complete_edit("+ott", &[]).as_deref(), Some("+Otter"));
        assert_eq!(
            complete_edit("-Feline +big_c", &[]).as_deref(),
            Some("-Feline +Big_Cat")
        );
        let recent = vec!["Racing Car".to_string()];
        assert_eq!(complete_edit("ra", &recent).as_deref(), Some("Racing_Car"));
        assert_eq!(complete_edit("+zzzzq", &[]), None);
        assert_eq!(complete_edit("", &[]), None);
    }

    /// A document without labels has nothing to replace.
    #[test]
    fn no_headline_no_suggestions() {
        let empty: MetadataDoc = serde_json::from_str(r#"{"Labels":[]}"#).unwrap();
        assert!(suggestions(&empty, &["Cat".into()]).is_empty());
    }
}
