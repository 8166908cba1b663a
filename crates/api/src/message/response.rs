//! Response bodies sent by the daemon.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `GET /v1/daemon/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DaemonStatus {
    pub pid: u32,
    pub version: String,
    /// The build (`VERSION+COMMIT`, see `banger_api::build`); empty from a daemon older than this
    /// field.
    #[serde(default)]
    pub build: String,
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
    /// The Firecracker binary found (`firecracker_bin`, runtime dir, `PATH`), if any.
    pub firecracker_bin: Option<PathBuf>,
    pub qemu_bin: PathBuf,
    /// Whether KVM can run guests here; `None` until the first boot probes it.
    pub kvm_usable: Option<bool>,
    /// What each VMM this configuration may use found when it tried to run a guest under KVM
    /// (probed once per host boot, with that VMM; `--reprobe` again).
    #[serde(default)]
    pub kvm: Vec<KvmProbe>,
    /// Whether Firecracker VMs are started through its jailer (when Firecracker may be used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jailer: Option<JailerStatus>,
    /// `.vm` names.
    pub dns: DnsStatus,
}

/// Whether Firecracker VMs start through the `jailer`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JailerStatus {
    /// `jailed` (each Firecracker VM gets a jail), `unjailed` (no jailer: they run as before)
    /// or `missing` (`jailer_bin` names one that is not there: Firecracker VMs are refused).
    pub state: String,
    pub bin: Option<PathBuf>,
    /// One sentence: how VMs are jailed, or why not.
    pub detail: String,
}

/// A running VM's jail (a jailed Firecracker).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JailView {
    pub jailer: PathBuf,
    /// The chroot Firecracker runs in.
    pub chroot: PathBuf,
    /// What Firecracker runs as.
    pub uid: u32,
    pub gid: u32,
    /// cgroup v2 limits (`memory.max=…`, `cpu.max=…`); empty when the host does not delegate.
    pub cgroup_limits: Vec<String>,
    /// Why there are no cgroup limits, when there are none.
    pub cgroup_note: Option<String>,
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

/// A VM's lifecycle phase (the `state` field of a [`Vm`]).
///
/// `stopped` → `starting` → `running` → `stopping` → `stopped`; `failed` when a boot fails or the
/// VMM dies on its own (`last_error` says why). The daemon allows only the changes in
/// [`Phase::can_become`], through one function that also records and publishes them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Stopped,
    Starting,
    Running,
    Stopping,
    Failed,
}

impl Phase {
    pub const ALL: [Phase; 5] = [Phase::Stopped, Phase::Starting, Phase::Running, Phase::Stopping, Phase::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Stopped => "stopped",
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
            Phase::Failed => "failed",
        }
    }

    /// The allowed changes. `starting → starting` records the VMM process once it is spawned;
    /// `stopping → running` and `starting → running` also happen when a restarted daemon finds
    /// the process of an operation it was in the middle of.
    pub fn can_become(self, to: Phase) -> bool {
        use Phase::*;
        matches!(
            (self, to),
            (Stopped | Failed, Starting)
                | (Starting, Starting | Running | Stopping | Failed)
                | (Running, Stopping | Stopped | Failed)
                | (Stopping, Stopped | Running | Failed)
        )
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One disk of a VM and what it costs on the host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DiskInfo {
    /// `base` (shared, read-only), `overlay` (copy-on-write for `/`) or `work` (`/root`).
    pub role: String,
    pub path: PathBuf,
    pub size: u64,
    /// Bytes allocated on the host (sparse files count written blocks only).
    pub allocated: u64,
    pub read_only: bool,
}

/// How to reach a VM over SSH (the CLI runs `ssh` with exactly this).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SshInfo {
    pub user: String,
    pub host: String,
    pub port: u16,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    /// The name the pinned host key is filed under in `known_hosts`.
    pub host_key_alias: String,
    /// Whether a host key has been pinned (on the VM's first boot).
    pub pinned: bool,
}

