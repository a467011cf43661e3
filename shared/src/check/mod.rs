//! Checks that linuxkit makes only at build time, made statically here.
//!
//! Every check reads the typed [`Spec`] and reports by key path; the
//! position comes from the document tree. A problem under a path that
//! already has a structural error (a wrong type, say) is not reported
//! twice.

mod entries;
mod files;
mod refs;
mod volumes;

use std::collections::HashMap;

use crate::ids::IdTable;
use crate::path::Seg;
use crate::tree::{Node, Value};
use crate::{Code, Diagnostic, KeyPath, Pos, Spec};

/// One parsed file taking part in a check.
pub(crate) struct Doc<'a> {
    pub tree: &'a Node,
    pub spec: &'a Spec,
    /// Paths that already carry a structural error.
    pub structural: Vec<KeyPath>,
}

/// Runs every check over `docs`, as if they were merged in order.
/// Returns each diagnostic with the index of the document it belongs to.
pub(crate) fn run(docs: &[Doc<'_>]) -> Vec<(usize, Diagnostic)> {
    let mut checker = Checker {
        docs,
        ids: IdTable::for_specs(docs.iter().map(|d| d.spec)),
        volumes: volumes::table(docs),
        out: Vec::new(),
    };
    refs::check(&mut checker);
    volumes::check(&mut checker);
    entries::check(&mut checker);
    files::check(&mut checker);
    checker.out
}

pub(crate) struct Checker<'a> {
    docs: &'a [Doc<'a>],
    ids: IdTable,
    /// Volume name to read-only flag, later files winning as in linuxkit.
    volumes: HashMap<String, bool>,
    out: Vec<(usize, Diagnostic)>,
}

impl Checker<'_> {
    fn report(&mut self, doc: usize, code: Code, path: KeyPath, message: impl Into<String>) {
        let d = &self.docs[doc];
        let shadowed = d.structural.iter().any(|s| {
            let (s, p) = (s.segs(), path.segs());
            s.len() <= p.len() && s == &p[..s.len()]
        });
        if shadowed {
            return;
        }
        let pos = locate(d.tree, &path);
        self.out
            .push((doc, Diagnostic::new(code, pos, path.to_string(), message)));
    }
}

/// The position of the value at `path`, or of the deepest part of it that
/// exists.
pub(crate) fn locate(root: &Node, path: &KeyPath) -> Pos {
    let mut node = root;
    for seg in path.segs() {
        let next = match (seg, &node.value) {
            (Seg::Key(key), Value::Map(_)) => node.get(key).map(|(_, v)| v),
            (Seg::Index(i), Value::Seq(items)) => items.get(*i),
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => break,
        }
    }
    node.pos
}
