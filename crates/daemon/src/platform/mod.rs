//! What the lifecycle needs from the host, behind three small traits so it can run against
//! fakes in unit tests (no root, no KVM, no guest):
//!
//! - [`Hypervisor`]: picks and drives the VMM backend ([`vmm::Backends`] for real).
//! - [`HostNet`]: TAP devices and NAT rules ([`net::HostNetwork`]: `banger-net`).
//! - [`Guest`]: reaching the guest over the network ([`ssh::Ssh`]).
//!
//! VMM processes themselves are watched and signalled by pid through `banger_vmm::process`
//! in both cases: the fake VMM runs real (sleeping) processes.

#[cfg(any(test, feature = "fake-host"))]
pub mod fake;
pub mod guest_stats;
pub mod net;
pub mod ssh;
pub mod vmm;

use crate::error::Result;
use banger_api::response::SshInfo;
use banger_host::HostError;
use banger_vmm::{Accel, Backend, Vmm};
use std::net::Ipv4Addr;
use std::path::Path;

pub use ssh::Probe;

pub trait Hypervisor: Send + Sync {
    /// The backend for a new boot of a VM with this kernel (may probe KVM the first time);
    /// one with host `folders` needs QEMU (`vmm = "auto"` picks it for them).
    fn select(&self, kernel: &Path, initrd: Option<&Path>, folders: bool) -> Result<Box<dyn Vmm>>;
    /// A driver for an already running instance.
    fn for_instance(&self, backend: Backend, accel: Accel) -> Result<Box<dyn Vmm>>;
    /// What each VMM this configuration may use found of KVM, for those already probed (this
    /// host boot).
    fn kvm_verdicts(&self) -> Vec<(Backend, banger_vmm::kvm::Verdict)>;
    /// Forget the verdicts and probe again, each with the VMM that would run guests.
    fn reprobe(&self, kernel: &Path, initrd: Option<&Path>);
    fn firecracker_bin(&self) -> Option<&Path>;
    /// The users VMM processes run as: ours, and a jailed Firecracker's (`jailer_uid`).
    fn vmm_uids(&self) -> Vec<u32> {
        vec![nix::unistd::geteuid().as_raw()]
    }
    /// Whether Firecracker VMs start through the jailer (`None` when Firecracker is not used).
    fn jailer(&self) -> Option<banger_api::response::JailerStatus> {
        None
    }
    fn qemu_bin(&self) -> &Path;
    /// Why host folders cannot be served here (no usable virtiofsd: the error names what to
    /// install), if they cannot.
    fn folders_unavailable(&self) -> Option<banger_api::ApiError>;
    /// Serve host directory `dir` to one guest on a new vhost-user socket at `socket` (its own
    /// virtiofsd, logging to `log`, marked by `banger_vmm::virtiofs::marker(socket)`); its pid.
    fn serve_folder(&self, dir: &Path, readonly: bool, socket: &Path, log: &Path) -> Result<u32>;
}

pub trait HostNet: Send + Sync {
    /// Create TAP `name` for the daemon's user (or `owner`: the user its VMM runs as) with
    /// `host/30` on the host side, up.
    fn create_tap(&self, name: &str, host: Ipv4Addr, owner: Option<u32>) -> Result<(), HostError>;
    /// Delete TAP `name`; a missing one is fine.
    fn delete_tap(&self, name: &str) -> Result<(), HostError>;
    /// Every TAP whose name starts with `prefix`.
    fn taps(&self, prefix: &str) -> Vec<String>;
    /// Networks of the host's addresses and routes, except on links named `own_prefix…`.
    fn in_use(&self, own_prefix: &str) -> Vec<banger_net::addr::InUse>;
    fn enable_nat(&self, tag: &str, tap: &str, guest: Ipv4Addr) -> Result<(), HostError>;
    fn disable_nat(&self, tag: &str, tap: &str, guest: Ipv4Addr) -> Result<(), HostError>;
    /// Send the guest's DNS queries (port 53) on `tap` to the daemon's resolver at `port`.
    fn enable_dns_redirect(&self, tag: &str, tap: &str, port: u16) -> Result<(), HostError>;
    fn disable_dns_redirect(&self, tag: &str, tap: &str, port: u16) -> Result<(), HostError>;
    /// Remove firewall rules tagged `prefix…` whose tag is not in `keep`; how many went.
    fn remove_stale_rules(&self, prefix: &str, keep: &[String]) -> Result<usize, HostError>;
}

pub trait Guest: Send + Sync {
    /// What answers on the guest's port 22.
    fn probe(&self, ip: Ipv4Addr) -> Probe;
    /// The host keys sshd at `ip` shows (`type base64`), of the given key types (`ssh-ed25519`…;
    /// empty: every type).
    fn keyscan(&self, ip: Ipv4Addr, types: &[&str]) -> Option<Vec<String>>;
    /// Ask the guest to power off; returns once asked (errors are fine).
    fn poweroff(&self, ssh: &SshInfo);
    /// Memory, load, uptime and filesystem use inside the guest (`vm stats`); may take a while.
    fn stats(&self, ssh: &SshInfo) -> Result<banger_api::response::GuestStats, String>;
    /// Mount each `(tag, guest dir, read-only)` virtio-fs share in the guest (directories made
    /// as needed); the guest's own error when one fails.
    fn mount_folders(&self, ssh: &SshInfo, folders: &[(String, std::path::PathBuf, bool)]) -> Result<(), String>;
}
