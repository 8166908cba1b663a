//! Request bodies sent by the CLI.

use serde::{Deserialize, Serialize};

/// `POST /v1/daemon/shutdown`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Shutdown {}

/// `POST /v1/vms`. Unset fields take the config defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CreateVm {
    /// A DNS label; generated (`adjective-animal`) when absent.
    pub name: Option<String>,
    /// `base`, `default`, or a path to an ext4 image.
    pub image: Option<String>,
    pub memory_mib: Option<u32>,
    pub vcpus: Option<u32>,
    /// Work disk size in bytes.
    pub disk_size: Option<u64>,
    #[serde(default)]
    pub nat: bool,
    /// Register and create disks, but do not boot.
    #[serde(default)]
    pub no_start: bool,
}

/// `POST /v1/vms/{name}/stop` and `/restart`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StopVm {
    /// Seconds to wait for a clean shutdown before the VMM is killed.
    pub timeout_secs: u64,
}

impl Default for StopVm {
    fn default() -> Self {
        StopVm { timeout_secs: 30 }
    }
}

/// `POST /v1/vms/{name}/kill`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KillVm {
    /// Signal name (`KILL`, `SIGTERM`, `9`…).
    pub signal: String,
}

/// `PATCH /v1/vms/{name}`: change a VM's settings. Memory, vCPUs and disk size only while it is
/// not running; NAT at any time (at once on a running VM). Unset fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SetVm {
    pub memory_mib: Option<u32>,
    pub vcpus: Option<u32>,
    /// New work disk size in bytes; it only grows.
    pub disk_size: Option<u64>,
    pub nat: Option<bool>,
}

impl SetVm {
    pub fn is_empty(&self) -> bool {
        self == &SetVm::default()
    }
}
