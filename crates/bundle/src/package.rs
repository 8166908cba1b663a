//! Deterministic packaging of a runtime directory into a `.tar.gz`.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use crate::error::BundleError;
use crate::progress::Progress;
use crate::unpack::resolve_within;

const IO_BUF: usize = 1 << 20;

/// What [`package`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageSummary {
    /// Lower-case hex SHA-256 of the written `.tar.gz`.
    pub sha256: String,
    /// Size of the written `.tar.gz` in bytes.
    pub bytes: u64,
    /// Number of non-directory entries (regular files and symlinks) packaged.
    pub files: u64,
}

enum Kind {
    Dir,
    File { len: u64, exec: bool },
    Symlink(PathBuf),
}

struct Item {
    rel: PathBuf,
    kind: Kind,
}

/// Packs `runtime_dir` into a deterministic `.tar.gz` at `out`.
///
/// Entries are sorted by path; every header has mtime 0, uid/gid 0, empty
/// user/group names and a normalised mode (0755 for directories and executable
/// files, 0644 otherwise, 0777 for symlinks); symlinks are stored as symlinks
/// (and must stay inside the tree); the gzip header carries no mtime or file
/// name. Packaging the same tree twice therefore yields identical bytes, even
/// after `touch`. Files are streamed, never loaded into memory. The archive is
/// written to `out.tmp` and renamed to `out` when complete.
pub fn package(runtime_dir: &Path, out: &Path, progress: &dyn Progress) -> Result<PackageSummary, BundleError> {
    match fs::metadata(runtime_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(BundleError::InvalidInput {
                path: runtime_dir.to_path_buf(),
                reason: "it is not a directory".into(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BundleError::SourceNotFound { path: runtime_dir.to_path_buf() });
        }
        Err(e) => return Err(BundleError::io("inspect", runtime_dir, e)),
    }
    let root = fs::canonicalize(runtime_dir).map_err(|e| BundleError::io("resolve", runtime_dir, e))?;
    let out_abs = std::path::absolute(out).map_err(|e| BundleError::io("resolve", out, e))?;
    let out_parent = out_abs.parent().map(Path::to_path_buf).unwrap_or_default();
    if let Ok(p) = fs::canonicalize(&out_parent)
        && p.starts_with(&root)
    {
        return Err(BundleError::InvalidInput {
            path: out.to_path_buf(),
            reason: format!("the output must not be inside the directory being packaged ({})", runtime_dir.display()),
        });
    }

    progress.stage(&format!("scanning {}", runtime_dir.display()));
    let mut items = Vec::new();
    walk(&root, Path::new(""), &mut items)?;
    let total: u64 = items
        .iter()
        .map(|i| match i.kind {
            Kind::File { len, .. } => len,
            _ => 0,
        })
        .sum();

    let mut tmp_name = out_abs.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = out_abs.with_file_name(tmp_name);
    let result = write_archive(&root, &items, &tmp, total, progress);
    match result {
        Ok((bytes, sha256, files)) => {
            fs::rename(&tmp, &out_abs).map_err(|e| {
                let _ = fs::remove_file(&tmp);
                BundleError::io("rename the archive to", &out_abs, e)
            })?;
            Ok(PackageSummary { sha256, bytes, files })
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn write_archive(
    root: &Path,
    items: &[Item],
    tmp: &Path,
    total: u64,
    progress: &dyn Progress,
) -> Result<(u64, String, u64), BundleError> {
    let file = File::create(tmp).map_err(|e| BundleError::io("create", tmp, e))?;
    let hashing = HashingWriter { inner: file, hasher: Sha256::new(), bytes: 0 };
    let buffered = BufWriter::with_capacity(IO_BUF, hashing);
    // GzBuilder without mtime/filename: header bytes depend only on the level.
    let gz = GzBuilder::new().write(buffered, Compression::new(6));
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    let werr = |e: io::Error| BundleError::io("write", tmp, e);

    progress.stage(&format!("packaging into {}", tmp.display()));
    progress.start(Some(total));
    let mut files = 0u64;
    for item in items {
        let mut h = Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        match &item.kind {
            Kind::Dir => {
                h.set_entry_type(EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                tar.append_data(&mut h, &item.rel, io::empty()).map_err(werr)?;
            }
            Kind::File { len, exec } => {
                let src = root.join(&item.rel);
                let f = File::open(&src).map_err(|e| BundleError::io("open", &src, e))?;
                h.set_entry_type(EntryType::Regular);
                h.set_mode(if *exec { 0o755 } else { 0o644 });
                h.set_size(*len);
                let mut reader =
                    ExactReader { inner: f.take(*len), remaining: *len, path: &src, progress, error: None };
                let res = tar.append_data(&mut h, &item.rel, &mut reader);
                if let Some(e) = reader.error.take() {
                    return Err(e);
                }
                res.map_err(werr)?;
                files += 1;
            }
            Kind::Symlink(target) => {
                h.set_entry_type(EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                tar.append_link(&mut h, &item.rel, target).map_err(werr)?;
                files += 1;
            }
        }
    }
    let gz = tar.into_inner().map_err(werr)?;
    let buffered = gz.finish().map_err(werr)?;
    let hashing = buffered.into_inner().map_err(|e| werr(e.into_error()))?;
    hashing.inner.sync_all().map_err(werr)?;
    progress.finish();
    Ok((hashing.bytes, hex::encode(hashing.hasher.finalize()), files))
}

/// Collects the tree below `root/rel` in a deterministic (byte-sorted, depth-first) order.
fn walk(root: &Path, rel: &Path, items: &mut Vec<Item>) -> Result<(), BundleError> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(|e| BundleError::io("read directory", &dir, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| BundleError::io("read directory", &dir, e))?;
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let path = root.join(&rel);
        let meta = fs::symlink_metadata(&path).map_err(|e| BundleError::io("inspect", &path, e))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            items.push(Item { rel: rel.clone(), kind: Kind::Dir });
            walk(root, &rel, items)?;
        } else if ft.is_file() {
            items
                .push(Item { rel, kind: Kind::File { len: meta.len(), exec: meta.permissions().mode() & 0o111 != 0 } });
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(|e| BundleError::io("read symlink", &path, e))?;
            resolve_within(root, &rel).map_err(|reason| BundleError::InvalidInput {
                path: path.clone(),
                reason: format!("{reason}; bundles may only contain symlinks within the tree"),
            })?;
            items.push(Item { rel, kind: Kind::Symlink(target) });
        } else {
            return Err(BundleError::InvalidInput {
                path,
                reason: "it is not a regular file, directory or symlink".into(),
            });
        }
    }
    Ok(())
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Yields exactly the scanned length of a file; a file that shrank while being
/// packaged is an error (it grew: the extra bytes are ignored by `take`).
struct ExactReader<'a, R> {
    inner: R,
    remaining: u64,
    path: &'a Path,
    progress: &'a dyn Progress,
    error: Option<BundleError>,
}

impl<R: Read> Read for ExactReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) => {
                let msg = e.to_string();
                self.error = Some(BundleError::io("read", self.path, e));
                return Err(io::Error::other(msg));
            }
        };
        if n == 0 {
            self.error = Some(BundleError::InvalidInput {
                path: self.path.to_path_buf(),
                reason: "the file shrank while it was being packaged".into(),
            });
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"));
        }
        self.remaining -= n as u64;
        self.progress.advance(n as u64);
        Ok(n)
    }
}
