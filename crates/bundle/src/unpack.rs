//! Strict `.tar.gz` extraction into a fresh staging directory.
//!
//! Only regular files, directories and symlinks that stay inside the tree are
//! accepted (hard links to earlier regular files are allowed too). Absolute
//! paths, `..` components, escaping links, writes through a symlink, devices,
//! fifos, GNU sparse entries and every other entry type are refused. Modes are
//! normalised to 0644/0755 (executable bit preserved; setuid, setgid, sticky and
//! group/other write bits never survive); ownership and times are not restored.
//!
//! Sizes are bounded so that neither a huge entry nor a decompression bomb can
//! exhaust the disk, memory or time (see [`Limits`]): every decompressed byte is
//! either the data of a regular entry, whose declared size is capped per entry
//! and in total before anything is written, or header material (names, pax
//! records, sparse maps, padding after the end), which is capped per entry and
//! in total. Bytes actually written (all-zero blocks become holes, so sparse
//! rootfs images cost only their data) are checked against the free space of
//! the target filesystem, which always keeps a reserve.

use std::cell::Cell;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use flate2::bufread::MultiGzDecoder;
use tar::EntryType;

use crate::error::{BundleError, human_bytes};
use crate::progress::Progress;

/// Maximum number of symlinks followed while resolving one link target.
const MAX_LINK_HOPS: usize = 40;
const IO_BUF: usize = 1 << 20;
const SPARSE_BLOCK: usize = 64 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Free and total bytes of a filesystem.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Space {
    pub available: u64,
    pub total: u64,
}

impl Space {
    /// What unpacking always leaves free: 5% of the filesystem, at most 256 MiB.
    pub fn reserve(&self) -> u64 {
        (self.total / 20).min(256 * MIB)
    }
}

/// The free space of the filesystem holding `path` (statvfs).
pub(crate) fn statvfs_space(path: &Path) -> io::Result<Space> {
    let st = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    let frag = st.fragment_size() as u64;
    Ok(Space {
        available: (st.blocks_available() as u64).saturating_mul(frag),
        total: (st.blocks() as u64).saturating_mul(frag),
    })
}

/// What one unpack may consume. The defaults are generous for a real bundle
/// (about 1,100 entries, rootfs images of 4 and 8 GiB that are mostly holes,
/// about 12 GiB in all) while bounding what a hostile archive can cost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Entries (files, directories, links) in the archive.
    pub max_entries: u64,
    /// Declared size of one regular file.
    pub max_entry_bytes: u64,
    /// Sum of the declared sizes of all regular files.
    pub max_total_bytes: u64,
    /// Header material before one entry (its header, long names, pax records,
    /// sparse maps), and data after the end of the archive.
    pub max_header_bytes: u64,
    /// Header material of the whole archive.
    pub max_total_header_bytes: u64,
    /// Free space is re-checked at least this often while writing.
    pub space_check_every: u64,
    /// How free space is measured (statvfs; tests substitute their own).
    pub space: fn(&Path) -> io::Result<Space>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 100_000,
            max_entry_bytes: 64 * GIB,
            max_total_bytes: 128 * GIB,
            max_header_bytes: MIB,
            max_total_header_bytes: 256 * MIB,
            space_check_every: 64 * MIB,
            space: statvfs_space,
        }
    }
}

pub(crate) struct Unpacked {
    pub entries: u64,
}

/// Turns a raw archive path into a clean relative path, refusing anything that
/// could leave the destination. An empty result means the archive root (`./`).
pub(crate) fn sanitize(raw: &[u8]) -> Result<PathBuf, String> {
    if raw.is_empty() {
        return Err("the path is empty".into());
    }
    if raw.contains(&0) {
        return Err("the path contains a NUL byte".into());
    }
    let p = Path::new(OsStr::from_bytes(raw));
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err("absolute paths are not allowed".into());
            }
            Component::ParentDir => return Err("`..` components are not allowed".into()),
        }
    }
    Ok(out)
}

/// Lexically checks that symlink `target`, placed at relative path `link`,
/// stays inside the tree.
pub(crate) fn lexical_target_ok(link: &Path, target: &Path) -> Result<(), String> {
    if target.as_os_str().is_empty() {
        return Err("the symlink target is empty".into());
    }
    if target.is_absolute() {
        return Err(format!("symlink target `{}` is absolute", target.display()));
    }
    let mut depth: usize = link.parent().map_or(0, |p| p.components().count());
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("symlink target `{}` points outside the tree", target.display()))?;
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("symlink target `{}` is absolute", target.display()));
            }
        }
    }
    Ok(())
}

