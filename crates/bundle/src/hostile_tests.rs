//! Hostile bundles: each test builds an archive by hand (bypassing the tar crate's own
//! path checks), runs it through [`fetch_with`] and checks what actually happened on disk,
//! then records a row of the reliability report ("Bundle hostility").
//!
//! Every refusal must leave the runtime directory as it was, no staging directory behind and
//! nothing outside. Bombs are built from pre-compressed segments, so a test can ship GiBs of
//! decompressed data in a few MiB of gzip without compressing GiBs first.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use flate2::{Compress, Compression, Crc, FlushCompress};
use tar::{EntryType, Header};

use crate::error::BundleError;
use crate::fetch::{FetchSummary, fetch_with};
use crate::manifest::Manifest;
use crate::progress::NoProgress;
use crate::unpack::{Limits, Space, unpack};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;
const SCENARIO: &str = "Bundle hostility";

fn report(tried: &str, result: &str) {
    banger_testkit::report(SCENARIO, tried, result);
}

/// A gzip stream written segment by segment. Each segment is deflated by a fresh compressor
/// and ends with a full flush, so segments are independent and a compressed segment can be
/// repeated to stand for the same bytes many times over.
struct Gz {
    out: Vec<u8>,
    crc: Crc,
    len: u64,
    fills: Vec<(u8, Vec<u8>, Crc)>,
}

const FILL_CHUNK: usize = 1 << 20;

fn deflate_segment(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        let consumed = c.total_in() as usize;
        c.compress_vec(&data[consumed..], &mut out, FlushCompress::Full).unwrap();
        if c.total_in() as usize == data.len() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity().max(1024));
    }
}

impl Gz {
    fn new() -> Gz {
        // gzip header: deflate, no flags, no mtime, unknown OS
        Gz { out: vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff], crc: Crc::new(), len: 0, fills: Vec::new() }
    }

    fn bytes(&mut self, data: &[u8]) -> &mut Gz {
        if !data.is_empty() {
            self.out.extend(deflate_segment(data));
            self.crc.update(data);
            self.len += data.len() as u64;
        }
        self
    }

    /// `n` copies of `byte`.
    fn fill(&mut self, byte: u8, n: u64) -> &mut Gz {
        let whole = n / FILL_CHUNK as u64;
        if whole > 0 {
            if !self.fills.iter().any(|(b, ..)| *b == byte) {
                let chunk = vec![byte; FILL_CHUNK];
                let mut crc = Crc::new();
                crc.update(&chunk);
                self.fills.push((byte, deflate_segment(&chunk), crc));
            }
            let (_, seg, crc) = self.fills.iter().find(|(b, ..)| *b == byte).unwrap();
            for _ in 0..whole {
                self.out.extend_from_slice(seg);
                self.crc.combine(crc);
            }
            self.len += whole * FILL_CHUNK as u64;
        }
        let rest = (n % FILL_CHUNK as u64) as usize;
        self.bytes(&vec![byte; rest])
    }

    /// A tar entry: its header, `data`, then `fill` more bytes of `fill_byte`, padded to 512.
    fn entry(&mut self, h: &Header, data: &[u8], fill_byte: u8, fill: u64) -> &mut Gz {
        self.bytes(h.as_bytes()).bytes(data).fill(fill_byte, fill);
        let len = data.len() as u64 + fill;
        self.fill(0, len.next_multiple_of(512) - len)
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Gz {
        self.entry(&header(name, EntryType::Regular, mode, data.len() as u64, None), data, 0, 0)
    }

    fn dir(&mut self, name: &str, mode: u32) -> &mut Gz {
        self.entry(&header(name, EntryType::Directory, mode, 0, None), b"", 0, 0)
    }

    fn link(&mut self, kind: EntryType, name: &str, target: &str) -> &mut Gz {
        self.entry(&header(name, kind, 0o777, 0, Some(target)), b"", 0, 0)
    }

    /// The end-of-archive marker (two zero blocks).
    fn end(&mut self) -> &mut Gz {
        self.fill(0, 1024)
    }

    fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.out);
        out.extend([0x03, 0x00]); // an empty final fixed-Huffman block
        out.extend(self.crc.sum().to_le_bytes());
        out.extend((self.len as u32).to_le_bytes());
        out
    }
}

