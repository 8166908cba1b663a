//! Per-VM storage.
//!
//! A VM boots from three disks: the shared read-only base image (`/dev/vda`, never written), its
//! own sparse overlay (`/dev/vdb`: the guest's initrd makes a persistent dm-snapshot of the base
//! with this as copy-on-write store, and boots from it) and its own ext4 work disk (`/dev/vdc`,
//! mounted at `/root`). The host needs no device-mapper and no root for any of it.
//!
//! Disks are created in a staging directory and renamed into place, so a failed create leaves
//! nothing behind.

pub mod flatten;

use banger_host::{HostError, run};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub const OVERLAY: &str = "overlay.img";
pub const WORK: &str = "work.ext4";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot {what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("{path} already exists")]
    Exists { path: PathBuf },
    #[error("the work disk can only grow: {path} is {current} bytes, asked for {requested}")]
    Shrink { path: PathBuf, current: u64, requested: u64 },
    #[error(
        "not enough free space in {path}: {what} needs {}, {} is free",
        banger_config_free_size(*needed),
        banger_config_free_size(*free)
    )]
    NoSpace { path: PathBuf, what: String, needed: u64, free: u64 },
    /// A copy-on-write store that cannot be flattened (see [`flatten`]).
    #[error("the copy-on-write store {path} {why}")]
    Snapshot { path: PathBuf, why: String },
}

/// `1.5G`-style sizes in messages.
fn banger_config_free_size(bytes: u64) -> String {
    const UNITS: [(&str, u32); 3] = [("G", 30), ("M", 20), ("K", 10)];
    UNITS
        .iter()
        .find(|(_, s)| bytes >= 1 << s)
        .map(|(u, s)| format!("{:.1}{u}", bytes as f64 / (1u64 << s) as f64))
        .unwrap_or_else(|| format!("{bytes}B"))
}

