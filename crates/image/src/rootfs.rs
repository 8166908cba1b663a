//! Root filesystems: `rootfs.ext4` (mmdebstrap minbase + lean systemd/sshd setup) and
//! `rootfs-docker.ext4` (base + packages.apt + customize.sh).

use crate::util::{self, io, run, sha256, write};
use crate::{Error, Result};
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Default list for `rootfs-docker.ext4` (shipped in the bundle as `packages.apt`).
pub const DEFAULT_PACKAGES_APT: &str = include_str!("../../../guest/packages.apt");
/// Default customization script run in the docker image's chroot.
pub const DEFAULT_CUSTOMIZE_SH: &str = include_str!("../../../guest/customize.sh");

/// Packages of the base image (plus systemd's minbase essentials).
pub const BASE_PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "openssh-server",
    "iproute2",
    "ca-certificates",
    "sudo",
    "less",
    "procps",
    "iputils-ping",
    "kmod",
    "netbase",
    "curl",
    "vim-tiny",
    "psmisc",
    "bash-completion",
    "e2fsprogs",
    "libpam-systemd",
];

/// Units masked for a lean boot (missing ones are masked anyway: harmless).
pub const MASKED_UNITS: &[&str] = &[
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "apt-daily.service",
    "apt-daily-upgrade.service",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "man-db.timer",
    "logrotate.timer",
    "getty@tty1.service",
    "systemd-networkd-wait-online.service",
    "systemd-timesyncd.service",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "dev-hugepages.mount",
    "systemd-pstore.service",
    "modprobe@drm.service",
    "modprobe@efi_pstore.service",
    "modprobe@fuse.service",
    "modprobe@loop.service",
    "modprobe@dm_mod.service",
    "modprobe@configfs.service",
    "dev-mqueue.mount",
    "systemd-udev-settle.service",
    "cron.service",
];

/// systemd generators disabled (each costs an exec at every boot; none applies to banger guests).
pub const MASKED_GENERATORS: &[&str] = &[
    "systemd-cryptsetup-generator",
    "systemd-gpt-auto-generator",
    "systemd-hibernate-resume-generator",
    "systemd-integritysetup-generator",
    "systemd-rc-local-generator",
    "systemd-system-update-generator",
    "systemd-sysv-generator",
    "systemd-veritysetup-generator",
];

/// Units that keep working but are ordered after `banger-ready.service` (sshd listening), so that
/// with one emulated CPU they do not compete with the SSH path.
pub const LATE_UNITS: &[&str] = &[
    "systemd-udevd.service",
    "systemd-udev-trigger.service",
    "systemd-networkd.service",
    "systemd-journal-flush.service",
    "kmod-static-nodes.service",
    "systemd-logind.service",
    "dbus.service",
    "systemd-update-utmp.service",
    "systemd-tmpfiles-setup.service",
];

const FILES: &[(&str, u32, &str)] = &[
    ("usr/local/sbin/banger-hostkeys", 0o755, include_str!("../../../guest/files/banger-hostkeys")),
    ("etc/systemd/system/banger-hostkeys.service", 0o644, include_str!("../../../guest/files/banger-hostkeys.service")),
    ("etc/systemd/system/ssh.service", 0o644, include_str!("../../../guest/files/ssh.service")),
    ("etc/systemd/system/banger-ready.service", 0o644, include_str!("../../../guest/files/banger-ready.service")),
    ("etc/ssh/sshd_config.d/banger.conf", 0o644, include_str!("../../../guest/files/sshd_config.conf")),
];

/// Options for [`build_base_rootfs`].
#[derive(Debug, Clone)]
pub struct BaseRootfsOptions {
    /// Debian suite (default `bookworm`).
    pub suite: String,
    /// Debian mirror (default: the first Debian mirror in the host's apt sources, else deb.debian.org).
    pub mirror: Option<String>,
    /// Extra packages for the base image.
    pub extra_packages: Vec<String>,
    /// Size of the ext4 filesystem (sparse) in MiB.
    pub size_mib: u64,
    /// Public key (one line) authorized for root.
    pub authorized_key: String,
    /// Kernel module tree (`…/lib/modules/<release>`) copied into the image.
    pub modules: Option<PathBuf>,
}

