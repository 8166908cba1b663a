//! Fakes of the three host seams, for the lifecycle's unit tests and the event benchmark: no
//! root, no KVM, no guest.
//!
//! The fake VMM runs a real process per VM (`sleep`, with the control socket's path in its
//! argv, so `banger_vmm::process` finds and checks it exactly as it does a real VMM), writes a
//! console log with host keys like banger's guest, and creates a control socket file. Taps and
//! NAT rules live in memory. Knobs make a step fail so error paths can be tested. Every process
//! it started is ended (by pid) when the last handle is dropped.

use super::{Guest, HostNet, Hypervisor, Probe};
use crate::error::Result;
use banger_host::HostError;
use banger_vmm::{Accel, Backend, Instance, VmConfig, Vmm, VmmError, process};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// What the fake host knows, shared by all its handles.
#[derive(Default)]
pub struct FakeHost {
    pub taps: BTreeSet<String>,
    /// Networks something else on the "host" uses (another installation's TAPs, a VPN route).
    pub in_use: Vec<banger_net::addr::InUse>,
    /// NAT rule tags, and DNS redirects as `TAG:PORT`.
    pub nat: BTreeSet<String>,
    /// Every VMM pid started, in order.
    pub pids: Vec<u32>,
    /// Memory (MiB) and vCPUs of each VMM started, in order.
    pub boots: Vec<(u32, u32)>,
    /// The next TAP creation fails as if sudo wanted a password.
    pub fail_tap: bool,
    /// The next VMM start fails.
    pub fail_start: bool,
    /// The guest never answers SSH.
    pub never_ready: bool,
    /// The guest ignores shutdown requests (the VMM must be killed).
    pub ignore_shutdown: bool,
    /// SSH probes made.
    pub probes: usize,
    /// Poweroff requests made over SSH.
    pub poweroffs: usize,
    /// Guest stats commands run.
    pub stats_calls: usize,
    /// How long the guest takes to answer the stats command.
    pub stats_delay: std::time::Duration,
    /// The host key each guest address serves (what its fake console printed).
    pub served_keys: std::collections::HashMap<Ipv4Addr, String>,
    /// Another machine answers at every guest address (a different host key).
    pub impostor: bool,
    /// Guests print no host keys on their console (an image that does not).
    pub silent_keys: bool,
    /// The kernel command line of each boot.
    pub cmdlines: Vec<String>,
    /// No virtiofsd on this "host".
    pub no_virtiofsd: bool,
    /// Folders served: (directory, read-only, socket), in order.
    pub served_folders: Vec<(PathBuf, bool, PathBuf)>,
    /// The pids of their servers.
    pub folder_pids: Vec<u32>,
    /// The shares each VMM was started with (their tags).
    pub shares: Vec<Vec<String>>,
    /// Mounts asked of guests: (tag, guest dir, read-only).
    pub mounted: Vec<(String, PathBuf, bool)>,
    /// The next guest mount fails with this message.
    pub fail_mount: Option<String>,
    /// VMMs start "jailed", as a jailed Firecracker looks to the daemon: a chroot in the VM's
    /// jail dir holding the socket (`run_dir/jail-<id>.sock` links to it), the jail id in the process's
    /// argv, a jail record.
    pub jailed: bool,
}

#[derive(Clone, Default)]
pub struct Fake(Arc<Mutex<FakeHost>>, Arc<Reaper>);

/// Ends the fake's processes when the last handle goes.
#[derive(Default)]
struct Reaper(Mutex<Vec<(u32, PathBuf)>>);

