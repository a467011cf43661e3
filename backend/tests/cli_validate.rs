//! The `kiln validate` command line: formats, exit codes and standard input.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn kiln(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

const BAD: &str = "services:\n  - name: a\n    image: a/b:1\n    capabilities: [CAP_FLY]\n";

#[test]
fn text_output_is_one_compiler_style_line_per_problem() {
    let out = kiln(&["validate", "-"], BAD);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "<stdin>:4:20: error[unknown-capability]: unknown capability `CAP_FLY`; names are upper case with the `CAP_` prefix, such as `CAP_NET_ADMIN`, or a lone `all` or `none` (at services[0].capabilities[0])\n"
    );
}

#[test]
fn json_output_has_the_same_fields() {
    let out = kiln(&["validate", "--format", "json", "-"], BAD);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &v[0];
    assert_eq!(d["file"], "<stdin>");
    assert_eq!((d["line"].as_u64(), d["col"].as_u64()), (Some(4), Some(20)));
    assert_eq!(d["severity"], "error");
    assert_eq!(d["code"], "unknown-capability");
    assert_eq!(d["path"], "services[0].capabilities[0]");
}

#[test]
fn warnings_alone_exit_zero() {
    let spec = "services:\n  - name: a\n    image: a/b:1\n    ipc: none\n";
    let out = kiln(&["validate", "-"], spec);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("warning[namespace-path]"));
}

#[test]
fn unreadable_files_and_bad_usage_exit_two() {
    assert_eq!(
        kiln(&["validate", "/nonexistent/spec.yml"], "")
            .status
            .code(),
        Some(2)
    );
    assert_eq!(kiln(&["validate"], "").status.code(), Some(2));
    assert_eq!(
        kiln(&["validate", "--format=xml", "-"], "").status.code(),
        Some(2)
    );
}

#[test]
fn invalid_utf8_is_a_diagnostic_not_a_crash() {
    let dir = std::env::temp_dir().join(format!("kiln-utf8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yml");
    std::fs::write(&file, b"kernel:\n  cmdline: \"\xff\"\n").unwrap();
    let out = kiln(&["validate", file.to_str().unwrap()], "");
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains(":2:13: error[yaml-syntax]: the file is not valid UTF-8"));
}

#[test]
fn help_describes_the_commands() {
    let out = kiln(&["--help"], "");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("validate") && text.contains("schema"));
    let out = kiln(&["validate", "--help"], "");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("--format") && text.contains("standard input"));
}

#[test]
fn schema_is_json_schema_that_forbids_unknown_keys() {
    let out = kiln(&["schema"], "");
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["additionalProperties"], false);
    assert!(v["properties"]["services"].is_object());
}
