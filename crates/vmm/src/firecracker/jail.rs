//! Firecracker under its `jailer`: a chroot per VM, the uid/gid drop, Firecracker alone in its
//! own PID namespace, cgroup v2 limits where the host delegates them, and Firecracker's seccomp
//! filters (never turned off).
//!
//! Layout, for a VM whose jail directory is `JAIL` (`STATE/vms/NAME/jail`, on the filesystem of
//! its disks):
//!
//! ```text
//! JAIL/jail.json                       what `vm show` reports (jailer, uid, cgroup limits)
//! JAIL/<exec>/<id>/root/               the chroot (`<exec>`: the Firecracker binary's file name)
//!     firecracker                      the jailer's own copy of the binary
//!     firecracker.pid                  Firecracker's pid, written by the jailer
//!     api.sock                         the API socket (RUN/vms/NAME/jail-<id>.sock links to it)
//!     vmlinux, initrd                  hard links (copies only when on another filesystem)
//!     base.img, overlay.img, …         hard links to the disks: never copied
//!     firecracker.log, .metrics        Firecracker's log and metrics
//!     dev/kvm, dev/net/tun …           made by the jailer
//! ```
//!
//! `<id>` is derived from `JAIL` itself ([`id`]), so it is unique per VM and installation, and it
//! is what marks the jailed process: its command line is `/firecracker --id <id> …`, not the host
//! path of its socket. The link's name carries the id ([`marker`]), so the process is still
//! recognised if the link (or the whole run directory) disappears while it runs. Everything is removed by [`remove`] (the chroot and the
//! cgroup), on stop, delete, a failed start and after a crash.

use crate::{VmConfig, VmmError};
use banger_host::Privilege;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The API socket inside the chroot.
pub const SOCKET: &str = "api.sock";
/// What [`Jail::prepare`] records about a jail, in its jail directory.
pub const RECORD: &str = "jail.json";
/// Firecracker's log and metrics inside the chroot.
const LOG: &str = "firecracker.log";
const METRICS: &str = "firecracker.metrics";
/// The cgroup (under the cgroup v2 root) the jailer puts each VM's cgroup in.
pub const PARENT_CGROUP: &str = "banger";
/// Memory a VM's cgroup allows beyond the guest's own (Firecracker itself, its I/O buffers).
pub const MEMORY_OVERHEAD_MIB: u64 = 128;
/// Files this large or smaller (kernel, initrd) are copied into the chroot when a hard link is
/// impossible (another filesystem); disks never are.
const COPY_LIMIT: u64 = 256 << 20;

/// A configured `jailer`.
#[derive(Debug, Clone)]
pub struct Jailer {
    pub bin: PathBuf,
    /// Firecracker drops to these (the daemon's user).
    pub uid: u32,
    pub gid: u32,
    /// The cgroup v2 hierarchy when it delegates `memory` and `cpu`, else why limits are off.
    pub cgroup: Result<PathBuf, String>,
    /// How the jailer (which needs root) is run: directly as root, else `sudo -n`.
    pub privilege: Privilege,
}

impl Jailer {
    /// `bin` run for this process's user, with the host's cgroup v2 hierarchy if usable.
    pub fn new(bin: PathBuf) -> Jailer {
        let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
        Jailer {
            bin,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            cgroup: cgroup_v2(&mounts),
            privilege: banger_host::privilege(),
        }
    }

    /// Run Firecracker as `uid`/`gid` instead of this process's user (needs root: the daemon
    /// must still signal it and reach its files).
    pub fn with_ids(mut self, uid: u32, gid: u32) -> Jailer {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// Whether Firecracker runs as another user than this process's.
    pub fn other_user(&self) -> bool {
        self.uid != nix::unistd::geteuid().as_raw() || self.gid != nix::unistd::getegid().as_raw()
    }

    /// The live processes of jail `id` (ours, or of the user Firecracker runs as).
    pub fn processes(&self, id: &str) -> Vec<u32> {
        let own = nix::unistd::geteuid().as_raw();
        crate::process::find_with_marker_of(Path::new(id), &[own, self.uid])
    }

    /// The jailer's arguments for `jail` running Firecracker `exec` with `config`'s limits.
    pub fn args(&self, jail: &Jail, exec: &Path, config: &VmConfig) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--id".into(), jail.id.clone().into(), "--exec-file".into(), exec.into()];
        args.extend(["--uid".into(), self.uid.to_string().into(), "--gid".into(), self.gid.to_string().into()]);
        args.extend(["--chroot-base-dir".into(), jail.dir.clone().into_os_string()]);
        // Firecracker becomes init of its own PID namespace: it sees no host process.
        args.push("--new-pid-ns".into());
        if self.cgroup.is_ok() {
            args.extend(["--cgroup-version".into(), "2".into(), "--parent-cgroup".into(), PARENT_CGROUP.into()]);
            for limit in limits(config) {
                args.extend(["--cgroup".into(), limit.into()]);
            }
        }
        args.extend(["--".into(), "--api-sock".into(), format!("/{SOCKET}").into()]);
        args
    }
}

