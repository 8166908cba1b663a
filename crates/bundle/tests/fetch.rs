//! End-to-end tests of `fetch` against a loopback HTTP server and file:// URLs.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use banger_bundle::{BundleError, Manifest, NoProgress, fetch, package};
use common::*;

/// Packages a fresh fixture tree and returns (tree dir guard, tarball bytes).
fn good_bundle() -> (tempfile::TempDir, Vec<u8>) {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    make_tree(&tree);
    let out = d.path().join("bundle.tar.gz");
    let summary = package(&tree, &out, &NoProgress).unwrap();
    let bytes = fs::read(&out).unwrap();
    assert_eq!(summary.sha256, sha256_hex(&bytes));
    (d, bytes)
}

/// Runs `fetch` expecting failure; checks the runtime dir is untouched, no
/// staging leftovers remain and nothing appeared outside. Returns the error.
fn expect_failure(sb: &Sandbox, manifest: &Path) -> BundleError {
    let before = snapshot(&sb.runtime());
    let manifest = Manifest::load(manifest).unwrap();
    let err = fetch(&manifest, &sb.runtime(), &NoProgress).unwrap_err();
    assert_eq!(snapshot(&sb.runtime()), before, "runtime dir changed after: {err}");
    assert_eq!(names(&sb.base()), vec!["runtime"], "leftovers after: {err}");
    assert_eq!(names(sb.outer.path()), vec!["base"], "wrote outside after: {err}");
    err
}

#[test]
fn good_http_fetch_replaces_runtime_and_keeps_exec_bits() {
    let (src, bytes) = good_bundle();
    let server = Server::start();
    let url = server.serve("/good.tar.gz", Reply::ok(bytes.clone()));
    let sb = Sandbox::new();
    let m = write_manifest(sb.work.path(), Some(&url), Some(&sha256_hex(&bytes)), LISTED);
    let summary = fetch(&Manifest::load(&m).unwrap(), &sb.runtime(), &NoProgress).unwrap();
    assert!(summary.replaced);
    assert_eq!(summary.leftover, None);
    assert_eq!(summary.entries, 11);
    assert_eq!(summary.bytes, bytes.len() as u64);
    assert_eq!(summary.sha256, sha256_hex(&bytes));
    assert_eq!(summary.url, url);

    let rt = sb.runtime();
    assert!(!rt.join("marker").exists(), "old runtime not replaced");
    assert!(!rt.join("old-sub").exists());
    let mode = |p: &str| fs::metadata(rt.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("bin/firecracker"), 0o755);
    assert_eq!(mode("scripts/boot.sh"), 0o755);
    assert_eq!(mode("vmlinux"), 0o644);
    assert_eq!(mode("id_ed25519"), 0o644);
    assert_eq!(mode("empty-dir"), 0o755);
    assert_eq!(mode(""), 0o755, "runtime dir itself");
    assert_eq!(fs::read_link(rt.join("vmlinuz")).unwrap(), Path::new("vmlinux"));
    assert_eq!(fs::read(rt.join("scripts/kernel")).unwrap(), fs::read(rt.join("vmlinux")).unwrap());
    // Contents are identical to the packaged tree.
    let strip = |s: std::collections::BTreeMap<std::path::PathBuf, Node>| {
        s.into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Node::File { data, .. } => Node::File { mode: 0, data },
                    Node::Dir { .. } => Node::Dir { mode: 0 },
                    other => other,
                };
                (k, v)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(snapshot(&rt)), strip(snapshot(&src.path().join("tree"))));
    assert_eq!(names(&sb.base()), vec!["runtime"], "staging leftovers");
}

#[test]
fn fetch_into_missing_runtime_dir_creates_it() {
    let (_src, bytes) = good_bundle();
    let work = tempfile::tempdir().unwrap();
    let tarball = work.path().join("b.tar.gz");
    fs::write(&tarball, &bytes).unwrap();
    let m = write_manifest(work.path(), Some("b.tar.gz"), Some(&sha256_hex(&bytes)), LISTED);
    let dest = work.path().join("nested/share/runtime");
    let s = fetch(&Manifest::load(&m).unwrap(), &dest, &NoProgress).unwrap();
    assert!(!s.replaced);
    assert!(dest.join("rootfs.ext4").is_file());
    assert_eq!(names(dest.parent().unwrap()), vec!["runtime"]);
}