/// Bytes free for us on the filesystem of `dir` (`None` when it cannot be asked).
pub fn free_space(dir: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// Refuse, before writing anything, to put `needed` bytes for `what` into `dir`'s filesystem
/// when it has less free (with 16 MiB to spare for the database and logs).
pub fn ensure_space(dir: &Path, what: &str, needed: u64) -> Result<(), StorageError> {
    match free_space(dir) {
        Some(free) if free < needed.saturating_add(16 << 20) => {
            Err(StorageError::NoSpace { path: dir.into(), what: what.into(), needed, free })
        }
        _ => Ok(()),
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |source| StorageError::Io { what, path: path.into(), source }
}

/// The overlay must hold a copy of every base chunk the guest changes plus the snapshot's
/// metadata (one 16-byte entry per 4 KiB chunk, grouped in 4 KiB areas): base + 1/128 + slack.
pub fn overlay_size(base_size: u64) -> u64 {
    let size = base_size + base_size / 128 + (16 << 20);
    size.div_ceil(1 << 20) << 20
}

/// A VM's disks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmDisks {
    pub dir: PathBuf,
    pub overlay: PathBuf,
    pub work: PathBuf,
}

impl VmDisks {
    pub fn at(dir: &Path) -> VmDisks {
        VmDisks { dir: dir.into(), overlay: dir.join(OVERLAY), work: dir.join(WORK) }
    }
}

/// Create `dir` with a sparse overlay sized for `base` and a sparse ext4 work disk of
/// `work_size` bytes. All or nothing: built in `dir`'s sibling staging directory, then renamed.
pub fn create(dir: &Path, base: &Path, work_size: u64) -> Result<VmDisks, StorageError> {
    if dir.exists() {
        return Err(StorageError::Exists { path: dir.into() });
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io("create", parent))?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let staging = parent.join(format!(".{name}.creating-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let result = (|| {
        std::fs::create_dir(&staging).map_err(io("create", &staging))?;
        let base_size = std::fs::metadata(base).map_err(io("read", base))?.len();
        sparse_file(&staging.join(OVERLAY), overlay_size(base_size))?;
        let work = staging.join(WORK);
        sparse_file(&work, work_size)?;
        mkfs_work(&work)?;
        std::fs::rename(&staging, dir).map_err(io("rename into place", dir))
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    Ok(VmDisks::at(dir))
}

fn sparse_file(path: &Path, size: u64) -> Result<(), StorageError> {
    let f = File::options().write(true).create_new(true).open(path).map_err(io("create", path))?;
    f.set_len(size).map_err(io("size", path))
}

/// ext4 for `/root`: no reserved blocks, lazy init so the sparse file stays small.
fn mkfs_work(path: &Path) -> Result<(), StorageError> {
    run(
        "mkfs.ext4",
        [
            "-F".as_ref(),
            "-q".as_ref(),
            "-m".as_ref(),
            "0".as_ref(),
            "-b".as_ref(),
            "4096".as_ref(),
            "-L".as_ref(),
            "banger-work".as_ref(),
            "-E".as_ref(),
            "lazy_itable_init=1,lazy_journal_init=1,nodiscard".as_ref(),
            path.as_os_str(),
        ],
    )?;
    Ok(())
}

/// Grow the (stopped) VM's work disk to `new_size` bytes: file first, then the filesystem.
/// The filesystem is grown to fill the file even when the file already has that size, so a
/// retry after a failed `resize2fs` finishes the job (resize2fs on a full-size filesystem
/// changes nothing).
pub fn grow_work(path: &Path, new_size: u64) -> Result<(), StorageError> {
    let current = std::fs::metadata(path).map_err(io("read", path))?.len();
    if new_size < current {
        return Err(StorageError::Shrink { path: path.into(), current, requested: new_size });
    }
    // resize2fs insists on a freshly checked filesystem; -p repairs only what is safe. Exit 1
    // means it corrected something (say, after a grow killed mid-resize2fs): checked, go on.
    match run("e2fsck", ["-f".as_ref(), "-p".as_ref(), path.as_os_str()]) {
        Err(HostError::Failed { status, .. }) if status == "exit status: 1" => {}
        other => {
            other?;
        }
    }
    if new_size > current {
        File::options()
            .write(true)
            .open(path)
            .map_err(io("open", path))?
            .set_len(new_size)
            .map_err(io("size", path))?;
    }
    run("resize2fs", ["-f".as_ref(), path.as_os_str()])?;
    Ok(())
}

/// The identity of a base image: device, inode, size and modification time. A rebuilt or replaced
/// image gets a new one — and a VM's overlay only makes sense over the exact base it started from.
pub fn base_id(path: &Path) -> Result<String, StorageError> {
    let m = std::fs::metadata(path).map_err(io("read", path))?;
    Ok(format!("{}:{}:{}:{}.{}", m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}

/// Keep the exact base image a new VM starts from in `images_dir`: a hard link (a sparse copy
/// across filesystems) named after the image's identity, so replacing or rebuilding the original
/// never pulls a base out from under existing VMs' overlays. Returns the pinned path; pinning the
/// same image again returns the same path. Nothing is left behind on failure.
pub fn pin_base(images_dir: &Path, base: &Path) -> Result<PathBuf, StorageError> {
    let id = base_id(base)?;
    let stem = base.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "image".into());
    let name = format!("{stem}-{}.ext4", id.replace([':', '.'], "-"));
    let pinned = images_dir.join(&name);
    if pinned.exists() {
        return Ok(pinned);
    }
    std::fs::create_dir_all(images_dir).map_err(io("create", images_dir))?;
    let tmp = images_dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        if std::fs::hard_link(base, &tmp).is_err() {
            // A copy (another filesystem): only if it fits.
            ensure_space(images_dir, &format!("a copy of the base image {}", base.display()), allocated(base))?;
            run("cp", ["--sparse=always".as_ref(), "--reflink=auto".as_ref(), base.as_os_str(), tmp.as_os_str()])?;
        }
        std::fs::rename(&tmp, &pinned).map_err(io("rename into place", &pinned))
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(pinned)
}

/// Bytes actually allocated on the host for `path` (sparse files count only written blocks).
pub fn allocated(path: &Path) -> u64 {
    usage(path).1
}

/// (apparent size, allocated bytes) of `path` with one `stat`; zeros when it is missing.
pub fn usage(path: &Path) -> (u64, u64) {
    std::fs::metadata(path).map(|m| (m.len(), m.blocks() * 512)).unwrap_or((0, 0))
}

/// Remove a VM's disk directory; a missing one is fine.
pub fn remove(dir: &Path) -> Result<(), StorageError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::Io { what: "remove", path: dir.into(), source: e }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(dir: &Path) -> PathBuf {
        let p = dir.join("rootfs.ext4");
        let f = File::create(&p).unwrap();
        f.set_len(1 << 30).unwrap();
        p
    }

    #[test]
    fn new_vm_disks_are_sparse_and_small() {
        let tmp = tempfile::tempdir().unwrap();
        let base = base(tmp.path());
        let d = create(&tmp.path().join("vms/calm-otter"), &base, 8 << 30).unwrap();
        assert_eq!(std::fs::metadata(&d.overlay).unwrap().len(), overlay_size(1 << 30));
        assert_eq!(std::fs::metadata(&d.work).unwrap().len(), 8 << 30);
        let total = allocated(&d.overlay) + allocated(&d.work);
        assert!(total <= 16 << 20, "a new VM allocates {total} bytes");
        // A real ext4 with our label.
        let out = run("dumpe2fs", ["-h".as_ref(), d.work.as_os_str()]).unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("banger-work"));
        // Nothing else in the parent: no staging leftovers.
        let names: Vec<_> =
            std::fs::read_dir(tmp.path().join("vms")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["calm-otter"]);
    }

    #[test]
    fn failure_leaves_nothing_and_existing_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let err = create(&tmp.path().join("vms/x"), &tmp.path().join("no-base"), 1 << 30).unwrap_err();
        assert!(err.to_string().contains("no-base"), "{err}");
        assert_eq!(std::fs::read_dir(tmp.path().join("vms")).unwrap().count(), 0);
        let base = base(tmp.path());
        create(&tmp.path().join("vms/x"), &base, 64 << 20).unwrap();
        assert!(matches!(create(&tmp.path().join("vms/x"), &base, 64 << 20), Err(StorageError::Exists { .. })));
    }

    #[test]
    fn pinned_bases_survive_replacement_of_the_original() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("rootfs.ext4");
        std::fs::write(&base, b"version 1").unwrap();
        let images = tmp.path().join("images");
        let pinned = pin_base(&images, &base).unwrap();
        assert_eq!(pin_base(&images, &base).unwrap(), pinned, "the same image pins to the same file");
        // Rebuild the original the way the bundle does: a new file renamed over it.
        let new = tmp.path().join("rootfs.ext4.new");
        std::fs::write(&new, b"version 2").unwrap();
        std::fs::rename(&new, &base).unwrap();
        assert_eq!(std::fs::read(&pinned).unwrap(), b"version 1");
        let pinned2 = pin_base(&images, &base).unwrap();
        assert_ne!(pinned2, pinned);
        assert_eq!(std::fs::read(&pinned2).unwrap(), b"version 2");
        let names: Vec<_> = std::fs::read_dir(&images).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
        assert!(pin_base(&images, &tmp.path().join("missing.ext4")).is_err());
    }

    #[test]
    fn work_disk_grows_and_never_shrinks() {
        let tmp = tempfile::tempdir().unwrap();
        let base = base(tmp.path());
        let d = create(&tmp.path().join("vm"), &base, 256 << 20).unwrap();
        let fs_bytes = || {
            let out = run("dumpe2fs", ["-h".as_ref(), d.work.as_os_str()]).unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let field = |k: &str| -> u64 {
                text.lines().find(|l| l.starts_with(k)).unwrap().split(':').nth(1).unwrap().trim().parse().unwrap()
            };
            field("Block count:") * field("Block size:")
        };
        grow_work(&d.work, 512 << 20).unwrap();
        assert_eq!(fs_bytes(), 512 << 20);
        assert!(matches!(grow_work(&d.work, 128 << 20), Err(StorageError::Shrink { .. })));
        // A grow whose resize2fs never ran (the file is bigger, the filesystem is not): asking
        // again for that size finishes it.
        File::options().write(true).open(&d.work).unwrap().set_len(768 << 20).unwrap();
        assert_eq!(fs_bytes(), 512 << 20);
        grow_work(&d.work, 768 << 20).unwrap();
        assert_eq!(fs_bytes(), 768 << 20);
    }
}
