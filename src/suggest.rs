//! Replacements for a weak headline, numbered for the review queue's
//! one-key corrections (`1`-`9` in the TUI, `imgtag review --replace`).
//!
//! Ranked, best first (docs/tui.md, "Suggestions"):
//!
//! 1. what the detector itself saw below MinConfidence on this image
//!    (`ImgTag.Candidates`) that is more specific than the headline in the
//!    shipped taxonomy (`Feline` -> a `Tabby` candidate), most confident
//!    first: evidence about this very image;
//! 2. the labels this operator picked recently that are more specific than
//!    the headline (a queue of cats picked as `Cat` offers `Cat` early);
//! 3. the detector's other candidates, most confident first (the headline
//!    may be the wrong animal altogether); none that is an ancestor of the
//!    headline, which would say less than it;
//! 4. the headline's children, then grandchildren, in the taxonomy
//!    (`Feline` -> Cat, Big Cat, Kitten, ...);
//! 5. the other recent picks.
//!
//! Each name once (any case); never a name the document already has as a
//! label (the headline among them), nor one the reviewer removed.

use std::collections::HashSet;
use std::sync::LazyLock;

use crate::contract::{Candidate, MetadataDoc};
use crate::taxonomy::Taxonomy;

/// At most this many suggestions: one digit each.
pub(crate) const MAX_SUGGESTIONS: usize = 9;

/// Where a suggestion comes from (the detail pane shows it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source {
    /// The detector saw it below MinConfidence, at this confidence.
    Detector(f32),
    /// Under the headline in the shipped taxonomy.
    Taxonomy,
    /// This operator picked it recently.
    Recent,
}

/// One suggested replacement.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    pub name: String,
    pub source: Source,
}

/// The suggested replacements for `doc`'s headline, names only (see
/// [`ranked`]).
pub fn suggestions(doc: &MetadataDoc, recent: &[String]) -> Vec<String> {
    ranked(doc, recent).into_iter().map(|s| s.name).collect()
}

/// The suggested replacements for `doc`'s headline, best first, at most
/// `MAX_SUGGESTIONS`, each with where it came from. `recent` is the
/// operator's picks, newest first.
pub fn ranked(doc: &MetadataDoc, recent: &[String]) -> Vec<Suggestion> {
    let Some(headline) = doc.headline() else {
        return Vec::new();
    };
    let tax = Taxonomy::shipped();
    let head = headline.name.as_str();
    let below = |name: &str| tax.is_ancestor(head, name);
    let (related, other) = detector_candidates(doc, tax, head);
    let mut r = Ranking::new(doc);
    r.offer_candidates(&related);
    r.offer_all(recent.iter().filter(|n| below(n)), Source::Recent);
    r.offer_candidates(&other);
    // Children first, then grandchildren (`Feline` -> Cat, Big Cat, then
    // Lion, Tiger, ...): the more specific names a weak generic label hides.
    let kids = children(tax, head);
    let grandkids: Vec<&str> = kids.iter().flat_map(|k| children(tax, k)).collect();
    r.offer_all(kids.iter().chain(&grandkids), Source::Taxonomy);
    r.offer_all(recent, Source::Recent);
    r.out
}

/// The document's candidates, split into those below the headline in the
/// taxonomy and the others; none above it. Each part most confident first
/// (as [`crate::contract::ImgTagInfo::candidates`] reads them).
fn detector_candidates(
    doc: &MetadataDoc,
    tax: &Taxonomy,
    head: &str,
) -> (Vec<Candidate>, Vec<Candidate>) {
    let all = doc.imgtag.as_ref().map(|t| t.candidates());
    all.unwrap_or_default()
        .into_iter()
        .filter(|c| !tax.is_ancestor(&c.name, head))
        .partition(|c| tax.is_ancestor(head, &c.name))
}

/// Suggestions being ranked: each name once, none the document has or
/// the reviewer removed, at most `MAX_SUGGESTIONS`.
struct Ranking {
    seen: HashSet<String>,
    out: Vec<Suggestion>,
}

impl Ranking {
    fn new(doc: &MetadataDoc) -> Self {
        let labels = doc.labels.iter().map(|l| &l.name);
        let removed = doc.review().into_iter().flat_map(|r| &r.removed);
        Ranking {
            seen: labels.chain(removed).map(|n| n.to_lowercase()).collect(),
            out: Vec::new(),
        }
    }

