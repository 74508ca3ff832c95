//! `cargo xtask browser`: the dashboard in a real browser (scripts/browser). Debian's
//! `chromium` (installed with apt-get when missing, as root; never a downloaded browser build)
//! is driven by Playwright from a venv under the target folder: `batchbeam serve --sim` runs a
//! search started from the page's form until its gallery is complete, and a CLI run's
//! `report.html` is opened from disk. Screenshots land in `target/screenshots/`.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::conformance::{can_apt_install, ensure_venv};
use crate::util::{build_workspace, describe, exec, target_dir};

/// Where Debian puts its chromium.
const CHROMIUM: &str = "/usr/bin/chromium";

/// Installs chromium if needed, sets up the venv, builds, runs pytest on scripts/browser.
pub(crate) fn run(root: &Path) -> anyhow::Result<()> {
    ensure_chromium()?;
    let suite = root.join("scripts/browser");
    let target = target_dir(root)?;
    let python = ensure_venv(
        &target.join("browser-venv"),
        &suite.join("requirements.txt"),
    )?;
    build_workspace(root)?;
    let screenshots = target.join("screenshots");
    let mut pytest = Command::new(&python);
    pytest
        .current_dir(root)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(&suite)
        .env("BATCHBEAM_BIN", target.join("debug/batchbeam"))
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", CHROMIUM)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // Playwright must never fetch a browser of its own.
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL");
    let line = describe(&pytest);
    let status = pytest
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    if !status.success() {
        bail!(
            "the dashboard's browser test failed ({status}); screenshots so far are in {}",
            screenshots.display()
        );
    }
    println!("browser: screenshots in {}", screenshots.display());
    Ok(())
}

/// Debian's chromium, installed with apt-get when it is missing and we are root.
fn ensure_chromium() -> anyhow::Result<()> {
    if Path::new(CHROMIUM).is_file() {
        return Ok(());
    }
    if !can_apt_install() {
        bail!(
            "the browser test needs Debian's chromium at {CHROMIUM}: install it (`sudo apt-get install chromium`) and run again"
        );
    }
    println!("browser: {CHROMIUM} is missing; installing Debian's chromium with apt-get");
    exec(Command::new("apt-get").args(["update", "-qq"]))?;
    exec(
        Command::new("apt-get")
            // Without recommends chromium brings no font: the screenshots would be tofu.
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "chromium",
                "fonts-dejavu-core",
                "fonts-liberation",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("installing chromium")
}
