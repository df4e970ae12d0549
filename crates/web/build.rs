//! Builds the dashboard (`web/`, TypeScript + Vite) into `$OUT_DIR/dist`, which `src/assets.rs`
//! embeds: `cargo build` alone produces a binary that serves the dashboard, as the README's two
//! commands promise.
//!
//! - `npm ci` runs when `web/node_modules` is missing or older than `web/package-lock.json`;
//! - `npm run build` (type check, then `vite build`) runs whenever cargo sees a change under
//!   `web/` or in the boundary files the map draws;
//! - `HANBAT_SKIP_WEB=1` embeds a one-page placeholder instead, for machines without Node.js.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");
    let web = root.join("web");
    let out = PathBuf::from(env("OUT_DIR")).join("dist");

    for path in [
        "web/src",
        "web/public",
        "web/index.html",
        "web/package.json",
        "web/package-lock.json",
        "web/vite.config.ts",
        "web/tsconfig.json",
        "assets/geo",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=HANBAT_SKIP_WEB");

    if std::env::var_os("HANBAT_SKIP_WEB").is_some_and(|v| !v.is_empty() && v != "0") {
        placeholder(&out);
        return;
    }

    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    if Command::new(npm).arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        fail(
            "building the Hanbat dashboard needs Node.js 20+ and npm, and `npm` was not found.\n\
             Install them (Debian/Ubuntu: `apt-get install nodejs npm`; others: https://nodejs.org/),\n\
             or build without the dashboard: HANBAT_SKIP_WEB=1 cargo build",
        );
    }

    // Two cargo invocations (say `cargo clippy` and `cargo test`) may run this script at once;
    // `npm ci` replaces node_modules wholesale, so they take turns.
    let lock = fs::File::create(web.join(".build.lock")).unwrap_or_else(|e| fail(&format!("web/.build.lock: {e}")));
    if let Err(e) = lock.lock() {
        fail(&format!("locking web/.build.lock: {e}"));
    }

    if needs_install(&web) {
        run(Command::new(npm).args(["ci", "--no-audit", "--no-fund"]).current_dir(&web), "npm ci");
    }
    run(Command::new(npm).args(["run", "build"]).env("HANBAT_WEB_OUT", &out).current_dir(&web), "npm run build");
    if !out.join("index.html").is_file() {
        fail(&format!("npm run build wrote no index.html into {}", out.display()));
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| fail(&format!("cargo did not set {name}")))
}

/// `npm ci` is needed when nothing is installed or the lockfile is newer than the installation
/// (npm writes `node_modules/.package-lock.json` at the end of every install).
fn needs_install(web: &Path) -> bool {
    let installed = fs::metadata(web.join("node_modules/.package-lock.json")).and_then(|m| m.modified());
    let wanted = fs::metadata(web.join("package-lock.json")).and_then(|m| m.modified());
    match (installed, wanted) {
        (Ok(installed), Ok(wanted)) => wanted > installed,
        _ => true,
    }
}

fn run(command: &mut Command, what: &str) {
    match command.output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => fail(&format!(
            "`{what}` in web/ failed ({}):\n{}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => fail(&format!("could not run `{what}` in web/: {e}")),
    }
}

fn placeholder(out: &Path) {
    let _ = fs::remove_dir_all(out);
    let written = fs::create_dir_all(out).and_then(|()| {
        let mut f = fs::File::create(out.join("index.html"))?;
        f.write_all(
            b"<!doctype html><meta charset=utf-8><title>Hanbat</title>\
              <p>This Hanbat binary was built with HANBAT_SKIP_WEB=1: the dashboard is not included. \
              The NGSI-LD API is at <a href=/ngsi-ld/v1/types>/ngsi-ld/v1</a>.</p>",
        )
    });
    if let Err(e) = written {
        fail(&format!("writing the placeholder dashboard into {}: {e}", out.display()));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("\nerror: {message}\n");
    std::process::exit(1)
}
