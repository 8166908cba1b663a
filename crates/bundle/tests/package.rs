//! Deterministic packaging and package → fetch round trips.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, SystemTime};

use banger_bundle::{BundleError, Manifest, NoProgress, fetch, package, set_manifest_checksum};
use common::*;

fn touch_all(dir: &std::path::Path, when: SystemTime) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = fs::symlink_metadata(e.path()).unwrap();
        if m.is_dir() {
            touch_all(&e.path(), when);
        }
        if !m.file_type().is_symlink() {
            let f = fs::File::options().read(true).open(e.path()).unwrap();
            f.set_modified(when).unwrap();
            // chmod to the same mode: a no-op that still updates ctime
            fs::set_permissions(e.path(), fs::Permissions::from_mode(m.mode() & 0o7777)).unwrap();
        }
    }
}

#[test]
fn packaging_is_byte_identical_after_touch_and_chmod_noop() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    make_tree(&tree);
    let a = package(&tree, &d.path().join("a.tar.gz"), &NoProgress).unwrap();
    touch_all(&tree, SystemTime::now() + Duration::from_secs(3600));
    // group-write and other non-exec bits are normalised away too
    fs::set_permissions(tree.join("vmlinux"), fs::Permissions::from_mode(0o664)).unwrap();
    let b = package(&tree, &d.path().join("b.tar.gz"), &NoProgress).unwrap();
    assert_eq!(a, b);
    assert_eq!(fs::read(d.path().join("a.tar.gz")).unwrap(), fs::read(d.path().join("b.tar.gz")).unwrap());
    assert_eq!(a.files, 8, "6 regular files + 2 symlinks");
    assert_eq!(a.bytes, fs::metadata(d.path().join("a.tar.gz")).unwrap().len());
    assert_eq!(a.sha256, sha256_hex(&fs::read(d.path().join("a.tar.gz")).unwrap()));
    // no out.tmp left behind
    assert_eq!(names(d.path()), vec!["a.tar.gz", "b.tar.gz", "tree"]);

    // Real changes do change the archive: content, exec bit, symlink target.
    fs::write(tree.join("initrd.img"), vec![8u8; 5000]).unwrap();
    let c = package(&tree, &d.path().join("c.tar.gz"), &NoProgress).unwrap();
    assert_ne!(a.sha256, c.sha256);
    fs::write(tree.join("initrd.img"), vec![7u8; 5000]).unwrap();
    fs::set_permissions(tree.join("vmlinux"), fs::Permissions::from_mode(0o755)).unwrap();
    let e = package(&tree, &d.path().join("e.tar.gz"), &NoProgress).unwrap();
    assert_ne!(a.sha256, e.sha256);
    fs::set_permissions(tree.join("vmlinux"), fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(package(&tree, &d.path().join("f.tar.gz"), &NoProgress).unwrap(), a);
}

#[test]
fn archive_headers_are_normalised() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    make_tree(&tree);
    let out = d.path().join("x.tar.gz");
    package(&tree, &out, &NoProgress).unwrap();
    let raw = fs::read(&out).unwrap();
    assert_eq!(&raw[..3], &[0x1f, 0x8b, 8], "gzip magic");
    assert_eq!(raw[3], 0, "no FNAME/FEXTRA/FCOMMENT flags");
    assert_eq!(&raw[4..8], &[0, 0, 0, 0], "gzip mtime is zero");

    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&raw[..]));
    let mut paths = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        let p = e.path().unwrap().into_owned();
        assert_eq!(h.mtime().unwrap(), 0, "{p:?}");
        assert_eq!(h.uid().unwrap(), 0);
        assert_eq!(h.gid().unwrap(), 0);
        assert_eq!(h.username_bytes().unwrap_or_default(), b"");
        assert_eq!(h.groupname_bytes().unwrap_or_default(), b"");
        let mode = h.mode().unwrap();
        match h.entry_type() {
            tar::EntryType::Directory => assert_eq!(mode, 0o755),
            tar::EntryType::Symlink => assert_eq!(mode, 0o777),
            tar::EntryType::Regular => assert!(mode == 0o644 || mode == 0o755, "{p:?} {mode:o}"),
            other => panic!("unexpected {other:?}"),
        }
        paths.push(p.to_string_lossy().into_owned());
    }
    assert_eq!(
        paths,
        [
            "bin",
            "bin/firecracker",
            "empty-dir",
            "id_ed25519",
            "initrd.img",
            "rootfs.ext4",
            "scripts",
            "scripts/boot.sh",
            "scripts/kernel",
            "vmlinux",
            "vmlinuz"
        ]
    );
}

