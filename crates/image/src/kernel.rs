//! Debian cloud kernel: download without installing, unpack, build the initrd.

use crate::cpio::CpioWriter;
use crate::util::{io, run, stdout};
use crate::{Error, Result};
use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Modules the initrd loads (plus their dependencies from modules.dep). ext4 is built in.
pub const INITRD_MODULES: &[&str] = &["virtio_mmio", "virtio_pci", "virtio_blk", "virtio_net", "dm_mod", "dm_snapshot"];

/// An unpacked kernel package.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `uname -r` of the kernel, e.g. `6.1.0-56-cloud-amd64`.
    pub release: String,
    /// Debian package name and version, e.g. `linux-image-6.1.0-56-cloud-amd64` / `6.1.192-2`.
    pub package: String,
    pub package_version: String,
    /// The bzImage.
    pub vmlinuz: PathBuf,
    /// `…/lib/modules/<release>` with modules.dep etc. (depmod already run).
    pub modules: PathBuf,
}

/// Resolve `linux-image-cloud-amd64` to the real package, `apt-get download` it into `staging`
/// and `dpkg-deb -x` it there (nothing is installed on the host). `deb` uses a given .deb instead.
pub fn fetch_kernel(staging: &Path, deb: Option<&Path>, progress: &dyn Fn(&str)) -> Result<Kernel> {
    io("creating directory", staging, fs::create_dir_all(staging))?;
    let deb = match deb {
        Some(d) => d.to_path_buf(),
        None => {
            let deps = stdout(Command::new("apt-cache").args(["depends", "linux-image-cloud-amd64"]))?;
            let pkg = deps
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Depends:"))
                .map(str::trim)
                .find(|p| p.starts_with("linux-image-") && p.ends_with("-cloud-amd64"))
                .ok_or_else(|| {
                    Error::NotFound(
                        "apt-cache depends linux-image-cloud-amd64 names no linux-image-*-cloud-amd64 package (run apt-get update?)".into(),
                    )
                })?
                .to_string();
            progress(&format!("downloading {pkg}"));
            run(Command::new("apt-get").arg("download").arg(&pkg).current_dir(staging))?;
            let found = io("listing", staging, fs::read_dir(staging))?.flatten().map(|e| e.path()).find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb"))
            });
            found.ok_or_else(|| {
                Error::NotFound(format!("apt-get download {pkg} left no .deb in {}", staging.display()))
            })?
        }
    };
    let package = stdout(Command::new("dpkg-deb").args(["-f"]).arg(&deb).arg("Package"))?.trim().to_string();
    let package_version = stdout(Command::new("dpkg-deb").args(["-f"]).arg(&deb).arg("Version"))?.trim().to_string();
    let tree = staging.join("kernel-tree");
    crate::util::remove_dir(&tree);
    progress(&format!("unpacking {}", deb.display()));
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
    let mods_root = tree.join("lib/modules");
    let release = io("listing", &mods_root, fs::read_dir(&mods_root))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .next()
        .ok_or_else(|| Error::NotFound(format!("no kernel modules in {}", mods_root.display())))?;
    let vmlinuz = tree.join(format!("boot/vmlinuz-{release}"));
    if !vmlinuz.is_file() {
        return Err(Error::NotFound(format!("{} not found in {}", vmlinuz.display(), deb.display())));
    }
    progress(&format!("depmod {release}"));
    run(Command::new("depmod").arg("-b").arg(&tree).arg(&release))?;
    Ok(Kernel { release: release.clone(), package, package_version, vmlinuz, modules: mods_root.join(release) })
}

fn norm(name: &str) -> String {
    let stem = name.rsplit('/').next().unwrap_or(name);
    stem.trim_end_matches(".ko").replace('-', "_")
}

