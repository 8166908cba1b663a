//! Which VMM runs new VMs: `vmm = "auto" | "firecracker" | "qemu"`, and whether KVM really works.
//!
//! `auto` picks Firecracker when its binary is present and KVM can run the guest kernel, QEMU
//! otherwise. KVM is judged by a real boot ([`banger_vmm::qemu::probe_kvm`]), cached per host
//! boot in the cache dir (`kvm-probe.json`), because `/dev/kvm` existing proves nothing.

use crate::error::Result;
use banger_api::ApiError;
use banger_config::config::VmmChoice;
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
}

impl Backends {
    pub fn new(choice: VmmChoice, firecracker: Option<PathBuf>, qemu: PathBuf, cache_dir: &Path) -> Backends {
        Backends { choice, firecracker, qemu, cache_file: cache_dir.join("kvm-probe.json"), kvm: Mutex::new(None) }
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

    fn select(&self, kernel: &Path, initrd: Option<&Path>) -> Result<Box<dyn Vmm>> {
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
                Some(bin) if self.kvm_usable(kernel, initrd) => firecracker(bin.clone()),
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
