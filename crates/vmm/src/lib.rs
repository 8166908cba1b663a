//! VMM drivers. One small trait, [`Vmm`], with two implementations: [`firecracker`] (one
//! `firecracker --api-sock` process per VM, configured over its HTTP API) and [`qemu`]
//! (`qemu-system-x86_64 -M microvm` with a QMP socket).
//!
//! A VM's VMM process runs in its own session and outlives the daemon; the daemon keeps an
//! [`Instance`] (pid + control socket) in its database and finds the process again after a
//! restart ([`process::is_alive`] checks the pid still belongs to that VM).
//!
//! All calls are blocking and short; the daemon runs them on its blocking pool.

pub mod firecracker;
pub mod kvm;
pub mod process;
pub mod qemu;
pub mod virtiofs;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which VMM runs a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Firecracker,
    Qemu,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Firecracker => "firecracker",
            Backend::Qemu => "qemu",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "firecracker" => Ok(Backend::Firecracker),
            "qemu" => Ok(Backend::Qemu),
            other => Err(format!("unknown VMM backend {other:?} (expected firecracker or qemu)")),
        }
    }
}

/// How guest code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Accel {
    /// Hardware virtualization through /dev/kvm.
    Kvm,
    /// QEMU's software emulation.
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl std::str::FromStr for Accel {
    type Err = String;
    fn from_str(s: &str) -> Result<Accel, String> {
        match s {
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            other => Err(format!("unknown accelerator {other:?} (expected kvm or tcg)")),
        }
    }
}

/// A block device, attached in order: the first is `/dev/vda` in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Stable identifier (`base`, `overlay`, `work`).
    pub id: String,
    pub path: PathBuf,
    pub read_only: bool,
}

/// A network interface backed by a host TAP device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub tap: String,
    /// `02:xx:xx:xx:xx:xx` (locally administered).
    pub mac: String,
}

/// Everything a backend needs to boot one VM.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// VM name (a DNS label); used as the VMM's id.
    pub name: String,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// Guest kernel arguments (network, hostname, storage); the backend adds its console and
    /// platform arguments.
    pub cmdline: String,
    pub disks: Vec<Disk>,
    pub memory_mib: u32,
    pub vcpus: u32,
    pub nic: Option<Nic>,
    /// Per-VM directory for the control socket and VMM log (short path: socket paths are limited
    /// to 107 bytes).
    pub run_dir: PathBuf,
    /// Guest serial console output goes here.
    pub console_log: PathBuf,
    /// Host folders: vhost-user-fs sockets a virtiofsd already listens on (QEMU only).
    pub shares: Vec<Share>,
    /// Where a jailed Firecracker gets its chroot ([`firecracker::jail`]): on the filesystem of
    /// the disks, which it sees through hard links. Unused by other VMMs.
    pub jail_dir: Option<PathBuf>,
}

/// A host folder served by virtiofsd on `socket`; the guest mounts it by `tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub tag: String,
    pub socket: PathBuf,
}

/// A started VMM process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub backend: Backend,
    pub accel: Accel,
    pub pid: u32,
    /// Firecracker API socket or QEMU QMP socket (for a jailed Firecracker, a link to the
    /// socket in its chroot).
    pub control_socket: PathBuf,
}

impl Instance {
    /// What marks this VM's VMM process on its command line ([`process::is_alive`]).
    pub fn marker(&self) -> PathBuf {
        marker(&self.control_socket)
    }

    /// The jail id when a jailer runs this VMM ([`firecracker::jail`]).
    pub fn jail_id(&self) -> Option<String> {
        firecracker::jail::id_of_socket(&self.control_socket)
    }
}

/// What marks the VMM process behind `control_socket` (an [`Instance`]'s, or one read back
/// from the database): the socket path, or a jailed Firecracker's jail id.
pub fn marker(control_socket: &std::path::Path) -> PathBuf {
    firecracker::jail::marker(control_socket)
}

#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("cannot start {bin}: {source}")]
    Spawn { bin: PathBuf, source: std::io::Error },
    #[error("{bin} exited during start-up ({status}){}", detail_suffix(.detail))]
    Exited { bin: PathBuf, status: String, detail: Option<String> },
    #[error("{what} did not happen within {secs}s")]
    Timeout { what: String, secs: u64 },
    /// The VMM refused a request; for Firecracker `message` is its `fault_message` verbatim.
    #[error("{backend} refused {request}: {message}")]
    Refused { backend: &'static str, request: String, message: String },
    #[error("talking to {socket} failed: {source}")]
    Control { socket: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Protocol(String),
    #[error("the VMM process {pid} is not running")]
    NotRunning { pid: u32 },
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default()
}

/// One VMM backend.
pub trait Vmm: Send + Sync {
    fn backend(&self) -> Backend;
    fn accel(&self) -> Accel;
    /// Spawn the VMM (own session, outlives the daemon), configure it and boot the guest.
    /// On error nothing is left running.
    fn start(&self, config: &VmConfig) -> Result<Instance, VmmError>;
    /// Ask the guest to shut down cleanly (Ctrl-Alt-Del / ACPI power button); returns at once.
    fn request_shutdown(&self, instance: &Instance) -> Result<(), VmmError>;
    /// The user the VMM will run as, when not this process's (a jailed Firecracker with
    /// `jailer_uid`): its TAP must be that user's.
    fn runs_as(&self) -> Option<u32> {
        None
    }
    /// What the VMM itself has counted of the guest's I/O since it started, if it counts
    /// (Firecracker's metrics).
    fn io_totals(&self, _instance: &Instance) -> Option<firecracker::metrics::Totals> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_and_accel_names_round_trip_and_unknown_ones_are_errors() {
        for b in [Backend::Firecracker, Backend::Qemu] {
            assert_eq!(b.as_str().parse::<Backend>().unwrap(), b);
        }
        for a in [Accel::Kvm, Accel::Tcg] {
            assert_eq!(a.as_str().parse::<Accel>().unwrap(), a);
        }
        assert!("cloud-hypervisor".parse::<Backend>().unwrap_err().contains("unknown VMM backend"));
        assert!("hvf".parse::<Accel>().is_err(), "an unknown accelerator must not read as TCG");
    }
}