#[test]
fn file_url_fetch_works() {
    let (_src, bytes) = good_bundle();
    let sb = Sandbox::new();
    let tarball = sb.work.path().join("my bundle.tar.gz");
    fs::write(&tarball, &bytes).unwrap();
    let url = format!("file://{}", tarball.display().to_string().replace(' ', "%20"));
    let m = write_manifest(sb.work.path(), Some(&url), Some(&sha256_hex(&bytes)), LISTED);
    fetch(&Manifest::load(&m).unwrap(), &sb.runtime(), &NoProgress).unwrap();
    assert!(sb.runtime().join("vmlinux").is_file());
    assert!(!sb.runtime().join("marker").exists());
}

#[test]
fn checksum_mismatch_is_rejected_before_unpacking() {
    let (_src, bytes) = good_bundle();
    let mut corrupt = bytes.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    let server = Server::start();
    let url = server.serve("/corrupt.tar.gz", Reply::ok(corrupt.clone()));
    let sb = Sandbox::new();
    let m = write_manifest(sb.work.path(), Some(&url), Some(&sha256_hex(&bytes)), LISTED);
    let err = expect_failure(&sb, &m);
    match &err {
        BundleError::ChecksumMismatch { expected, actual, url: u } => {
            assert_eq!(expected, &sha256_hex(&bytes));
            assert_eq!(actual, &sha256_hex(&corrupt));
            assert_eq!(u, &url);
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
    assert_eq!(err.exit_code(), 7);
    assert!(err.to_string().contains(&url));
}

#[test]
fn truncated_download_is_detected() {
    let (_src, bytes) = good_bundle();
    let server = Server::start();
    let half = bytes[..bytes.len() / 2].to_vec();
    let url = server.serve("/short.tar.gz", Reply { status: 200, body: half, declared_len: Some(bytes.len() as u64) });
    let sb = Sandbox::new();
    let m = write_manifest(sb.work.path(), Some(&url), Some(&sha256_hex(&bytes)), LISTED);
    let err = expect_failure(&sb, &m);
    assert!(matches!(err, BundleError::Truncated { .. }), "got {err:?}");
    assert_eq!(err.exit_code(), 7);
}

#[test]
fn http_404_is_not_found() {
    let server = Server::start();
    let url = format!("{}/missing.tar.gz", server.base);
    let sb = Sandbox::new();
    let m = write_manifest(sb.work.path(), Some(&url), Some(&"a".repeat(64)), LISTED);
    let err = expect_failure(&sb, &m);
    assert!(matches!(err, BundleError::HttpStatus { status: 404, .. }), "got {err:?}");
    assert_eq!(err.exit_code(), 3);
}

#[test]
fn missing_file_source_is_not_found() {
    let sb = Sandbox::new();
    let m = write_manifest(sb.work.path(), Some("file:///nonexistent/b.tar.gz"), Some(&"a".repeat(64)), LISTED);
    let err = expect_failure(&sb, &m);
    assert!(matches!(err, BundleError::SourceNotFound { .. }), "got {err:?}");
    assert_eq!(err.exit_code(), 3);
}

#[test]
fn manifest_without_url_says_build_locally() {
    let sb = Sandbox::new();
    for url in [None, Some("")] {
        let m = write_manifest(sb.work.path(), url, None, LISTED);
        let err = expect_failure(&sb, &m);
        assert!(matches!(err, BundleError::NoPublishedUrl { .. }), "got {err:?}");
        assert_eq!(err.exit_code(), 7);
        let msg = err.to_string();
        assert!(msg.contains("no published bundle yet"), "{msg}");
        assert!(msg.contains("make runtime-build"), "{msg}");
        assert!(msg.contains(&m.display().to_string()), "{msg}");
    }
}

#[test]
fn bundle_lacking_a_listed_file_is_rejected() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    make_tree(&tree);
    fs::remove_file(tree.join("rootfs.ext4")).unwrap();
    let out = d.path().join("b.tar.gz");
    package(&tree, &out, &NoProgress).unwrap();
    let bytes = fs::read(&out).unwrap();
    let server = Server::start();
    let url = server.serve("/lacking.tar.gz", Reply::ok(bytes.clone()));
    let sb = Sandbox::new();
    let m = write_manifest(sb.work.path(), Some(&url), Some(&sha256_hex(&bytes)), LISTED);
    let err = expect_failure(&sb, &m);
    match &err {
        BundleError::MissingFile { file, .. } => assert_eq!(file, "rootfs.ext4"),
        other => panic!("expected MissingFile, got {other:?}"),
    }
    assert_eq!(err.exit_code(), 7);
}

#[test]
fn not_a_tarball_is_corrupt() {
    let bytes = b"this is not gzip at all".repeat(100);
    let server = Server::start();
    let url = server.serve("/junk.tar.gz", Reply::ok(bytes.clone()));
    let sb = Sandbox::new();
    let m = write_manifest(sb.work.path(), Some(&url), Some(&sha256_hex(&bytes)), &[]);
    let err = expect_failure(&sb, &m);
    assert!(matches!(err, BundleError::CorruptArchive { .. }), "got {err:?}");
    assert_eq!(err.exit_code(), 7);
}

/// Serves each malicious tarball and checks it is refused as an unsafe entry.
#[test]
fn malicious_tarballs_are_refused() {
    let sb = Sandbox::new();
    let abs_target = sb.outer.path().join("abs-evil");
    let abs = abs_target.to_str().unwrap().to_string();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("traversal", RawTar::new().file("ok", b"x").file("../../../evil", b"pwned").finish()),
        ("traversal-nested", RawTar::new().dir("a").file("a/../../../../evil", b"pwned").finish()),
        ("absolute", RawTar::new().file(&abs, b"pwned").finish()),
        ("symlink-escape-then-write", RawTar::new().symlink("link", "../../outside").file("link/x", b"pwned").finish()),
        ("symlink-absolute", RawTar::new().symlink("link", "/etc").finish()),
        ("write-through-inner-symlink", RawTar::new().dir("d").symlink("l", "d").file("l/x", b"x").finish()),
        ("chained-symlink-escape", RawTar::new().dir("d").symlink("d/up", "..").symlink("e", "d/up/..").finish()),
        ("hardlink-escape", RawTar::new().hardlink("hl", "../../outside/secret").finish()),
        ("hardlink-absolute", RawTar::new().hardlink("hl", "/etc/passwd").finish()),
        (
            "hardlink-through-symlink",
            RawTar::new().dir("d").file("d/f", b"x").symlink("s", "d").hardlink("hl", "s/f").finish(),
        ),
        ("char-device", RawTar::new().special("null", tar::EntryType::Char).finish()),
        ("block-device", RawTar::new().special("sda", tar::EntryType::Block).finish()),
        ("fifo", RawTar::new().special("pipe", tar::EntryType::Fifo).finish()),
    ];
    let server = Server::start();
    for (name, bytes) in cases {
        let url = server.serve(&format!("/{name}.tar.gz"), Reply::ok(bytes.clone()));
        let m = write_manifest(sb.work.path(), Some(&url), Some(&sha256_hex(&bytes)), &[]);
        let err = expect_failure(&sb, &m);
        assert!(matches!(err, BundleError::UnsafeEntry { .. }), "{name}: expected UnsafeEntry, got {err:?}");
        eprintln!("{name}: {err}");
        assert_eq!(err.exit_code(), 7, "{name}");
        assert!(err.to_string().contains(&url), "{name}: {err}");
        assert!(!abs_target.exists(), "{name}: wrote {abs}");
        assert!(!Path::new("/tmp/evil").exists() || name != "absolute");
    }
}

