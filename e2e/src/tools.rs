//! External programs the harness runs (apt-get, dpkg-deb, skopeo, openssl,
//! docker-registry): locating them with an actionable error, and running
//! them with their stderr in the error message.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context};

/// The hint appended to every "tool missing" error.
pub const INSTALL_HINT: &str = "run `.ci/install-deps` (as root) to install the e2e dependencies";

/// Finds `name` on `PATH` (then in `/usr/sbin` and `/sbin`, which a non-login
/// root shell may lack), or fails with a message naming the Debian package.
pub fn find(name: &str, package: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]);
    for dir in dirs {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    bail!("`{name}` not found (Debian package `{package}`): {INSTALL_HINT}")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs `cmd` to completion with stdin closed and returns its output; a
/// non-zero exit becomes an error carrying the command line and stderr.
pub fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let line = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Like [`run`], returning stdout as UTF-8.
pub fn run_stdout(cmd: &mut Command) -> anyhow::Result<String> {
    let out = run(cmd)?;
    String::from_utf8(out.stdout).context("command printed non-UTF-8 output")
}

/// The command line of `cmd`, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(
        cmd.get_args()
            .map(|a: &OsStr| a.to_string_lossy().into_owned()),
    );
    parts.join(" ")
}

/// The `kiln` binary: `$KILN_BIN`, else `kiln` in the target directory the
/// calling test or example was built into (`target/<profile>/deps/<test>`
/// or `target/<profile>/examples/<name>` → `target/<profile>/kiln`).
/// `cargo test --workspace` builds it, because kiln-backend has integration
/// tests; for examples, `cargo build [--release] -p kiln-backend --bin kiln`.
pub fn kiln_bin() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("KILN_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("kiln"))
        .context("no target/<profile> directory above this binary")?;
    if !bin.is_file() {
        bail!(
            "the kiln binary is not at {}: build it first with `cargo build -p kiln-backend --bin kiln` (add --release for examples), or set KILN_BIN",
            bin.display()
        );
    }
    Ok(bin)
}