/// Resolves the symlink at `root/link` step by step, following symlinks found
/// inside `root`, and fails if resolution ever leaves `root` (or loops).
pub(crate) fn resolve_within(root: &Path, link: &Path) -> Result<(), String> {
    let mut stack: Vec<std::ffi::OsString> =
        link.parent().map(|p| p.components().map(|c| c.as_os_str().to_owned()).collect()).unwrap_or_default();
    let target = fs::read_link(root.join(link)).map_err(|e| format!("cannot read the link: {e}"))?;
    let mut pending: Vec<std::ffi::OsString> = Vec::new();
    let push_target = |pending: &mut Vec<std::ffi::OsString>, t: &Path| -> Result<(), String> {
        if t.is_absolute() {
            return Err(format!("symlink target `{}` is absolute", t.display()));
        }
        // pending is a stack: push in reverse so the first component pops first
        let comps: Vec<_> = t.components().map(|c| c.as_os_str().to_owned()).collect();
        pending.extend(comps.into_iter().rev());
        Ok(())
    };
    push_target(&mut pending, &target)?;
    let mut hops = 1;
    while let Some(c) = pending.pop() {
        if c == "." {
            continue;
        }
        if c == ".." {
            if stack.pop().is_none() {
                return Err(format!("symlink target `{}` resolves outside the tree", target.display()));
            }
            continue;
        }
        stack.push(c);
        let here: PathBuf = root.join(stack.iter().collect::<PathBuf>());
        match fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(format!("symlink target `{}` has too many levels of links", target.display()));
                }
                let t = fs::read_link(&here).map_err(|e| format!("cannot read a link: {e}"))?;
                stack.pop();
                push_target(&mut pending, &t)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn normalized_mode(header_mode: u32) -> u32 {
    if header_mode & 0o111 != 0 { 0o755 } else { 0o644 }
}

/// Reads `path` (a gzip-compressed tar) and extracts it into the existing,
/// empty directory `dest`, within `limits`.
pub(crate) fn unpack(
    archive: &Path,
    dest: &Path,
    url: &str,
    progress: &dyn Progress,
    limits: &Limits,
) -> Result<Unpacked, BundleError> {
    let file = File::open(archive).map_err(|e| BundleError::io("open", archive, e))?;
    let total = file.metadata().map(|m| m.len()).ok();
    progress.stage("unpacking bundle");
    progress.start(total);
    let counting = CountingReader { inner: file, progress };
    let gz = MultiGzDecoder::new(BufReader::with_capacity(IO_BUF, counting));
    let window = Rc::new(Window::default());
    let mut ar = tar::Archive::new(Bounded { inner: gz, window: window.clone() });
    let corrupt = |e: io::Error| BundleError::CorruptArchive { url: url.to_string(), message: e.to_string() };
    let unsafe_entry = |entry: &[u8], reason: String| BundleError::UnsafeEntry {
        url: url.to_string(),
        entry: String::from_utf8_lossy(entry).into_owned(),
        reason,
    };
    let too_large = |reason: String| BundleError::TooLarge { url: url.to_string(), reason };

    // Header material read so far is everything read minus the data of the
    // regular entries (with their padding to the next 512-byte block).
    let mut data_total = 0u64;
    let mut prev: Option<String> = None;
    // Allows header material up to the per-entry cap (or what is left of the
    // total), after `data` more bytes of entry data. Returns the reason used if
    // the header material overruns.
    let open_window = |data: u64, data_total: u64, prev: &Option<String>| -> String {
        let header_used = window.pos.get().saturating_sub(data_total - data);
        let left = limits.max_total_header_bytes.saturating_sub(header_used);
        let allowed = left.min(limits.max_header_bytes);
        window.limit.set(window.pos.get().saturating_add(data).saturating_add(allowed));
        let after = match prev {
            Some(p) => format!("after entry `{p}`"),
            None => "at the start of the archive".to_string(),
        };
        if allowed < limits.max_header_bytes {
            format!(
                "its header material (names, pax records, sparse maps) exceeds {} in total, {after}",
                human_bytes(limits.max_total_header_bytes)
            )
        } else {
            format!(
                "the header material (names, pax records, sparse maps) {after} exceeds {}",
                human_bytes(limits.max_header_bytes)
            )
        }
    };
    let mut overrun = open_window(0, 0, &prev);
    let read_failed = |e: io::Error, overrun: &str| {
        if window.overrun.get() { too_large(overrun.to_string()) } else { corrupt(e) }
    };

    let mut symlinks: Vec<PathBuf> = Vec::new();
    let mut entries = 0u64;
    let mut declared_total = 0u64;
    let mut space = SpaceGuard { dest, limits, allowance: 0 };
    let mut buf = vec![0u8; IO_BUF];
    for entry in ar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(|e| read_failed(e, &overrun))?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        let size = entry.size();
        let is_file = matches!(kind, EntryType::Regular | EntryType::Continuous);
        if is_file {
            if size > limits.max_entry_bytes {
                return Err(too_large(format!(
                    "entry `{shown}` declares {}, more than the {} one entry may hold",
                    human_bytes(size),
                    human_bytes(limits.max_entry_bytes)
                )));
            }
            if declared_total.saturating_add(size) > limits.max_total_bytes {
                return Err(too_large(format!(
                    "entry `{shown}` ({}) would take it past {} unpacked in total",
                    human_bytes(size),
                    human_bytes(limits.max_total_bytes)
                )));
            }
            declared_total += size;
        } else if size != 0 && matches!(kind, EntryType::Directory | EntryType::Symlink | EntryType::Link) {
            return Err(unsafe_entry(
                &raw,
                format!("it is {} but carries {} of data", kind_name(kind), human_bytes(size)),
            ));
        }
        let data = if is_file { size.div_ceil(512).saturating_mul(512) } else { 0 };
        data_total = data_total.saturating_add(data);
        overrun = open_window(data, data_total, &Some(shown.clone()));
        prev = Some(shown.clone());

        if matches!(kind, EntryType::XGlobalHeader) {
            continue;
        }
        let rel = sanitize(&raw).map_err(|r| unsafe_entry(&raw, r))?;
        if rel.as_os_str().is_empty() {
            if kind.is_dir() {
                continue; // "./" — the root itself
            }
            return Err(unsafe_entry(&raw, "a non-directory entry names the archive root".into()));
        }
        entries += 1;
        if entries > limits.max_entries {
            return Err(too_large(format!(
                "it has more than {} entries (`{shown}` is one too many)",
                limits.max_entries
            )));
        }
        let out = dest.join(&rel);
        match kind {
            EntryType::Directory => {
                prepare_parents(dest, &rel).map_err(|r| unsafe_entry(&raw, r))?;
                match fs::symlink_metadata(&out) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        return Err(unsafe_entry(&raw, "it would replace a non-directory".into()));
                    }
                    Err(_) => fs::create_dir(&out).map_err(|e| BundleError::io("create directory", &out, e))?,
                }
                fs::set_permissions(&out, fs::Permissions::from_mode(0o755))
                    .map_err(|e| BundleError::io("set permissions on", &out, e))?;
            }
            EntryType::Regular | EntryType::Continuous => {
                prepare_parents(dest, &rel).map_err(|r| unsafe_entry(&raw, r))?;
                remove_non_dir(&out).map_err(|r| unsafe_entry(&raw, r))?;
                let mode = normalized_mode(entry.header().mode().map_err(corrupt)?);
                // create_new (O_CREAT|O_EXCL) never follows a symlink at `out`.
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&out)
                    .map_err(|e| BundleError::io("create", &out, e))?;
                let written = copy_sparse(&mut entry, &mut f, &mut buf, &mut space).map_err(|e| match e {
                    CopyError::Read(e) => read_failed(e, &overrun),
                    CopyError::Write(e) => BundleError::io("write", &out, e),
                    CopyError::SpaceCheck(e) => BundleError::io("check the free space of", dest, e),
                    CopyError::NoSpace(s) => BundleError::NoSpace {
                        url: url.to_string(),
                        path: dest.to_path_buf(),
                        entry: shown.clone(),
                        available: s.available,
                        reserve: s.reserve(),
                    },
                })?;
                if written != size {
                    return Err(corrupt(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("entry {} is shorter than its header says", rel.display()),
                    )));
                }
                f.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(|e| BundleError::io("set permissions on", &out, e))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(&raw, "the symlink has no target".into()))?
                    .into_owned();
                let target = PathBuf::from(OsStr::from_bytes(&target));
                lexical_target_ok(&rel, &target).map_err(|r| unsafe_entry(&raw, r))?;
                prepare_parents(dest, &rel).map_err(|r| unsafe_entry(&raw, r))?;
                remove_non_dir(&out).map_err(|r| unsafe_entry(&raw, r))?;
                std::os::unix::fs::symlink(&target, &out).map_err(|e| BundleError::io("create symlink", &out, e))?;
                symlinks.push(rel);
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(&raw, "the hard link has no target".into()))?
                    .into_owned();
                let trel = sanitize(&target).map_err(|r| {
                    unsafe_entry(
                        &raw,
                        format!("its hard link target `{}` is refused: {r}", String::from_utf8_lossy(&target)),
                    )
                })?;
                if trel == rel {
                    return Err(unsafe_entry(&raw, "the hard link points at itself".into()));
                }
                check_existing_regular(dest, &trel).map_err(|r| unsafe_entry(&raw, r))?;
                prepare_parents(dest, &rel).map_err(|r| unsafe_entry(&raw, r))?;
                remove_non_dir(&out).map_err(|r| unsafe_entry(&raw, r))?;
                let src = dest.join(&trel);
                fs::hard_link(&src, &out).map_err(|e| BundleError::io("create hard link", &out, e))?;
            }
            other => {
                return Err(unsafe_entry(
                    &raw,
                    format!(
                        "it is {}, and a bundle may hold only regular files, directories, symlinks and hard links",
                        kind_name(other)
                    ),
                ));
            }
        }
    }
    // Drain the gzip stream so its CRC and length trailer are verified; what
    // follows the end of the archive counts as header material.
    let overrun = match &prev {
        Some(p) => format!(
            "more than {} of data follows the end of the archive (after entry `{p}`)",
            human_bytes(limits.max_header_bytes)
        ),
        None => format!("more than {} of data follows the end of the archive", human_bytes(limits.max_header_bytes)),
    };
    let header_used = window.pos.get().saturating_sub(data_total);
    let left = limits.max_total_header_bytes.saturating_sub(header_used).min(limits.max_header_bytes);
    window.limit.set(window.pos.get().saturating_add(left));
    let mut rest = ar.into_inner();
    loop {
        match rest.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => return Err(read_failed(e, &overrun)),
        }
    }
    // Links may chain through each other: resolve every symlink for real (a
    // symlink that a later entry replaced is gone and needs no check).
    for link in &symlinks {
        if !fs::symlink_metadata(dest.join(link)).is_ok_and(|m| m.file_type().is_symlink()) {
            continue;
        }
        resolve_within(dest, link).map_err(|r| unsafe_entry(link.as_os_str().as_bytes(), r))?;
    }
    progress.finish();
    Ok(Unpacked { entries })
}

