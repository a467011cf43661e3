//! Which entries of a lower layer survive the layers above it.
//!
//! Layers are walked from the top down and numbered in that order (0 is the
//! top layer). The tree remembers, per clean path:
//!
//! * the entry taken for it (topmost wins) and whether it is a directory;
//! * a whiteout (`.wh.<name>`): hides the path and everything below it;
//! * an opaque marker (`.wh..wh..opq`): hides everything below the path;
//! * the topmost layer with a taken entry below it (an implicit directory).
//!
//! Whiteouts and opaque markers only apply to *lower* layers (OCI image
//! spec: "files that are present in the same layer as a whiteout file can
//! only be hidden by whiteout files in subsequent layers"). A taken
//! non-directory hides anything below it in lower layers.
//!
//! Memory grows with the number of distinct paths, never with file sizes.

use std::collections::HashMap;

use super::error::FlattenErrorKind;
use super::sanitize::ancestors;

/// An entry taken for a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    /// The layer (walk order) it came from.
    pub layer: u32,
    /// Whether it is (after the filter) a directory.
    pub dir: bool,
    /// Whether it reached the sink (false for names the filter drops).
    pub written: bool,
}

#[derive(Debug, Default)]
struct Node {
    taken: Option<Taken>,
    whiteout: Option<u32>,
    opaque: Option<u32>,
    below: Option<u32>,
}

/// What to do with an entry of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Hidden by a layer above: whiteout, opaque directory, a non-directory
    /// parent, or the same path already taken.
    Hidden,
    /// A non-directory where an upper layer has entries below: the upper
    /// layer made the path a directory, so this entry is dropped.
    Shadowed,
    /// Emit it. `duplicate` when the same layer already had this path (the
    /// later entry wins, as on tar extraction).
    Take { duplicate: bool },
}

/// The walk state.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    nodes: HashMap<String, Node>,
}

fn above(mark: Option<u32>, layer: u32) -> bool {
    mark.is_some_and(|m| m < layer)
}

impl Tree {
    /// Decides the fate of an entry at the clean, non-empty `path` of layer
    /// `layer`. Errors for layers that contradict themselves.
    pub(crate) fn decide(
        &self,
        path: &str,
        is_dir: bool,
        layer: u32,
    ) -> Result<Decision, FlattenErrorKind> {
        for ancestor in ancestors(path) {
            let Some(node) = self.nodes.get(ancestor) else {
                continue;
            };
            if above(node.whiteout, layer) || above(node.opaque, layer) {
                return Ok(Decision::Hidden);
            }
            if let Some(t) = node.taken {
                if !t.dir {
                    if t.layer < layer {
                        return Ok(Decision::Hidden);
                    }
                    return Err(FlattenErrorKind::AncestorNotDirectory {
                        ancestor: ancestor.to_owned(),
                    });
                }
            }
        }
        let Some(node) = self.nodes.get(path) else {
            return Ok(Decision::Take { duplicate: false });
        };
        if above(node.whiteout, layer) {
            return Ok(Decision::Hidden);
        }
        let duplicate = match node.taken {
            Some(t) if t.layer < layer => return Ok(Decision::Hidden),
            Some(_) => true,
            None => false,
        };
        if !is_dir {
            if above(node.below, layer) {
                return Ok(Decision::Shadowed);
            }
            if node.below.is_some() {
                return Err(FlattenErrorKind::PathConflict);
            }
        }
        Ok(Decision::Take { duplicate })
    }

    /// Records the entry taken for `path`.
    pub(crate) fn take(&mut self, path: &str, layer: u32, dir: bool, written: bool) {
        self.node(path).taken = Some(Taken {
            layer,
            dir,
            written,
        });
        for ancestor in ancestors(path).filter(|a| !a.is_empty()) {
            let node = self.node(ancestor);
            node.below.get_or_insert(layer);
        }
    }

    /// Records a whiteout of `path` in `layer`.
    pub(crate) fn whiteout(&mut self, path: &str, layer: u32) {
        self.node(path).whiteout.get_or_insert(layer);
    }

    /// Records an opaque marker for the directory `path` (`""` is the root).
    pub(crate) fn opaque(&mut self, path: &str, layer: u32) {
        self.node(path).opaque.get_or_insert(layer);
    }

    /// The entry taken for `path`, if any.
    pub(crate) fn taken(&self, path: &str) -> Option<Taken> {
        self.nodes.get(path).and_then(|n| n.taken)
    }

    fn node(&mut self, path: &str) -> &mut Node {
        // Look up first so the common case allocates nothing.
        if !self.nodes.contains_key(path) {
            self.nodes.insert(path.to_owned(), Node::default());
        }
        self.nodes.get_mut(path).expect("inserted above")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topmost_wins_and_whiteouts_apply_below() {
        let mut t = Tree::default();
        assert_eq!(
            t.decide("a", false, 0).unwrap(),
            Decision::Take { duplicate: false }
        );
        t.take("a", 0, false, true);
        t.whiteout("b", 0);
        t.opaque("d", 0);
        // Same layer: whiteouts do not apply, duplicates are flagged.
        assert_eq!(
            t.decide("b", false, 0).unwrap(),
            Decision::Take { duplicate: false }
        );
        assert_eq!(
            t.decide("a", false, 0).unwrap(),
            Decision::Take { duplicate: true }
        );
        assert_eq!(
            t.decide("d/x", false, 0).unwrap(),
            Decision::Take { duplicate: false }
        );
        // Lower layer.
        assert_eq!(t.decide("a", false, 1).unwrap(), Decision::Hidden);
        assert_eq!(t.decide("a/x", false, 1).unwrap(), Decision::Hidden);
        assert_eq!(t.decide("b", true, 1).unwrap(), Decision::Hidden);
        assert_eq!(t.decide("b/c", false, 1).unwrap(), Decision::Hidden);
        assert_eq!(t.decide("d/x", false, 1).unwrap(), Decision::Hidden);
        assert_eq!(
            t.decide("d", true, 1).unwrap(),
            Decision::Take { duplicate: false }
        );
    }

    #[test]
    fn same_layer_contradictions() {
        let mut t = Tree::default();
        t.take("s", 0, false, true);
        assert!(matches!(
            t.decide("s/x", false, 0),
            Err(FlattenErrorKind::AncestorNotDirectory { .. })
        ));
        t.take("d/x", 0, false, true);
        assert!(matches!(
            t.decide("d", false, 0),
            Err(FlattenErrorKind::PathConflict)
        ));
        assert_eq!(t.decide("d", false, 1).unwrap(), Decision::Shadowed);
        assert_eq!(
            t.decide("d", true, 1).unwrap(),
            Decision::Take { duplicate: false }
        );
    }
}