/// A jail as the jailer leaves it (`banger_vmm::firecracker::jail`): the chroot with the API
/// socket (a plain file here) and the record. The in-chroot socket's path.
fn fake_jail(dir: &Path, config: &VmConfig) -> std::io::Result<PathBuf> {
    use banger_vmm::firecracker::jail;
    let id = jail::id(dir);
    let chroot = dir.join("firecracker").join(&id).join("root");
    std::fs::create_dir_all(&chroot)?;
    let socket = chroot.join(jail::SOCKET);
    std::fs::write(&socket, b"")?;
    let record = jail::Record {
        jailer: "/fake/jailer".into(),
        id,
        chroot,
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        cgroup_limits: vec![],
        cgroup_note: Some(format!("fake host ({} MiB)", config.memory_mib)),
    };
    std::fs::write(dir.join(jail::RECORD), serde_json::to_string(&record).unwrap_or_default())?;
    Ok(socket)
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for (pid, marker) in self.0.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = process::signal(*pid, marker, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Fake {
    pub fn new() -> Fake {
        Fake::default()
    }

    /// The fake host's state (to look at or to set a knob).
    pub fn host(&self) -> MutexGuard<'_, FakeHost> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn hypervisor(&self) -> Box<dyn Hypervisor> {
        Box::new(self.clone())
    }
    pub fn net(&self) -> Box<dyn HostNet> {
        Box::new(self.clone())
    }
    pub fn guest(&self) -> Arc<dyn Guest> {
        Arc::new(self.clone())
    }
}

impl Hypervisor for Fake {
    fn select(&self, _kernel: &Path, _initrd: Option<&Path>, _folders: bool) -> Result<Box<dyn Vmm>> {
        Ok(Box::new(self.clone()))
    }
    fn for_instance(&self, _backend: Backend, _accel: Accel) -> Result<Box<dyn Vmm>> {
        Ok(Box::new(self.clone()))
    }
    fn kvm_verdicts(&self) -> Vec<(Backend, banger_vmm::kvm::Verdict)> {
        vec![(Backend::Qemu, banger_vmm::kvm::Verdict::Broken { evidence: "fake host".into() })]
    }
    fn reprobe(&self, _kernel: &Path, _initrd: Option<&Path>) {}
    fn firecracker_bin(&self) -> Option<&Path> {
        None
    }
    fn qemu_bin(&self) -> &Path {
        Path::new("fake-vmm")
    }
    fn folders_unavailable(&self) -> Option<banger_api::ApiError> {
        self.host().no_virtiofsd.then(|| banger_api::ApiError::runtime_missing("host folders need virtiofsd (fake)"))
    }
    fn serve_folder(&self, dir: &Path, readonly: bool, socket: &Path, _log: &Path) -> Result<u32> {
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg0(banger_vmm::virtiofs::marker(socket)).arg("600");
        cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
        let child = process::spawn_detached(&mut cmd).map_err(|e| banger_api::ApiError::internal(e.to_string()))?;
        let pid = child.id();
        process::reap_in_background(child);
        let mut h = self.host();
        h.served_folders.push((dir.to_path_buf(), readonly, socket.to_path_buf()));
        h.folder_pids.push(pid);
        Ok(pid)
    }
}

impl Vmm for Fake {
    fn backend(&self) -> Backend {
        Backend::Qemu
    }
    fn accel(&self) -> Accel {
        Accel::Tcg
    }
    fn start(&self, config: &VmConfig) -> Result<Instance, VmmError> {
        let bin = PathBuf::from("fake-vmm");
        if std::mem::take(&mut self.host().fail_start) {
            return Err(VmmError::Exited { bin, status: "exit status: 1".into(), detail: Some("fake failure".into()) });
        }
        let spawn = |source| VmmError::Spawn { bin: bin.clone(), source };
        std::fs::create_dir_all(&config.run_dir).map_err(spawn)?;
        let jail = match config.jail_dir.as_deref().filter(|_| self.host().jailed) {
            Some(dir) => Some(fake_jail(dir, config).map_err(spawn)?),
            None => None,
        };
        let socket = match &jail {
            Some(inside) => {
                let id = banger_vmm::firecracker::jail::id(config.jail_dir.as_deref().unwrap_or(Path::new("")));
                let link = config.run_dir.join(format!("jail-{id}.sock"));
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(inside, &link).map_err(spawn)?;
                link
            }
            None => config.run_dir.join("fake.sock"),
        };
        if jail.is_none() {
            std::fs::write(&socket, b"").map_err(spawn)?;
        }
        self.host().cmdlines.push(config.cmdline.clone());
        self.host().shares.push(config.shares.iter().map(|s| s.tag.clone()).collect());
        if let Some(ip) = config.cmdline.split("ip=").nth(1).and_then(|r| r.split(':').next()?.parse().ok()) {
            self.host().served_keys.insert(ip, format!("ssh-ed25519 AAAAfake{}", config.name));
        }
        let mut console =
            std::fs::OpenOptions::new().create(true).append(true).open(&config.console_log).map_err(spawn)?;
        let text = if self.host().silent_keys {
            format!("banger-init: fake boot of {}\n", config.name)
        } else {
            format!(
                "banger-init: fake boot of {}\nBANGER-HOSTKEYS-BEGIN\nssh-ed25519 AAAAfake{} root@{}\nBANGER-HOSTKEYS-END\n",
                config.name, config.name, config.name
            )
        };
        std::io::Write::write_all(&mut console, text.as_bytes()).map_err(spawn)?;
        let marker = banger_vmm::marker(&socket);
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg0(format!("fake-vmm {}", marker.display())).arg("600");
        cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
        let child = process::spawn_detached(&mut cmd).map_err(spawn)?;
        let pid = child.id();
        process::reap_in_background(child);
        self.host().pids.push(pid);
        self.host().boots.push((config.memory_mib, config.vcpus));
        self.1.0.lock().unwrap_or_else(|e| e.into_inner()).push((pid, marker));
        let (backend, accel) =
            if jail.is_some() { (Backend::Firecracker, Accel::Kvm) } else { (Backend::Qemu, Accel::Tcg) };
        Ok(Instance { backend, accel, pid, control_socket: socket })
    }
    fn request_shutdown(&self, instance: &Instance) -> Result<(), VmmError> {
        if !instance.control_socket.exists() {
            return Err(VmmError::Control {
                socket: instance.control_socket.clone(),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        if self.host().ignore_shutdown {
            return Ok(());
        }
        process::signal(instance.pid, &instance.marker(), nix::sys::signal::Signal::SIGTERM)
    }
}

impl HostNet for Fake {
    fn create_tap(&self, name: &str, _host: Ipv4Addr, _owner: Option<u32>) -> Result<(), HostError> {
        let mut h = self.host();
        if std::mem::take(&mut h.fail_tap) {
            return Err(HostError::SudoPassword { cmd: format!("ip tuntap add dev {name} mode tap") });
        }
        if !h.taps.insert(name.into()) {
            return Err(HostError::Failed {
                cmd: format!("ip tuntap add dev {name}"),
                status: "exit status: 1".into(),
                stderr: "File exists".into(),
            });
        }
        Ok(())
    }
    fn delete_tap(&self, name: &str) -> Result<(), HostError> {
        self.host().taps.remove(name);
        Ok(())
    }
    fn taps(&self, prefix: &str) -> Vec<String> {
        self.host().taps.iter().filter(|t| t.starts_with(prefix)).cloned().collect()
    }
    fn in_use(&self, own_prefix: &str) -> Vec<banger_net::addr::InUse> {
        self.host().in_use.iter().filter(|u| !u.dev.starts_with(own_prefix)).cloned().collect()
    }
    fn enable_nat(&self, tag: &str, _tap: &str, _guest: Ipv4Addr) -> Result<(), HostError> {
        self.host().nat.insert(tag.into());
        Ok(())
    }
    fn disable_nat(&self, tag: &str, _tap: &str, _guest: Ipv4Addr) -> Result<(), HostError> {
        self.host().nat.remove(tag);
        Ok(())
    }
    fn enable_dns_redirect(&self, tag: &str, _tap: &str, port: u16) -> Result<(), HostError> {
        self.host().nat.insert(format!("{tag}:{port}"));
        Ok(())
    }
    fn disable_dns_redirect(&self, tag: &str, _tap: &str, port: u16) -> Result<(), HostError> {
        self.host().nat.remove(&format!("{tag}:{port}"));
        Ok(())
    }
    fn remove_stale_rules(&self, prefix: &str, keep: &[String]) -> Result<usize, HostError> {
        let mut h = self.host();
        let before = h.nat.len();
        // Redirects are kept as "TAG:PORT".
        h.nat.retain(|t| !t.starts_with(prefix) || keep.iter().any(|k| t == k || t.starts_with(&format!("{k}:"))));
        Ok(before - h.nat.len())
    }
}

impl Guest for Fake {
    fn probe(&self, _ip: Ipv4Addr) -> Probe {
        let mut h = self.host();
        h.probes += 1;
        if h.never_ready { Probe::Silent } else { Probe::Ready("SSH-2.0-fake".into()) }
    }
    fn keyscan(&self, ip: Ipv4Addr, _types: &[&str]) -> Option<Vec<String>> {
        let h = self.host();
        if h.impostor {
            return Some(vec!["ssh-ed25519 AAAAimpostor".into()]);
        }
        h.served_keys.get(&ip).map(|k| vec![k.clone()])
    }
    fn poweroff(&self, _ssh: &banger_api::response::SshInfo) {
        self.host().poweroffs += 1;
    }
    fn mount_folders(
        &self,
        _ssh: &banger_api::response::SshInfo,
        folders: &[(String, PathBuf, bool)],
    ) -> Result<(), String> {
        let mut h = self.host();
        if let Some(e) = h.fail_mount.take() {
            return Err(e);
        }
        h.mounted.extend(folders.iter().cloned());
        Ok(())
    }
    fn stats(&self, _ssh: &banger_api::response::SshInfo) -> Result<banger_api::response::GuestStats, String> {
        let asked = crate::now_unix_f64();
        let delay = {
            let mut h = self.host();
            h.stats_calls += 1;
            h.stats_delay
        };
        std::thread::sleep(delay);
        let out = "@mem\nMemTotal: 1000000 kB\nMemAvailable: 600000 kB\n@load\n0.50 0.25 0.10 1/80 300\n@up\n42.0 40.0\n\
                   @df\nMounted 1B-blocks Used Avail\n/ 4000000000 1000000000 3000000000\n/root 8000000000 100 7999999900\n";
        super::guest_stats::parse(out, asked)
    }
}