/// "a character device", "a FIFO", … for messages.
fn kind_name(kind: EntryType) -> String {
    match kind {
        EntryType::Regular | EntryType::Continuous => "a regular file".into(),
        EntryType::Directory => "a directory".into(),
        EntryType::Symlink => "a symlink".into(),
        EntryType::Link => "a hard link".into(),
        EntryType::Char => "a character device".into(),
        EntryType::Block => "a block device".into(),
        EntryType::Fifo => "a FIFO".into(),
        EntryType::GNUSparse => {
            "a GNU sparse file (`banger runtime package` stores sparse images as plain files)".into()
        }
        other => format!("an entry of type `{}`", other.as_byte() as char),
    }
}

/// Shared between [`unpack`] and the [`Bounded`] reader under the tar parser.
#[derive(Default)]
struct Window {
    /// Decompressed bytes handed to the tar parser so far.
    pos: Cell<u64>,
    /// Reading past this position is refused.
    limit: Cell<u64>,
    /// Set when a read was refused.
    overrun: Cell<bool>,
}

/// The decompressed stream as the tar parser sees it: it cannot read past
/// [`Window::limit`], so header material (which the parser buffers in memory)
/// and data after the end are bounded no matter what the headers declare.
struct Bounded<R> {
    inner: R,
    window: Rc<Window>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let room = self.window.limit.get().saturating_sub(self.window.pos.get());
        if room == 0 {
            // At the limit: the end of the stream is fine, anything more is not.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.window.overrun.set(true);
                    Err(io::Error::other("the archive exceeds the unpacker's limits"))
                }
            };
        }
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.window.pos.set(self.window.pos.get() + n as u64);
        Ok(n)
    }
}

