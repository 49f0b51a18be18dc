//! imgtag's shipped label taxonomy: which label names are kinds of which.
//!
//! Used for documents whose labels carry no `Parents` (the seed's minimal
//! shape, bare arrays, hand-written files): it tells the headline rule that
//! Feline is below Mammal and Pet, Shirt below Clothing, Coffee below
//! Beverage. Two embedded sources are merged once, on first use:
//!
//! - `assets/model/labels.json`, the local model's WordNet-derived table;
//! - `assets/taxonomy/everyday.json`, imgtag's hand-curated everyday names
//!   (Pet, Canine, Vehicle, Person, Cup...), their parents, aliases, and the
//!   WordNet edges that contradict everyday meaning (see
//!   `tools/make_taxonomy.py`).
//!
//! Names are compared case-insensitively; an alias is the same node as its
//! target.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

const LABELS_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/model/labels.json"
));
const EVERYDAY_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/taxonomy/everyday.json"
));
const LOCAL_NAMES_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/taxonomy/local_names.json"
));

/// imgtag's curation of the local classifier's names
/// (`assets/taxonomy/local_names.json`): WordNet and ImageNet names
/// renamed to the ones Rekognition or a person would use (`Cab` -> `Taxi`,
/// `Bicycle-built-for-two` -> `Tandem Bicycle`), and the names the
/// classifier keeps as parents only, never as labels (`Hunting Dog`,
/// `Sporting Dog`, `Egyptian Cat`: their probability counts towards their
/// ancestors, `Dog`, `Cat`). Applied wherever labels.json is read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalNames {
    format: u32,
    #[allow(dead_code)]
    licence: String,
    #[allow(dead_code)]
    note: String,
    rename: HashMap<String, String>,
    #[serde(default)]
    drop_edges: Vec<(String, String)>,
    parent_only: Vec<String>,
}

static LOCAL_NAMES: LazyLock<LocalNames> = LazyLock::new(|| {
    let names: LocalNames =
        serde_json::from_str(LOCAL_NAMES_JSON).expect("local_names.json is valid (unit tests)");
    assert_eq!(names.format, 1, "local_names.json format");
    names
});

impl LocalNames {
    /// The shipped curation.
    pub fn shipped() -> &'static LocalNames {
        &LOCAL_NAMES
    }

    /// The name a labels.json node is shown under.
    pub fn name<'a>(&'a self, wordnet_name: &'a str) -> &'a str {
        self.rename
            .get(wordnet_name)
            .map_or(wordnet_name, String::as_str)
    }

    /// Whether the classifier keeps `name` (after renaming) as a parent
    /// only, never as a label.
    pub fn is_parent_only(&self, name: &str) -> bool {
        self.parent_only
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
    }

    /// Every renamed name's pair, old -> new (the curation's tests).
    #[cfg(test)]
    fn renames(&self) -> impl Iterator<Item = (&str, &str)> {
        self.rename.iter().map(|(a, b)| (a.as_str(), b.as_str()))
    }

    /// Whether the labels.json edge `child` -> `parent` (names after
    /// renaming) is dropped.
    pub(crate) fn drops_edge(&self, child: &str, parent: &str) -> bool {
        self.drop_edges
            .iter()
            .any(|(c, p)| c.eq_ignore_ascii_case(child) && p.eq_ignore_ascii_case(parent))
    }

    /// Every parent-only name (the curation's tests).
    #[cfg(test)]
    fn parent_only(&self) -> impl Iterator<Item = &str> {
        self.parent_only.iter().map(String::as_str)
    }
}

/// Why taxonomy data could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TaxonomyError {
    #[error("taxonomy data is not valid JSON of the expected shape: {0}")]
    Json(String),
    #[error("unknown taxonomy format {0}")]
    Format(u32),
    #[error("node {node} has parent index {parent}, out of range")]
    BadParent { node: usize, parent: usize },
    #[error("the taxonomy has a cycle through {0:?}")]
    Cycle(String),
    #[error("too many taxonomy nodes")]
    TooLarge,
}

#[derive(Deserialize)]
struct WordNetFile {
    format: u32,
    nodes: Vec<WordNetNode>,
}