/// A GNU header with the name and link copied in raw (no path checks).
fn header(name: &str, kind: EntryType, mode: u32, size: u64, link: Option<&str>) -> Header {
    let mut h = Header::new_gnu();
    {
        let old = h.as_old_mut();
        assert!(name.len() < old.name.len(), "{name}");
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            assert!(l.len() < old.linkname.len(), "{l}");
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    if matches!(kind, EntryType::Char | EntryType::Block) {
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
    }
    h.set_cksum();
    h
}

/// `outer/base/runtime` holding a previous runtime, and `outer/work` with the bundle and
/// its manifest.
struct Sandbox {
    outer: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let outer = tempfile::tempdir().unwrap();
        fs::create_dir_all(outer.path().join("base/runtime")).unwrap();
        fs::create_dir_all(outer.path().join("work")).unwrap();
        fs::write(outer.path().join("base/runtime/marker"), b"previous runtime").unwrap();
        Sandbox { outer }
    }
    fn base(&self) -> PathBuf {
        self.outer.path().join("base")
    }
    fn runtime(&self) -> PathBuf {
        self.base().join("runtime")
    }
    fn url(&self) -> String {
        self.outer.path().join("work/bundle.tar.gz").display().to_string()
    }

    /// Fetches `bundle` (pinned by its SHA-256) into the runtime directory.
    fn fetch(&self, bundle: &[u8], limits: &Limits) -> Result<FetchSummary, BundleError> {
        use sha2::Digest;
        let work = self.outer.path().join("work");
        fs::write(work.join("bundle.tar.gz"), bundle).unwrap();
        let sha = hex::encode(sha2::Sha256::digest(bundle));
        let m = work.join("runtime-bundle.toml");
        let url = self.url();
        fs::write(&m, format!("version = \"1\"\nurl = \"{url}\"\nsha256 = \"{sha}\"\nfiles = []\n")).unwrap();
        fetch_with(&Manifest::load(&m).unwrap(), &self.runtime(), &NoProgress, limits)
    }

    /// Fetches `bundle` expecting a refusal, and checks that it left nothing behind: the
    /// previous runtime intact, no staging directory, nothing new outside.
    fn refused(&self, bundle: &[u8], limits: &Limits) -> BundleError {
        let err = self.fetch(bundle, limits).expect_err("the bundle was accepted");
        assert_eq!(names(&self.runtime()), ["marker"], "runtime changed after: {err}");
        assert_eq!(fs::read(self.runtime().join("marker")).unwrap(), b"previous runtime");
        assert_eq!(names(&self.base()), ["runtime"], "leftovers after: {err}");
        assert_eq!(names(self.outer.path()), ["base", "work"], "wrote outside after: {err}");
        assert_eq!(names(&self.outer.path().join("work")), ["bundle.tar.gz", "runtime-bundle.toml"]);
        assert!(err.to_string().contains(&self.url()), "the error names the bundle: {err}");
        err
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn unsafe_reason(err: &BundleError, entry: &str) -> String {
    match err {
        BundleError::UnsafeEntry { entry: e, reason, .. } => {
            assert_eq!(e, entry, "{err}");
            reason.clone()
        }
        other => panic!("expected UnsafeEntry for `{entry}`, got {other:?}"),
    }
}

fn too_large_reason(err: &BundleError) -> String {
    match err {
        BundleError::TooLarge { reason, .. } => reason.clone(),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

/// The error sentence with the (temporary) bundle path shortened, for the report.
fn sentence(sb: &Sandbox, err: &BundleError) -> String {
    err.to_string().replace(&sb.url(), "bundle.tar.gz").replace(&sb.base().display().to_string(), "<runtime parent>")
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn hard_links_out_of_the_tree_are_refused() {
    let cases = [
        ("../../etc/passwd", "`..` components are not allowed"),
        ("/etc/passwd", "absolute paths are not allowed"),
        ("d/../../../etc/shadow", "`..` components are not allowed"),
        ("not-extracted-yet", "is not a file extracted earlier in the bundle"),
        ("d", "is not a regular file"),
        ("s/f", "goes through a symlink"),
        ("hl", "the hard link points at itself"),
    ];
    for (target, expect) in cases {
        let sb = Sandbox::new();
        let bundle = Gz::new()
            .dir("d", 0o755)
            .file("d/f", 0o644, b"inside")
            .link(EntryType::Symlink, "s", "d")
            .link(EntryType::Link, "hl", target)
            .end()
            .finish();
        let err = sb.refused(&bundle, &Limits::default());
        let reason = unsafe_reason(&err, "hl");
        assert!(reason.contains(expect), "{target}: {reason}");
        assert!(reason.contains(target) || target == "hl", "the reason names the target: {reason}");
        assert_eq!(err.exit_code(), 7);
        report(&format!("hard link `hl` to `{target}`"), &format!("refused: {}", sentence(&sb, &err)));
    }
}

#[test]
fn hard_links_within_the_tree_cannot_be_written_through() {
    // A hard link to an earlier file is harmless; a later entry with the link's path replaces
    // the link instead of writing into the file it shares.
    let sb = Sandbox::new();
    let bundle = Gz::new()
        .file("vmlinux", 0o4755, b"kernel")
        .link(EntryType::Link, "alias", "vmlinux")
        .file("alias", 0o644, b"overwritten?")
        .end()
        .finish();
    sb.fetch(&bundle, &Limits::default()).unwrap();
    let rt = sb.runtime();
    assert_eq!(fs::read(rt.join("vmlinux")).unwrap(), b"kernel");
    assert_eq!(fs::read(rt.join("alias")).unwrap(), b"overwritten?");
    assert_eq!(fs::metadata(rt.join("vmlinux")).unwrap().nlink(), 1);
    assert_eq!(mode(&rt.join("vmlinux")), 0o755);
    report(
        "hard link to an earlier in-tree file, then a regular entry at the link's path",
        "neutralised: the link is replaced, the linked file keeps its contents",
    );
}

#[test]
fn escaping_symlinks_and_writes_through_symlinks_are_refused() {
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "symlink `link` to ../../outside, then `link/x`",
            Gz::new().link(EntryType::Symlink, "link", "../../outside").file("link/x", 0o644, b"pwned").end().finish(),
            "link",
            "points outside the tree",
        ),
        (
            "symlink `etc` to /etc, then `etc/passwd`",
            Gz::new().link(EntryType::Symlink, "etc", "/etc").file("etc/passwd", 0o644, b"pwned").end().finish(),
            "etc",
            "is absolute",
        ),
        (
            "in-tree symlink `l` to `d`, then `l/x` written through it",
            Gz::new().dir("d", 0o755).link(EntryType::Symlink, "l", "d").file("l/x", 0o644, b"x").end().finish(),
            "l/x",
            "written through the symlink `l`",
        ),
        (
            "symlink chain `d/up` -> `..`, `e` -> `d/up/..` (lexically inside, really outside)",
            Gz::new()
                .dir("d", 0o755)
                .link(EntryType::Symlink, "d/up", "..")
                .link(EntryType::Symlink, "e", "d/up/..")
                .end()
                .finish(),
            "e",
            "resolves outside the tree",
        ),
    ];
    for (tried, bundle, entry, expect) in cases {
        let sb = Sandbox::new();
        let err = sb.refused(&bundle, &Limits::default());
        let reason = unsafe_reason(&err, entry);
        assert!(reason.contains(expect), "{tried}: {reason}");
        assert!(!sb.outer.path().join("outside").exists());
        report(tried, &format!("refused: {}", sentence(&sb, &err)));
    }
}

#[test]
fn a_later_file_replaces_a_symlink_instead_of_following_it() {
    let sb = Sandbox::new();
    let bundle = Gz::new()
        .file("target", 0o644, b"original")
        .link(EntryType::Symlink, "s", "target")
        .file("s", 0o644, b"pwned")
        .end()
        .finish();
    sb.fetch(&bundle, &Limits::default()).unwrap();
    let rt = sb.runtime();
    assert_eq!(fs::read(rt.join("target")).unwrap(), b"original");
    assert!(fs::symlink_metadata(rt.join("s")).unwrap().is_file());
    assert_eq!(fs::read(rt.join("s")).unwrap(), b"pwned");
    report(
        "symlink `s` to an in-tree file, then a regular entry `s`",
        "neutralised: `s` becomes a plain file, the symlink's target is untouched",
    );
}

#[test]
fn special_modes_are_stripped() {
    let sb = Sandbox::new();
    let bundle = Gz::new()
        .dir("./", 0o1777)
        .dir("sticky", 0o1777)
        .dir("setgid-dir", 0o2775)
        .dir("world", 0o777)
        .file("setuid", 0o4755, b"#!/bin/sh\n")
        .file("setgid", 0o2755, b"#!/bin/sh\n")
        .file("setuid-noexec", 0o6644, b"data")
        .file("sticky-file", 0o1644, b"data")
        .file("world-writable", 0o666, b"data")
        .file("world-exec", 0o777, b"#!/bin/sh\n")
        .file("group-writable", 0o664, b"data")
        .file("implicit/parent/f", 0o7777, b"data")
        .end()
        .finish();
    sb.fetch(&bundle, &Limits::default()).unwrap();
    let rt = sb.runtime();
    let expected = [
        ("", 0o755),
        ("sticky", 0o755),
        ("setgid-dir", 0o755),
        ("world", 0o755),
        ("setuid", 0o755),
        ("setgid", 0o755),
        ("setuid-noexec", 0o644),
        ("sticky-file", 0o644),
        ("world-writable", 0o644),
        ("world-exec", 0o755),
        ("group-writable", 0o644),
        ("implicit", 0o755),
        ("implicit/parent", 0o755),
        ("implicit/parent/f", 0o755),
    ];
    for (p, want) in expected {
        let got = mode(&rt.join(p));
        assert_eq!(got, want, "{p:?}: {got:o}");
        assert_eq!(got & 0o7000, 0, "{p:?} kept a special bit");
        assert_eq!(got & 0o022, 0, "{p:?} is writable by group or others");
    }
    report(
        "setuid 4755, setgid 2755/6644, sticky 1777/1644, world-writable 666/777 files and directories",
        "neutralised: every file unpacks as 0755 or 0644 (executable bit kept), every directory as 0755",
    );
}

#[test]
fn device_nodes_and_fifos_are_refused() {
    for (kind, name, tried) in [
        (EntryType::Char, "null", "character device `null` (1:3)"),
        (EntryType::Block, "sda", "block device `sda`"),
        (EntryType::Fifo, "pipe", "FIFO `pipe`"),
    ] {
        let sb = Sandbox::new();
        let bundle =
            Gz::new().file("ok", 0o644, b"x").entry(&header(name, kind, 0o666, 0, None), b"", 0, 0).end().finish();
        let err = sb.refused(&bundle, &Limits::default());
        let reason = unsafe_reason(&err, name);
        let what = match kind {
            EntryType::Char => "it is a character device",
            EntryType::Block => "it is a block device",
            _ => "it is a FIFO",
        };
        assert!(reason.starts_with(what), "{reason}");
        assert!(reason.contains("only regular files, directories, symlinks and hard links"), "{reason}");
        assert_eq!(err.exit_code(), 7);
        report(tried, &format!("refused: {}", sentence(&sb, &err)));
    }
}

#[test]
fn links_and_directories_carrying_data_are_refused() {
    for (kind, name, link, what) in [
        (EntryType::Symlink, "vmlinuz", Some("vmlinux"), "it is a symlink but carries 1 GiB of data"),
        (EntryType::Link, "hl", Some("vmlinux"), "it is a hard link but carries 1 GiB of data"),
        (EntryType::Directory, "modules", None, "it is a directory but carries 1 GiB of data"),
    ] {
        let mut gz = Gz::new();
        gz.file("vmlinux", 0o644, b"k").bytes(header(name, kind, 0o755, GIB, link).as_bytes()).fill(0, 4 * MIB);
        let bundle = gz.finish();
        let sb = Sandbox::new();
        let err = sb.refused(&bundle, &Limits::default());
        assert_eq!(unsafe_reason(&err, name), what);
        report(
            &format!(
                "{} entry `{name}` declaring 1 GiB of data",
                what.split(" but").next().unwrap().replace("it is ", "")
            ),
            &format!("refused: {}", sentence(&sb, &err)),
        );
    }
}

/// An entry declaring `size` bytes, of which the archive holds `present` zeros before it ends.
fn huge_entry(h: Header, present: u64) -> Vec<u8> {
    let mut gz = Gz::new();
    gz.bytes(h.as_bytes()).fill(0, present);
    gz.finish()
}

#[test]
fn huge_entries_are_refused_before_anything_is_written() {
    let tib = huge_entry(header("rootfs.ext4", EntryType::Regular, 0o644, TIB, None), 64 * MIB);

    // The same entry, its size given by a pax record (which overrides the header's 0):
    // "<len> size=…\n" where <len> counts itself.
    let body = format!("size={TIB}\n");
    let mut n = body.len() + 2;
    while format!("{n} {body}").len() != n {
        n += 1;
    }
    let record = format!("{n} {body}");
    let mut pax = Gz::new();
    pax.entry(
        &header("PaxHeaders/rootfs.ext4", EntryType::XHeader, 0o644, record.len() as u64, None),
        record.as_bytes(),
        0,
        0,
    )
    .bytes(header("rootfs.ext4", EntryType::Regular, 0o644, 0, None).as_bytes())
    .fill(0, 64 * MIB);
    let pax = pax.finish();

    for (tried, bundle) in [
        ("a regular entry whose header declares 1 TiB (followed by 64 MiB of zeros)", tib),
        ("a regular entry whose pax `size` record declares 1 TiB (header says 0)", pax),
    ] {
        // Unpacked directly: the file is never created.
        let d = tempfile::tempdir().unwrap();
        let archive = d.path().join("b.tar.gz");
        fs::write(&archive, &bundle).unwrap();
        let dest = d.path().join("tree");
        fs::create_dir(&dest).unwrap();
        let err = unpack(&archive, &dest, "b.tar.gz", &NoProgress, &Limits::default()).err().unwrap();
        assert!(!dest.join("rootfs.ext4").exists(), "{tried}: the entry was created");
        assert_eq!(names(&dest), Vec::<String>::new());
        let reason = too_large_reason(&err);
        assert_eq!(reason, "entry `rootfs.ext4` declares 1 TiB, more than the 64 GiB one entry may hold");

        let sb = Sandbox::new();
        let err = sb.refused(&bundle, &Limits::default());
        assert_eq!(too_large_reason(&err), reason);
        assert_eq!(err.exit_code(), 7);
        report(tried, &format!("refused before writing: {}", sentence(&sb, &err)));
    }
}

#[test]
fn gnu_sparse_entries_are_refused() {
    // A GNU sparse entry whose map places 512 bytes of data at the end of a 1 TiB file.
    let mut h = header("rootfs.ext4", EntryType::GNUSparse, 0o644, 512, None);
    {
        let gnu = h.as_gnu_mut().unwrap();
        // 12-byte numeric fields in base-256 (1 TiB does not fit 11 octal digits)
        let set = |field: &mut [u8; 12], v: u64| {
            *field = [0; 12];
            field[0] = 0x80;
            field[4..].copy_from_slice(&v.to_be_bytes());
        };
        set(&mut gnu.sparse[0].offset, TIB - 512);
        set(&mut gnu.sparse[0].numbytes, 512);
        set(&mut gnu.realsize, TIB);
    }
    h.set_cksum();
    let bundle = Gz::new().entry(&h, &[7u8; 512], 0, 0).end().finish();

    let sb = Sandbox::new();
    let err = sb.refused(&bundle, &Limits::default());
    let reason = unsafe_reason(&err, "rootfs.ext4");
    assert!(reason.starts_with("it is a GNU sparse file"), "{reason}");
    report("a GNU sparse entry of 1 TiB (512 bytes of data at its end)", &format!("refused: {}", sentence(&sb, &err)));
}

#[test]
fn a_legitimately_sparse_image_stays_sparse() {
    // What `banger runtime package` makes of a mostly empty rootfs image: a plain entry
    // whose zeros compress away. It unpacks with holes, costing only its data.
    let size = 256 * MIB;
    let mut gz = Gz::new();
    gz.bytes(header("rootfs.ext4", EntryType::Regular, 0o644, size, None).as_bytes())
        .bytes(&[0x53; 4096])
        .fill(0, size - 8192)
        .bytes(&[0xef; 4096])
        .end();
    let bundle = gz.finish();
    let sb = Sandbox::new();
    sb.fetch(&bundle, &Limits::default()).unwrap();
    let img = sb.runtime().join("rootfs.ext4");
    let meta = fs::metadata(&img).unwrap();
    assert_eq!(meta.len(), size);
    let allocated = meta.blocks() * 512;
    assert!(allocated < 4 * MIB, "allocated {allocated}");
    report(
        "a 256 MiB image that is all zeros but 8 KiB, as `banger runtime package` stores it",
        &format!("accepted: unpacked with holes, {} KiB allocated", allocated / 1024),
    );
}

/// Free space as if the filesystem had 8 MiB above the reserve (256 MiB of a 100 GiB
/// filesystem) before unpacking began; what was unpacked so far is taken from it.
fn tight_space(dest: &Path) -> io::Result<Space> {
    fn used(p: &Path) -> u64 {
        let m = fs::symlink_metadata(p).unwrap();
        let own = m.blocks() * 512;
        if m.is_dir() { own + fs::read_dir(p).unwrap().map(|e| used(&e.unwrap().path())).sum::<u64>() } else { own }
    }
    Ok(Space { available: (256 + 8) * MIB - used(dest).min(264 * MIB), total: 100 * GIB })
}

#[test]
fn a_bomb_that_would_fill_the_disk_stops_at_the_reserve() {
    // 1 GiB of non-zero bytes (1 MiB of gzip) in one file: within the size limits, but it
    // would really take 1 GiB of disk.
    let mut gz = Gz::new();
    gz.bytes(header("rootfs.ext4", EntryType::Regular, 0o644, GIB, None).as_bytes()).fill(0x01, GIB).end();
    let bundle = gz.finish();
    assert!(bundle.len() < 2 * MIB as usize);
    let limits = Limits { space: tight_space, ..Limits::default() };

    let d = tempfile::tempdir().unwrap();
    let archive = d.path().join("b.tar.gz");
    fs::write(&archive, &bundle).unwrap();
    let dest = d.path().join("tree");
    fs::create_dir(&dest).unwrap();
    let err = unpack(&archive, &dest, "b.tar.gz", &NoProgress, &limits).err().unwrap();
    assert!(matches!(err, BundleError::NoSpace { ref entry, .. } if entry == "rootfs.ext4"), "{err:?}");
    let written = fs::metadata(dest.join("rootfs.ext4")).unwrap().blocks() * 512;
    assert!(written <= 8 * MIB, "wrote {written} bytes past the reserve");

    let sb = Sandbox::new();
    let err = sb.refused(&bundle, &limits);
    let msg = err.to_string();
    assert!(msg.starts_with("not enough free space to unpack bundle"), "{msg}");
    assert!(msg.contains(&format!("in {}:", sb.base().display())), "names the runtime's parent: {msg}");
    assert!(msg.contains("writing entry `rootfs.ext4` would leave less than 256 MiB free"), "{msg}");
    assert_eq!(err.exit_code(), 1);
    report(
        "1 MiB of gzip expanding to one 1 GiB file of 0x01 bytes, on a filesystem with 8 MiB above the reserve",
        &format!(
            "refused after writing at most 8 MiB ({} KiB): {}",
            written / 1024,
            sentence(&sb, &err).replace("b.tar.gz", "bundle.tar.gz")
        ),
    );
}

#[test]
fn a_bomb_declaring_more_than_an_entry_may_hold_is_refused_at_its_header() {
    // 65 GiB of zeros in about 65 MiB of gzip, in one honestly declared entry.
    let size = 65 * GIB;
    let mut gz = Gz::new();
    gz.bytes(header("zeros", EntryType::Regular, 0o644, size, None).as_bytes()).fill(0, size).end();
    let bundle = gz.finish();
    let sb = Sandbox::new();
    let started = std::time::Instant::now();
    let err = sb.refused(&bundle, &Limits::default());
    assert_eq!(too_large_reason(&err), "entry `zeros` declares 65 GiB, more than the 64 GiB one entry may hold");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "it decompressed the bomb");
    report(
        &format!("{} MiB of gzip expanding to one 65 GiB file of zeros", bundle.len() as u64 / MIB),
        &format!("refused at its header, nothing decompressed or written: {}", sentence(&sb, &err)),
    );
}

#[test]
fn a_bomb_of_many_files_is_refused_at_the_total() {
    // 64 files of 256 MiB of zeros each (16 MiB of gzip); the total limit is lowered to 512 MiB
    // here so the test stays fast (by default it is 128 GiB).
    let mut gz = Gz::new();
    for i in 0..64 {
        gz.bytes(header(&format!("f{i:02}"), EntryType::Regular, 0o644, 256 * MIB, None).as_bytes()).fill(0, 256 * MIB);
    }
    gz.end();
    let bundle = gz.finish();
    let limits = Limits { max_total_bytes: 512 * MIB, ..Limits::default() };
    let sb = Sandbox::new();
    let err = sb.refused(&bundle, &limits);
    assert_eq!(too_large_reason(&err), "entry `f02` (256 MiB) would take it past 512 MiB unpacked in total");
    report(
        &format!(
            "{} MiB of gzip expanding to 64 files of 256 MiB of zeros (total limit lowered to 512 MiB; 128 GiB by default)",
            bundle.len() as u64 / MIB
        ),
        &format!("refused at the 3rd file: {}", sentence(&sb, &err)),
    );

    // Many small entries: the entry count limit (100,000 by default, 1,000 here).
    let mut gz = Gz::new();
    for i in 0..1001 {
        gz.file(&format!("e{i:04}"), 0o644, b"");
    }
    gz.end();
    let bundle = gz.finish();
    let limits = Limits { max_entries: 1000, ..Limits::default() };
    let sb = Sandbox::new();
    let err = sb.refused(&bundle, &limits);
    assert_eq!(too_large_reason(&err), "it has more than 1000 entries (`e1000` is one too many)");
    report(
        "1,001 empty files (entry limit lowered to 1,000; 100,000 by default)",
        &format!("refused: {}", sentence(&sb, &err)),
    );
}

#[test]
fn a_bomb_in_the_headers_is_refused_without_buffering_it() {
    // A GNU long name of 1 GiB: the tar parser would read it all into memory.
    let mut gz = Gz::new();
    gz.file("ok", 0o644, b"x")
        .bytes(header("././@LongLink", EntryType::GNULongName, 0o644, GIB, None).as_bytes())
        .fill(b'a', GIB)
        .bytes(header("placeholder", EntryType::Regular, 0o644, 0, None).as_bytes())
        .end();
    let bundle = gz.finish();
    let sb = Sandbox::new();
    let err = sb.refused(&bundle, &Limits::default());
    assert_eq!(
        too_large_reason(&err),
        "the header material (names, pax records, sparse maps) after entry `ok` exceeds 1 MiB"
    );
    report(
        "a 1 GiB GNU long name (1 MiB of gzip)",
        &format!("refused after reading 1 MiB of it: {}", sentence(&sb, &err)),
    );
}

#[test]
fn a_bomb_after_the_end_of_the_archive_is_refused() {
    let mut gz = Gz::new();
    gz.file("ok", 0o644, b"x").end().fill(0, GIB);
    let bundle = gz.finish();
    let sb = Sandbox::new();
    let err = sb.refused(&bundle, &Limits::default());
    assert_eq!(too_large_reason(&err), "more than 1 MiB of data follows the end of the archive (after entry `ok`)");
    report(
        "1 GiB of zeros after the end-of-archive marker (1 MiB of gzip)",
        &format!("refused after reading 1 MiB of it: {}", sentence(&sb, &err)),
    );
}

#[test]
fn absolute_paths_and_parent_components_are_refused() {
    let sb0 = Sandbox::new();
    let abs = sb0.outer.path().join("abs-evil").display().to_string();
    let long_escape = format!("{}/../../../../evil", "d".repeat(120));
    let cases: Vec<(String, Vec<u8>, String, &str)> = vec![
        (
            "`../../../evil`".into(),
            Gz::new().file("ok", 0o644, b"x").file("../../../evil", 0o644, b"pwned").end().finish(),
            "../../../evil".into(),
            "`..` components are not allowed",
        ),
        (
            "`a/../../b` (escapes after a normal component)".into(),
            Gz::new().dir("a", 0o755).file("a/../../b", 0o644, b"pwned").end().finish(),
            "a/../../b".into(),
            "`..` components are not allowed",
        ),
        (
            "`a/../f` (stays inside, but is refused all the same)".into(),
            Gz::new().dir("a", 0o755).file("a/../f", 0o644, b"x").end().finish(),
            "a/../f".into(),
            "`..` components are not allowed",
        ),
        (
            "an absolute path outside the runtime directory".into(),
            Gz::new().file(&abs, 0o644, b"pwned").end().finish(),
            abs.clone(),
            "absolute paths are not allowed",
        ),
        (
            "a 137-byte GNU long name ending in `/../../../../evil`".into(),
            Gz::new()
                .entry(
                    &header("././@LongLink", EntryType::GNULongName, 0o644, long_escape.len() as u64 + 1, None),
                    format!("{long_escape}\0").as_bytes(),
                    0,
                    0,
                )
                .file("placeholder", 0o644, b"pwned")
                .end()
                .finish(),
            long_escape.clone(),
            "`..` components are not allowed",
        ),
    ];
    for (tried, bundle, entry, expect) in cases {
        let sb = Sandbox::new();
        let err = sb.refused(&bundle, &Limits::default());
        let reason = unsafe_reason(&err, &entry);
        assert_eq!(reason, expect, "{tried}");
        assert!(!sb0.outer.path().join("abs-evil").exists());
        assert!(!sb.outer.path().join("evil").exists() && !sb.base().join("evil").exists());
        let shown = sentence(&sb, &err).replace(&abs, "/…/abs-evil");
        report(&format!("entry path {tried}"), &format!("refused: {shown}"));
    }
}
