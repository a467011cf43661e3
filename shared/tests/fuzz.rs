//! Property tests standing in for a fuzzer in CI: the parser and validator
//! must never panic, whatever bytes they get, and must keep their own
//! invariants (positions inside the input, a spec only without errors).
//! `shared/fuzz` holds the coverage-guided cargo-fuzz target for longer runs.
//! Set PROPTEST_CASES to run more cases.

use std::path::{Path, PathBuf};

use kiln_shared::{validate, Validation};
use proptest::prelude::*;

fn check_invariants(text: &str, v: &Validation) {
    // YAML also breaks lines at a lone carriage return.
    let lines = text.matches(['\n', '\r']).count() as u32 + 2;
    for d in &v.diagnostics {
        assert!(
            d.line >= 1 && d.line <= lines,
            "line {} outside input: {d}",
            d.line
        );
        assert!(d.col >= 1, "column 0: {d}");
        assert!(!d.message.is_empty());
    }
    assert_eq!(v.spec.is_some(), !v.has_errors());
}

fn corpus_files() -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/linuxkit");
    let mut out = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")) {
                let text = std::fs::read_to_string(&p).unwrap();
                out.push((p, text));
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "corpus missing at {}", dir.display());
    out
}

/// A small edit to a text: what a fuzzer's mutator does.
#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, text: String },
    DuplicateLine { line: usize },
    SwapLines { a: usize, b: usize },
    Indent { line: usize, by: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let yamlish = "[ -~\n\t]{0,12}|[\\[\\]{}:,#&*!|>'\"\\-? \n]{1,6}";
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), yamlish).prop_map(|(at, text)| Mutation::Insert { at, text }),
        any::<usize>().prop_map(|line| Mutation::DuplicateLine { line }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines { a, b }),
        (any::<usize>(), 0usize..6).prop_map(|(line, by)| Mutation::Indent { line, by }),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let floor = |s: &str, mut i: usize| {
        i = i.min(s.len());
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let n = lines.len().max(1);
    match m {
        Mutation::Delete { at, len } => {
            let start = floor(text, at % (text.len() + 1));
            let end = floor(text, start + len);
            format!("{}{}", &text[..start], &text[end..])
        }
        Mutation::Insert { at, text: new } => {
            let at = floor(text, at % (text.len() + 1));
            format!("{}{new}{}", &text[..at], &text[at..])
        }
        Mutation::DuplicateLine { line } => {
            let l = lines[line % n].clone();
            lines.insert(line % n, l);
            lines.join("\n")
        }
        Mutation::SwapLines { a, b } => {
            lines.swap(a % n, b % n);
            lines.join("\n")
        }
        Mutation::Indent { line, by } => {
            lines[line % n].insert_str(0, &" ".repeat(*by));
            lines.join("\n")
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        check_invariants(&text, &validate(&text));
    }

    #[test]
    fn yaml_shaped_noise_never_panics(text in "([a-zA-Z0-9_./@:-]{0,10}|[\\[\\]{}:,#&*!|>'\"\\-? \n]{0,4}){0,60}") {
        check_invariants(&text, &validate(&text));
    }

    #[test]
    fn mutated_corpus_files_never_panic(
        pick in any::<usize>(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        thread_local! {
            static CORPUS: Vec<(PathBuf, String)> = corpus_files();
        }
        CORPUS.with(|corpus| {
            let (_, original) = &corpus[pick % corpus.len()];
            let text = mutations.iter().fold(original.clone(), |t, m| apply(&t, m));
            check_invariants(&text, &validate(&text));
        });
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let text = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let v = validate(&text);
    assert!(v.has_errors());
    let text = "- ".repeat(50_000);
    assert!(validate(&text).has_errors());
}