/// The module closure for `wanted`, as trimmed `modules.dep` lines (relative paths).
fn closure(dep: &str, wanted: &[&str]) -> Result<Vec<(String, Vec<String>)>> {
    let map: HashMap<String, (String, Vec<String>)> = dep
        .lines()
        .filter_map(|l| {
            let (m, d) = l.split_once(':')?;
            Some((norm(m), (m.trim().to_string(), d.split_whitespace().map(str::to_string).collect())))
        })
        .collect();
    let by_path: HashMap<&str, &String> = map.iter().map(|(k, v)| (v.0.as_str(), k)).collect();
    let mut keep = BTreeSet::new();
    let mut todo: Vec<String> = Vec::new();
    for w in wanted {
        let n = norm(w);
        if !map.contains_key(&n) {
            return Err(Error::NotFound(format!("kernel module {w} is not in modules.dep")));
        }
        todo.push(n);
    }
    while let Some(n) = todo.pop() {
        if keep.insert(n.clone()) {
            for d in &map[&n].1 {
                if let Some(k) = by_path.get(d.as_str()) {
                    todo.push((*k).clone());
                }
            }
        }
    }
    Ok(keep.into_iter().map(|k| map[&k].clone()).collect())
}

/// Write `out` as an uncompressed newc initramfs: `/init` (the static banger-init), `/dev/console`,
/// and `lib/modules/<release>/` holding [`INITRD_MODULES`] + deps with a trimmed `modules.dep`.
/// Returns the archive size.
pub fn write_initrd(kernel: &Kernel, init_binary: &Path, out: &Path) -> Result<u64> {
    let init = io("reading init binary", init_binary, fs::read(init_binary))?;
    if !init.starts_with(b"\x7fELF") {
        return Err(Error::BadInput(format!("{} is not an ELF binary", init_binary.display())));
    }
    let dep_path = kernel.modules.join("modules.dep");
    let dep = io("reading", &dep_path, fs::read_to_string(&dep_path))?;
    let mods = closure(&dep, INITRD_MODULES)?;
    let f = io("creating", out, fs::File::create(out))?;
    let mut w = CpioWriter::new(std::io::BufWriter::new(f));
    let e = |r: std::io::Result<()>| io("writing", out, r);
    for d in ["dev", "proc", "sys", "newroot", "lib", "lib/modules"] {
        e(w.dir(d, 0o755))?;
    }
    e(w.char_dev("dev/console", 0o600, 5, 1))?;
    e(w.char_dev("dev/null", 0o666, 1, 3))?;
    e(w.file("init", 0o755, &init))?;
    let base = format!("lib/modules/{}", kernel.release);
    e(w.dir(&base, 0o755))?;
    let mut dirs = BTreeSet::new();
    let mut dep_out = String::new();
    for (path, deps) in &mods {
        let mut p = Path::new(path).parent();
        let mut chain = Vec::new();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            chain.push(d.to_string_lossy().into_owned());
            p = d.parent();
        }
        for d in chain.into_iter().rev() {
            if dirs.insert(d.clone()) {
                e(w.dir(&format!("{base}/{d}"), 0o755))?;
            }
        }
        let src = kernel.modules.join(path);
        let data = io("reading", &src, fs::read(&src))?;
        e(w.file(&format!("{base}/{path}"), 0o644, &data))?;
        dep_out.push_str(&format!("{path}:{}{}\n", if deps.is_empty() { "" } else { " " }, deps.join(" ")));
    }
    e(w.file(&format!("{base}/modules.dep"), 0o644, dep_out.as_bytes()))?;
    let inner = io("writing", out, w.finish())?;
    drop(inner);
    Ok(io("stat", out, fs::metadata(out))?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closure_pulls_deps() {
        let dep = "kernel/drivers/md/dm-mod.ko:\n\
kernel/drivers/md/dm-bufio.ko: kernel/drivers/md/dm-mod.ko\n\
kernel/drivers/md/dm-snapshot.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko\n\
kernel/drivers/md/dm-zero.ko: kernel/drivers/md/dm-mod.ko\n";
        let c = closure(dep, &["dm_snapshot"]).unwrap();
        let names: Vec<&str> = c.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names.len(), 3);
        assert!(names.contains(&"kernel/drivers/md/dm-bufio.ko"));
        assert!(closure(dep, &["nope"]).is_err());
    }
}