impl Default for BaseRootfsOptions {
    fn default() -> Self {
        BaseRootfsOptions {
            suite: "bookworm".into(),
            mirror: None,
            extra_packages: vec![],
            size_mib: 4096,
            authorized_key: String::new(),
            modules: None,
        }
    }
}

/// The Debian mirror configured on the host (first `…/debian` URI), or deb.debian.org.
pub fn detect_mirror() -> String {
    let mut texts = vec![fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(rd) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            texts.push(fs::read_to_string(p).unwrap_or_default());
        }
    }
    for t in texts {
        for l in t.lines() {
            let l = l.trim();
            if l.starts_with('#') {
                continue;
            }
            for w in l.split_whitespace() {
                let w = w.trim_end_matches('/');
                if (w.starts_with("http://") || w.starts_with("https://")) && w.ends_with("/debian") {
                    return w.to_string();
                }
            }
        }
    }
    "http://deb.debian.org/debian".into()
}

fn mirror_lines(mirror: &str, suite: &str) -> Vec<String> {
    let security = format!("{mirror}-security");
    vec![
        format!("deb {mirror} {suite} main"),
        format!("deb {mirror} {suite}-updates main"),
        format!("deb {security} {suite}-security main"),
    ]
}

/// `mmdebstrap --mode=root --variant=minbase` into `dir` (must not exist).
pub(crate) fn mmdebstrap(dir: &Path, suite: &str, mirror: &str, packages: &[String]) -> Result<()> {
    let mut c = Command::new("mmdebstrap");
    c.args(["--mode=root", "--variant=minbase", "--quiet"])
        .arg(format!("--include={}", packages.join(",")))
        .arg("--aptopt=Acquire::Languages \"none\"")
        .arg("--aptopt=APT::Install-Recommends \"false\"")
        .arg("--dpkgopt=path-exclude=/usr/share/man/*")
        .arg("--dpkgopt=path-exclude=/usr/share/doc/*")
        .arg("--dpkgopt=path-include=/usr/share/doc/*/copyright")
        .arg("--dpkgopt=path-exclude=/usr/share/locale/*")
        .arg("--dpkgopt=path-include=/usr/share/locale/locale.alias")
        .arg(suite)
        .arg(dir);
    for m in mirror_lines(mirror, suite) {
        c.arg(m);
    }
    run(&mut c).map(|_| ())
}

fn mask(dir: &Path, unit: &str) -> Result<()> {
    let p = dir.join("etc/systemd/system").join(unit);
    let _ = fs::remove_file(&p);
    io("creating symlink", &p, symlink("/dev/null", &p))
}

fn want(dir: &Path, target: &str, unit: &str) -> Result<()> {
    let d = dir.join("etc/systemd/system").join(format!("{target}.wants"));
    io("creating directory", &d, fs::create_dir_all(&d))?;
    let p = d.join(unit);
    let _ = fs::remove_file(&p);
    io("creating symlink", &p, symlink(format!("/etc/systemd/system/{unit}"), &p))
}

