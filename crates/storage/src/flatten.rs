//! A standalone image from a stopped VM's disks: its base with every chunk the guest changed
//! replaced by the copy in its overlay.
//!
//! The overlay is the copy-on-write store of the persistent dm-snapshot the guest's initrd builds
//! (`0 SECTORS snapshot BASE COW P 8`). Its on-disk format (Linux `dm-snap-persistent`):
//!
//! - chunk 0 is the header: le32 magic `0x70416e53` ("SnAp"), le32 valid, le32 version (1),
//!   le32 chunk size in 512-byte sectors; the rest of the chunk is unused;
//! - then areas: with `E = chunk_bytes / 16` exceptions per area, area `i`'s metadata chunk is
//!   chunk `1 + i * (E + 1)`, holding `E` entries `{le64 old_chunk, le64 new_chunk}`, followed by
//!   the area's `E` data chunks;
//! - an entry whose `new_chunk` is 0 (the header's chunk, never a data chunk) ends the table, and
//!   only a full area is followed by another: the kernel zeroes area `i + 1` on disk before it
//!   commits the last entry of area `i`, and it writes an area only after the data chunks its
//!   entries point at are on disk (`REQ_PREFLUSH | REQ_FUA`).
//!
//! A store whose magic is 0 is one the kernel has not set up yet (it writes the header and zeroes
//! area 0 when it first loads the snapshot): to the kernel that is a snapshot with no exceptions.
//! Banger's initrd does that on the guest's first boot, before anything else touches the disk, so
//! an overlay of a VM that ever booted always has a header; [`read_store`] refuses one without,
//! because flattening it would silently produce a plain copy of the base — far more likely a VM
//! that never booted, or the wrong file, than something the caller wants.

use crate::StorageError;
use banger_host::run;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// "SnAp", little-endian.
pub const MAGIC: u32 = 0x7041_6e53;
/// The only on-disk format version there is.
pub const VERSION: u32 = 1;
/// Bytes of one exception entry: le64 old chunk, le64 new chunk.
const ENTRY_BYTES: u64 = 16;
/// The largest chunk accepted (the kernel allows up to 1 GiB; banger's is 4 KiB). Keeps a corrupt
/// header from making us allocate gigabytes.
const MAX_CHUNK_BYTES: u64 = 16 << 20;
/// Up to this many ranges to turn into holes are punched one `fallocate` each; more, and the whole
/// output is scanned once (`fallocate --dig-holes`).
const PUNCH_EACH_MAX: usize = 16;

/// What a persistent dm-snapshot exception store says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub chunk_bytes: u64,
    /// `false`: the kernel invalidated the snapshot (its store filled up or an I/O error); its
    /// exceptions are then not read (the kernel does not read them either).
    pub valid: bool,
    /// old chunk (in the base) -> new chunk (in the COW file), in table order; later entries win.
    pub exceptions: Vec<(u64, u64)>,
}

impl Store {
    /// Exceptions (and data chunks) per area.
    pub fn per_area(&self) -> u64 {
        self.chunk_bytes / ENTRY_BYTES
    }
}

