//! Which VMM runs new VMs: `vmm = "auto" | "firecracker" | "qemu"`, and whether KVM really works.
//!
//! `auto` picks Firecracker when its binary is present and KVM can run the guest kernel, QEMU
//! otherwise. KVM is judged by a real boot ([`banger_vmm::qemu::probe_kvm`]), cached per host
//! boot in the cache dir (`kvm-probe.json`), because `/dev/kvm` existing proves nothing.

use crate::error::Result;
use banger_api::ApiError;
use banger_config::config::VmmChoice;
use banger_vmm::virtiofs::Virtiofsd;
use banger_vmm::{Accel, Backend, Vmm};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The environment variable that forces QEMU's accelerator (`kvm` or `tcg`), skipping the probe.
pub const ENV_ACCEL: &str = "BANGER_ACCEL";

pub struct Backends {
    choice: VmmChoice,
    firecracker: Option<PathBuf>,
    qemu: PathBuf,
    cache_file: PathBuf,
    kvm: Mutex<Option<bool>>,
    /// `virtiofsd_bin` as configured (a path or a name).
    virtiofsd_bin: PathBuf,
}

impl Backends {
    pub fn new(choice: VmmChoice, firecracker: Option<PathBuf>, qemu: PathBuf, cache_dir: &Path) -> Backends {
        Backends {
            choice,
            firecracker,
            qemu,
            cache_file: cache_dir.join("kvm-probe.json"),
            kvm: Mutex::new(None),
            virtiofsd_bin: PathBuf::from("virtiofsd"),
        }
    }

    /// Serve host folders with this virtiofsd (`virtiofsd_bin`).
    pub fn with_virtiofsd(mut self, bin: &Path) -> Backends {
        self.virtiofsd_bin = bin.to_path_buf();
        self
    }

    /// The virtiofsd to use: `virtiofsd_bin` (a path as given; a name in `PATH`, then where
    /// distributions put it), usable by this user.
    fn virtiofsd(&self) -> std::result::Result<Virtiofsd, ApiError> {
        let configured = &self.virtiofsd_bin;
        let explicit = configured.components().count() > 1;
        let candidates: Vec<PathBuf> = if explicit {
            vec![configured.clone()]
        } else {
            // `make virtiofsd` and `cargo install` put it in ~/.local/bin and ~/.cargo/bin.
            let home = std::env::var_os("HOME").map(PathBuf::from);
            let user_dirs = home.iter().flat_map(|h| [h.join(".local/bin"), h.join(".cargo/bin")]).collect::<Vec<_>>();
            std::env::var_os("PATH")
                .iter()
                .flat_map(std::env::split_paths)
                .chain(user_dirs)
                .map(|d| d.join(configured))
                .chain(banger_vmm::virtiofs::SEARCH.iter().map(PathBuf::from))
                .filter(|p| p.is_file())
                .collect()
        };
        let found: Vec<Virtiofsd> = candidates.iter().filter_map(|p| Virtiofsd::identify(p)).collect();
        let uid = nix::unistd::geteuid().as_raw();
        // The first usable one; else why the first found is not.
        if let Some(v) = found.iter().find(|v| v.unusable_by(uid).is_none()) {
            return Ok(v.clone());
        }
        Err(ApiError::runtime_missing(match found.first() {
            Some(v) => format!("host folders cannot be served: {}", v.unusable_by(uid).unwrap_or_default()),
            None if explicit => format!(
                "host folders need virtiofsd, and virtiofsd_bin = {} is not one (missing, or neither the Rust \
                 virtiofsd nor QEMU's)",
                configured.display()
            ),
            None => "host folders need virtiofsd, which is not installed: Debian 13 / Ubuntu 24.04: `apt install \
                     virtiofsd`; Debian 12: `make virtiofsd` (or `cargo install virtiofsd`), or as root QEMU's own \
                     /usr/lib/qemu/virtiofsd from package qemu-system-common; set virtiofsd_bin if it is elsewhere"
                .to_string(),
        }))
    }

    /// The probe result cached for this host boot: (boot id, usable).
    fn cached(&self) -> Option<(String, bool)> {
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?.trim().to_string();
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&self.cache_file).ok()?).ok()?;
        (v["boot_id"] == boot_id.as_str()).then_some(())?;
        Some((boot_id, v["kvm"].as_bool()?))
    }

    /// Whether KVM runs `kernel` here (probing once per host boot).
    pub fn kvm_usable(&self, kernel: &Path, initrd: Option<&Path>) -> bool {
        if let Some(forced) = std::env::var(ENV_ACCEL).ok().filter(|v| !v.is_empty()) {
            return forced == "kvm";
        }
        let mut known = self.kvm.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = *known {
            return k;
        }
        let usable = self.cached().map(|(_, usable)| usable).unwrap_or_else(|| {
            let boot_id =
                std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim().to_string();
            let usable = banger_vmm::qemu::probe_kvm(&self.qemu, kernel, initrd, Duration::from_secs(10));
            tracing::info!(
                "KVM probe: {}",
                if usable { "guests run under KVM" } else { "KVM cannot run guests; using TCG" }
            );
            let _ = std::fs::create_dir_all(self.cache_file.parent().unwrap_or(Path::new(".")));
            let _ =
                std::fs::write(&self.cache_file, serde_json::json!({ "boot_id": boot_id, "kvm": usable }).to_string());
            usable
        });
        *known = Some(usable);
        usable
    }
}