    fn offer(&mut self, name: &str, source: Source) {
        // What a review would refuse is never offered.
        let pickable = !name.trim().is_empty() && !name.chars().any(crate::sanitize::is_unsafe);
        if pickable && self.out.len() < MAX_SUGGESTIONS && self.seen.insert(name.to_lowercase()) {
            self.out.push(Suggestion {
                name: name.to_string(),
                source,
            });
        }
    }

    fn offer_all<S: AsRef<str>>(&mut self, names: impl IntoIterator<Item = S>, source: Source) {
        for name in names {
            self.offer(name.as_ref(), source);
        }
    }

    fn offer_candidates(&mut self, candidates: &[Candidate]) {
        for c in candidates {
            self.offer(&c.name, Source::Detector(c.confidence));
        }
    }
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

    /// The seed's weak `Feline` with what the detector saw below
    /// MinConfidence (`Carnivore` is above `Feline`, `Pet` a label).
    fn with_candidates(candidates: &str, review: &str) -> MetadataDoc {
        let text = format!(
            r#"{{"Labels":[{{"Name":"Animal","Confidence":98.2}},{{"Name":"Mammal","Confidence":95.7}},
            {{"Name":"Pet","Confidence":91.4}},{{"Name":"Feline","Confidence":65.3}}],
            "ImgTag":{{"SchemaVersion":1,"Source":{{"Bucket":"b","Key":"uploads/c.png"}},
            "MinConfidence":55,"Candidates":{candidates}{review}}}}}"#
        );
        crate::contract::parse_metadata(text.as_bytes())
            .unwrap()
            .doc
    }

    const SEEN: &str = r#"[{"Name":"Dog","Confidence":50.0},{"Name":"Tabby","Confidence":41.2},
        {"Name":"Carnivore","Confidence":40.0},{"Name":"Pet","Confidence":39.0},
        {"Name":"Egyptian Cat","Confidence":30.5},{"Name":"tabby","Confidence":12.0}]"#;

    /// The detector's candidates come first: those under the headline by
    /// confidence, then the others; never an ancestor of the headline, a
    /// label, or a name twice; then the taxonomy's, at most nine.
    #[test]
    fn detector_candidates_rank_first() {
        let doc = with_candidates(SEEN, "");
        let s = ranked(&doc, &[]);
        let names: Vec<&str> = s.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names[..3], ["Tabby", "Egyptian Cat", "Dog"], "{names:?}");
        assert_eq!(s[0].source, Source::Detector(41.2));
        assert_eq!(s[2].source, Source::Detector(50.0));
        assert!(s[3..].iter().all(|x| x.source == Source::Taxonomy), "{s:?}");
        assert_eq!(s.len(), MAX_SUGGESTIONS);
        for never in ["Carnivore", "Pet", "Feline", "Animal"] {
            assert!(!names.contains(&never), "{never}: {names:?}");
        }
        let lower: HashSet<String> = names.iter().map(|n| n.to_lowercase()).collect();
        assert_eq!(lower.len(), names.len(), "{names:?}");
    }

    /// A recent pick under the headline ranks after this image's own
    /// related candidates, before its unrelated ones; a removed label is
    /// never offered back.
    #[test]
    fn recent_picks_and_removed_labels_with_candidates() {
        let review = r#","Review":{"Added":[],"Removed":["Dog","Cat"]}"#;
        let doc = with_candidates(SEEN, review);
        let recent = vec!["Persian Cat".to_string(), "Cat".to_string()];
        let names = suggestions(&doc, &recent);
        assert_eq!(
            names[..3],
            ["Tabby", "Egyptian Cat", "Persian Cat"],
            "{names:?}"
        );
        assert!(!names.iter().any(|n| n == "Dog" || n == "Cat"), "{names:?}");
    }

    /// Candidates of another shape are no candidates: the taxonomy's
    /// suggestions stand.
    #[test]
    fn malformed_candidates_are_ignored() {
        let doc = with_candidates(r#"{"Name":"Tabby"}"#, "");
        assert_eq!(suggestions(&doc, &[]), suggestions(&seed(), &[]));
        let doc = with_candidates(r#"[{"Name":7},{"Name":"Tabby","Confidence":"x"}]"#, "");
        assert_eq!(suggestions(&doc, &[]), suggestions(&seed(), &[]));
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
