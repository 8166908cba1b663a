//! Host folders for QEMU guests: one `virtiofsd` per shared directory, serving a vhost-user
//! socket that QEMU's `vhost-user-fs-device` connects to (see [`crate::qemu`]).
//!
//! Two virtiofsd programs exist, with different options ([`Flavor`]):
//! - the Rust one (Debian 13 / Ubuntu 24.04 package `virtiofsd`, or `cargo install virtiofsd`):
//!   runs as any user; as a normal user without a sandbox and with the guest's root mapped to
//!   that user (`--translate-uid/gid`), so files the guest writes belong to the user; as root in
//!   its namespace sandbox; `--readonly` is enforced on the host;
//! - QEMU's older C one (`/usr/lib/qemu/virtiofsd`, in Debian 12's `qemu-system-common`): its
//!   sandbox needs root, so it is used only when banger runs as root; read-only is a read-only
//!   bind mount of the directory in a mount namespace of its own.
//!
//! The socket is bound and listening before virtiofsd starts (it inherits it, `--fd`): QEMU can
//! connect at once, and no pid file is written. virtiofsd serves one connection and exits when
//! QEMU goes, so each boot starts its own. Its argv[0] names the socket, so its pid can be
//! checked before it is signalled ([`crate::process::is_alive`]).

use crate::process;
use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Which virtiofsd a program is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// The Rust virtiofsd (`--shared-dir`).
    Rust,
    /// QEMU's C virtiofsd (`-o source=`).
    Qemu,
}

/// A virtiofsd program found on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Virtiofsd {
    pub bin: PathBuf,
    pub flavor: Flavor,
    /// It takes a listening socket (`--fd`), and (the Rust one, 1.13 and later) maps the
    /// guest's root to another user (`--translate-uid`).
    pub has_fd: bool,
    pub has_translate: bool,
}

/// Where to look when the configuration names no path: the Rust one first.
pub const SEARCH: &[&str] = &["/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd"];

impl Virtiofsd {
    /// Which virtiofsd `bin` is, from its `--help`; `None` when it does not run or is neither.
    pub fn identify(bin: &Path) -> Option<Virtiofsd> {
        let out = banger_host::run_with_timeout(
            &bin.display().to_string(),
            vec!["--help".to_string()],
            std::time::Duration::from_secs(5),
        )
        .ok()?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let flavor = if text.contains("--shared-dir") {
            Flavor::Rust
        } else if text.contains("source=") {
            Flavor::Qemu
        } else {
            return None;
        };
        Some(Virtiofsd {
            bin: bin.to_path_buf(),
            flavor,
            has_fd: text.contains("--fd"),
            has_translate: text.contains("--translate-uid"),
        })
    }

    /// Why this virtiofsd cannot serve folders for a process of `uid`, if it cannot.
    pub fn unusable_by(&self, uid: u32) -> Option<String> {
        const GET: &str = "install the Rust virtiofsd 1.13 or later (Debian 13: package virtiofsd; elsewhere `make \
                           virtiofsd` or `cargo install virtiofsd`) and set virtiofsd_bin if it is not on PATH";
        if self.flavor == Flavor::Qemu && uid != 0 {
            return Some(format!("{} is QEMU's older virtiofsd, whose sandbox needs root; {GET}", self.bin.display()));
        }
        if !self.has_fd || (self.flavor == Flavor::Rust && uid != 0 && !self.has_translate) {
            return Some(format!(
                "{} is too old (no {}); {GET}",
                self.bin.display(),
                if self.has_fd { "--translate-uid, which a normal user needs" } else { "--fd" }
            ));
        }
        None
    }