#[test]
fn package_then_fetch_round_trips_and_pins_manifest() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    make_tree(&tree);
    // A long path exercises GNU long-name entries.
    let deep = tree.join("x".repeat(80)).join("y".repeat(80));
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("z".repeat(60)), b"deep").unwrap();
    let out = d.path().join("bundle.tar.gz");
    let s = package(&tree, &out, &NoProgress).unwrap();

    let sb = Sandbox::new();
    let m = write_manifest(sb.work.path(), None, None, LISTED);
    let url = format!("file://{}", out.display());
    set_manifest_checksum(&m, &s.sha256, Some(&url)).unwrap();
    let manifest = Manifest::load(&m).unwrap();
    assert_eq!(manifest.sha256.as_deref(), Some(s.sha256.as_str()));
    fetch(&manifest, &sb.runtime(), &NoProgress).unwrap();

    let rt = sb.runtime();
    let src = snapshot(&tree);
    let got = snapshot(&rt);
    assert_eq!(src.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>());
    for (k, v) in &src {
        match (v, &got[k]) {
            (Node::File { mode: m1, data: d1 }, Node::File { mode: m2, data: d2 }) => {
                assert_eq!(d1, d2, "{k:?}");
                assert_eq!(m1 & 0o100 != 0, m2 & 0o100 != 0, "exec bit of {k:?}");
            }
            (Node::Link(a), Node::Link(b)) => assert_eq!(a, b),
            (Node::Dir { .. }, Node::Dir { .. }) => {}
            (a, b) => panic!("{k:?}: {a:?} vs {b:?}"),
        }
    }
    // Repackaging the fetched tree gives the same bytes.
    let again = package(&rt, &d.path().join("again.tar.gz"), &NoProgress).unwrap();
    assert_eq!(again.sha256, s.sha256);
}

#[test]
fn sparse_images_stay_sparse_and_are_streamed() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    let img = tree.join("rootfs.ext4");
    let f = fs::File::create(&img).unwrap();
    f.set_len(32 << 20).unwrap();
    drop(f);
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs::OpenOptions::new().write(true).open(&img).unwrap();
        f.seek(SeekFrom::Start(20 << 20)).unwrap();
        f.write_all(b"superblock").unwrap();
    }
    let out = d.path().join("b.tar.gz");
    let s = package(&tree, &out, &NoProgress).unwrap();
    assert!(s.bytes < 1 << 20, "32 MiB of zeros should compress well, got {}", s.bytes);

    let sb = Sandbox::new();
    let m = write_manifest(sb.work.path(), Some(out.to_str().unwrap()), Some(&s.sha256), &["rootfs.ext4"]);
    fetch(&Manifest::load(&m).unwrap(), &sb.runtime(), &NoProgress).unwrap();
    let got = sb.runtime().join("rootfs.ext4");
    let meta = fs::metadata(&got).unwrap();
    assert_eq!(meta.len(), 32 << 20);
    assert!(meta.blocks() * 512 < 2 << 20, "unpacked image is not sparse: {} blocks", meta.blocks());
    let mut f = fs::File::open(&got).unwrap();
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(20 << 20)).unwrap();
    let mut buf = [0u8; 10];
    f.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"superblock");
}

#[test]
fn package_refuses_bad_inputs() {
    let d = tempfile::tempdir().unwrap();
    let err = package(&d.path().join("missing"), &d.path().join("o.tar.gz"), &NoProgress).unwrap_err();
    assert!(matches!(err, BundleError::SourceNotFound { .. }), "{err:?}");
    assert_eq!(err.exit_code(), 3);

    let tree = d.path().join("tree");
    make_tree(&tree);
    let err = package(&tree, &tree.join("inside.tar.gz"), &NoProgress).unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");

    std::os::unix::fs::symlink("../../etc/passwd", tree.join("bin/escape")).unwrap();
    let err = package(&tree, &d.path().join("o.tar.gz"), &NoProgress).unwrap_err();
    assert!(matches!(err, BundleError::InvalidInput { .. }), "{err:?}");
    assert!(err.to_string().contains("bin/escape"), "{err}");
    fs::remove_file(tree.join("bin/escape")).unwrap();

    let fifo = tree.join("pipe");
    let st = std::process::Command::new("mkfifo").arg(&fifo).status();
    if st.map(|s| s.success()).unwrap_or(false) {
        let err = package(&tree, &d.path().join("o.tar.gz"), &NoProgress).unwrap_err();
        assert!(matches!(err, BundleError::InvalidInput { .. }), "{err:?}");
    }
    assert_eq!(names(d.path()), vec!["tree"], "no output or .tmp left behind");
}
