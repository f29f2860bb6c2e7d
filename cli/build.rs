//! Embeds the dashboard's built assets (`web/dist`, made by `npm run build` in `web/`) into the
//! binary: one `include_bytes!` per file, listed in `$OUT_DIR/dashboard_assets.rs`.
//!
//! `npm run build` ends by rewriting `web/dist.stamp`, which tells cargo to run this again.
//! When `web/dist` is absent (a developer's `cargo build` on a machine without node), the
//! binary embeds a one-page placeholder instead, saying how to build the dashboard: cargo never
//! needs npm. No crate is needed for this (rust-embed and include_dir would each add a proc
//! macro and its dependencies for twenty lines of code).

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let dist = manifest.join("../web/dist");
    // `npm run build` rewrites web/dist.stamp (a tracked file, so it always exists: watching
    // a missing path would make cargo rerun this script, and rebuild the crate, every time).
    let stamp = manifest.join("../web/dist.stamp");
    println!("cargo:rerun-if-changed={}", stamp.display());
    let mut files = Vec::new();
    if dist.join("index.html").is_file() {
        println!("cargo:rerun-if-changed={}", dist.display());
        collect(&dist, &dist, &mut files);
    }
    files.sort();
    let mut out = String::from(
        "/// (path without leading `/`, contents); empty: the dashboard was not built.\n",
    );
    out.push_str("pub static ASSETS: &[(&str, &[u8])] = &[\n");
    for (rel, abs) in &files {
        out.push_str(&format!(
            "    ({rel:?}, include_bytes!({:?})),\n",
            abs.display().to_string()
        ));
    }
    out.push_str("];\n");
    let dest =
        PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("dashboard_assets.rs");
    std::fs::write(dest, out).expect("writing dashboard_assets.rs");
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(root, &path, files);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let rel = rel.to_string_lossy().replace('\\', "/");
            files.push((rel, path.canonicalize().unwrap_or(path)));
        }
    }
}