#[test]
fn safe_raw_tarball_with_dot_prefix_and_in_tree_links_is_accepted() {
    let bytes = RawTar::new()
        .dir("./")
        .dir("./bin")
        .file("./bin/tool", b"#!/bin/sh\n")
        .file("./vmlinux", b"k")
        .symlink("./bin/kernel", "../vmlinux")
        .hardlink("./vmlinux.hard", "vmlinux")
        .file("./vmlinux", b"k2") // later entry replaces the earlier file
        .finish();
    let server = Server::start();
    let url = server.serve("/raw.tar.gz", Reply::ok(bytes.clone()));
    let sb = Sandbox::new();
    let m = write_manifest(sb.work.path(), Some(&url), Some(&sha256_hex(&bytes)), &["vmlinux", "bin/kernel"]);
    fetch(&Manifest::load(&m).unwrap(), &sb.runtime(), &NoProgress).unwrap();
    let rt = sb.runtime();
    assert_eq!(fs::read(rt.join("vmlinux")).unwrap(), b"k2");
    assert_eq!(fs::read(rt.join("vmlinux.hard")).unwrap(), b"k");
    assert_eq!(fs::read(rt.join("bin/kernel")).unwrap(), b"k2");
}

#[test]
fn gnu_tar_output_is_accepted() {
    if std::process::Command::new("tar").arg("--version").output().is_err() {
        eprintln!("skipping: no tar binary");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    make_tree(&tree);
    let tarball = d.path().join("gnu.tar.gz");
    let st =
        std::process::Command::new("tar").arg("-C").arg(&tree).arg("-czf").arg(&tarball).arg(".").status().unwrap();
    assert!(st.success());
    let bytes = fs::read(&tarball).unwrap();
    let sb = Sandbox::new();
    let m = write_manifest(sb.work.path(), Some(tarball.to_str().unwrap()), Some(&sha256_hex(&bytes)), LISTED);
    fetch(&Manifest::load(&m).unwrap(), &sb.runtime(), &NoProgress).unwrap();
    let mode = fs::metadata(sb.runtime().join("bin/firecracker")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
}

#[test]
fn runtime_path_that_is_a_file_is_refused() {
    let (_src, bytes) = good_bundle();
    let work = tempfile::tempdir().unwrap();
    fs::write(work.path().join("b.tar.gz"), &bytes).unwrap();
    let m = write_manifest(work.path(), Some("b.tar.gz"), Some(&sha256_hex(&bytes)), LISTED);
    let file = work.path().join("not-a-dir");
    fs::write(&file, b"keep me").unwrap();
    let err = fetch(&Manifest::load(&m).unwrap(), &file, &NoProgress).unwrap_err();
    assert!(matches!(err, BundleError::InvalidInput { .. }), "{err:?}");
    assert_eq!(err.exit_code(), 2);
    assert_eq!(fs::read(&file).unwrap(), b"keep me");
}

#[derive(Default)]
struct Recorder {
    events: std::cell::RefCell<Vec<String>>,
    advanced: std::cell::Cell<u64>,
}

impl banger_bundle::Progress for Recorder {
    fn stage(&self, msg: &str) {
        self.events.borrow_mut().push(format!("stage {msg}"));
    }
    fn start(&self, total: Option<u64>) {
        self.advanced.set(0);
        self.events.borrow_mut().push(format!("start {total:?}"));
    }
    fn advance(&self, n: u64) {
        self.advanced.set(self.advanced.get() + n);
    }
    fn finish(&self) {
        self.events.borrow_mut().push(format!("finish {}", self.advanced.get()));
    }
}

#[test]
fn progress_reports_download_and_unpack_bytes() {
    let (_src, bytes) = good_bundle();
    let server = Server::start();
    let url = server.serve("/p.tar.gz", Reply::ok(bytes.clone()));
    let sb = Sandbox::new();
    let m = write_manifest(sb.work.path(), Some(&url), Some(&sha256_hex(&bytes)), LISTED);
    let rec = Recorder::default();
    fetch(&Manifest::load(&m).unwrap(), &sb.runtime(), &rec).unwrap();
    let ev = rec.events.borrow();
    let n = bytes.len();
    assert_eq!(ev[0], format!("stage downloading {url}"));
    assert_eq!(ev[1], format!("start Some({n})"));
    assert_eq!(ev[2], format!("finish {n}"));
    assert!(ev.contains(&format!("finish {n}")));
    let unpack_start = ev.iter().position(|e| e == "stage unpacking bundle").unwrap();
    assert_eq!(ev[unpack_start + 1], format!("start Some({n})"));
    assert_eq!(ev[unpack_start + 2], format!("finish {n}"));
}
