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

/// `POST /v1/images`: build an image (a progress stream; the script's output comes as `output`
/// progress lines). Paths are the host's: the daemon runs as the same user and reads them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuildImage {
    /// A DNS label, not `default` or `base`, not taken.
    pub name: String,
    /// The image to build on (any `image list` name or a path); default `base`, or `default`
    /// when the bundle has no base image.
    pub base: Option<String>,
    /// The customize script (an absolute path), copied into the builder and run there as root.
    pub script: Option<std::path::PathBuf>,
    /// A package list (packages.apt format: one name a line, `#` comments).
    pub packages: Option<String>,
    /// Local .deb files (absolute paths) installed with the packages.
    #[serde(default)]
    pub debs: Vec<std::path::PathBuf>,
    /// Install and enable Docker.
    #[serde(default)]
    pub docker: bool,
    /// Grow the result to this many bytes (it never shrinks below the base's size).
    pub size: Option<u64>,
    /// NAT for the builder, so the script may use the network directly (packages still come
    /// from the host's repository).
    #[serde(default)]
    pub nat: bool,
    /// Before the image is taken, stop and wait: the progress stream sends a `shell` line naming
    /// the builder VM, the client opens a shell in it, then answers with
    /// [`ContinueBuild`] on [`crate::routes::IMAGE_CONTINUE`].
    #[serde(default)]
    pub interactive: bool,
}

/// `POST /v1/images/{name}/continue`: an interactive build's shell ended; take the image
/// (`finish`) or abandon the build.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContinueBuild {
    pub finish: bool,
}