fn bad(path: &Path, why: impl Into<String>) -> StorageError {
    StorageError::Snapshot { path: path.into(), why: why.into() }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |source| StorageError::Io { what, path: path.into(), source }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Read the exception store in `cow`. Refuses a file that was never used by a guest (no header),
/// a wrong magic, a version other than 1, a chunk size that is not a power-of-two multiple of 512
/// bytes (up to 16 MiB), a table that runs past the end of the file and an exception whose data
/// chunk is a metadata chunk or lies beyond the end of the file.
pub fn read_store(cow: &Path) -> Result<Store, StorageError> {
    let f = File::open(cow).map_err(io("open", cow))?;
    let len = f.metadata().map_err(io("read", cow))?.len();
    if len < 512 {
        return Err(bad(cow, format!("is {len} bytes, too short to hold a snapshot header")));
    }
    let mut header = [0u8; 16];
    f.read_exact_at(&mut header, 0).map_err(io("read", cow))?;
    let (magic, valid, version, sectors) = (le32(&header, 0), le32(&header, 4), le32(&header, 8), le32(&header, 12));
    if magic == 0 {
        return Err(bad(cow, "was never used by a guest (it has no snapshot header yet)"));
    }
    if magic != MAGIC {
        return Err(bad(cow, format!("is not a dm-snapshot store (magic {magic:#010x}, expected {MAGIC:#010x})")));
    }
    if version != VERSION {
        return Err(bad(cow, format!("has snapshot format version {version}; only version {VERSION} is understood")));
    }
    let chunk_bytes = u64::from(sectors) * 512;
    if !sectors.is_power_of_two() || chunk_bytes > MAX_CHUNK_BYTES {
        return Err(bad(
            cow,
            format!(
                "has a chunk size of {sectors} sectors; a power of two from 1 to {} is needed",
                MAX_CHUNK_BYTES / 512
            ),
        ));
    }
    let mut store = Store { chunk_bytes, valid: valid != 0, exceptions: Vec::new() };
    if !store.valid {
        return Ok(store);
    }
    let per_area = store.per_area();
    let chunks = len / chunk_bytes;
    let mut area = vec![0u8; chunk_bytes as usize];
    let mut i = 0u64;
    loop {
        let at = 1 + i * (per_area + 1);
        if at >= chunks {
            return Err(bad(
                cow,
                format!("ends inside its exception table (area {i} would be chunk {at}, the file has {chunks} chunks)"),
            ));
        }
        f.read_exact_at(&mut area, at * chunk_bytes).map_err(io("read", cow))?;
        for entry in area.chunks_exact(ENTRY_BYTES as usize) {
            let (old, new) = (le64(entry, 0), le64(entry, 8));
            if new == 0 {
                return Ok(store);
            }
            let n = store.exceptions.len();
            if new >= chunks {
                return Err(bad(
                    cow,
                    format!(
                        "has exception {n} mapping chunk {old} to chunk {new}, beyond the end of the file ({chunks} chunks)"
                    ),
                ));
            }
            if (new - 1) % (per_area + 1) == 0 {
                return Err(bad(
                    cow,
                    format!("has exception {n} mapping chunk {old} to chunk {new}, a metadata chunk"),
                ));
            }
            store.exceptions.push((old, new));
        }
        i += 1;
    }
}

/// Write `out` (which must not exist) = `base` with the exceptions of the store in `cow` applied;
/// `cow` must be the overlay of a VM that is not running and was powered off cleanly (see the
/// module's notes). Returns how many base chunks were replaced (distinct old chunks).
///
/// The copy of the base is sparse (`cp --sparse=always --reflink=auto`), a replaced chunk that is
/// all zeros becomes a hole, and the result appears under its name only when complete (written
/// beside it under a temporary name, removed on any error). `base` and `cow` are only read.
/// Refuses (before writing anything) an invalidated snapshot, and an exception for a chunk beyond
/// the end of the base, besides everything [`read_store`] refuses.
pub fn flatten(base: &Path, cow: &Path, out: &Path) -> Result<usize, StorageError> {
    flatten_with(base, cow, out, || ())
}

/// [`flatten`], calling `before_place` just before the result is given its name (tests use it to
/// race another writer of `out`).
fn flatten_with(base: &Path, cow: &Path, out: &Path, before_place: impl FnOnce()) -> Result<usize, StorageError> {
    if out.symlink_metadata().is_ok() {
        return Err(StorageError::Exists { path: out.into() });
    }
    let store = read_store(cow)?;
    if !store.valid {
        return Err(bad(
            cow,
            "holds a snapshot the guest's kernel invalidated (its store filled up or failed), so the changes are lost",
        ));
    }
    let base_len = std::fs::metadata(base).map_err(io("read", base))?.len();
    let cb = store.chunk_bytes;
    let base_chunks = base_len.div_ceil(cb);
    // Later entries win.
    let map: BTreeMap<u64, u64> = store.exceptions.iter().copied().collect();
    if let Some((&old, &new)) = map.range(base_chunks..).next() {
        return Err(bad(
            cow,
            format!(
                "maps chunk {old} (to chunk {new}), beyond the end of the base {} ({base_chunks} chunks of {cb} bytes); is it the overlay of another base?",
                base.display()
            ),
        ));
    }

    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Unique per call, so two flattens in one process never share it.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = Temp(parent.join(format!(".{name}.flatten-{}-{call}", std::process::id())));
    let _ = std::fs::remove_file(&tmp.0);
    run("cp", ["--sparse=always".as_ref(), "--reflink=auto".as_ref(), base.as_os_str(), tmp.0.as_os_str()])?;
    apply(base, cow, &tmp.0, &map, cb, base_len)?;
    File::open(&tmp.0).and_then(|f| f.sync_all()).map_err(io("sync", &tmp.0))?;
    before_place();
    // A hard link never replaces an existing file (a rename would).
    match std::fs::hard_link(&tmp.0, out) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(StorageError::Exists { path: out.into() });
        }
        Err(_) => {
            if out.symlink_metadata().is_ok() {
                return Err(StorageError::Exists { path: out.into() });
            }
            std::fs::rename(&tmp.0, out).map_err(io("rename into place", out))?;
        }
    }
    drop(tmp);
    if let Ok(d) = File::open(parent) {
        let _ = d.sync_all();
    }
    Ok(map.len())
}

