//! The headline label of a document: its main subject, as specifically as
//! the detector named it. This is what an operator audits, what statuses,
//! `ls`, `--below` and the TUI's sort use (docs/format.md, "The headline label").
//!
//! The labels form a forest: a label's ancestors are its `Parents` when the
//! document gives them, otherwise what the [`Taxonomy`] knows of its name;
//! only ancestors that are labels of the same document count. A root has no
//! such ancestor; a label's depth is its longest chain of ancestors in the
//! document. From the most confident root, the headline is the deepest label
//! below it (ties: higher confidence, then document order), or the root
//! itself.
//!
//! Two refinements keep the rule total and honest:
//! - The starting root is the most confident root that is not a *setting*
//!   (Indoors, Outdoors, Nature... see [`Taxonomy::is_setting`]); only when
//!   every root is a setting does a setting start. Otherwise a sure
//!   "Indoors 99.5" would hide the weak "Feline 65.3" of the seed's cat.
//! - Names are compared case-insensitively and through the taxonomy's
//!   aliases; labels sharing a name are one node, represented by the most
//!   confident of them. `Parents` cycles (a label its own parent, A -> B ->
//!   A) are collapsed: the labels of a cycle are peers at the same depth.
//!
//! Cost: O(labels + parent references), so 300,000 labels are fine.

use std::collections::HashMap;

use crate::contract::{Label, MetadataDoc};
use crate::taxonomy::Taxonomy;

// Here, not in `contract`: the document's shape does not depend on the
// rule that reads it.
impl MetadataDoc {
    /// The headline label (docs/format.md): the main subject as
    /// specifically as the detector named it. It decides the status and is
    /// what every front end shows, sorts and filters by.
    pub fn headline(&self) -> Option<&Label> {
        headline_of(self).map(|h| h.label(&self.labels))
    }
}

/// The headline of a document's labels. Indices are into the label slice
/// given to [`headline`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headline {
    /// The headline label.
    pub index: usize,
    /// The root it was found from (equal to `index` when nothing is below).
    pub root: usize,
    /// Its depth: the longest chain of its ancestors within the document.
    pub depth: u32,
    /// A chain of labels from `root` down to `index` (both included), for
    /// showing e.g. "Animal > Mammal > Feline".
    pub chain: Vec<usize>,
}

impl Headline {
    /// The headline label itself.
    pub fn label<'a>(&self, labels: &'a [Label]) -> &'a Label {
        &labels[self.index]
    }

    /// The headline's name, as the document spells it.
    pub fn name<'a>(&self, labels: &'a [Label]) -> &'a str {
        &labels[self.index].name
    }

    /// The headline's confidence (0-100).
    pub fn confidence(&self, labels: &[Label]) -> f32 {
        labels[self.index].confidence
    }

    /// Whether the headline is below the review threshold.
    pub fn is_weak(&self, labels: &[Label], review_below: f32) -> bool {
        self.confidence(labels) < review_below
    }
}

/// The headline of `labels` (see the module documentation); `None` only for
/// an empty slice.
pub fn headline(labels: &[Label], taxonomy: &Taxonomy) -> Option<Headline> {
    if labels.is_empty() {
        return None;
    }
    let forest = Forest::build(labels, taxonomy);
    Some(forest.headline(labels))
}

/// [`headline`] of a document's labels with the shipped taxonomy.
pub fn headline_of(doc: &MetadataDoc) -> Option<Headline> {
    headline(&doc.labels, Taxonomy::shipped())
}

/// The label an operator should look at: the headline when it is below
/// `review_below` (e.g. `Feline 65.3` of the seed's cat), else `None`.
pub fn weak_specific(labels: &[Label], taxonomy: &Taxonomy, review_below: f32) -> Option<usize> {
    headline(labels, taxonomy)
        .filter(|h| h.is_weak(labels, review_below))
        .map(|h| h.index)
}

/// How a name is matched: the taxonomy's node when it knows the name (so
/// aliases meet), else the lower-cased text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Known(u32),
    Unknown(Box<str>),
}

