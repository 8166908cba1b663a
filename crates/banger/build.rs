//! The build id of the `banger` and `bangerd` binaries (`BANGER_BUILD_ID`): the crate version
//! and the git commit they were built from, `-dirty` when tracked files differed from it, e.g.
//! `0.1.0+28ebb94-dirty`; `0.1.0+unknown` outside a git checkout (or without git). The version
//! alone stays the same across commits, so this is what tells a CLI that the running daemon is
//! another build (see `banger_api::build`).
//!
//! It lives here, in the crate of the two binaries, rather than in `banger-api`: a new commit
//! then relinks the binaries instead of rebuilding every crate that depends on the API.
//!
//! The script runs again when HEAD moves (a commit, a checkout); `-dirty` is how the tree was
//! at that moment.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BANGER_BUILD_ID");
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    // A packager may set the id (building from a tarball, say).
    let id = match std::env::var("BANGER_BUILD_ID").ok().filter(|v| !v.trim().is_empty()) {
        Some(id) => id,
        None => format!("{version}+{}", commit().unwrap_or_else(|| "unknown".into())),
    };
    println!("cargo:rustc-env=BANGER_BUILD_ID={id}");
}

fn commit() -> Option<String> {
    let hash = git(&["rev-parse", "--short", "HEAD"]).filter(|h| !h.is_empty())?;
    // Run again when HEAD moves: the HEAD file, the branch it names, packed refs. Only files that
    // exist (cargo reruns the script at every build for a missing one).
    let mut watch: Vec<PathBuf> = vec![git_path("HEAD")?];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.extend(git_path(&branch));
    }
    watch.extend(git_path("packed-refs"));
    for p in watch.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    // No optional locks: a `git status` of its own must not take the index lock from under
    // someone committing in the same checkout.
    let dirty =
        git(&["--no-optional-locks", "status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{hash}-dirty") } else { hash })
}

/// An absolute path inside the git directory (`git rev-parse --git-path` answers relative to
/// the current directory, which is this crate's).
fn git_path(name: &str) -> Option<PathBuf> {
    let p = PathBuf::from(git(&["rev-parse", "--git-path", name])?);
    Some(if p.is_absolute() { p } else { Path::new(&std::env::var("CARGO_MANIFEST_DIR").ok()?).join(p) })
}