/// Counts the bytes written to disk against the free space of `dest`'s
/// filesystem, keeping [`Space::reserve`] free.
struct SpaceGuard<'a> {
    dest: &'a Path,
    limits: &'a Limits,
    /// Bytes that may still be written before free space is measured again.
    allowance: u64,
}

impl SpaceGuard<'_> {
    fn take(&mut self, n: u64) -> Result<(), CopyError> {
        if n <= self.allowance {
            self.allowance -= n;
            return Ok(());
        }
        let space = (self.limits.space)(self.dest).map_err(CopyError::SpaceCheck)?;
        if space.total == 0 {
            // A filesystem that reports no size (some FUSE and 9p mounts): nothing to go by.
            self.allowance = u64::MAX;
            return Ok(());
        }
        let room = space.available.saturating_sub(space.reserve());
        if room < n {
            return Err(CopyError::NoSpace(space));
        }
        self.allowance = room.min(self.limits.space_check_every.max(n)) - n;
        Ok(())
    }
}

/// Makes sure every ancestor of `rel` inside `dest` is a real directory (never a
/// symlink), creating missing ones.
fn prepare_parents(dest: &Path, rel: &Path) -> Result<(), String> {
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    let mut cur = dest.to_path_buf();
    let mut shown = PathBuf::new();
    for c in parent.components() {
        cur.push(c);
        shown.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!("it would be written through the symlink `{}`", shown.display()));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(format!("its parent `{}` is not a directory", shown.display()));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&cur).map_err(|e| format!("cannot create `{}`: {e}", shown.display()))?;
                fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))
                    .map_err(|e| format!("cannot chmod `{}`: {e}", shown.display()))?;
            }
            Err(e) => return Err(format!("cannot inspect `{}`: {e}", shown.display())),
        }
    }
    Ok(())
}