fn key_of(name: &str, taxonomy: &Taxonomy) -> Key {
    let lower = name.trim().to_lowercase();
    match taxonomy.id(&lower) {
        Some(id) => Key::Known(id),
        None => Key::Unknown(lower.into()),
    }
}

/// The document's labels as a graph of distinct names (nodes), with edges
/// from each node to its ancestors among them, condensed into strongly
/// connected components so that `Parents` cycles cannot loop.
struct Forest {
    /// Per node: the label that represents it (most confident, then first).
    rep: Vec<usize>,
    setting: Vec<bool>,
    /// Per node: ancestor nodes, CSR (`edges[start[n]..start[n + 1]]`).
    start: Vec<usize>,
    edges: Vec<u32>,
    /// Per node: its component; components are numbered ancestors first.
    comp: Vec<u32>,
    /// Per component: depth, and whether it has an ancestor component.
    depth: Vec<u32>,
    has_parent: Vec<bool>,
}

impl Forest {
    fn build(labels: &[Label], taxonomy: &Taxonomy) -> Forest {
        let mut nodes: HashMap<Key, u32> = HashMap::with_capacity(labels.len());
        let mut rep: Vec<usize> = Vec::new();
        let mut keys: Vec<Key> = Vec::new();
        let mut node_of = Vec::with_capacity(labels.len());
        for (i, label) in labels.iter().enumerate() {
            let key = key_of(&label.name, taxonomy);
            let n = *nodes.entry(key.clone()).or_insert_with(|| {
                rep.push(i);
                keys.push(key);
                (rep.len() - 1) as u32
            });
            // Strictly greater: on a tie the first label keeps the node.
            if label.confidence > labels[rep[n as usize]].confidence {
                rep[n as usize] = i;
            }
            node_of.push(n);
        }
        // A document's own aliases also name its labels, where free.
        for (i, label) in labels.iter().enumerate() {
            for alias in &label.aliases {
                nodes
                    .entry(key_of(&alias.name, taxonomy))
                    .or_insert(node_of[i]);
            }
        }
        let setting = keys
            .iter()
            .map(|k| matches!(k, Key::Known(id) if taxonomy.is_setting_id(*id)))
            .collect();
        let (start, edges) = ancestor_edges(labels, taxonomy, &nodes, &node_of, &keys);
        let mut forest = Forest {
            rep,
            setting,
            start,
            edges,
            comp: Vec::new(),
            depth: Vec::new(),
            has_parent: Vec::new(),
        };
        forest.condense();
        forest
    }

    fn parents(&self, n: usize) -> &[u32] {
        &self.edges[self.start[n]..self.start[n + 1]]
    }

    /// Tarjan's algorithm, iterative (300k-deep chains must not overflow the
    /// stack). It completes a component only after every component its
    /// nodes point to, so components come out ancestors first and depths
    /// can be computed as they complete.
    fn condense(&mut self) {
        let n = self.rep.len();
        const UNSEEN: u32 = u32::MAX;
        let mut order = vec![UNSEEN; n];
        let mut low = vec![0u32; n];
        let mut on_stack = vec![false; n];
        let mut stack: Vec<u32> = Vec::new();
        let mut comp = vec![UNSEEN; n];
        let mut next = 0u32;
        // (node, position in its edge list)
        let mut calls: Vec<(u32, usize)> = Vec::new();
        let mut members: Vec<u32> = Vec::new();
        for s in 0..n as u32 {
            if order[s as usize] != UNSEEN {
                continue;
            }
            calls.push((s, 0));
            order[s as usize] = next;
            low[s as usize] = next;
            next += 1;
            stack.push(s);
            on_stack[s as usize] = true;
            while let Some(&mut (v, ref mut pos)) = calls.last_mut() {
                let vu = v as usize;
                if let Some(&w) = self.parents(vu).get(*pos) {
                    *pos += 1;
                    let wu = w as usize;
                    if order[wu] == UNSEEN {
                        order[wu] = next;
                        low[wu] = next;
                        next += 1;
                        stack.push(w);
                        on_stack[wu] = true;
                        calls.push((w, 0));
                    } else if on_stack[wu] {
                        low[vu] = low[vu].min(order[wu]);
                    }
                    continue;
                }
                calls.pop();
                if let Some(&(parent, _)) = calls.last() {
                    low[parent as usize] = low[parent as usize].min(low[vu]);
                }
                if low[vu] == order[vu] {
                    let first = stack
                        .iter()
                        .rposition(|&x| x == v)
                        .expect("v is on the stack");
                    members.clear();
                    members.extend(stack.drain(first..));
                    let c = self.depth.len() as u32;
                    for &x in &members {
                        on_stack[x as usize] = false;
                        comp[x as usize] = c;
                    }
                    self.finish_component(c, &members, &comp);
                }
            }
        }
        self.comp = comp;
    }