#[derive(Deserialize)]
struct WordNetNode {
    name: String,
    parents: Vec<usize>,
}

#[derive(Deserialize)]
struct EverydayFile {
    format: u32,
    labels: Vec<EverydayLabel>,
    #[serde(default)]
    aliases: HashMap<String, String>,
    #[serde(default)]
    drop_edges: Vec<(String, String)>,
    #[serde(default)]
    settings: Vec<String>,
}

#[derive(Deserialize)]
struct EverydayLabel {
    name: String,
    parents: Vec<String>,
}

/// A DAG of label names. Build it once ([`Taxonomy::shipped`]); lookups are
/// one hash probe plus a slice.
#[derive(Debug, Clone)]
pub struct Taxonomy {
    /// Display name of each node.
    names: Vec<Box<str>>,
    /// Lower-cased name or alias -> node.
    index: HashMap<Box<str>, u32>,
    /// Direct parents of each node.
    parents: Vec<Box<[u32]>>,
    /// All ancestors of each node, nearest first, each once.
    ancestors: Vec<Box<[u32]>>,
    /// Whether a node is a setting (where, not what) or below one.
    setting: Vec<bool>,
}

static SHIPPED: LazyLock<Taxonomy> = LazyLock::new(|| {
    // The embedded data is checked by the unit tests; it cannot change at
    // run time, so failing here is a build defect, not a user error.
    Taxonomy::from_sources(LABELS_JSON, EVERYDAY_JSON).expect("the shipped taxonomy is valid")
});

/// Builder state: nodes by lower-cased name, edges as a set per node.
struct Builder {
    names: Vec<Box<str>>,
    index: HashMap<Box<str>, u32>,
    parents: Vec<Vec<u32>>,
}

impl Builder {
    fn node(&mut self, name: &str) -> Result<u32, TaxonomyError> {
        let key: Box<str> = name.to_lowercase().into();
        if let Some(&id) = self.index.get(&key) {
            return Ok(id);
        }
        let id = u32::try_from(self.names.len()).map_err(|_| TaxonomyError::TooLarge)?;
        self.names.push(name.into());
        self.parents.push(Vec::new());
        self.index.insert(key, id);
        Ok(id)
    }

    fn edge(&mut self, child: u32, parent: u32) {
        let list = &mut self.parents[child as usize];
        if child != parent && !list.contains(&parent) {
            list.push(parent);
        }
    }
}