/// A later entry with the same path replaces an earlier file or symlink (never
/// following it); replacing a directory is refused.
fn remove_non_dir(out: &Path) -> Result<(), String> {
    match fs::symlink_metadata(out) {
        Ok(m) if m.is_dir() => Err("it would replace a directory".into()),
        Ok(_) => fs::remove_file(out).map_err(|e| format!("cannot replace the earlier entry: {e}")),
        Err(_) => Ok(()),
    }
}

/// A hard link may only point at a regular file extracted earlier, reached
/// without going through any symlink.
fn check_existing_regular(dest: &Path, trel: &Path) -> Result<(), String> {
    if trel.as_os_str().is_empty() {
        return Err("the hard link target is empty".into());
    }
    let mut cur = dest.to_path_buf();
    for c in trel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!("hard link target `{}` goes through a symlink", trel.display()));
            }
            Ok(_) => {}
            Err(_) => {
                return Err(format!(
                    "hard link target `{}` is not a file extracted earlier in the bundle",
                    trel.display()
                ));
            }
        }
    }
    if !fs::symlink_metadata(&cur).map(|m| m.is_file()).unwrap_or(false) {
        return Err(format!("hard link target `{}` is not a regular file", trel.display()));
    }
    Ok(())
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
    SpaceCheck(io::Error),
    NoSpace(Space),
}

/// Copies `r` into `f`, seeking over all-zero blocks so sparse images stay
/// sparse; the bytes actually written are taken from `space` first.
fn copy_sparse(r: &mut dyn Read, f: &mut File, buf: &mut [u8], space: &mut SpaceGuard) -> Result<u64, CopyError> {
    let mut total = 0u64;
    let mut pending_hole = 0u64;
    loop {
        let n = match r.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        total += n as u64;
        for block in buf[..n].chunks(SPARSE_BLOCK) {
            if block.len() == SPARSE_BLOCK && is_zero(block) {
                pending_hole += block.len() as u64;
                continue;
            }
            if pending_hole > 0 {
                f.seek(SeekFrom::Current(pending_hole as i64)).map_err(CopyError::Write)?;
                pending_hole = 0;
            }
            space.take(block.len() as u64)?;
            f.write_all(block).map_err(CopyError::Write)?;
        }
    }
    if pending_hole > 0 {
        f.set_len(total).map_err(CopyError::Write)?;
    }
    Ok(total)
}