    /// Depth of a just-completed component: one more than its deepest
    /// ancestor component, all of which are complete already.
    fn finish_component(&mut self, c: u32, members: &[u32], comp: &[u32]) {
        let mut depth = 0;
        let mut has_parent = false;
        for &x in members {
            for &w in self.parents(x as usize) {
                let wc = comp[w as usize];
                if wc != c {
                    has_parent = true;
                    depth = depth.max(self.depth[wc as usize].saturating_add(1));
                }
            }
        }
        self.depth.push(depth);
        self.has_parent.push(has_parent);
    }

    /// Nodes grouped by component (CSR), components in ancestors-first order.
    fn members(&self) -> (Vec<usize>, Vec<u32>) {
        let comps = self.depth.len();
        let mut start = vec![0usize; comps + 1];
        for &c in &self.comp {
            start[c as usize + 1] += 1;
        }
        for c in 0..comps {
            start[c + 1] += start[c];
        }
        let mut fill = start.clone();
        let mut nodes = vec![0u32; self.comp.len()];
        for (n, &c) in self.comp.iter().enumerate() {
            nodes[fill[c as usize]] = n as u32;
            fill[c as usize] += 1;
        }
        (start, nodes)
    }

    /// Orders candidates: greater is better. Higher confidence, then the
    /// label that comes first in the document.
    fn rank(&self, labels: &[Label], n: u32) -> (f32, std::cmp::Reverse<usize>) {
        let i = self.rep[n as usize];
        (labels[i].confidence, std::cmp::Reverse(i))
    }

    fn better(&self, labels: &[Label], a: u32, b: u32) -> bool {
        let (ca, ia) = self.rank(labels, a);
        let (cb, ib) = self.rank(labels, b);
        ca.total_cmp(&cb).then(ia.cmp(&ib)).is_gt()
    }