    /// The arguments after argv[0] for serving `dir` on the listening socket `fd`.
    pub fn args(&self, dir: &Path, readonly: bool, uid: u32, gid: u32, fd: i32) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        match self.flavor {
            Flavor::Rust => {
                a.push(format!("--fd={fd}").into());
                let mut shared = OsString::from("--shared-dir=");
                shared.push(dir);
                a.push(shared);
                a.push("--cache=auto".into());
                if uid == 0 {
                    a.push("--sandbox=namespace".into());
                } else {
                    a.push("--sandbox=none".into());
                    a.push(format!("--translate-uid=map:0:{uid}:1").into());
                    a.push(format!("--translate-gid=map:0:{gid}:1").into());
                }
                if readonly {
                    a.push("--readonly".into());
                }
            }
            Flavor::Qemu => {
                a.push(format!("--fd={fd}").into());
                a.push("-o".into());
                let mut source = OsString::from("source=");
                source.push(dir);
                a.push(source);
                a.push("-o".into());
                a.push("cache=auto".into());
            }
        }
        a
    }

    /// Start serving `dir` on a new socket at `socket` (replacing a stale one), as a process of
    /// its own session logging to `log`; returns its pid. Read-only directories are read-only on
    /// the host side too.
    pub fn spawn(&self, dir: &Path, readonly: bool, socket: &Path, log: &Path) -> std::io::Result<u32> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let fd = listener.as_raw_fd();
        let mut cmd = Command::new(&self.bin);
        cmd.arg0(marker(socket)).args(self.args(dir, readonly, uid, gid, fd));
        cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        // The C virtiofsd has no read-only option: a read-only bind mount of the directory
        // onto itself, in a mount namespace only it sees.
        let bind_ro = readonly && self.flavor == Flavor::Qemu;
        let dir_c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|_| std::io::Error::other("the directory's path contains a NUL byte"))?;
        // SAFETY: between fork and exec only async-signal-safe calls (dup2, fcntl, unshare,
        // mount) on values prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                // The listening socket, where it is, kept across exec.
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if bind_ro {
                    use nix::mount::{MsFlags, mount};
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
                    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)?;
                    mount(Some(dir_c.as_c_str()), dir_c.as_c_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
                    let ro = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
                    mount(None::<&str>, dir_c.as_c_str(), None::<&str>, ro, None::<&str>)?;
                }
                Ok(())
            });
        }
        let child = process::spawn_detached(&mut cmd)?;
        let pid = child.id();
        process::reap_in_background(child);
        Ok(pid)
    }
}

/// argv[0] of the virtiofsd serving `socket`: what [`process::is_alive`] looks for.
pub fn marker(socket: &Path) -> OsString {
    let mut m = OsString::from("virtiofsd:");
    m.push(socket);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(a: &[OsString]) -> Vec<&str> {
        a.iter().map(|s| s.to_str().unwrap()).collect()
    }

    #[test]
    fn the_rust_one_maps_the_guest_s_root_to_a_normal_user_and_enforces_read_only() {
        let v = Virtiofsd { bin: "/x".into(), flavor: Flavor::Rust, has_fd: true, has_translate: true };
        assert_eq!(
            strs(&v.args(Path::new("/home/me/src"), true, 1000, 100, 7)),
            [
                "--fd=7",
                "--shared-dir=/home/me/src",
                "--cache=auto",
                "--sandbox=none",
                "--translate-uid=map:0:1000:1",
                "--translate-gid=map:0:100:1",
                "--readonly"
            ]
        );
        let root = v.args(Path::new("/srv"), false, 0, 0, 3);
        assert!(strs(&root).contains(&"--sandbox=namespace") && !strs(&root).contains(&"--readonly"));
        assert_eq!(v.unusable_by(1000), None);
        let old = Virtiofsd { has_translate: false, ..v.clone() };
        assert!(old.unusable_by(1000).unwrap().contains("too old (no --translate-uid"), "a normal user needs it");
        assert_eq!(old.unusable_by(0), None, "root does not");
    }

    #[test]
    fn the_c_one_is_for_root_only() {
        let v = Virtiofsd {
            bin: "/usr/lib/qemu/virtiofsd".into(),
            flavor: Flavor::Qemu,
            has_fd: true,
            has_translate: false,
        };
        assert_eq!(
            strs(&v.args(Path::new("/srv"), true, 0, 0, 3)),
            ["--fd=3", "-o", "source=/srv", "-o", "cache=auto"]
        );
        assert!(v.unusable_by(0).is_none());
        assert!(v.unusable_by(1000).unwrap().contains("Rust virtiofsd"));
    }

    #[test]
    fn programs_are_told_apart_by_their_help() {
        let tmp = tempfile::tempdir().unwrap();
        let fake = |name: &str, help: &str| {
            let p = tmp.path().join(name);
            std::fs::write(&p, format!("#!/bin/sh\necho '{help}'\n")).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            p
        };
        let rust = fake("r", "      --shared-dir <SHARED_DIR>  --fd <FD>  --translate-uid <MAP>");
        let c = fake("c", "    -o source=PATH             shared directory tree\n    --fd=FDNUM");
        let other = fake("o", "usage: something else");
        assert_eq!(Virtiofsd::identify(&rust).unwrap().flavor, Flavor::Rust);
        assert!(Virtiofsd::identify(&rust).unwrap().has_translate);
        assert_eq!(Virtiofsd::identify(&c).unwrap().flavor, Flavor::Qemu);
        assert_eq!(Virtiofsd::identify(&other), None);
        assert_eq!(Virtiofsd::identify(&tmp.path().join("missing")), None);
    }
}