/// Whether `bin` is a statically linked ELF executable (no program interpreter): the jailer runs
/// Firecracker in an empty chroot, where a dynamically linked one cannot start. `None` when it
/// cannot be read or is not a 64-bit little-endian ELF file.
pub fn is_static(bin: &Path) -> Option<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = fs::File::open(bin).ok()?;
    let mut h = [0u8; 64];
    f.read_exact(&mut h).ok()?;
    if &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return None;
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
    let (phoff, phentsize, phnum) =
        (u64::from_le_bytes(h[32..40].try_into().ok()?), u16_at(&h, 54) as u64, u16_at(&h, 56) as u64);
    if phentsize < 4 || phnum > 4096 {
        return None;
    }
    let mut table = vec![0u8; (phentsize * phnum) as usize];
    f.seek(SeekFrom::Start(phoff)).ok()?;
    f.read_exact(&mut table).ok()?;
    // PT_INTERP (3): the dynamic loader it needs.
    Some(!table.chunks(phentsize as usize).any(|e| u32::from_le_bytes([e[0], e[1], e[2], e[3]]) == 3))
}

/// Why a dynamically linked `firecracker` (`bin`) cannot run under the jailer, and what to do.
pub fn dynamic_under_jailer(bin: &Path) -> String {
    format!(
        "{} is dynamically linked, and the jailer runs Firecracker in an empty chroot where its loader is not: \
         use the release's static (musl) firecracker of the jailer's version, or set jailer_bin = \"none\"",
        bin.display()
    )
}

/// The cgroup files and values that cap a VM: its memory plus [`MEMORY_OVERHEAD_MIB`], and as
/// much CPU time as it has vCPUs.
pub fn limits(config: &VmConfig) -> Vec<String> {
    vec![
        format!("memory.max={}", (u64::from(config.memory_mib) + MEMORY_OVERHEAD_MIB) << 20),
        format!("cpu.max={} 100000", u64::from(config.vcpus.max(1)) * 100_000),
    ]
}

/// The cgroup v2 hierarchy in `mounts` (`/proc/mounts`) if it offers the `memory` and `cpu`
/// controllers; else why cgroup limits cannot be set here.
pub fn cgroup_v2(mounts: &str) -> Result<PathBuf, String> {
    let Some(mount) = mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    }) else {
        return Err("this host has no cgroup v2 hierarchy".into());
    };
    let controllers = fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
    let have: Vec<&str> = controllers.split_whitespace().collect();
    let missing: Vec<&str> = ["memory", "cpu"].into_iter().filter(|c| !have.contains(c)).collect();
    if missing.is_empty() {
        Ok(mount)
    } else {
        Err(format!(
            "the cgroup v2 hierarchy at {} does not offer the {} controller{} (a cgroup v1 or hybrid host)",
            mount.display(),
            missing.join(" and "),
            if missing.len() > 1 { "s" } else { "" }
        ))
    }
}

/// The jailer's id for the jail in `dir`: `bg` and 16 hex digits of its path's SHA-256 (the
/// jailer allows 64 characters: letters, digits, hyphens).
pub fn id(dir: &Path) -> String {
    let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    format!("bg{}", &hex::encode(digest)[..16])
}