    fn headline(&self, labels: &[Label]) -> Headline {
        // The starting root: not a setting if any root is not, then the
        // most confident, then the first.
        let mut root: Option<u32> = None;
        for n in 0..self.rep.len() as u32 {
            if self.has_parent[self.comp[n as usize] as usize] {
                continue;
            }
            root = match root {
                None => Some(n),
                Some(r) => {
                    let (sn, sr) = (self.setting[n as usize], self.setting[r as usize]);
                    let wins = (sr && !sn) || (sn == sr && self.better(labels, n, r));
                    Some(if wins { n } else { r })
                }
            };
        }
        // Components never form a cycle, so some component has no parent.
        let root = root.expect("a non-empty forest has a root");
        let root_comp = self.comp[root as usize];
        let (start, members) = self.members();
        let group = |c: u32| &members[start[c as usize]..start[c as usize + 1]];
        // Components are ancestors first, so one pass marks every
        // component below the root.
        let mut below = vec![false; self.depth.len()];
        for c in root_comp..self.depth.len() as u32 {
            below[c as usize] = c == root_comp
                || group(c).iter().any(|&x| {
                    self.parents(x as usize)
                        .iter()
                        .any(|&w| below[self.comp[w as usize] as usize])
                });
        }
        let deeper = |a: u32, b: u32| {
            let (da, db) = (self.depth_of(a), self.depth_of(b));
            da > db || (da == db && self.better(labels, a, b))
        };
        let mut best = root;
        for c in root_comp..self.depth.len() as u32 {
            if below[c as usize] {
                for &x in group(c) {
                    if deeper(x, best) {
                        best = x;
                    }
                }
            }
        }
        // Walk back up: from each component, its deepest parent below the
        // root. Depth falls by at least one per step, so this ends.
        let mut chain = vec![best];
        let mut c = self.comp[best as usize];
        while c != root_comp {
            let mut up: Option<u32> = None;
            for &x in group(c) {
                for &w in self.parents(x as usize) {
                    let wc = self.comp[w as usize];
                    if wc != c && below[wc as usize] && up.is_none_or(|u| deeper(w, u)) {
                        up = Some(w);
                    }
                }
            }
            let up = up.expect("a component below the root has a parent below it");
            chain.push(up);
            c = self.comp[up as usize];
        }
        if chain.last() != Some(&root) {
            chain.push(root);
        }
        chain.reverse();
        Headline {
            index: self.rep[best as usize],
            root: self.rep[root as usize],
            depth: self.depth_of(best),
            chain: chain.into_iter().map(|n| self.rep[n as usize]).collect(),
        }
    }

    fn depth_of(&self, n: u32) -> u32 {
        self.depth[self.comp[n as usize] as usize]
    }
}

/// Ancestor edges of every node, as CSR. A node's ancestors are the union of
/// the `Parents` of its labels when any label gives some, else the
/// taxonomy's ancestors of its name; either way only nodes of the document
/// count, and a node is never its own parent.
fn ancestor_edges(
    labels: &[Label],
    taxonomy: &Taxonomy,
    nodes: &HashMap<Key, u32>,
    node_of: &[u32],
    keys: &[Key],
) -> (Vec<usize>, Vec<u32>) {
    let n = keys.len();
    let mut given: Vec<Vec<u32>> = vec![Vec::new(); n];
    let mut has_given = vec![false; n];
    for (i, label) in labels.iter().enumerate() {
        let me = node_of[i];
        if !label.parents.is_empty() {
            has_given[me as usize] = true;
        }
        for p in &label.parents {
            if let Some(&pn) = nodes.get(&key_of(&p.name, taxonomy))
                && pn != me
            {
                given[me as usize].push(pn);
            }
        }
    }
    let mut start = Vec::with_capacity(n + 1);
    let mut edges = Vec::new();
    for (me, key) in keys.iter().enumerate() {
        start.push(edges.len());
        let before = edges.len();
        if has_given[me] {
            edges.extend_from_slice(&given[me]);
        } else if let Key::Known(id) = key {
            edges.extend(
                taxonomy
                    .ancestor_ids(*id)
                    .iter()
                    .filter_map(|a| nodes.get(&Key::Known(*a)).copied())
                    .filter(|&pn| pn as usize != me),
            );
        }
        let mine = &mut edges[before..];
        mine.sort_unstable();
        let unique = dedup_sorted(mine);
        edges.truncate(before + unique);
    }
    start.push(edges.len());
    (start, edges)
}