/// Bake banger's guest setup into an unpacked root tree (idempotent).
pub(crate) fn configure_guest(dir: &Path, authorized_key: &str, modules: Option<&Path>) -> Result<()> {
    if authorized_key.trim().is_empty() {
        return Err(Error::BadInput("no authorized key given for the guest image".into()));
    }
    for (path, mode, body) in FILES {
        let p = dir.join(path);
        write(&p, body)?;
        io("chmod", &p, fs::set_permissions(&p, fs::Permissions::from_mode(*mode)))?;
    }
    // Root login with the bundle key only; /root is covered by the work disk.
    let akd = dir.join("etc/ssh/authorized_keys.d");
    write(&akd.join("root"), format!("{}\n", authorized_key.trim()))?;
    io("chmod", &akd, fs::set_permissions(&akd, fs::Permissions::from_mode(0o755)))?;
    io("chmod", &akd.join("root"), fs::set_permissions(akd.join("root"), fs::Permissions::from_mode(0o644)))?;
    // No host keys in the image: each VM makes its own on first boot.
    remove_host_keys(dir)?;
    // Hostname comes from ip= (set by the initrd); systemd keeps it when /etc/hostname is absent.
    let _ = fs::remove_file(dir.join("etc/hostname"));
    write(&dir.join("etc/hosts"), "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n")?;
    write(&dir.join("etc/fstab"), "# banger: / (dm-snapshot) and /root (work disk) are mounted by the initrd.\n")?;
    // Empty machine-id: every VM gets its own on first boot.
    write(&dir.join("etc/machine-id"), "")?;
    let _ = fs::remove_file(dir.join("var/lib/dbus/machine-id"));
    // Keep kernel names (eth0) regardless of net.ifnames=.
    let link = dir.join("etc/systemd/network/99-default.link");
    io("creating directory", link.parent().unwrap(), fs::create_dir_all(link.parent().unwrap()))?;
    let _ = fs::remove_file(&link);
    io("creating symlink", &link, symlink("/dev/null", &link))?;
    // Lean boot.
    for u in MASKED_UNITS {
        mask(dir, u)?;
    }
    let gens = dir.join("etc/systemd/system-generators");
    io("creating directory", &gens, fs::create_dir_all(&gens))?;
    for g in MASKED_GENERATORS {
        let p = gens.join(g);
        let _ = fs::remove_file(&p);
        io("creating symlink", &p, symlink("/dev/null", &p))?;
    }
    for u in LATE_UNITS {
        write(
            &dir.join(format!("etc/systemd/system/{u}.d/banger-late.conf")),
            "# banger: start after sshd listens and at lower CPU priority (boot-to-SSH first; one emulated CPU).\n[Unit]\nAfter=banger-ready.service\n[Service]\nNice=10\n",
        )?;
    }
    // No logind session (and user@0 start) on the SSH login path: Debian's noninteractive session
    // stack is common-session without pam_systemd.
    let pam = dir.join("etc/pam.d/sshd");
    if let Ok(t) = fs::read_to_string(&pam) {
        let t = t.replace("@include common-session\n", "@include common-session-noninteractive\n");
        write(&pam, t)?;
    }
    for u in ["banger-hostkeys.service", "ssh.service", "banger-ready.service"] {
        want(dir, "sysinit.target", u)?;
    }
    let _ = fs::remove_file(dir.join("etc/systemd/system/multi-user.target.wants/ssh.service"));
    let _ = fs::remove_file(dir.join("etc/systemd/system/sshd.service"));
    io(
        "creating symlink",
        &dir.join("etc/systemd/system/sshd.service"),
        symlink("/etc/systemd/system/ssh.service", dir.join("etc/systemd/system/sshd.service")),
    )?;
    write(
        &dir.join("etc/systemd/journald.conf.d/banger.conf"),
        "[Journal]\n# Keep the console quiet; the journal stays persistent in /var/log/journal.\nForwardToConsole=no\n",
    )?;
    run(Command::new("chroot").arg(dir).args([
        "systemctl",
        "enable",
        "--quiet",
        "systemd-networkd.service",
        "systemd-network-generator.service",
    ]))?;
    run(Command::new("chroot").arg(dir).args(["systemctl", "set-default", "--quiet", "multi-user.target"]))?;
    if let Some(m) = modules {
        let dst = dir.join("usr/lib/modules");
        io("creating directory", &dst, fs::create_dir_all(&dst))?;
        if let Some(name) = m.file_name() {
            util::remove_dir(&dst.join(name));
        }
        util::copy_tree(m, &dst)?;
    }
    Ok(())
}

fn remove_host_keys(dir: &Path) -> Result<()> {
    let ssh = dir.join("etc/ssh");
    if let Ok(rd) = fs::read_dir(&ssh) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("ssh_host_") {
                io("removing", &e.path(), fs::remove_file(e.path()))?;
            }
        }
    }
    Ok(())
}

/// `mkfs.ext4 -d dir` into a new sparse file `image` of `size_mib` MiB (written to a temp name
/// and renamed into place).
pub(crate) fn make_ext4(dir: &Path, image: &Path, size_mib: u64, label: &str) -> Result<()> {
    let tmp = image.with_extension("ext4.tmp");
    let _ = fs::remove_file(&tmp);
    let f = io("creating", &tmp, fs::File::create(&tmp))?;
    io("sizing", &tmp, f.set_len(size_mib << 20))?;
    drop(f);
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-m", "0", "-L", label, "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d"])
        .arg(dir)
        .arg(&tmp))?;
    io("renaming", &tmp, fs::rename(&tmp, image))
}