impl SshInfo {
    /// What reaching the VM takes beyond user, host and port: exactly this installation's key,
    /// and the VM's pinned host key, checked strictly (`ssh -o` names and values, written as
    /// ssh_config wants them: `%` doubled, a value with spaces in double quotes).
    fn settings(&self) -> Vec<(&'static str, String)> {
        let path = |p: &std::path::Path| {
            let v = p.display().to_string().replace('%', "%%");
            if v.contains(char::is_whitespace) { format!("\"{v}\"") } else { v }
        };
        vec![
            ("IdentityFile", path(&self.key)),
            ("IdentitiesOnly", "yes".into()),
            ("UserKnownHostsFile", path(&self.known_hosts)),
            ("GlobalKnownHostsFile", "/dev/null".into()),
            ("StrictHostKeyChecking", "yes".into()),
            ("HostKeyAlias", self.host_key_alias.clone()),
            ("LogLevel", "ERROR".into()),
        ]
    }

    /// `ssh` options for [`Self::destination`]: see `settings`.
    pub fn options(&self) -> Vec<String> {
        let mut o = Vec::new();
        for (key, value) in self.settings() {
            o.push("-o".into());
            o.push(format!("{key}={value}"));
        }
        if self.port != 22 {
            o.push("-p".into());
            o.push(self.port.to_string());
        }
        o
    }

    /// An OpenSSH `ssh_config` block for `Host PATTERN` with the same settings, plus user,
    /// address and port: `ssh PATTERN` (and scp, rsync, git…) then need no options.
    pub fn config_block(&self, pattern: &str) -> String {
        let mut block =
            format!("Host {pattern}\n    HostName {}\n    User {}\n    Port {}\n", self.host, self.user, self.port);
        for (key, value) in self.settings() {
            block.push_str(&format!("    {key} {value}\n"));
        }
        block
    }

    /// `user@host`.
    pub fn destination(&self) -> String {
        format!("{}@{}", self.user, self.host)
    }
}

/// `GET /v1/vms/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Vm {
    pub name: String,
    /// The lifecycle phase.
    pub state: Phase,
    pub image: String,
    pub memory_mib: u32,
    pub vcpus: u32,
    pub disk_size: u64,
    pub nat: bool,
    pub ip: String,
    pub host_ip: String,
    pub mac: String,
    pub tap: String,
    pub backend: Option<String>,
    pub accel: Option<String>,
    pub pid: Option<u32>,
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub uptime_secs: Option<u64>,
    pub disks: Vec<DiskInfo>,
    pub dir: PathBuf,
    pub console_log: PathBuf,
    pub ssh: SshInfo,
    /// Why the last start or stop failed, if it did.
    pub last_error: Option<String>,
    /// The VMM process while the VM runs: its CPU use over about the last second and its RSS
    /// (as in `vm stats`; host figures only, so cheap to list).
    #[serde(default)]
    pub process: Option<ProcessStats>,
    /// Published ports (kept with the VM) and `vm port-forward`s in progress.
    #[serde(default)]
    pub ports: Vec<PortForward>,
    /// Host folders mounted in the guest at every boot.
    #[serde(default)]
    pub mounts: Vec<crate::MountSpec>,
    /// While it runs under Firecracker: whether it is jailed (`None` for other VMMs and
    /// stopped VMs) and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jailed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jail: Option<JailView>,
}

/// A forward of a host port to a VM.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortForward {
    pub spec: crate::PortSpec,
    /// Kept with the VM (`--publish`), or for as long as a `vm port-forward` runs.
    pub persistent: bool,
    /// Whether the host port is being listened on now (while the VM runs); for host port 0,
    /// `spec` has the port that was picked.
    pub active: bool,
    /// Why a published port of a running VM is not being forwarded (a new daemon found it
    /// taken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One VMM's KVM probe.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KvmProbe {
    /// `firecracker` or `qemu`.
    pub vmm: String,
    /// `runs` (a guest kernel reached its init under KVM), `broken` (KVM is there but a guest
    /// could not run), or `unprobed` (nothing could be tried).
    pub verdict: String,
    /// One sentence: the evidence, or why it could not be tried and the fix.
    pub detail: String,
}

/// `GET /v1/vms`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VmList {
    pub vms: Vec<Vm>,
}

/// `DELETE /v1/vms/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Deleted {
    pub name: String,
}

/// `POST /v1/images/{name}/continue`: the interactive build was told to finish or give up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Continued {
    pub name: String,
    pub finish: bool,
}