impl Taxonomy {
    /// The taxonomy embedded in imgtag, built on first use.
    pub fn shipped() -> &'static Taxonomy {
        &SHIPPED
    }

    /// Builds a taxonomy from a labels.json (format 1) and an everyday.json
    /// (format 1) document.
    pub(crate) fn from_sources(
        labels_json: &str,
        everyday_json: &str,
    ) -> Result<Self, TaxonomyError> {
        let json = |e: serde_json::Error| TaxonomyError::Json(e.to_string());
        let wordnet: WordNetFile = serde_json::from_str(labels_json).map_err(json)?;
        let everyday: EverydayFile = serde_json::from_str(everyday_json).map_err(json)?;
        for format in [wordnet.format, everyday.format] {
            if format != 1 {
                return Err(TaxonomyError::Format(format));
            }
        }
        let mut b = Builder {
            names: Vec::new(),
            index: HashMap::new(),
            parents: Vec::new(),
        };
        // Everyday names first, so their spelling is the display name, and
        // aliases before any WordNet node of the same name: that node then
        // merges into the alias target.
        for label in &everyday.labels {
            b.node(&label.name)?;
        }
        for (alias, target) in &everyday.aliases {
            let id = b.node(target)?;
            b.index.insert(alias.to_lowercase().into(), id);
        }
        let dropped: Vec<(String, String)> = everyday
            .drop_edges
            .iter()
            .map(|(c, p)| (c.to_lowercase(), p.to_lowercase()))
            .collect();
        let local = LocalNames::shipped();
        let ids = wordnet
            .nodes
            .iter()
            .map(|n| b.node(local.name(&n.name)))
            .collect::<Result<Vec<u32>, _>>()?;
        for (i, node) in wordnet.nodes.iter().enumerate() {
            for &p in &node.parents {
                let parent = wordnet
                    .nodes
                    .get(p)
                    .ok_or(TaxonomyError::BadParent { node: i, parent: p })?;
                let pair = (
                    local.name(&node.name).to_lowercase(),
                    local.name(&parent.name).to_lowercase(),
                );
                if !dropped.contains(&pair) && !local.drops_edge(&pair.0, &pair.1) {
                    b.edge(ids[i], ids[p]);
                }
            }
        }
        for label in &everyday.labels {
            let child = b.node(&label.name)?;
            for p in &label.parents {
                let parent = b.node(p)?;
                b.edge(child, parent);
            }
        }
        let settings = everyday
            .settings
            .iter()
            .map(|name| b.node(name))
            .collect::<Result<Vec<u32>, _>>()?;
        let ancestors = closure(&b.parents, &b.names)?;
        let setting = (0..b.names.len() as u32)
            .map(|i| {
                settings.contains(&i) || ancestors[i as usize].iter().any(|a| settings.contains(a))
            })
            .collect();
        Ok(Taxonomy {
            setting,
            names: b.names,
            index: b.index,
            parents: b.parents.into_iter().map(Vec::into_boxed_slice).collect(),
            ancestors,
        })
    }

    /// Number of distinct nodes (aliases not counted).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the taxonomy has no nodes.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The node a name (or alias) denotes, case-insensitively.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.index.get(name.to_lowercase().as_str()).copied()
    }

    /// Display name of a node.
    pub fn name(&self, id: u32) -> Option<&str> {
        self.names.get(id as usize).map(|n| &**n)
    }

    /// The taxonomy's own spelling of a name or alias (`"human"` -> `"Person"`).
    pub fn canonical(&self, name: &str) -> Option<&str> {
        self.id(name).and_then(|id| self.name(id))
    }

    /// Direct parents of a node.
    pub(crate) fn parent_ids(&self, id: u32) -> &[u32] {
        self.parents.get(id as usize).map_or(&[], |p| &**p)
    }

    /// All ancestors of a node, nearest first, each once.
    pub(crate) fn ancestor_ids(&self, id: u32) -> &[u32] {
        self.ancestors.get(id as usize).map_or(&[], |a| &**a)
    }

    /// All ancestors' names of `name`, nearest first; none for an unknown name.
    pub fn ancestors(&self, name: &str) -> impl Iterator<Item = &str> + '_ {
        let ids = self.id(name).map_or(&[][..], |id| self.ancestor_ids(id));
        ids.iter().map(|&a| &*self.names[a as usize])
    }

    /// Whether a node says where a photo was taken rather than what it
    /// shows (Indoors, Outdoors, Nature and every name below them).
    pub(crate) fn is_setting_id(&self, id: u32) -> bool {
        self.setting.get(id as usize).copied().unwrap_or(false)
    }

    /// `is_setting_id` by name; unknown names are not settings.
    pub fn is_setting(&self, name: &str) -> bool {
        self.id(name).is_some_and(|id| self.is_setting_id(id))
    }

    /// Whether `maybe_ancestor` is a (transitive, strict) ancestor of `name`.
    pub fn is_ancestor(&self, maybe_ancestor: &str, name: &str) -> bool {
        match (self.id(maybe_ancestor), self.id(name)) {
            (Some(a), Some(n)) => self.ancestor_ids(n).contains(&a),
            _ => false,
        }
    }
}

