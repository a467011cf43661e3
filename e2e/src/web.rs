//! Harness for the browser tests: the Node driver scripts under
//! `e2e/browser/` (playwright-core over Debian's Chromium), run against a
//! [`Service`].

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context};

use crate::service::Service;

/// Where Debian's chromium package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Fails unless `service` serves the web UI (a `kiln` built with
/// `KILN_WEB_DIST`; see scripts/build-web).
pub fn require_ui(service: &Service) -> anyhow::Result<()> {
    let page = service.call("GET", "/", "", None)?;
    if page.status != 200 || !String::from_utf8_lossy(&page.body).contains("/assets/app.js") {
        bail!(
            "{} does not serve the web UI ({}); build it with ./scripts/build-web and build kiln \
             with KILN_WEB_DIST=$PWD/frontend/dist (scripts/test does both)",
            service.base,
            page.status
        );
    }
    Ok(())
}

/// `frontend/web`, where `npm ci` put playwright-core.
pub fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../frontend/web")
}

/// Runs `e2e/browser/<script>` with Node, `env` added, after checking that
/// Chromium and the npm packages are installed (failing, not skipping,
/// when they are not).
pub fn node(script: &str, env: &[(&str, String)]) -> anyhow::Result<Output> {
    if !Path::new(CHROMIUM).is_file() {
        bail!("{CHROMIUM} is missing: .ci/install-deps installs Debian's chromium");
    }
    let playwright = web_dir().join("node_modules/playwright-core");
    if !playwright.is_dir() {
        bail!(
            "{} is missing: scripts/web-tools runs npm ci there",
            playwright.display()
        );
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("browser")
        .join(script);
    let mut cmd = Command::new("node");
    cmd.arg(&path)
        .env("KILN_WEB_DIR", web_dir())
        .env("KILN_CHROMIUM", CHROMIUM)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .with_context(|| format!("cannot run node {}", path.display()))
}
