//! Where everything of a VM lives on the host: one type, so no path is joined twice.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Layout {
    state: PathBuf,
    run: PathBuf,
    cache: PathBuf,
}

/// The files of one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPaths {
    /// `STATE/vms/NAME`: disks, console log, known_hosts (kept while stopped).
    pub dir: PathBuf,
    /// `RUN/vms/NAME`: control socket and VMM log (only while running).
    pub run_dir: PathBuf,
    pub overlay: PathBuf,
    pub work: PathBuf,
    pub console_log: PathBuf,
    pub known_hosts: PathBuf,
    /// There while `vm set --disk-size` grows the work disk: a grow the database already
    /// records but that may not have finished (finished by `Manager::finish_grow`).
    pub growing: PathBuf,
    /// The name the VM's pinned host keys are filed under in `known_hosts`.
    pub host_key_alias: String,
    /// `STATE/vms/NAME/jail`: a jailed Firecracker's chroot (beside the disks it hard-links;
    /// only while it runs).
    pub jail: PathBuf,
}

impl Layout {
    pub fn new(state_dir: &Path, run_dir: &Path) -> Layout {
        Layout { state: state_dir.into(), run: run_dir.into(), cache: state_dir.join("cache") }
    }

    /// The same layout with the cache dir `cache` (default: `STATE/cache`).
    pub fn with_cache(mut self, cache: &Path) -> Layout {
        self.cache = cache.into();
        self
    }

    /// Downloaded .debs and apt lists for builds (`CACHE/apt`), reused across builds.
    pub fn apt_cache(&self) -> PathBuf {
        self.cache.join("apt")
    }

    /// Logs of builds that failed (their image directory is gone): `STATE/build-logs`.
    pub fn failed_build_logs(&self) -> PathBuf {
        self.state.join("build-logs")
    }

    /// Pinned base images (`STATE/images`).
    pub fn images(&self) -> PathBuf {
        self.state.join("images")
    }

    /// Images `image build` made, one directory each (`STATE/built-images/NAME/`: the image and
    /// its build log).
    pub fn built_images(&self) -> PathBuf {
        self.state.join("built-images")
    }

    /// This installation's SSH key for root logins into its VMs.
    pub fn ssh_key(&self) -> PathBuf {
        self.state.join("ssh").join("id_ed25519")
    }

    /// `STATE/ssh_config`: a `Host NAME.vm` block per VM (see `vms::ssh_config`).
    pub fn ssh_config(&self) -> PathBuf {
        self.state.join("ssh_config")
    }

    /// One directory per VM (`STATE/vms/NAME/`: its disks and console log).
    pub fn vms(&self) -> PathBuf {
        self.state.join("vms")
    }

    /// `STATE/vms/.NAME.registering`: there while VM NAME is being created (see
    /// `Manager::remove_orphans`). VM names never start with a dot.
    pub fn registering(&self, name: &str) -> PathBuf {
        self.vms().join(format!(".{name}.registering"))
    }

    pub fn vm(&self, name: &str) -> VmPaths {
        let dir = self.vms().join(name);
        VmPaths {
            run_dir: self.run.join("vms").join(name),
            overlay: dir.join(banger_storage::OVERLAY),
            work: dir.join(banger_storage::WORK),
            console_log: dir.join("console.log"),
            known_hosts: dir.join("known_hosts"),
            growing: dir.join(".growing"),
            host_key_alias: format!("banger-{name}"),
            jail: dir.join("jail"),
            dir,
        }
    }
}