/// Build the base root tree in `tree` (removed first) and `image` from it.
pub fn build_base_rootfs(tree: &Path, image: &Path, opts: &BaseRootfsOptions, progress: &dyn Fn(&str)) -> Result<()> {
    util::remove_dir(tree);
    let mirror = opts.mirror.clone().unwrap_or_else(detect_mirror);
    let mut pkgs: Vec<String> = BASE_PACKAGES.iter().map(|s| s.to_string()).collect();
    pkgs.extend(opts.extra_packages.iter().cloned());
    progress(&format!("mmdebstrap {} minbase from {mirror}", opts.suite));
    mmdebstrap(tree, &opts.suite, &mirror, &pkgs)?;
    progress("configuring guest (ssh, lean systemd, network)");
    configure_guest(tree, &opts.authorized_key, opts.modules.as_deref())?;
    progress(&format!("mkfs.ext4 {}", image.display()));
    make_ext4(tree, image, opts.size_mib, "banger-root")
}

/// Options for [`build_rootfs`] (the docker image).
#[derive(Debug, Clone, Default)]
pub struct RootfsOptions {
    /// Directory receiving `rootfs-docker.ext4` and `rootfs-docker.ext4.packages.sha256`.
    pub out_dir: PathBuf,
    /// Scratch directory (large; removed afterwards).
    pub work_dir: PathBuf,
    /// Base image to start from (mounted read-only through a loop device and copied with `cp -a`).
    pub base_rootfs: Option<PathBuf>,
    /// An already unpacked base tree (used by [`crate::build_runtime`]); wins over `base_rootfs`.
    pub base_tree: Option<PathBuf>,
    /// The package list (one per line, `#` comments).
    pub packages_apt: PathBuf,
    /// Optional script run in the chroot afterwards.
    pub customize_sh: Option<PathBuf>,
    /// Filesystem size in MiB (0 = 8192).
    pub size_mib: u64,
    /// Rebuild even if packages.apt did not change.
    pub force: bool,
}

/// Parse packages.apt: one package per line, `#` comments, blank lines ignored.
pub fn parse_packages(text: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.split('#').next().unwrap_or("").trim();
        if l.is_empty() {
            continue;
        }
        if l.split_whitespace().count() != 1 || !l.chars().all(|c| c.is_ascii_alphanumeric() || "+-.:=_~".contains(c)) {
            return Err(Error::BadInput(format!("packages.apt line {}: `{l}` is not a package name", i + 1)));
        }
        out.push(l.to_string());
    }
    Ok(out)
}

struct Mounts(Vec<PathBuf>);
impl Drop for Mounts {
    fn drop(&mut self) {
        for m in self.0.iter().rev() {
            // -R for the rbind of /dev; -l as a last resort so a busy mount never blocks cleanup.
            let ok = Command::new("umount").arg("-R").arg(m).output().map(|o| o.status.success()).unwrap_or(false);
            if !ok {
                let _ = Command::new("umount").arg("-R").arg("-l").arg(m).output();
            }
        }
    }
}

fn chroot_mounts(dir: &Path) -> Result<Mounts> {
    let mut m = Mounts(Vec::new());
    for (src, fstype, target) in
        [("proc", Some("proc"), "proc"), ("sysfs", Some("sysfs"), "sys"), ("/dev", None, "dev")]
    {
        let t = dir.join(target);
        io("creating directory", &t, fs::create_dir_all(&t))?;
        let mut c = Command::new("mount");
        match fstype {
            Some(f) => c.args(["-t", f, src]),
            None => c.args(["--rbind", src]),
        };
        run(c.arg(&t))?;
        m.0.push(t);
    }
    Ok(m)
}

