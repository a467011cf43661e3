//! Embeds the built web UI (`KILN_WEB_DIST`, written by scripts/build-web)
//! into the binary. Without the variable the binary carries no UI and `/`
//! says how to build one, so a plain `cargo build` needs no web tooling.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=KILN_WEB_DIST");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let mut files = Vec::new();
    if let Some(dist) = std::env::var_os("KILN_WEB_DIST").filter(|d| !d.is_empty()) {
        let dist = PathBuf::from(dist);
        if !dist.join("index.html").is_file() {
            panic!(
                "KILN_WEB_DIST={} has no index.html: run ./scripts/build-web first, or unset it",
                dist.display()
            );
        }
        println!("cargo:rerun-if-changed={}", dist.display());
        collect(&dist, &dist, &mut files);
        files.sort();
    }
    let mut code = String::from("&[\n");
    for (name, path) in &files {
        if name.ends_with(".gz") {
            continue;
        }
        let gz = path.with_file_name(format!(
            "{}.gz",
            path.file_name().unwrap().to_string_lossy()
        ));
        let gz = if gz.is_file() {
            format!("Some(include_bytes!({:?}))", gz.display().to_string())
        } else {
            "None".to_owned()
        };
        writeln!(
            code,
            "    ({name:?}, include_bytes!({:?}), {gz}),",
            path.display().to_string()
        )
        .unwrap();
    }
    code.push(']');
    std::fs::write(out.join("web_assets.rs"), code).expect("writing web_assets.rs");
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect(root, &path, files);
        } else {
            let name = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            files.push((name, path));
        }
    }
}
