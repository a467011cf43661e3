//! Runs `kiln validate` over every spec in linuxkit's corpus (the handout's
//! `shared/corpus/linuxkit`, beside the repository) and checks each file is
//! handled as the corpus MANIFEST says.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn corpus() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/linuxkit");
    assert!(
        dir.join("MANIFEST.md").is_file(),
        "the linuxkit corpus is missing at {}; it ships beside the repository",
        dir.display()
    );
    dir
}

fn specs(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            specs(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yml" | "yaml")
        ) {
            out.push(path);
        }
    }
}

fn validate(args: &[&Path]) -> (i32, Vec<Value>) {
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("validate")
        .arg("--format=json")
        .args(args)
        .output()
        .unwrap();
    let diagnostics: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "kiln printed no JSON for {args:?}: {e}\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    let Value::Array(diagnostics) = diagnostics else {
        panic!("expected a JSON array")
    };
    (output.status.code().unwrap(), diagnostics)
}

/// The files the MANIFEST marks as failing, with the error kiln must report
/// and the line it must report it on.
const FAILING: &[(&str, &str, u64)] = &[
    ("examples/static-ip.yml", "yaml-syntax", 28),
    (
        "test/cases/000_build/091_validate_linuxkit_yaml/linuxkit.yml",
        "unknown-key",
        1,
    ),
    // "Parses, but the build must fail": kiln finds it without building.
    (
        "test/cases/000_build/070_volumes/002_rw_on_ro/test.yml",
        "readonly-volume",
        12,
    ),
];

#[test]
fn every_corpus_spec_is_handled_as_the_manifest_says() {
    let dir = corpus();
    let mut all = Vec::new();
    specs(&dir, &mut all);
    assert!(all.len() >= 60, "only {} specs found", all.len());
    let mut problems = Vec::new();
    for path in &all {
        let rel = path
            .strip_prefix(&dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let (code, diagnostics) = validate(&[path]);
        let errors: Vec<&Value> = diagnostics
            .iter()
            .filter(|d| d["severity"] == "error")
            .collect();
        match FAILING.iter().find(|(f, _, _)| *f == rel) {
            Some((_, expected_code, line)) => {
                let hit = errors
                    .iter()
                    .any(|d| d["code"] == *expected_code && d["line"] == *line);
                if code != 1 || !hit {
                    problems.push(format!(
                        "{rel}: expected exit 1 with {expected_code} on line {line}, got {code}: {errors:?}"
                    ));
                }
            }
            None => {
                if code != 0 || !errors.is_empty() {
                    problems.push(format!("{rel}: expected valid, got {code}: {errors:?}"));
                }
            }
        }
        for d in &diagnostics {
            assert_eq!(d["file"], path.display().to_string());
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_negative_case_names_the_unknown_field() {
    let path = corpus().join("test/cases/000_build/091_validate_linuxkit_yaml/linuxkit.yml");
    let (_, diagnostics) = validate(&[&path]);
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(diagnostics[0]["path"], "unknownField");
    assert_eq!(diagnostics[0]["col"], 1);
}

#[test]
fn merged_files_are_checked_together() {
    let dir = corpus().join("test/cases/000_build/060_input_tar/000_build");
    let (a, b) = (dir.join("test1.yml"), dir.join("test2.yml"));
    assert_eq!(validate(&[&a]).0, 0);
    assert_eq!(
        validate(&[&a, &b]).0,
        0,
        "without --merge each file stands alone"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["validate", "--merge", "--format=json"])
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    let diagnostics: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        diagnostics
            .iter()
            .any(|d| d["code"] == "duplicate-service" && d["file"] == b.display().to_string()),
        "{diagnostics:?}"
    );
}