/// One line of a progress stream (`application/x-ndjson`): progress lines, then exactly one
/// `done` or `error` line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum StreamLine<T> {
    Progress { stage: String, message: String },
    Done(T),
    Error(crate::ApiError),
}

/// `GET /v1/vms/{name}/stats`: what a VM uses. A stopped VM has its configuration and disks only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VmStats {
    pub name: String,
    pub state: Phase,
    /// Seconds since the Unix epoch when these figures were taken.
    pub time: f64,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub uptime_secs: Option<u64>,
    /// The VMM process on the host (while it runs).
    pub process: Option<ProcessStats>,
    /// Inside the guest (while it runs and answers): see [`GuestStats::sampled_at`].
    pub guest: Option<GuestStats>,
    /// Why `guest` is missing or old, when it is.
    pub guest_error: Option<String>,
    /// The VM's TAP counters, from the guest's side (while it runs).
    pub network: Option<NetStats>,
    pub disks: Vec<DiskInfo>,
    /// What the VMM itself counted of the guest's I/O since it started (Firecracker's metrics,
    /// flushed for this answer; QEMU VMs have none).
    #[serde(default)]
    pub vmm_io: Option<Box<VmmIo>>,
}

/// A VMM's own I/O counters since the VM started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VmmIo {
    /// `firecracker`.
    pub source: String,
    pub block_read_bytes: u64,
    pub block_write_bytes: u64,
    pub block_reads: u64,
    pub block_writes: u64,
    /// Per drive (`base`, `overlay`, `work`).
    pub drives: Vec<DriveIo>,
    /// The guest's side: rx is what it received.
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub net_rx_packets: u64,
    pub net_tx_packets: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DriveIo {
    pub id: String,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

/// The VMM process as the host sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessStats {
    pub pid: u32,
    /// Host CPU used over the last interval (about a second), in percent of one CPU; `None`
    /// until two samples exist.
    pub cpu_percent: Option<f64>,
    pub rss_bytes: u64,
}

/// Figures read inside the guest by a one-shot SSH command with the VM's pinned key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GuestStats {
    /// Seconds since the Unix epoch when the guest was asked.
    pub sampled_at: f64,
    pub mem_total: u64,
    pub mem_available: u64,
    pub mem_used: u64,
    /// 1, 5 and 15 minute load averages.
    pub load: [f64; 3],
    pub uptime_secs: f64,
    /// `/` and `/root`.
    pub filesystems: Vec<FsStats>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FsStats {
    pub mount: String,
    pub size: u64,
    pub used: u64,
    pub available: u64,
}

/// Bytes and packets through the VM's link, as the guest sees them (`rx`: into the guest).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetStats {
    pub tap: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

/// `GET /v1/dns`: how running VMs are published as `<name>.vm`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DnsStatus {
    /// `builtin`, `mapdns` or `off` (the `dns` config key).
    pub mode: String,
    /// Where the host asks (loopback, `builtin` only), e.g. `127.0.0.1:24053`.
    pub listen: Option<String>,
    /// The built-in server's port (guests reach it on port 53 of their link's host address).
    pub port: Option<u16>,
    /// Where guests' other queries go.
    pub upstream: Vec<String>,
    /// The names published now, with their addresses.
    pub records: Vec<DnsRecord>,
    /// Why the server is not answering, if it is not.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DnsRecord {
    pub name: String,
    pub ip: String,
}

/// `GET /v1/images/{name}`: an image VMs can be created from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Image {
    pub name: String,
    /// `bundle` (the runtime bundle's own, used in place) or `built` (`image build`).
    pub kind: String,
    pub path: PathBuf,
    /// Whether the file is there.
    pub present: bool,
    pub size: u64,
    pub allocated: u64,
    /// The image it was built from.
    pub base: Option<String>,
    /// The kernel it was built for.
    pub kernel: Option<String>,
    pub packages_sha256: Option<String>,
    pub script: Option<String>,
    pub script_sha256: Option<String>,
    pub docker: bool,
    pub build_log: Option<PathBuf>,
    pub created_at: Option<u64>,
    /// VMs created from it.
    pub vms: Vec<String>,
}

/// `GET /v1/images`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageList {
    pub images: Vec<Image>,
}