/// Removes the file when dropped (the temporary output; gone after a hard link to its final name).
struct Temp(PathBuf);

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Copy each exception's chunk from `cow` over the copy of the base in `out`; chunks that are all
/// zeros become holes.
fn apply(
    base: &Path,
    cow: &Path,
    out: &Path,
    map: &BTreeMap<u64, u64>,
    cb: u64,
    base_len: u64,
) -> Result<(), StorageError> {
    let base_f = File::open(base).map_err(io("open", base))?;
    let cow_f = File::open(cow).map_err(io("open", cow))?;
    let out_f = File::options().write(true).open(out).map_err(io("open", out))?;
    let mut chunk = vec![0u8; cb as usize];
    let mut holes: Vec<(u64, u64)> = Vec::new();
    for (&old, &new) in map {
        let at = old * cb;
        // The base's last chunk may be partial: the snapshot is exactly as long as the base.
        let n = cb.min(base_len - at) as usize;
        let data = &mut chunk[..n];
        cow_f.read_exact_at(data, new * cb).map_err(io("read", cow))?;
        if !is_zero(data) {
            out_f.write_all_at(data, at).map_err(io("write", out))?;
            continue;
        }
        // Zeros: nothing to do where the sparse copy of the base already has a hole (it reads as
        // zeros). Elsewhere they are written (so the content is right whatever happens to the
        // holes), then the range is punched.
        base_f.read_exact_at(data, at).map_err(io("read", base))?;
        if is_zero(data) {
            continue;
        }
        data.fill(0);
        out_f.write_all_at(data, at).map_err(io("write", out))?;
        match holes.last_mut() {
            Some((start, len)) if *start + *len == at => *len += n as u64,
            _ => holes.push((at, n as u64)),
        }
    }
    drop(out_f);
    if holes.len() > PUNCH_EACH_MAX {
        run("fallocate", ["--dig-holes".as_ref(), out.as_os_str()])?;
    } else {
        for (at, len) in holes {
            let (at, len) = (at.to_string(), len.to_string());
            run(
                "fallocate",
                [
                    "--punch-hole".as_ref(),
                    "--offset".as_ref(),
                    at.as_ref(),
                    "--length".as_ref(),
                    len.as_ref(),
                    out.as_os_str(),
                ],
            )?;
        }
    }
    Ok(())
}