/// Build `rootfs-docker.ext4` from the base (tree or image) + packages.apt + customize.sh, unless
/// `rootfs-docker.ext4.packages.sha256` already matches packages.apt and `force` is false.
/// Returns whether it (re)built.
pub fn build_rootfs(opts: &RootfsOptions, progress: &dyn Fn(&str)) -> Result<bool> {
    let list = io("reading", &opts.packages_apt, fs::read_to_string(&opts.packages_apt))?;
    let pkgs = parse_packages(&list)?;
    let sum = sha256(list.as_bytes());
    let image = opts.out_dir.join("rootfs-docker.ext4");
    let sum_file = opts.out_dir.join("rootfs-docker.ext4.packages.sha256");
    if !opts.force && image.is_file() && fs::read_to_string(&sum_file).map(|s| s.trim() == sum).unwrap_or(false) {
        progress("rootfs-docker.ext4 is up to date with packages.apt");
        return Ok(false);
    }
    let tree = opts.work_dir.join("docker-tree");
    util::remove_dir(&tree);
    io("creating directory", &opts.work_dir, fs::create_dir_all(&opts.work_dir))?;
    if let Some(base) = &opts.base_tree {
        progress("copying the base tree");
        util::copy_tree(base, &tree)?;
    } else if let Some(img) = &opts.base_rootfs {
        if !img.is_file() {
            return Err(Error::NotFound(format!("base rootfs image {} not found", img.display())));
        }
        // A read-only loop mount + `cp -a` keeps setuid bits, file capabilities (xattrs) and
        // special files; `debugfs rdump` loses them.
        progress(&format!("copying the tree of {} (read-only loop mount)", img.display()));
        let mnt = opts.work_dir.join("base-mnt");
        io("creating directory", &mnt, fs::create_dir_all(&mnt))?;
        run(Command::new("mount").args(["-o", "loop,ro"]).arg(img).arg(&mnt))?;
        let guard = Mounts(vec![mnt.clone()]);
        let r = util::copy_tree(&mnt, &tree);
        drop(guard);
        let _ = fs::remove_dir(&mnt);
        r?;
    } else {
        return Err(Error::BadInput("build_rootfs needs base_rootfs or base_tree".into()));
    }
    let res = (|| -> Result<()> {
        let _mounts = chroot_mounts(&tree)?;
        let rc = tree.join("etc/resolv.conf");
        let _ = fs::remove_file(&rc);
        let _ = fs::copy("/etc/resolv.conf", &rc);
        let prc = tree.join("usr/sbin/policy-rc.d");
        write(&prc, "#!/bin/sh\nexit 101\n")?;
        io("chmod", &prc, fs::set_permissions(&prc, fs::Permissions::from_mode(0o755)))?;
        let apt = |args: &[&str]| -> Result<()> {
            run(Command::new("chroot")
                .arg(&tree)
                .arg("apt-get")
                .args(["-q", "-y", "-o", "APT::Install-Recommends=false"])
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"))
            .map(|_| ())
        };
        progress("apt-get update (chroot)");
        apt(&["update"])?;
        if !pkgs.is_empty() {
            progress(&format!("apt-get install {} packages (chroot)", pkgs.len()));
            let mut a = vec!["install"];
            a.extend(pkgs.iter().map(String::as_str));
            apt(&a)?;
        }
        if let Some(cs) = opts.customize_sh.as_ref().filter(|c| c.is_file()) {
            progress(&format!("running {}", cs.display()));
            let inside = tree.join("tmp/banger-customize.sh");
            io("copying", cs, fs::copy(cs, &inside))?;
            run(Command::new("chroot").arg(&tree).args(["/bin/sh", "/tmp/banger-customize.sh"]))?;
            let _ = fs::remove_file(&inside);
        }
        apt(&["clean"])?;
        let _ = fs::remove_file(&prc);
        let _ = fs::remove_file(&rc);
        Ok(())
    })();
    res?;
    let lists = tree.join("var/lib/apt/lists");
    if let Ok(rd) = fs::read_dir(&lists) {
        for e in rd.flatten() {
            if e.path().is_file() {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    remove_host_keys(&tree)?;
    let size = if opts.size_mib == 0 { 8192 } else { opts.size_mib };
    io("creating directory", &opts.out_dir, fs::create_dir_all(&opts.out_dir))?;
    progress(&format!("mkfs.ext4 {}", image.display()));
    make_ext4(&tree, &image, size, "banger-docker")?;
    write(&sum_file, format!("{sum}\n"))?;
    util::remove_dir(&tree);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_parse() {
        let p = parse_packages("# c\ndocker.io\n\n git # vcs\nlibfoo1:amd64\n").unwrap();
        assert_eq!(p, ["docker.io", "git", "libfoo1:amd64"]);
        assert!(parse_packages("rm -rf /\n").is_err());
        assert!(parse_packages("a;b\n").is_err());
        assert!(!parse_packages(DEFAULT_PACKAGES_APT).unwrap().is_empty());
    }

    #[test]
    fn mirror_lines_have_security() {
        let l = mirror_lines("http://deb.debian.org/debian", "bookworm");
        assert_eq!(l[2], "deb http://deb.debian.org/debian-security bookworm-security main");
    }
}