/// The jail id a control socket names, when it is a jailed Firecracker's
/// (`jail-<id>.sock`, [`Jail::link_name`]); what marks that process ([`marker`]). Read from the
/// name alone: the link need not exist.
pub fn id_of_socket(socket: &Path) -> Option<String> {
    let name = socket.file_name()?.to_str()?;
    let id = name.strip_prefix("jail-")?.strip_suffix(".sock")?;
    let hex = id.strip_prefix("bg")?;
    (hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

/// What identifies the VMM behind `socket` on its command line ([`crate::process::is_alive`]):
/// the socket's own path, or for a jailed Firecracker its jail id.
pub fn marker(socket: &Path) -> PathBuf {
    id_of_socket(socket).map(PathBuf::from).unwrap_or_else(|| socket.to_path_buf())
}

/// What `vm show` says of a jail ([`RECORD`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub jailer: PathBuf,
    pub id: String,
    pub chroot: PathBuf,
    pub uid: u32,
    pub gid: u32,
    /// The cgroup limits set (`memory.max=…`), empty when none could be.
    pub cgroup_limits: Vec<String>,
    /// Why there are no limits, when there are none.
    pub cgroup_note: Option<String>,
}

impl Record {
    /// The record of the jail in `dir`, if there is one.
    pub fn read(dir: &Path) -> Option<Record> {
        serde_json::from_str(&fs::read_to_string(dir.join(RECORD)).ok()?).ok()
    }
}

/// One VM's jail.
#[derive(Debug, Clone)]
pub struct Jail {
    /// The jail directory (`--chroot-base-dir`).
    pub dir: PathBuf,
    pub id: String,
    /// `dir/<exec>/<id>/root`.
    pub chroot: PathBuf,
    /// The Firecracker binary's file name (the jailer names its copy, the pid file and a path
    /// level after it).
    pub exec_name: String,
}

/// `config` as the jailed Firecracker sees it: every path inside the chroot.
pub struct Inside {
    pub config: VmConfig,
    pub log: PathBuf,
    pub metrics: PathBuf,
}

impl Jail {
    /// The jail in `dir` for Firecracker binary `exec` (resolved as the jailer does).
    pub fn new(dir: &Path, exec: &Path) -> io::Result<Jail> {
        let exec = fs::canonicalize(exec).map_err(|e| with_path(e, "resolve", exec))?;
        let exec_name = exec
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{} has no file name", exec.display())))?
            .to_string();
        let id = id(dir);
        Ok(Jail { chroot: dir.join(&exec_name).join(&id).join("root"), dir: dir.to_path_buf(), id, exec_name })
    }

    /// Host path of something at `inside` (absolute, as Firecracker sees it) in the chroot.
    pub fn host_path(&self, inside: &Path) -> PathBuf {
        self.chroot.join(inside.strip_prefix("/").unwrap_or(inside))
    }

    pub fn socket(&self) -> PathBuf {
        self.chroot.join(SOCKET)
    }

    /// The name of the link to [`Jail::socket`] in the VM's run directory: it carries the id.
    pub fn link_name(&self) -> String {
        format!("jail-{}.sock", self.id)
    }

    pub fn pid_file(&self) -> PathBuf {
        self.chroot.join(format!("{}.pid", self.exec_name))
    }

    /// A fresh chroot holding what `config` names (hard links; the kernel and initrd copied when
    /// on another filesystem), Firecracker's log and metrics files, and the [`Record`]. Whatever
    /// an earlier run left is removed first; on error nothing is left.
    pub fn prepare(&self, jailer: &Jailer, config: &VmConfig) -> Result<Inside, VmmError> {
        if let Err(e) = remove(&self.dir) {
            return Err(VmmError::Spawn { bin: jailer.bin.clone(), source: io::Error::other(e) });
        }
        let made = self.populate(jailer, config);
        if made.is_err() {
            let _ = remove(&self.dir);
        }
        made
    }

    fn populate(&self, jailer: &Jailer, config: &VmConfig) -> Result<Inside, VmmError> {
        let err = |e: io::Error| VmmError::Spawn { bin: jailer.bin.clone(), source: e };
        fs::create_dir_all(&self.chroot).map_err(|e| err(with_path(e, "create", &self.chroot)))?;
        let mut inside = config.clone();
        inside.kernel = self.place(&config.kernel, "vmlinux", true).map_err(err)?;
        inside.initrd = match &config.initrd {
            Some(p) => Some(self.place(p, "initrd", true).map_err(err)?),
            None => None,
        };
        for disk in &mut inside.disks {
            disk.path = self.place(&disk.path, &format!("{}.img", disk.id), false).map_err(err)?;
        }
        for file in [LOG, METRICS] {
            let p = self.chroot.join(file);
            fs::File::create(&p).map_err(|e| err(with_path(e, "create", &p)))?;
        }
        // Firecracker as another user (root's daemon, `jailer_uid`): the VM's own writable files
        // (its disks, through their links; its log and metrics) become that user's. Shared
        // read-only ones (the kernel, initrd and base image: links to files of the runtime bundle
        // and of other VMs) are never given away: they must be readable by everyone, else the
        // kernel and initrd are copied for it and a read-only disk is refused.
        if jailer.other_user() {
            use std::os::unix::fs::PermissionsExt;
            let own = inside.disks.iter().filter(|d| !d.read_only).map(|d| d.path.clone());
            for f in own.chain([PathBuf::from("/").join(LOG), PathBuf::from("/").join(METRICS)]) {
                let p = self.host_path(&f);
                // A link of a symbolic link is one too: only a regular file is handed over.
                if !fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_file()) {
                    return Err(err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{} is not a regular file", p.display()),
                    )));
                }
                std::os::unix::fs::lchown(&p, Some(jailer.uid), Some(jailer.gid))
                    .map_err(|e| err(with_path(e, "give Firecracker's user", &p)))?;
            }
            let boot = [Some(inside.kernel.clone()), inside.initrd.clone()].into_iter().flatten().map(|f| (f, true));
            let shared = inside.disks.iter().filter(|d| d.read_only).map(|d| (d.path.clone(), false));
            for (f, copyable) in boot.chain(shared) {
                let p = self.host_path(&f);
                let mode = fs::metadata(&p).map_err(|e| err(with_path(e, "inspect", &p)))?.permissions().mode();
                if mode & 0o004 != 0 {
                    continue;
                }
                if !copyable {
                    return Err(err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "{} is not readable by uid {} (jailer_uid), and a shared read-only disk is not given \
                             away: make it readable by everyone (chmod o+r)",
                            p.display(),
                            jailer.uid
                        ),
                    )));
                }
                let len = fs::metadata(&p).map(|m| m.len()).unwrap_or(u64::MAX);
                if len > COPY_LIMIT {
                    return Err(err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "{} is not readable by uid {} (jailer_uid) and too large to copy",
                            p.display(),
                            jailer.uid
                        ),
                    )));
                }
                let copy = p.with_extension("copy");
                fs::copy(&p, &copy).map_err(|e| err(with_path(e, "copy", &p)))?;
                std::os::unix::fs::chown(&copy, Some(jailer.uid), Some(jailer.gid))
                    .map_err(|e| err(with_path(e, "give Firecracker's user", &copy)))?;
                fs::rename(&copy, &p).map_err(|e| err(with_path(e, "replace", &p)))?;
            }
        }
        let cgroup_limits = if jailer.cgroup.is_ok() { limits(config) } else { vec![] };
        let record = Record {
            jailer: jailer.bin.clone(),
            id: self.id.clone(),
            chroot: self.chroot.clone(),
            uid: jailer.uid,
            gid: jailer.gid,
            cgroup_note: jailer.cgroup.as_ref().err().cloned(),
            cgroup_limits,
        };
        let text = serde_json::to_string_pretty(&record).unwrap_or_default();
        fs::write(self.dir.join(RECORD), text).map_err(|e| err(with_path(e, "write", &self.dir.join(RECORD))))?;
        Ok(Inside { config: inside, log: PathBuf::from("/").join(LOG), metrics: PathBuf::from("/").join(METRICS) })
    }

    /// Make `src` visible in the chroot as `/name`: a hard link, or (`copy_ok`, small files
    /// only) a copy when `src` is on another filesystem.
    fn place(&self, src: &Path, name: &str, copy_ok: bool) -> io::Result<PathBuf> {
        let dst = self.chroot.join(name);
        match fs::hard_link(src, &dst) {
            Ok(()) => {}
            // Another filesystem (EXDEV), or a file of another user that the kernel's
            // protected_hardlinks forbids linking (EPERM: the runtime bundle's kernel, say).
            Err(e) if matches!(e.raw_os_error(), Some(nix::libc::EXDEV | nix::libc::EPERM)) => {
                let len = fs::metadata(src).map_err(|e| with_path(e, "inspect", src))?.len();
                if !copy_ok || len > COPY_LIMIT {
                    let why = if copy_ok { format!("too large to copy ({} MiB)", len >> 20) } else { "a disk".into() };
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "{} cannot be hard-linked into the jail {} ({e}), and it is {why}, which is never \
                             copied: a jailed Firecracker sees only hard links; keep the VM's files on one \
                             filesystem, owned by this user",
                            src.display(),
                            self.dir.display(),
                        ),
                    ));
                }
                fs::copy(src, &dst).map_err(|e| with_path(e, "copy", src))?;
            }
            Err(e) => return Err(with_path(e, &format!("link into the jail {}:", self.chroot.display()), src)),
        }
        Ok(PathBuf::from("/").join(name))
    }
}