impl super::Hypervisor for Backends {
    fn firecracker_bin(&self) -> Option<&Path> {
        self.firecracker.as_deref()
    }

    fn qemu_bin(&self) -> &Path {
        &self.qemu
    }

    fn kvm_known(&self) -> Option<bool> {
        let known = *self.kvm.lock().unwrap_or_else(|e| e.into_inner());
        known.or_else(|| self.cached().map(|(_, usable)| usable))
    }

    fn folders_unavailable(&self) -> Option<ApiError> {
        if self.choice == VmmChoice::Firecracker {
            return Some(firecracker_has_no_folders());
        }
        self.virtiofsd().err()
    }

    fn serve_folder(&self, dir: &Path, readonly: bool, socket: &Path, log: &Path) -> Result<u32> {
        let v = self.virtiofsd()?;
        v.spawn(dir, readonly, socket, log).map_err(|e| {
            ApiError::internal(format!("cannot start {} for {}: {e}", v.bin.display(), dir.display())).into()
        })
    }

    fn select(&self, kernel: &Path, initrd: Option<&Path>, folders: bool) -> Result<Box<dyn Vmm>> {
        match self.choice {
            VmmChoice::Qemu => Ok(self.qemu_vmm(kernel, initrd)),
            VmmChoice::Firecracker => {
                let bin = self.firecracker.clone().ok_or_else(|| {
                    ApiError::runtime_missing(
                        "vmm = \"firecracker\" but no firecracker binary was found (firecracker_bin, the runtime dir, PATH)",
                    )
                })?;
                if !self.kvm_usable(kernel, initrd) {
                    return Err(ApiError::invalid_state(
                        "vmm = \"firecracker\" but KVM cannot run guests on this host; use vmm = \"qemu\" (or \"auto\")",
                    )
                    .into());
                }
                firecracker(bin)
            }
            VmmChoice::Auto => match &self.firecracker {
                // Firecracker has no shared filesystem device: a VM with host folders gets QEMU.
                Some(bin) if !folders && self.kvm_usable(kernel, initrd) => firecracker(bin.clone()),
                _ => Ok(self.qemu_vmm(kernel, initrd)),
            },
        }
    }

    fn for_instance(&self, backend: Backend, accel: Accel) -> Result<Box<dyn Vmm>> {
        match backend {
            Backend::Qemu => Ok(Box::new(banger_vmm::qemu::Qemu::new(self.qemu.clone(), accel))),
            Backend::Firecracker => {
                firecracker(self.firecracker.clone().unwrap_or_else(|| PathBuf::from("firecracker")))
            }
        }
    }
}

impl Backends {
    fn qemu_vmm(&self, kernel: &Path, initrd: Option<&Path>) -> Box<dyn Vmm> {
        let accel = if self.kvm_usable(kernel, initrd) { Accel::Kvm } else { Accel::Tcg };
        Box::new(banger_vmm::qemu::Qemu::new(self.qemu.clone(), accel))
    }
}

/// Host folders on a Firecracker VM: it has no shared filesystem device.
pub fn firecracker_has_no_folders() -> ApiError {
    ApiError::invalid_state(
        "host folders (--mount) need the QEMU backend (virtio-fs): Firecracker has no shared filesystem device; copy \
         files with `banger vm cp`, or reach the VM with `banger ssh-config` and sshfs or rsync",
    )
}

fn firecracker(bin: PathBuf) -> Result<Box<dyn Vmm>> {
    Ok(Box::new(banger_vmm::firecracker::Firecracker::new(bin)))
}

/// Find a program: an explicit path as given, a bare name in `runtime_dir` then `PATH`.
pub fn find_program(name_or_path: &Path, runtime_dir: &Path) -> Option<PathBuf> {
    if name_or_path.components().count() > 1 || name_or_path.is_absolute() {
        return name_or_path.is_file().then(|| name_or_path.to_path_buf());
    }
    let in_runtime = runtime_dir.join(name_or_path);
    if in_runtime.is_file() {
        return Some(in_runtime);
    }
    std::env::var_os("PATH").iter().flat_map(std::env::split_paths).map(|d| d.join(name_or_path)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Hypervisor;

    #[test]
    fn auto_gives_vms_with_host_folders_qemu_even_where_firecracker_would_run() {
        let tmp = tempfile::tempdir().unwrap();
        let b = Backends::new(VmmChoice::Auto, Some("/fc".into()), "/qemu".into(), tmp.path());
        *b.kvm.lock().unwrap() = Some(true);
        let k = Path::new("/k");
        assert_eq!(b.select(k, None, false).unwrap().backend(), Backend::Firecracker);
        assert_eq!(b.select(k, None, true).unwrap().backend(), Backend::Qemu);
        assert_eq!(b.select(k, None, true).unwrap().accel(), Accel::Kvm);
        // An explicit Firecracker refuses folders up front, naming the alternatives.
        let fc = Backends::new(VmmChoice::Firecracker, Some("/fc".into()), "/qemu".into(), tmp.path());
        let e = fc.folders_unavailable().expect("refused");
        assert!(e.message.contains("banger vm cp") && e.message.contains("sshfs"), "{e:?}");
    }
}