fn is_zero(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(16);
    chunks.all(|c| u128::from_ne_bytes(c.try_into().expect("16 bytes")) == 0)
        && chunks.remainder().iter().all(|&x| x == 0)
}

struct CountingReader<'a, R> {
    inner: R,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_rules() {
        assert_eq!(sanitize(b"./a/b").unwrap(), PathBuf::from("a/b"));
        assert_eq!(sanitize(b"./").unwrap(), PathBuf::new());
        assert!(sanitize(b"/etc/passwd").is_err());
        assert!(sanitize(b"a/../../b").is_err());
        assert!(sanitize(b"..").is_err());
        assert!(sanitize(b"").is_err());
    }

    #[test]
    fn lexical_symlink_rules() {
        assert!(lexical_target_ok(Path::new("a/l"), Path::new("../b")).is_ok());
        assert!(lexical_target_ok(Path::new("l"), Path::new("sub/./x")).is_ok());
        assert!(lexical_target_ok(Path::new("l"), Path::new("../x")).is_err());
        assert!(lexical_target_ok(Path::new("a/l"), Path::new("../../x")).is_err());
        assert!(lexical_target_ok(Path::new("l"), Path::new("/etc")).is_err());
        assert!(lexical_target_ok(Path::new("l"), Path::new("")).is_err());
    }

    #[test]
    fn chained_symlinks_are_resolved_for_real() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        fs::create_dir_all(root.join("d")).unwrap();
        std::os::unix::fs::symlink("..", root.join("d/up")).unwrap();
        // lexically "d/up/.." is "d" (inside), but d/up is the root, so ".." leaves it
        std::os::unix::fs::symlink("d/up/..", root.join("e")).unwrap();
        std::os::unix::fs::symlink("d/up/d", root.join("ok")).unwrap();
        assert!(lexical_target_ok(Path::new("e"), Path::new("d/up/..")).is_ok());
        assert!(resolve_within(&root, Path::new("e")).is_err());
        assert!(resolve_within(&root, Path::new("ok")).is_ok());
        assert!(resolve_within(&root, Path::new("d/up")).is_ok());
        std::os::unix::fs::symlink("loop2", root.join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", root.join("loop2")).unwrap();
        assert!(resolve_within(&root, Path::new("loop1")).is_err());
    }

    #[test]
    fn statvfs_reports_the_filesystem_and_a_bounded_reserve() {
        let d = tempfile::tempdir().unwrap();
        let s = statvfs_space(d.path()).unwrap();
        assert!(s.total > 0 && s.available <= s.total, "{s:?}");
        assert!(s.reserve() <= 256 * MIB && s.reserve() <= s.total / 20);
        assert!(statvfs_space(&d.path().join("missing")).is_err());
        assert_eq!(Space { available: 0, total: 1000 * MIB }.reserve(), 50 * MIB);
        assert_eq!(Space { available: 0, total: 100 * GIB }.reserve(), 256 * MIB);
    }

    #[test]
    fn copy_sparse_keeps_content_and_holes() {
        let d = tempfile::tempdir().unwrap();
        let mut data = vec![0u8; 3 * SPARSE_BLOCK + 10];
        data[SPARSE_BLOCK + 5] = 7;
        let p = d.path().join("f");
        let mut f = File::create(&p).unwrap();
        let mut buf = vec![0u8; 100_000];
        let limits = Limits::default();
        let mut space = SpaceGuard { dest: d.path(), limits: &limits, allowance: 0 };
        let n = copy_sparse(&mut &data[..], &mut f, &mut buf, &mut space).ok().unwrap();
        assert_eq!(n, data.len() as u64);
        drop(f);
        assert_eq!(fs::read(&p).unwrap(), data);
        let mut data2 = vec![0u8; 4 * SPARSE_BLOCK];
        data2[0] = 1;
        let mut f = File::create(&p).unwrap();
        copy_sparse(&mut &data2[..], &mut f, &mut buf, &mut space).ok().unwrap();
        drop(f);
        assert_eq!(fs::read(&p).unwrap(), data2);
    }
}
