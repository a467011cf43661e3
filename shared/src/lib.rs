//! kiln's spec model: parse, validate and merge LinuxKit YAML.
//!
//! Everything here is a pure function of its input: no I/O, no clock, no
//! threads, so the same code runs in the CLI, the server and the browser
//! (wasm32). Parsing never fails outright: it returns what it could make of
//! the input together with every problem it found.

pub mod caps;
mod check;
mod de;
mod diagnostic;
pub mod ids;
mod merge;
pub mod mode;
pub mod model;
pub mod mounts;
pub mod namespace;
pub mod path;
pub mod reference;
pub mod rlimit;
mod schema;
pub mod tree;

pub use diagnostic::{Code, Diagnostic, Pos, Severity};
pub use model::{FileEntry, IdRef, ImageEntry, Kernel, Spec, Volume};
pub use path::KeyPath;
pub use schema::json_schema;

use crate::tree::Node;

/// One spec file's text and the name to report it under.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

/// The outcome of validating one or more files.
#[derive(Debug, Clone)]
pub struct Validation {
    /// The merged spec, present only when there are no errors.
    pub spec: Option<Spec>,
    /// Every problem, sorted by file, then position.
    pub diagnostics: Vec<Diagnostic>,
}

impl Validation {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Validates a single spec text. Diagnostics carry no file name.
pub fn validate(text: &str) -> Validation {
    let mut v = validate_merged(&[Source { name: "", text }]);
    for d in &mut v.diagnostics {
        d.file = None;
    }
    v
}

/// Validates several files as `linuxkit build` would merge them: each file
/// is parsed on its own, then the cross-file rules (unique service names,
/// symbolic ids, volume references) run over the merged whole.
pub fn validate_merged(sources: &[Source<'_>]) -> Validation {
    let parsed: Vec<Parsed> = sources.iter().map(|s| parse(s.text)).collect();
    let mut diagnostics: Vec<(usize, Diagnostic)> = Vec::new();
    for (i, p) in parsed.iter().enumerate() {
        diagnostics.extend(p.diagnostics.iter().cloned().map(|d| (i, d)));
    }
    let docs: Vec<check::Doc<'_>> = parsed
        .iter()
        .filter_map(|p| {
            Some(check::Doc {
                tree: p.tree.as_ref()?,
                spec: p.spec.as_ref()?,
                structural: p.structural.clone(),
            })
        })
        .collect();
    // Cross-file checks need every file; a file that did not parse at all
    // leaves the rest to be checked on their own terms.
    let index: Vec<usize> = parsed
        .iter()
        .enumerate()
        .filter(|(_, p)| p.tree.is_some() && p.spec.is_some())
        .map(|(i, _)| i)
        .collect();
    diagnostics.extend(
        check::run(&docs)
            .into_iter()
            .map(|(d, diag)| (index[d], diag)),
    );
    diagnostics.sort_by_key(|(i, d)| (*i, d.line, d.col));
    let diagnostics: Vec<Diagnostic> = diagnostics
        .into_iter()
        .map(|(i, mut d)| {
            d.file = Some(sources[i].name.to_owned());
            d
        })
        .collect();
    let spec = if diagnostics.iter().any(Diagnostic::is_error) {
        None
    } else {
        parsed
            .into_iter()
            .filter_map(|p| p.spec)
            .reduce(|mut a, b| {
                a.merge(b);
                a
            })
    };
    Validation { spec, diagnostics }
}

/// The structural pass over one file: YAML syntax, keys and types.
struct Parsed {
    tree: Option<Node>,
    spec: Option<Spec>,
    diagnostics: Vec<Diagnostic>,
    structural: Vec<KeyPath>,
}

fn parse(text: &str) -> Parsed {
    let loaded = tree::load(text);
    let mut diagnostics = loaded.diagnostics;
    let Some(root) = loaded.root else {
        if diagnostics.iter().all(|d| !d.is_error()) {
            diagnostics.push(Diagnostic::new(
                Code::EmptyDocument,
                Pos::START,
                "",
                "the spec is empty; write `{}` for a spec with nothing in it",
            ));
        }
        return Parsed {
            tree: None,
            spec: None,
            diagnostics,
            structural: Vec::new(),
        };
    };
    let sink = de::Sink::default();
    let spec = de::from_node::<Spec>(&root, &sink);
    let found = sink.found.into_inner();
    let structural = found.iter().map(|(p, _)| p.clone()).collect();
    diagnostics.extend(found.into_iter().map(|(_, d)| d));
    Parsed {
        tree: Some(root),
        spec,
        diagnostics,
        structural,
    }
}