fn is_zero(b: &[u8]) -> bool {
    let words = b.chunks_exact(8);
    words.remainder().iter().all(|&x| x == 0)
        && words.into_iter().all(|w| u64::from_ne_bytes(w.try_into().unwrap()) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Where the kernel puts the `k`-th exception's data: the `k`-th data chunk (metadata chunks
    /// skipped), with `e` exceptions per area.
    fn data_chunk(k: u64, e: u64) -> u64 {
        1 + (k / e) * (e + 1) + 1 + k % e
    }

    fn header(f: &File, magic: u32, valid: u32, version: u32, sectors: u32) {
        let mut h = Vec::new();
        for v in [magic, valid, version, sectors] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        f.write_all_at(&h, 0).unwrap();
    }

    fn entry(f: &File, cb: u64, k: u64, old: u64, new: u64) {
        let e = cb / 16;
        let mut b = old.to_le_bytes().to_vec();
        b.extend_from_slice(&new.to_le_bytes());
        f.write_all_at(&b, (1 + (k / e) * (e + 1)) * cb + (k % e) * 16).unwrap();
    }

    /// A store as the kernel leaves it, `chunks` long: the header, then for each (old chunk, fill
    /// byte) in order an entry and a data chunk of that byte in the next free data chunk.
    fn store(path: &Path, cb: u64, entries: &[(u64, u8)], chunks: u64) -> Vec<(u64, u64)> {
        let f = File::create(path).unwrap();
        f.set_len(chunks * cb).unwrap();
        header(&f, MAGIC, 1, VERSION, (cb / 512) as u32);
        let mut out = Vec::new();
        for (k, &(old, fill)) in entries.iter().enumerate() {
            let new = data_chunk(k as u64, cb / 16);
            entry(&f, cb, k as u64, old, new);
            f.write_all_at(&vec![fill; cb as usize], new * cb).unwrap();
            out.push((old, new));
        }
        out
    }

    /// A base of `chunks` chunks, chunk i filled with `fill(i)` (0: left a hole).
    fn base(path: &Path, cb: u64, chunks: u64, fill: impl Fn(u64) -> u8) -> Vec<u8> {
        let f = File::create(path).unwrap();
        f.set_len(chunks * cb).unwrap();
        let mut all = vec![0u8; (chunks * cb) as usize];
        for i in 0..chunks {
            let b = fill(i);
            if b != 0 {
                f.write_all_at(&vec![b; cb as usize], i * cb).unwrap();
                all[(i * cb) as usize..((i + 1) * cb) as usize].fill(b);
            }
        }
        all
    }

    /// `image` with each (old chunk, fill) applied in order.
    fn expect(mut image: Vec<u8>, cb: u64, entries: &[(u64, u8)]) -> Vec<u8> {
        for &(old, fill) in entries {
            let end = (((old + 1) * cb) as usize).min(image.len());
            image[(old * cb) as usize..end].fill(fill);
        }
        image
    }

    /// Compare without printing megabytes.
    #[track_caller]
    fn same(path: &Path, want: &[u8]) {
        let got = std::fs::read(path).unwrap();
        assert_eq!(got.len(), want.len(), "{} has the wrong length", path.display());
        if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
            panic!(
                "{} differs first at byte {i} (chunk of 4 KiB {}): {} != {}",
                path.display(),
                i / 4096,
                got[i],
                want[i]
            );
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> =
            std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    fn blocks(p: &Path) -> u64 {
        std::fs::metadata(p).unwrap().blocks() * 512
    }

    #[test]
    fn one_area_of_4k_chunks() {
        let t = tempfile::tempdir().unwrap();
        let (b, c, o) = (t.path().join("base"), t.path().join("cow"), t.path().join("out"));
        let image = base(&b, 4096, 64, |i| (i % 200) as u8 + 1);
        let entries = [(3, 0xaa), (10, 0xbb), (63, 0xcc), (0, 0xdd)];
        let placed = store(&c, 4096, &entries, 300);
        let s = read_store(&c).unwrap();
        assert_eq!(s, Store { chunk_bytes: 4096, valid: true, exceptions: placed });
        assert_eq!(s.per_area(), 256);
        assert_eq!(flatten(&b, &c, &o).unwrap(), 4);
        same(&o, &expect(image.clone(), 4096, &entries));
        same(&b, &image);
        assert_eq!(names(t.path()), ["base", "cow", "out"], "leftovers");
        // An existing output is never replaced.
        assert!(matches!(flatten(&b, &c, &o), Err(StorageError::Exists { .. })));
    }

    #[test]
    fn several_areas_and_a_full_area_followed_by_a_zeroed_one() {
        let t = tempfile::tempdir().unwrap();
        let (b, c) = (t.path().join("base"), t.path().join("cow"));
        // 512-byte chunks: 32 exceptions per area; 70 of them fill two areas and part of a third.
        let image = base(&b, 512, 200, |i| if i % 3 == 0 { 0 } else { (i % 250) as u8 + 1 });
        let entries: Vec<(u64, u8)> = (0..70).map(|k| ((k * 7) % 200, k as u8 + 1)).collect();
        let placed = store(&c, 512, &entries, 200);
        let s = read_store(&c).unwrap();
        assert_eq!(s.exceptions, placed);
        assert_eq!(s.exceptions[32].1, 35, "area 1's data follows its metadata chunk 34");
        let o = t.path().join("out");
        assert_eq!(flatten(&b, &c, &o).unwrap(), 70);
        same(&o, &expect(image, 512, &entries));

        // Exactly one full area: the kernel zeroed the next area before committing the last
        // entry, so reading stops there.
        let c2 = t.path().join("cow2");
        store(&c2, 512, &entries[..32], 200);
        assert_eq!(read_store(&c2).unwrap().exceptions.len(), 32);
    }

    #[test]
    fn reading_stops_at_the_first_entry_with_new_chunk_zero() {
        let t = tempfile::tempdir().unwrap();
        let c = t.path().join("cow");
        store(&c, 4096, &[(1, 1), (2, 2)], 64);
        let f = File::options().write(true).open(&c).unwrap();
        // Entry 2 is the end (already zero); entries after it are not exceptions, nor is a
        // non-zero area beyond.
        entry(&f, 4096, 3, 9, 7);
        entry(&f, 4096, 256, 9, 300);
        assert_eq!(read_store(&c).unwrap().exceptions, [(1, 2), (2, 3)]);
        // A new store (header, zeroed area 0) has no exceptions.
        let c2 = t.path().join("cow2");
        store(&c2, 4096, &[], 8);
        assert_eq!(read_store(&c2).unwrap().exceptions, []);
    }

    #[test]
    fn later_entries_win_and_partial_last_chunk() {
        let t = tempfile::tempdir().unwrap();
        let (b, c, o) = (t.path().join("base"), t.path().join("cow"), t.path().join("out"));
        // 10000 bytes: the last 4 KiB chunk is partial, and so is its copy.
        std::fs::write(&b, vec![0x5au8; 10000]).unwrap();
        let entries = [(1, 0x11), (2, 0x22), (1, 0x33)];
        store(&c, 4096, &entries, 16);
        assert_eq!(flatten(&b, &c, &o).unwrap(), 2);
        same(&o, &expect(vec![0x5a; 10000], 4096, &entries));
    }

    #[test]
    fn zero_chunks_become_holes() {
        let t = tempfile::tempdir().unwrap();
        let (b, c) = (t.path().join("base"), t.path().join("cow"));
        // Chunks 40..64 are a hole in the base.
        let image = base(&b, 4096, 64, |i| if i >= 40 { 0 } else { 7 });
        assert_eq!(blocks(&b), 40 * 4096);
        // Three zeroed chunks over data (two ranges), one over the base's hole, one with data.
        let entries = [(2, 0), (3, 0), (9, 0), (50, 0), (20, 0x33)];
        store(&c, 4096, &entries, 64);
        let o = t.path().join("out");
        assert_eq!(flatten(&b, &c, &o).unwrap(), 5);
        same(&o, &expect(image.clone(), 4096, &entries));
        assert!(blocks(&o) <= 37 * 4096, "{} bytes allocated", blocks(&o));

        // Many ranges: the whole output is scanned for zeros once.
        let c2 = t.path().join("cow2");
        let many: Vec<(u64, u8)> = (0..20).map(|i| (i * 2, 0)).collect();
        store(&c2, 4096, &many, 64);
        let o2 = t.path().join("out2");
        assert_eq!(flatten(&b, &c2, &o2).unwrap(), 20);
        same(&o2, &expect(image, 4096, &many));
        // (an extent tree block may be needed for this many extents)
        assert!(blocks(&o2) <= 21 * 4096, "{} bytes allocated", blocks(&o2));
    }

    #[test]
    fn refusals_write_nothing() {
        let t = tempfile::tempdir().unwrap();
        let b = t.path().join("base");
        let image = base(&b, 4096, 64, |_| 9);
        let o = t.path().join("out");
        let c = t.path().join("cow");
        type Spoil = Box<dyn Fn(&File)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("never used by a guest", Box::new(|f| f.write_all_at(&[0; 16], 0).unwrap())),
            ("not a dm-snapshot store", Box::new(|f| header(f, 0x1234, 1, 1, 8))),
            ("format version 2", Box::new(|f| header(f, MAGIC, 1, 2, 8))),
            ("chunk size of 12 sectors", Box::new(|f| header(f, MAGIC, 1, 1, 12))),
            ("chunk size of 0 sectors", Box::new(|f| header(f, MAGIC, 1, 1, 0))),
            ("chunk size of 65536 sectors", Box::new(|f| header(f, MAGIC, 1, 1, 65536))),
            ("invalidated", Box::new(|f| header(f, MAGIC, 0, 1, 8))),
            ("beyond the end of the base", Box::new(|f| entry(f, 4096, 2, 64, 4))),
            ("beyond the end of the file", Box::new(|f| entry(f, 4096, 2, 5, 300))),
            ("a metadata chunk", Box::new(|f| entry(f, 4096, 2, 5, 258))),
            (
                "ends inside its exception table",
                // A full area 0 and no room left for area 1.
                Box::new(|f| {
                    (0..256).for_each(|k| entry(f, 4096, k, k % 64, data_chunk(k, 256)));
                    f.set_len(258 * 4096).unwrap()
                }),
            ),
            ("too short", Box::new(|f| f.set_len(100).unwrap())),
        ];
        for (why, spoil) in cases {
            let _ = std::fs::remove_file(&c);
            store(&c, 4096, &[(1, 1), (2, 2)], 260);
            spoil(&File::options().write(true).open(&c).unwrap());
            let e = flatten(&b, &c, &o).unwrap_err();
            assert!(matches!(e, StorageError::Snapshot { .. }), "{why}: {e:?}");
            assert!(e.to_string().contains(why), "{why}: {e}");
            assert!(e.to_string().contains("cow"), "{e}");
            assert_eq!(names(t.path()), ["base", "cow"], "{why}: leftovers");
        }
        // An invalidated store reads as such, with no exceptions.
        store(&c, 4096, &[(1, 1)], 16);
        header(&File::options().write(true).open(&c).unwrap(), MAGIC, 0, 1, 8);
        assert_eq!(read_store(&c).unwrap(), Store { chunk_bytes: 4096, valid: false, exceptions: vec![] });
        same(&b, &image);
    }

    #[test]
    fn an_output_that_appears_meanwhile_is_kept_and_the_temporary_removed() {
        let t = tempfile::tempdir().unwrap();
        let (b, c, o) = (t.path().join("base"), t.path().join("cow"), t.path().join("out"));
        base(&b, 4096, 8, |_| 1);
        store(&c, 4096, &[(1, 2)], 16);
        let e = flatten_with(&b, &c, &o, || std::fs::write(&o, "theirs").unwrap()).unwrap_err();
        assert!(matches!(e, StorageError::Exists { .. }), "{e:?}");
        assert_eq!(std::fs::read(&o).unwrap(), b"theirs");
        assert_eq!(names(t.path()), ["base", "cow", "out"], "leftovers");
        // A missing base: nothing is written either.
        let e = flatten(&t.path().join("nope"), &c, &t.path().join("out2")).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        assert_eq!(names(t.path()), ["base", "cow", "out"], "leftovers");
    }
}