/// Transitive parents of every node, breadth-first (nearest first); fails on
/// a cycle, which shipped data must never have.
fn closure(parents: &[Vec<u32>], names: &[Box<str>]) -> Result<Vec<Box<[u32]>>, TaxonomyError> {
    let n = parents.len();
    let mut seen = vec![usize::MAX; n];
    let mut out = Vec::with_capacity(n);
    for start in 0..n {
        let mut list: Vec<u32> = Vec::new();
        seen[start] = start;
        let mut head = 0;
        let mut frontier = vec![start as u32];
        while let Some(&current) = frontier.get(head) {
            head += 1;
            for &p in &parents[current as usize] {
                if p as usize == start {
                    return Err(TaxonomyError::Cycle(names[start].to_string()));
                }
                if seen[p as usize] != start {
                    seen[p as usize] = start;
                    list.push(p);
                    frontier.push(p);
                }
            }
        }
        out.push(list.into_boxed_slice());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names<'a>(t: &'a Taxonomy, name: &str) -> Vec<&'a str> {
        t.ancestors(name).collect()
    }

    /// Every rename is of a labels.json name to a name no other node has
    /// (the classifier would otherwise give two labels one name), every
    /// parent-only name is a node, and the taxonomy says the new names.
    #[test]
    fn local_names_rename_to_free_names_and_parent_only_names_exist() {
        let wordnet: WordNetFile = serde_json::from_str(LABELS_JSON).unwrap();
        let local = LocalNames::shipped();
        let old: std::collections::HashSet<&str> =
            wordnet.nodes.iter().map(|n| n.name.as_str()).collect();
        let mut new = std::collections::HashSet::new();
        for n in &wordnet.nodes {
            assert!(
                new.insert(local.name(&n.name).to_lowercase()),
                "{} twice",
                n.name
            );
        }
        for (from, to) in local.renames() {
            assert!(old.contains(from), "rename of unknown {from}");
            assert!(
                !old.contains(to) || local.name(to) != to,
                "{from} -> {to} collides"
            );
        }
        for (child, parent) in &local.drop_edges {
            let edge = wordnet.nodes.iter().any(|n| {
                local.name(&n.name) == child
                    && n.parents
                        .iter()
                        .any(|&p| local.name(&wordnet.nodes[p].name) == parent)
            });
            assert!(
                edge,
                "dropped edge {child} -> {parent} is no labels.json edge"
            );
        }
        for name in local.parent_only() {
            assert!(
                new.contains(&name.to_lowercase()),
                "parent-only {name} is no node"
            );
        }
        let t = Taxonomy::shipped();
        assert!(t.is_ancestor("Couch", "Studio Couch"));
        assert!(t.is_ancestor("Car", "Taxi"));
        assert!(t.is_ancestor("Cat", "Egyptian Cat"));
        assert!(t.is_ancestor("Hawk", "Kite (Bird)"));
        assert!(!t.is_ancestor("Hawk", "Kite") && t.id("Tandem Bicycle").is_some());
        assert!(!t.is_ancestor("Alcohol", "Cup"));
    }

    #[test]
    fn shipped_builds_and_merges_both_sources() {
        let t = Taxonomy::shipped();
        // 1602 WordNet nodes plus the everyday names it lacked.
        assert!(t.len() > 1602, "{}", t.len());
        assert_eq!(t.canonical("tabby"), Some("Tabby"));
        assert_eq!(t.canonical("FACE"), Some("Face"));
    }

    #[test]
    fn everyday_parents_hold() {
        let t = Taxonomy::shipped();
        for (child, parent) in [
            ("Cat", "Feline"),
            ("Cat", "Pet"),
            ("Cat", "Mammal"),
            ("Cat", "Animal"),
            ("Feline", "Mammal"),
            ("Feline", "Animal"),
            ("Feline", "Pet"),
            ("Dog", "Canine"),
            ("Dog", "Pet"),
            ("Puppy", "Dog"),
            ("Car", "Vehicle"),
            ("Car", "Transportation"),
            ("Shirt", "Clothing"),
            ("Coffee", "Beverage"),
            ("Espresso", "Coffee"),
            ("Cup", "Tableware"),
            ("Laptop", "Electronics"),
            ("Rose", "Plant"),
            ("Tabby", "Pet"),
            ("Tabby", "Feline"),
        ] {
            assert!(
                t.is_ancestor(parent, child),
                "{parent} should be above {child}"
            );
            assert!(
                !t.is_ancestor(child, parent),
                "{child} must not be above {parent}"
            );
        }
    }

    #[test]
    fn contract_examples_stay_flat_where_they_must() {
        let t = Taxonomy::shipped();
        // Parts are not kinds: a face is not a person, a cup not a drink.
        assert!(!t.is_ancestor("Person", "Face"));
        assert!(!t.is_ancestor("Beverage", "Cup"));
        assert!(!t.is_ancestor("Coffee", "Cup"));
        assert!(!t.is_ancestor("Cup", "Saucer"));
        assert!(!t.is_ancestor("Food", "Plate"));
        assert_eq!(names(t, "Person"), Vec::<&str>::new());
    }

    #[test]
    fn names_are_case_insensitive_and_aliases_resolve() {
        let t = Taxonomy::shipped();
        assert_eq!(t.id("feline"), t.id("Feline"));
        assert_eq!(t.id("FeLiNe"), t.id("Feline"));
        assert_eq!(t.id("Human"), t.id("Person"));
        assert_eq!(t.canonical("apparel"), Some("Clothing"));
        assert_eq!(t.canonical("sofa"), Some("Couch"));
        assert!(t.is_ancestor("apparel", "shirt"));
        assert!(t.is_ancestor("human", "woman"));
        assert!(t.is_ancestor("Furniture", "Sofa"));
    }

    #[test]
    fn settings_are_marked_with_their_descendants() {
        let t = Taxonomy::shipped();
        for s in [
            "Indoors",
            "outdoors",
            "Nature",
            "Kitchen",
            "Landscape",
            "Street",
        ] {
            assert!(t.is_setting(s), "{s}");
        }
        for s in ["Cat", "Person", "Animal", "Car", "Zorblax"] {
            assert!(!t.is_setting(s), "{s}");
        }
    }

    #[test]
    fn unknown_names_have_no_ancestors() {
        let t = Taxonomy::shipped();
        assert_eq!(t.id("Zorblax"), None);
        assert_eq!(t.ancestors("Zorblax").count(), 0);
        assert!(!t.is_ancestor("Animal", "Zorblax"));
        assert!(!t.is_ancestor("Zorblax", "Cat"));
    }

    #[test]
    fn ancestors_are_nearest_first_and_unique() {
        let t = Taxonomy::shipped();
        let a = names(t, "Kitten");
        assert_eq!(a.first(), Some(&"Cat"));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), a.len(), "{a:?}");
        assert!(t.parent_ids(t.id("Kitten").unwrap()).len() <= a.len());
    }

    const WN: &str = r#"{"format":1,"nodes":[
        {"wnid":"n1","name":"A","parents":[]},
        {"wnid":"n2","name":"B","parents":[0]},
        {"wnid":"n3","name":"C","parents":[1]}]}"#;

    #[test]
    fn drop_edges_and_alias_merges_apply() {
        let every = r#"{"format":1,"labels":[{"name":"D","parents":["a"]}],
            "aliases":{"C":"D"},"drop_edges":[["B","A"]]}"#;
        let t = Taxonomy::from_sources(WN, every).unwrap();
        assert!(!t.is_ancestor("A", "B"));
        // The WordNet C merged into D: D has both C's parent B and its own A.
        assert_eq!(t.id("c"), t.id("D"));
        assert!(t.is_ancestor("B", "D"));
        assert!(t.is_ancestor("A", "D"));
    }

    #[test]
    fn cycles_and_bad_data_are_errors() {
        let every = r#"{"format":1,"labels":[{"name":"A","parents":["C"]}]}"#;
        assert!(matches!(
            Taxonomy::from_sources(WN, every),
            Err(TaxonomyError::Cycle(_))
        ));
        let empty = r#"{"format":1,"labels":[]}"#;
        let bad = r#"{"format":1,"nodes":[{"wnid":"x","name":"A","parents":[5]}]}"#;
        assert_eq!(
            Taxonomy::from_sources(bad, empty).unwrap_err(),
            TaxonomyError::BadParent { node: 0, parent: 5 }
        );
        assert!(matches!(
            Taxonomy::from_sources(WN, r#"{"format":2,"labels":[]}"#),
            Err(TaxonomyError::Format(2))
        ));
        assert!(matches!(
            Taxonomy::from_sources("[]", empty),
            Err(TaxonomyError::Json(_))
        ));
        // A self-edge is ignored rather than a cycle.
        let selfish = r#"{"format":1,"labels":[{"name":"A","parents":["a"]}]}"#;
        let t = Taxonomy::from_sources(WN, selfish).unwrap();
        assert!(!t.is_ancestor("A", "A"));
    }
}
