//! Response bodies sent by the daemon.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `GET /v1/daemon/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DaemonStatus {
    pub pid: u32,
    pub version: String,
    /// Seconds since the Unix epoch when the daemon started.
    pub started_at: u64,
    pub uptime_secs: f64,
    pub socket: PathBuf,
    pub log_file: PathBuf,
    pub config_file: PathBuf,
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub database: PathBuf,
    pub schema_version: u32,
    pub runtime: RuntimeInfo,
    /// The configured VMM backend (`auto`, `firecracker` or `qemu`).
    pub vmm: String,
}

/// Where the runtime bundle is and whether it is there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuntimeInfo {
    pub dir: PathBuf,
    /// How the directory was chosen: `BANGER_RUNTIME_DIR`, the config file, the source checkout
    /// or the install prefix.
    pub source: String,
    pub present: bool,
}

/// `POST /v1/daemon/shutdown`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShutdownAccepted {
    pub pid: u32,
}