/// Remove the jail in `dir`: its cgroup (root's: through `banger_host` when we are not root) and
/// the whole tree. Its Firecracker must be gone. Missing pieces are fine; what could not be
/// removed is the error.
///
/// The cgroup's path is worked out again (the cgroup v2 root, [`PARENT_CGROUP`], [`id`]), never
/// read from the jail's record, which the jailed Firecracker's user can write.
pub fn remove(dir: &Path) -> Result<(), String> {
    let mut problems = Vec::new();
    if let Ok(root) = cgroup_v2(&fs::read_to_string("/proc/mounts").unwrap_or_default()) {
        let cg = root.join(PARENT_CGROUP).join(id(dir));
        // Just after its last process went, the kernel may still hold it (busy) for a moment.
        let mut tries = 0;
        while cg.exists() {
            let busy = match fs::remove_dir(&cg) {
                Ok(()) => break,
                Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => true,
                Err(_) => match banger_host::run_root("rmdir", [&cg]) {
                    Ok(_) => break,
                    Err(e) if e.to_string().contains("busy") => true,
                    Err(e) => {
                        problems.push(format!("cannot remove the cgroup {}: {e}", cg.display()));
                        false
                    }
                },
            };
            tries += 1;
            if !busy || tries >= 20 {
                if busy {
                    problems.push(format!("the cgroup {} stayed busy", cg.display()));
                }
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        // What the jailer made as root before a failure stopped it (it chowns as it goes). `rm`
        // follows no symbolic link.
        Err(_) => {
            if let Err(e) = banger_host::run_root("rm", [OsString::from("-rf"), "--one-file-system".into(), dir.into()])
            {
                problems.push(format!("cannot remove the jail {}: {e}", dir.display()));
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> VmConfig {
        VmConfig {
            name: "a".into(),
            kernel: "/k".into(),
            initrd: None,
            cmdline: String::new(),
            disks: vec![],
            memory_mib: 1024,
            vcpus: 2,
            nic: None,
            run_dir: "/r".into(),
            console_log: "/c".into(),
            shares: vec![],
            jail_dir: None,
        }
    }

    #[test]
    fn static_and_dynamic_executables_are_told_apart() {
        // This test binary is dynamically linked (it has a program interpreter).
        assert_eq!(is_static(&std::env::current_exe().unwrap()), Some(false));
        assert_eq!(is_static(Path::new("/nonexistent")), None);
        let tmp = tempfile::tempdir().unwrap();
        let script = tmp.path().join("s");
        fs::write(&script, "#!/bin/sh\n").unwrap();
        assert_eq!(is_static(&script), None, "not ELF");
        // A minimal static ELF header: one PT_LOAD program header, no PT_INTERP.
        let mut elf = vec![0u8; 64 + 56];
        elf[..4].copy_from_slice(b"\x7fELF");
        (elf[4], elf[5]) = (2, 1);
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&1u16.to_le_bytes());
        elf[64..68].copy_from_slice(&1u32.to_le_bytes());
        let bin = tmp.path().join("static");
        fs::write(&bin, &elf).unwrap();
        assert_eq!(is_static(&bin), Some(true));
        elf[64..68].copy_from_slice(&3u32.to_le_bytes());
        fs::write(&bin, &elf).unwrap();
        assert_eq!(is_static(&bin), Some(false));
    }

    #[test]
    fn cgroup_limits_need_a_v2_hierarchy_with_memory_and_cpu() {
        let tmp = tempfile::tempdir().unwrap();
        let v2 = tmp.path().join("unified");
        fs::create_dir_all(&v2).unwrap();
        let mounts = format!(
            "cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\ncgroup2 {} cgroup2 rw,nosuid 0 0\n",
            v2.display()
        );
        fs::write(v2.join("cgroup.controllers"), "hugetlb\n").unwrap();
        let e = cgroup_v2(&mounts).unwrap_err();
        assert!(e.contains("memory and cpu controllers") && e.contains("v1 or hybrid"), "{e}");
        fs::write(v2.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        assert_eq!(cgroup_v2(&mounts).unwrap(), v2);
        assert!(cgroup_v2("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n").unwrap_err().contains("no cgroup v2"));
    }

    #[test]
    fn jailer_args_drop_to_the_user_and_limit_only_where_the_host_delegates() {
        let tmp = tempfile::tempdir().unwrap();
        let fc = tmp.path().join("firecracker-v1.16.1");
        fs::write(&fc, "").unwrap();
        let link = tmp.path().join("fc");
        std::os::unix::fs::symlink(&fc, &link).unwrap();
        let dir = tmp.path().join("vms/a/jail");
        let jail = Jail::new(&dir, &link).unwrap();
        assert_eq!(jail.exec_name, "firecracker-v1.16.1", "named after the binary itself, as the jailer does");
        assert_eq!(jail.chroot, dir.join("firecracker-v1.16.1").join(&jail.id).join("root"));
        assert!(jail.id.starts_with("bg") && jail.id.len() == 18, "{}", jail.id);
        assert_ne!(jail.id, id(&tmp.path().join("vms/b/jail")), "one id per VM and installation");
        let mut jailer = Jailer {
            bin: "/usr/bin/jailer".into(),
            uid: 1000,
            gid: 100,
            cgroup: Err("no".into()),
            privilege: Privilege::Root,
        };
        let words = |args: Vec<OsString>| args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>();
        let expected = vec![
            "--id".to_string(),
            jail.id.clone(),
            "--exec-file".into(),
            link.display().to_string(),
            "--uid".into(),
            "1000".into(),
            "--gid".into(),
            "100".into(),
            "--chroot-base-dir".into(),
            dir.display().to_string(),
            "--new-pid-ns".into(),
            "--".into(),
            "--api-sock".into(),
            "/api.sock".into(),
        ];
        assert_eq!(words(jailer.args(&jail, &link, &config())), expected);
        jailer.cgroup = Ok("/sys/fs/cgroup".into());
        let args = words(jailer.args(&jail, &link, &config()));
        let cg = ["--cgroup-version", "2", "--parent-cgroup", "banger", "--cgroup"];
        assert_eq!(&args[11..16], cg);
        assert_eq!(args[16], format!("memory.max={}", (1024 + MEMORY_OVERHEAD_MIB) << 20));
        assert_eq!((args[17].as_str(), args[18].as_str()), ("--cgroup", "cpu.max=200000 100000"));
        assert_eq!(&args[19..], ["--", "--api-sock", "/api.sock"]);
    }

    #[test]
    fn prepare_links_the_disks_records_the_jail_and_remove_takes_it_all() {
        let tmp = tempfile::tempdir().unwrap();
        let fc = tmp.path().join("firecracker");
        fs::write(&fc, "").unwrap();
        let mut c = config();
        c.kernel = tmp.path().join("vmlinux-6.1");
        c.initrd = Some(tmp.path().join("initrd.img"));
        let base = tmp.path().join("base.ext4");
        c.disks = vec![crate::Disk { id: "base".into(), path: base.clone(), read_only: true }];
        for (p, body) in [(&c.kernel, "kernel"), (c.initrd.as_ref().unwrap(), "initrd"), (&base, "disk")] {
            fs::write(p, body).unwrap();
        }
        let dir = tmp.path().join("jail");
        let jail = Jail::new(&dir, &fc).unwrap();
        let jailer =
            Jailer { bin: "/j".into(), uid: 7, gid: 8, cgroup: Err("none here".into()), privilege: Privilege::Root };
        // A stale pid file from a crashed run would make the jailer refuse: it goes first.
        fs::create_dir_all(&jail.chroot).unwrap();
        fs::write(jail.pid_file(), "1").unwrap();
        let inside = jail.prepare(&jailer, &c).unwrap();
        assert!(!jail.pid_file().exists());
        assert_eq!(inside.config.kernel, Path::new("/vmlinux"));
        assert_eq!(inside.config.initrd.as_deref(), Some(Path::new("/initrd")));
        assert_eq!(inside.config.disks[0].path, Path::new("/base.img"));
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        assert_eq!(ino(&jail.host_path(Path::new("/base.img"))), ino(&base), "a hard link, not a copy");
        assert!(jail.host_path(&inside.log).is_file() && jail.host_path(&inside.metrics).is_file());
        let rec = Record::read(&dir).unwrap();
        assert_eq!((rec.uid, rec.gid, rec.chroot.clone()), (7, 8, jail.chroot.clone()));
        assert_eq!((rec.cgroup_limits.len(), rec.cgroup_note.as_deref()), (0, Some("none here")));

        // A missing disk: an error naming it, and nothing left.
        c.disks[0].path = tmp.path().join("gone.ext4");
        let e = jail.prepare(&jailer, &c).err().unwrap().to_string();
        assert!(e.contains("gone.ext4"), "{e}");
        assert!(!dir.exists());

        c.disks[0].path = base;
        jail.prepare(&jailer, &c).unwrap();
        remove(&dir).unwrap();
        assert!(!dir.exists());
        remove(&dir).unwrap(); // twice is fine
    }

    #[test]
    fn firecracker_as_another_user_gets_its_own_files_and_never_shared_ones() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP firecracker_as_another_user_gets_its_own_files_and_never_shared_ones: needs root (chown)");
            return;
        }
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let tmp = tempfile::tempdir().unwrap();
        let fc = tmp.path().join("firecracker");
        fs::write(&fc, "").unwrap();
        let mut c = config();
        c.kernel = tmp.path().join("vmlinux");
        c.initrd = Some(tmp.path().join("initrd"));
        let (base, work) = (tmp.path().join("base.ext4"), tmp.path().join("work.ext4"));
        c.disks = vec![
            crate::Disk { id: "base".into(), path: base.clone(), read_only: true },
            crate::Disk { id: "work".into(), path: work.clone(), read_only: false },
        ];
        for (p, mode) in [(&c.kernel, 0o644), (c.initrd.as_ref().unwrap(), 0o600), (&base, 0o644), (&work, 0o600)] {
            fs::write(p, "x").unwrap();
            fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
        }
        let dir = tmp.path().join("jail");
        let jailer = Jailer { bin: "/j".into(), uid: 0, gid: 0, cgroup: Err("-".into()), privilege: Privilege::Root }
            .with_ids(65534, 65533);
        assert!(jailer.other_user());
        let jail = Jail::new(&dir, &fc).unwrap();
        let inside = jail.prepare(&jailer, &c).unwrap();
        let owner = |p: &Path| fs::metadata(p).map(|m| (m.uid(), m.gid())).unwrap();
        for p in [Path::new("/work.img"), &inside.log, &inside.metrics] {
            assert_eq!(owner(&jail.host_path(p)), (65534, 65533), "{}", p.display());
        }
        assert_eq!(owner(&work), (65534, 65533), "the VM's own disk, through its link");
        // Shared files keep their owner: readable ones are linked, the unreadable initrd copied.
        assert_eq!((owner(&c.kernel), owner(&base), owner(c.initrd.as_ref().unwrap())), ((0, 0), (0, 0), (0, 0)));
        assert_eq!(
            fs::metadata(jail.host_path(Path::new("/base.img"))).unwrap().ino(),
            fs::metadata(&base).unwrap().ino()
        );
        assert_eq!(owner(&jail.host_path(Path::new("/initrd"))), (65534, 65533), "its own copy");
        // A shared read-only disk only root can read: refused, not given away; nothing left.
        fs::set_permissions(&base, fs::Permissions::from_mode(0o600)).unwrap();
        let e = jail.prepare(&jailer, &c).err().unwrap().to_string();
        assert!(e.contains("not readable by uid 65534") && e.contains("chmod o+r"), "{e}");
        assert_eq!(owner(&base), (0, 0));
        assert!(!dir.exists());
    }

    #[test]
    fn a_jailed_socket_is_marked_by_its_jail_id_even_when_the_link_is_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let fc = tmp.path().join("firecracker");
        fs::write(&fc, "").unwrap();
        let jail = Jail::new(&tmp.path().join("jail"), &fc).unwrap();
        let link = tmp.path().join("run").join(jail.link_name());
        assert!(!link.exists());
        assert_eq!(marker(&link), Path::new(&jail.id));
        assert_eq!(id_of_socket(&link).as_deref(), Some(jail.id.as_str()));
        let plain = tmp.path().join("fc.sock");
        assert_eq!(marker(&plain), plain);
        for not_a_jail in ["jail-bg0123.sock", "jail-bgzz23456789abcdef.sock", "jail-xx0123456789abcdef.sock"] {
            assert_eq!(id_of_socket(&tmp.path().join(not_a_jail)), None, "{not_a_jail}");
        }
    }
}