/// Moves the distinct values of a sorted slice to its front; returns their
/// count.
fn dedup_sorted(v: &mut [u32]) -> usize {
    let mut kept = 0;
    for i in 0..v.len() {
        if kept == 0 || v[kept - 1] != v[i] {
            v[kept] = v[i];
            kept += 1;
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::NameRef;

    fn l(name: &str, confidence: f32) -> Label {
        Label::new(name, confidence)
    }

    fn lp(name: &str, confidence: f32, parents: &[&str]) -> Label {
        let mut label = Label::new(name, confidence);
        label.parents = parents.iter().map(|p| NameRef::new(*p)).collect();
        label
    }

    /// (name, confidence) of the headline with the shipped taxonomy.
    fn head(labels: &[Label]) -> (String, f32) {
        let h = headline(labels, Taxonomy::shipped()).expect("non-empty");
        (h.name(labels).to_string(), h.confidence(labels))
    }

    fn seed_cat() -> Vec<Label> {
        vec![
            l("Animal", 98.2),
            l("Mammal", 95.7),
            l("Pet", 91.4),
            l("Feline", 65.3),
        ]
    }

    #[test]
    fn empty_has_no_headline() {
        assert_eq!(headline(&[], Taxonomy::shipped()), None);
    }

    #[test]
    fn seed_cat_headline_is_the_weak_feline() {
        let labels = seed_cat();
        let h = headline(&labels, Taxonomy::shipped()).unwrap();
        assert_eq!((h.index, h.root, h.depth), (3, 0, 2));
        assert_eq!(h.chain.first(), Some(&0));
        assert_eq!(h.chain.last(), Some(&3));
        assert_eq!(h.chain.len(), 3);
        assert!(h.is_weak(&labels, 70.0));
        assert_eq!(weak_specific(&labels, Taxonomy::shipped(), 70.0), Some(3));
        assert_eq!(weak_specific(&labels, Taxonomy::shipped(), 60.0), None);
    }

    #[test]
    fn explicit_cat_is_the_headline() {
        let mut labels = seed_cat();
        labels.push(lp("Cat", 92.5, &["Feline", "Mammal", "Animal", "Pet"]));
        assert_eq!(head(&labels), ("Cat".into(), 92.5));
        // Without Parents, the taxonomy puts Cat below Feline too.
        labels[4].parents.clear();
        assert_eq!(head(&labels), ("Cat".into(), 92.5));
    }

    #[test]
    fn weak_detail_of_a_lesser_subject_does_not_win() {
        let labels = vec![
            l("Person", 99.1),
            l("Clothing", 88.0),
            lp("Shirt", 61.0, &["Clothing"]),
            l("Face", 80.2),
        ];
        assert_eq!(head(&labels), ("Person".into(), 99.1));
    }

    #[test]
    fn coffee_not_cup() {
        let labels = vec![
            l("Beverage", 97.4),
            lp("Coffee", 95.1, &["Beverage"]),
            l("Cup", 93.8),
            l("Saucer", 71.0),
        ];
        assert_eq!(head(&labels), ("Coffee".into(), 95.1));
    }

    #[test]
    fn a_sure_setting_does_not_hide_the_weak_subject() {
        // Plain "most confident root" would answer Indoors 99.5, tagged.
        let mut labels = seed_cat();
        labels.insert(0, l("Indoors", 99.5));
        labels.push(l("Room", 97.0));
        assert_eq!(head(&labels), ("Feline".into(), 65.3));
        // Only settings: the headline is still found among them.
        let scene = vec![l("Nature", 99.0), l("Outdoors", 98.0), l("Mountain", 90.0)];
        assert_eq!(head(&scene), ("Mountain".into(), 90.0));
    }

    #[test]
    fn unknown_names_are_their_own_roots() {
        let labels = vec![l("Zorblax", 80.0), l("Quux", 90.0), l("Frob", 90.0)];
        let h = headline(&labels, Taxonomy::shipped()).unwrap();
        // Equal confidence: the first in document order.
        assert_eq!((h.index, h.root, h.depth), (1, 1, 0));
        assert_eq!(h.chain, vec![1]);
    }

    #[test]
    fn unknown_names_link_through_given_parents() {
        let labels = vec![
            l("Zorblax", 99.0),
            lp("Frob", 60.0, &["zorblax"]),
            lp("Quux", 50.0, &["Frob", "Zorblax"]),
        ];
        let h = headline(&labels, Taxonomy::shipped()).unwrap();
        assert_eq!((h.index, h.depth), (2, 2));
        assert_eq!(h.chain, vec![0, 1, 2]);
    }

    #[test]
    fn names_compare_case_insensitively_and_through_aliases() {
        let labels = vec![
            l("animal", 98.2),
            l("MAMMAL", 95.7),
            l("pet", 91.4),
            l("feline", 65.3),
        ];
        assert_eq!(head(&labels), ("feline".into(), 65.3));
        let labels = vec![l("Human", 99.0), l("Woman", 60.0)];
        assert_eq!(head(&labels), ("Woman".into(), 60.0));
        let labels = vec![
            l("Person", 99.0),
            lp("Shirt", 60.0, &["Apparel"]),
            l("clothing", 90.0),
        ];
        assert_eq!(head(&labels), ("Person".into(), 99.0));
        let h = headline(&labels, Taxonomy::shipped()).unwrap();
        assert_eq!(h.depth, 0);
    }

    #[test]
    fn duplicate_names_are_one_node_shown_by_the_most_confident() {
        let labels = vec![
            l("Animal", 90.0),
            l("Feline", 40.0),
            l("FELINE", 66.0),
            l("feline", 66.0),
        ];
        let h = headline(&labels, Taxonomy::shipped()).unwrap();
        assert_eq!((h.index, h.depth), (2, 1));
        assert_eq!(h.chain, vec![0, 2]);
    }

    #[test]
    fn own_parent_is_ignored() {
        let labels = vec![
            lp("Cat", 90.0, &["Cat"]),
            lp("Kitten", 50.0, &["cat", "Kitten"]),
        ];
        let h = headline(&labels, Taxonomy::shipped()).unwrap();
        assert_eq!((h.index, h.root, h.depth), (1, 0, 1));
    }

    #[test]
    fn parents_cycles_terminate_and_make_peers() {
        // A -> B -> A, and C below A: the cycle is one root component.
        let labels = vec![
            lp("A", 80.0, &["B"]),
            lp("B", 90.0, &["A"]),
            lp("C", 70.0, &["A"]),
        ];
        let h = headline(&labels, Taxonomy::shipped()).unwrap();
        assert_eq!((h.index, h.root, h.depth), (2, 1, 1));
        assert_eq!(h.chain, vec![1, 0, 2]);
        // A cycle with nothing outside it: its most confident member.
        let labels = vec![
            lp("X", 50.0, &["Y"]),
            lp("Y", 60.0, &["Z"]),
            lp("Z", 55.0, &["X"]),
        ];
        let h = headline(&labels, Taxonomy::shipped()).unwrap();
        assert_eq!((h.index, h.root, h.depth), (1, 1, 0));
        assert_eq!(h.chain, vec![1]);
    }

    #[test]
    fn given_parents_override_the_taxonomy() {
        // The document says Feline is a root here; the taxonomy is not asked.
        let labels = vec![l("Animal", 99.0), lp("Feline", 90.0, &["Nonexistent"])];
        let h = headline(&labels, Taxonomy::shipped()).unwrap();
        assert_eq!((h.index, h.depth), (0, 0));
    }

    #[test]
    fn deepest_wins_over_more_confident_shallower() {
        let labels = vec![
            l("Animal", 99.0),
            l("Mammal", 98.0),
            l("Dog", 97.0),
            l("Bird", 96.0),
            l("Puppy", 50.0),
        ];
        let h = headline(&labels, Taxonomy::shipped()).unwrap();
        assert_eq!((h.index, h.depth), (4, 3));
        assert_eq!(h.chain, vec![0, 1, 2, 4]);
    }

    #[test]
    fn long_chains_and_many_labels_complete() {
        // A 300,000-deep Parents chain: iterative, no stack overflow.
        let n: usize = 300_000;
        let mut labels: Vec<Label> = (0..n)
            .map(|i| {
                lp(
                    &format!("n{i}"),
                    50.0,
                    &[&format!("n{}", i.saturating_sub(1))],
                )
            })
            .collect();
        labels[0].parents.clear();
        let h = headline(&labels, Taxonomy::shipped()).unwrap();
        assert_eq!((h.index, h.depth), (n - 1, (n - 1) as u32));
        assert_eq!(h.chain.len(), n);
    }
}
