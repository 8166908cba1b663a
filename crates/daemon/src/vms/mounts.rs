//! Host folders in the guest (`--mount HOSTDIR[:GUESTDIR][:ro]`), QEMU only: at each start one
//! virtiofsd per folder serves it on a socket in the VM's run directory (before the VMM starts,
//! which connects to it), and once the guest answers SSH each is mounted (`mount -t virtiofs`).
//! A virtiofsd ends with its VMM; [`Manager::release`] also ends any left.

use super::{Manager, Progress};
use crate::error::Result;
use banger_api::{ApiError, MountSpec};
use banger_state::VmRecord;
use banger_vmm::{Backend, Share, process, virtiofs};
use std::path::{Path, PathBuf};

/// `--mount` specs for a VM: existing host directories, each guest directory once and none
/// inside another.
pub(super) fn validate(specs: &[MountSpec]) -> Result<()> {
    for (i, m) in specs.iter().enumerate() {
        match std::fs::metadata(&m.host) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(ApiError::bad_input(format!("--mount {m}: {} is not a directory", m.host.display())).into());
            }
            Err(e) => {
                return Err(ApiError::bad_input(format!("--mount {m}: cannot use {}: {e}", m.host.display())).into());
            }
        }
        if let Some(other) = specs[..i].iter().find(|o| o.guest.starts_with(&m.guest) || m.guest.starts_with(&o.guest))
        {
            return Err(ApiError::bad_input(format!(
                "--mount {m} and {other}: one guest directory is inside the other; mount them apart"
            ))
            .into());
        }
    }
    Ok(())
}

/// The specs of a VM's `mounts` column.
pub(super) fn mounts_of(rec: &VmRecord) -> Result<Vec<MountSpec>> {
    super::stored_specs(rec, &rec.mounts, "host folder")
}

fn tag(i: usize) -> String {
    format!("banger{i}")
}

fn socket(run_dir: &Path, i: usize) -> PathBuf {
    run_dir.join(format!("fs{i}.sock"))
}

impl Manager {
    /// Whether host folders can be had here at all (checked when they are asked for).
    pub(super) fn check_folders(&self, specs: &[MountSpec]) -> Result<()> {
        validate(specs)?;
        if !specs.is_empty()
            && let Some(e) = self.hypervisor.folders_unavailable()
        {
            return Err(e.into());
        }
        Ok(())
    }

    /// Start a virtiofsd for each of VM `rec`'s folders, for a boot by `backend`; the shares for
    /// its VMM.
    pub(super) fn serve_folders(
        &self,
        rec: &VmRecord,
        backend: Backend,
        progress: &dyn Progress,
    ) -> Result<Vec<Share>> {
        let mounts = mounts_of(rec)?;
        if mounts.is_empty() {
            return Ok(Vec::new());
        }
        let name = rec.name.as_str();
        if backend == Backend::Firecracker {
            return Err(crate::platform::vmm::firecracker_has_no_folders().into());
        }
        let paths = self.layout.vm(name);
        std::fs::create_dir_all(&paths.run_dir)
            .map_err(|e| ApiError::internal(format!("cannot create {}: {e}", paths.run_dir.display())))?;
        let log = paths.dir.join("virtiofsd.log");
        let mut shares = Vec::new();
        for (i, m) in mounts.iter().enumerate() {
            if !m.host.is_dir() {
                return Err(ApiError::invalid_state(format!(
                    "VM {name} mounts {}, which is not a directory any more; restore it, or `banger vm set {name} \
                     --unmount {}`",
                    m.host.display(),
                    m.guest.display()
                ))
                .into());
            }
            self.step(progress, name, "folders", format!("serving {} for {}", m.host.display(), m.guest.display()));
            let sock = socket(&paths.run_dir, i);
            let from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
            let pid = self.hypervisor.serve_folder(&m.host, m.readonly, &sock, &log)?;
            let marker = virtiofs::marker(&sock);
            // Recorded, or ended now: one that is not recorded would be left running.
            if let Err(e) = std::fs::write(paths.run_dir.join(format!("fs{i}.pid")), pid.to_string()) {
                let _ = process::signal(pid, Path::new(&marker), nix::sys::signal::Signal::SIGKILL);
                return Err(ApiError::internal(format!("cannot write in {}: {e}", paths.run_dir.display())).into());
            }
            // One that refuses its options exits at once: say so with its words, not as a VMM
            // that could not connect.
            std::thread::sleep(std::time::Duration::from_millis(200));
            if !process::is_alive(pid, Path::new(&marker)) {
                let said = std::fs::read(&log)
                    .map(|b| String::from_utf8_lossy(b.get(from as usize..).unwrap_or(&b)).into_owned());
                let said = said.unwrap_or_default();
                return Err(ApiError::internal(format!(
                    "virtiofsd for {} exited at once: {} (log: {})",
                    m.host.display(),
                    said.trim().lines().last().unwrap_or("no message"),
                    log.display()
                ))
                .into());
            }
            shares.push(Share { tag: tag(i), socket: sock });
        }
        Ok(shares)
    }

    /// Mount VM `rec`'s folders in its guest (it answers SSH).
    pub(super) fn mount_folders(&self, rec: &VmRecord, progress: &dyn Progress) -> Result<()> {
        let mounts = mounts_of(rec)?;
        if mounts.is_empty() {
            return Ok(());
        }
        let list: Vec<(String, PathBuf, bool)> =
            mounts.iter().enumerate().map(|(i, m)| (tag(i), m.guest.clone(), m.readonly)).collect();
        let shown: Vec<String> = mounts.iter().map(|m| m.guest.display().to_string()).collect();
        self.step(progress, &rec.name, "folders", format!("mounting {}", shown.join(", ")));
        self.guest
            .mount_folders(&self.view(rec).ssh, &list)
            .map_err(|e| ApiError::internal(format!("cannot mount the host folders in the guest: {e}")).into())
    }

    /// End the virtiofsd processes a VM's run left (each checked to be the one for its socket).
    pub(super) fn stop_folder_servers(&self, name: &str) {
        let run_dir = self.layout.vm(name).run_dir;
        let Ok(entries) = std::fs::read_dir(&run_dir) else { return };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(i) = file.to_str().and_then(|f| f.strip_prefix("fs")?.strip_suffix(".pid")?.parse::<usize>().ok())
            else {
                continue;
            };
            let Ok(pid) = std::fs::read_to_string(entry.path()).map(|p| p.trim().parse::<u32>()) else { continue };
            let Ok(pid) = pid else { continue };
            let marker = virtiofs::marker(&socket(&run_dir, i));
            if process::signal(pid, Path::new(&marker), nix::sys::signal::Signal::SIGKILL).is_ok() {
                process::wait_exit(pid, Path::new(&marker), std::time::Duration::from_secs(2));
            }
        }
    }
}
