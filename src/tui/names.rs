//! Label names, interned: each distinct name is stored once per app and
//! rows hold `u32` ids, so a million rows drawing on a vocabulary of a
//! few thousand labels pay four bytes a name, and `/` matches each name
//! once per keystroke instead of once per row.

use crate::key_index::KeyIndex;

/// Names by id, with their lowercase forms for search.
#[derive(Debug, Clone, Default)]
pub struct Names {
    names: Vec<Box<str>>,
    lower: Vec<Box<str>>,
    index: KeyIndex,
}

impl Names {
    pub fn new() -> Names {
        Names::default()
    }

    /// The id of `name`, adding it if it is new. Ids are dense from 0.
    pub(crate) fn intern(&mut self, name: &str) -> u32 {
        let names = &self.names;
        if let Some(id) = self.index.find(name, |i| &names[i as usize]) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.into());
        self.lower.push(name.to_lowercase().into_boxed_str());
        let names = &self.names;
        self.index.insert_unique(name, id, |i| &names[i as usize]);
        id
    }

    /// The name as first seen.
    pub fn get(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// For each id, whether its lowercase name contains `needle`
    /// (lowercase): what a row's names are checked against.
    pub(crate) fn matching(&self, needle: &str) -> Vec<bool> {
        self.lower.iter().map(|n| n.contains(needle)).collect()
    }
}

/// Whether `hay` contains `needle` (lowercase) ignoring case, without
/// allocating: a byte scan for ASCII keys, a char scan otherwise.
pub(crate) fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    if hay.is_ascii() && needle.is_ascii() {
        let (h, n) = (hay.as_bytes(), needle.as_bytes());
        return h.len() >= n.len()
            && h.windows(n.len())
                .any(|w| w[0].to_ascii_lowercase() == n[0] && w.eq_ignore_ascii_case(n));
    }
    hay.char_indices().any(|(i, _)| {
        let mut rest = hay[i..].chars().flat_map(char::to_lowercase);
        needle.chars().all(|c| rest.next() == Some(c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_once_and_matches_lowercase() {
        let mut n = Names::new();
        let cat = n.intern("Cat");
        assert_eq!(n.intern("Cat"), cat);
        let cup = n.intern("Cup");
        assert_ne!(cat, cup);
        assert_eq!(n.get(cat), "Cat");
        assert_eq!(n.matching("ca"), vec![true, false]);
        assert_eq!(n.matching("u"), vec![false, true]);
    }

    #[test]
    fn contains_ignores_case_in_ascii_and_unicode() {
        assert!(contains_ignore_case("uploads/IMG_1.JPG", "img_1.jpg"));
        assert!(!contains_ignore_case("uploads/IMG_1.JPG", "img_2"));
        assert!(contains_ignore_case("uploads/ÉTÉ/Straße.jpg", "été/straße"));
        assert!(!contains_ignore_case("uploads/ÉTÉ.jpg", "ete"));
        assert!(contains_ignore_case("a", ""));
        assert!(!contains_ignore_case("", "a"));
    }
}
