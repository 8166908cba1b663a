//! `vm start`: check the VM's files, go `starting`, make its TAP (and NAT), spawn the VMM,
//! wait for kernel → network → SSH, pin the host keys on the first boot, go `running`. Any
//! failure after `starting` releases what was made and leaves the VM `failed`, saying why.

use super::phase::{Live, VmPhase};
use super::{Manager, Progress, now};
use crate::error::{Error, Result};
use crate::fault;
use crate::platform::{Probe, ssh};
use banger_api::ApiError;
use banger_api::event::EventKind;
use banger_api::response::Vm;
use banger_net::addr;
use banger_state::VmRecord;
use banger_vmm::{Disk, Instance, Nic, VmConfig, process};
use nix::sys::signal::Signal;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

impl Manager {
    /// `vm start`.
    pub fn start(&self, name: &str, progress: &dyn Progress) -> Result<Vm> {
        let _op = self.claim(name, "start")?;
        let result = self.observe(name).and_then(|(rec, phase)| self.start_claimed(&rec, &phase, progress));
        self.published(name, result)
    }

    /// This installation's SSH key for root logins (`STATE/ssh/id_ed25519`, 0600, directory
    /// 0700): generated on first use, so that only its owner can log into its VMs — or a private
    /// copy of the key `ssh_key_path` names, when config.toml sets it. (A copy of the bundle's
    /// shared key, what earlier versions kept there, is replaced by a generated one.)
    pub(super) fn ssh_key(&self) -> Result<PathBuf> {
        let _one_at_a_time = self.key_lock.lock().unwrap_or_else(|e| e.into_inner());
        let dst = self.layout.ssh_key();
        let explicit = matches!(self.config.source("ssh_key_path"), banger_config::Source::File(_));
        if explicit {
            let src = self.runtime.require("ssh_key_path", &self.config.ssh_key_path)?;
            let key = std::fs::read(&src)
                .map_err(|e| ApiError::internal(format!("cannot read SSH key {}: {e}", src.display())))?;
            if std::fs::read(&dst).ok().as_deref() != Some(&key[..]) {
                write_private(&dst, &key)?;
                let _ = std::fs::remove_file(dst.with_extension("pub"));
            }
            return Ok(dst);
        }
        let bundle_copy = self
            .runtime
            .require("ssh_key_path", &self.config.ssh_key_path)
            .ok()
            .and_then(|p| std::fs::read(p).ok())
            .is_some_and(|bundle| std::fs::read(&dst).ok().as_deref() == Some(&bundle[..]));
        if !dst.is_file() || bundle_copy {
            generate_key(&dst)?;
        }
        Ok(dst)
    }

    /// The public half of [`Manager::ssh_key`] as `TYPE BASE64`.
    pub(super) fn ssh_public_key(&self) -> Result<String> {
        let key = self.ssh_key()?;
        // A generated key has its `.pub` beside it (an explicit one's copy has none): no
        // ssh-keygen at every boot.
        let text = match std::fs::read_to_string(key.with_extension("pub")) {
            Ok(text) => text,
            Err(_) => {
                let out =
                    banger_host::run("ssh-keygen", ["-y".as_ref(), "-f".as_ref(), key.as_os_str()]).map_err(|e| {
                        ApiError::internal(format!("cannot read the public half of {}: {e}", key.display()))
                    })?;
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
        };
        let mut w = text.split_whitespace();
        match (w.next(), w.next()) {
            (Some(t), Some(k)) => Ok(format!("{t} {k}")),
            _ => Err(ApiError::internal(format!("{} is not an SSH private key", key.display())).into()),
        }
    }

    /// Boot a VM this operation holds; `phase` is its current (settled) phase.
    pub(super) fn start_claimed(&self, rec: &VmRecord, phase: &VmPhase, progress: &dyn Progress) -> Result<Vm> {
        self.start_with(rec, phase, &Extras::default(), progress)
    }

    /// [`Self::start_claimed`] with extra disks (after base, overlay, work: the initrd only
    /// looks at the first three) and kernel arguments.
    pub(super) fn start_with(
        &self,
        rec: &VmRecord,
        phase: &VmPhase,
        extras: &Extras,
        progress: &dyn Progress,
    ) -> Result<Vm> {
        let name = rec.name.as_str();
        if !phase.kind().can_become(banger_api::response::Phase::Starting) {
            return Err(super::refusal(name, phase.kind(), banger_api::response::Phase::Starting));
        }
        for (what, path) in [("kernel", &rec.kernel), ("base image", &rec.base_path)]
            .into_iter()
            .chain(rec.initrd.as_ref().map(|p| ("initrd", p)))
        {
            if !Path::new(path).exists() {
                return Err(ApiError::runtime_missing(format!(
                    "the {what} of VM {name}, {path}, is missing; restore the runtime bundle (`make runtime-bundle` or `make runtime-build`)"
                ))
                .into());
            }
        }
        if banger_storage::base_id(Path::new(&rec.base_path)).ok().as_deref() != Some(rec.base_id.as_str()) {
            return Err(ApiError::invalid_state(format!(
                "the base image {} changed since VM {name} was created (rebuilt or replaced), so the VM's overlay no \
                 longer matches it; delete the VM and create it again",
                rec.base_path
            ))
            .into());
        }
        // A grow of its work disk that a daemon which died left unfinished.
        if self.layout.vm(name).growing.exists() {
            self.step(progress, name, "disk", "finishing the work disk's grow".into());
            self.finish_grow(name, rec.disk_size)?;
        }
        // Root logs in with this installation's key only (the initrd installs it at each boot).
        let public_key = self.ssh_public_key()?;
        let kernel = PathBuf::from(&rec.kernel);
        let initrd = rec.initrd.as_ref().map(PathBuf::from);
        if self.hypervisor.kvm_verdicts().is_empty() {
            self.step(progress, name, "probe", "checking whether KVM can run guests here (once per host boot)".into());
        }
        let vmm = self.hypervisor.select(&kernel, initrd.as_deref(), !rec.mounts.is_empty())?;
        let address = |ip: &str| -> Result<Ipv4Addr> {
            ip.parse().map_err(|_| {
                ApiError::internal(format!("VM {name} has a malformed address {ip:?} in the database")).into()
            })
        };
        let (guest, host) = (address(&rec.guest_ip)?, address(&rec.host_ip)?);

        // Published ports first: a host port that is taken refuses the start, and nothing changes.
        self.open_published(rec, true)?;
        let mut current = match self.transition(name, phase, VmPhase::Starting(None), None) {
            Ok(p) => p,
            Err(e) => {
                self.close_forwards(name);
                return Err(e);
            }
        };
        fault::point("start:starting");
        let paths = self.layout.vm(name);
        let console_from = std::fs::metadata(&paths.console_log).map(|m| m.len()).unwrap_or(0);
        let booted = (|| -> Result<Live> {
            // Its /30 must be free on the host: another installation (or a VPN, a bridge) may
            // have taken it while this VM was stopped, and the guest address would reach that.
            let own = addr::Net::new(host, addr::PREFIX);
            if let Some(u) = self.net.in_use(&self.tap_prefix).into_iter().find(|u| u.net.overlaps(&own)) {
                return Err(ApiError::conflict(format!(
                    "its addresses {own} are in use on this host ({} on {}: another banger installation with the same \
                     subnet?); give one installation its own `subnet` in config.toml",
                    u.net, u.dev
                ))
                .into());
            }
            self.step(progress, name, "network", format!("creating TAP {} ({host} ↔ {guest})", rec.tap));
            let _ = self.net.delete_tap(&rec.tap);
            self.net.create_tap(&rec.tap, host, vmm.runs_as())?;
            if rec.nat {
                self.net.enable_nat(&self.nat_tag(name), &rec.tap, guest)?;
            } else if let Err(e) = self.net.disable_nat(&self.nat_tag(name), &rec.tap, guest) {
                // Rules a failed removal left behind (the VM was stopped, then set --no-nat).
                tracing::debug!("{name}: checking for leftover NAT rules: {e}");
            }
            if let Some(port) = self.dns_port {
                self.net.enable_dns_redirect(&self.dns_tag(name), &rec.tap, port)?;
            }
            fault::point("start:tap");
            let shares = self.serve_folders(rec, vmm.backend(), progress)?;
            let lease = addr::Lease { slot: rec.slot, host, guest };
            let config = VmConfig {
                name: name.into(),
                kernel: kernel.clone(),
                initrd: initrd.clone(),
                // `quiet`: the console carries the guest's own messages (host keys) rather than boot noise.
                cmdline: format!(
                    "{} systemd.hostname={name} quiet systemd.show_status=0",
                    // The guest's resolver: bangerd on the host side of its link (answers `.vm`,
                    // forwards the rest), or else the host's own.
                    lease.kernel_arg(name, if self.dns_port.is_some() { Some(host) } else { upstream_dns() })
                ) + &format!(" banger.key={}", public_key.replacen(' ', ":", 1))
                    + &extras.cmdline,
                disks: vec![
                    Disk { id: "base".into(), path: PathBuf::from(&rec.base_path), read_only: true },
                    Disk { id: "overlay".into(), path: paths.overlay.clone(), read_only: false },
                    Disk { id: "work".into(), path: paths.work.clone(), read_only: false },
                ]
                .into_iter()
                .chain(extras.disks.iter().cloned())
                .collect(),
                memory_mib: rec.memory_mib,
                vcpus: rec.vcpus,
                nic: Some(Nic { tap: rec.tap.clone(), mac: rec.mac.clone() }),
                run_dir: paths.run_dir.clone(),
                console_log: paths.console_log.clone(),
                shares,
                jail_dir: Some(paths.jail.clone()),
            };
            let instance = vmm.start(&config)?;
            fault::point("start:spawned");
            let live = Live { instance, started_at: now() };
            // Record the process before waiting on it: a VMM the database does not know about
            // must not keep running, and a daemon restarted mid-boot must find it.
            match self.transition(name, &current, VmPhase::Starting(Some(live.clone())), None) {
                Ok(p) => current = p,
                Err(e) => {
                    let _ = self.force_stop(name, live.instance.pid, &live.instance.control_socket);
                    return Err(e);
                }
            }
            fault::point("start:recorded");
            let i = &live.instance;
            self.step(
                progress,
                name,
                "vmm",
                format!("{} started ({}, pid {})", i.backend.as_str(), i.accel.as_str(), i.pid),
            );
            self.wait_boot(name, i, guest, &paths.console_log, console_from, progress)?;
            fault::point("start:answered");
            let keys = self.check_host_key(rec, guest, &paths.console_log, console_from)?;
            if rec.host_keys.as_deref() != Some(keys.as_str()) {
                self.db().set_vm_host_keys(name, &keys)?;
                self.step(progress, name, "ssh", "pinned the VM's SSH host keys".into());
                let mut fields = serde_json::Map::new();
                fields.insert("ssh_pinned".into(), true.into());
                self.events.publish(Some(name), EventKind::Changed { fields });
            }
            ssh::write_known_hosts(&paths.known_hosts, &paths.host_key_alias, &keys)
                .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", paths.known_hosts.display())))?;
            fault::point("start:pinned");
            self.mount_folders(rec, progress)?;
            Ok(live)
        })();
        let live = match booted {
            Ok(live) => live,
            Err(e) => {
                if let Some(live) = current.live() {
                    let _ = self.force_stop(name, live.instance.pid, &live.instance.control_socket);
                }
                self.release(rec);
                let e = e.context(format!("VM {name} failed to start"));
                self.transition(name, &current, VmPhase::Failed(e.to_string()), Some(e.to_string()))?;
                return Err(e);
            }
        };
        self.step(progress, name, "ready", format!("SSH ready on {guest}"));
        self.transition(name, &current, VmPhase::Running(live), None)?;
        Ok(self.view(&self.record(name)?))
    }

    /// Wait for kernel → network → SSH, reporting each stage once.
    fn wait_boot(
        &self,
        name: &str,
        instance: &Instance,
        guest: Ipv4Addr,
        console: &Path,
        console_from: u64,
        progress: &dyn Progress,
    ) -> Result<()> {
        let start = Instant::now();
        let (mut kernel, mut network) = (false, false);
        loop {
            if !process::is_alive(instance.pid, &instance.marker()) {
                let tail = read_from(console, console_from);
                let last = tail.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(no console output)").trim();
                return Err(ApiError::internal(format!(
                    "its VMM exited during boot (last console line: {last}); console log: {}",
                    console.display()
                ))
                .into());
            }
            // The kernel banner (not printed with `quiet`) or the first line of banger's initrd.
            if !kernel {
                let text = read_from(console, console_from);
                if text.contains("Linux version") || text.contains("banger-init") {
                    kernel = true;
                    self.step(progress, name, "kernel", "kernel booting".into());
                }
            }
            match self.guest.probe(guest) {
                Probe::Ready(banner) => {
                    if !network {
                        self.step(progress, name, "network", "network up".into());
                    }
                    tracing::info!("{name}: {banner} after {:.1}s", start.elapsed().as_secs_f64());
                    return Ok(());
                }
                Probe::NetworkUp if !network => {
                    network = true;
                    self.step(progress, name, "network", "network up, waiting for sshd".into());
                }
                _ => {}
            }
            if start.elapsed() > self.boot_timeout {
                return Err(Error::from(ApiError::internal(format!(
                    "it did not answer SSH within {}s, so it was stopped (its disks are kept: `banger vm start {name}` \
                     retries, `banger vm delete {name}` removes it); console log: {}",
                    self.boot_timeout.as_secs(),
                    console.display()
                ))));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The host keys VM `rec` is known by, once the SSH server answering at `guest` has shown
    /// it holds one of them: the keys pinned at its first boot, else those it printed on its own
    /// console this boot (or, with `ssh_host_keys = "scan"` and none printed, the server's own:
    /// trust on first use). Anything else answering there — another machine with this address,
    /// such as another installation's VM — is refused, and the boot fails saying so.
    fn check_host_key(&self, rec: &VmRecord, guest: Ipv4Addr, console: &Path, from: u64) -> Result<String> {
        let name = &rec.name;
        let printed = || {
            // Printed before sshd starts; a moment's grace for a slow console.
            let t0 = Instant::now();
            loop {
                if let Some(k) = ssh::host_keys_from_console(&read_from(console, from)) {
                    return Some(k);
                }
                if t0.elapsed() > Duration::from_secs(3) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        // What the VM printed on its own console this boot (it may have new keys: the user
        // regenerated them), else what was pinned at its first boot.
        let pinned: Option<Vec<String>> =
            rec.host_keys.as_ref().map(|k| k.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect());
        let printed = printed();
        let from_console = printed.is_some();
        let expected = printed.or(pinned);
        let types: Vec<&str> =
            expected.iter().flatten().filter_map(|k| k.split_whitespace().next()).collect::<Vec<_>>();
        let served = self.guest.keyscan(guest, &types);
        match (expected, served) {
            (Some(exp), Some(served)) if served.iter().any(|k| exp.contains(k)) => Ok(exp.join("\n")),
            (Some(_), Some(_)) => Err(ApiError::conflict(format!(
                "the SSH server at {guest} is not VM {name}: its host key is not the one {} (another machine \
                 has this address — another banger installation with the same subnet? Give one of them its \
                 own `subnet` in config.toml)",
                if from_console { "it printed on its console" } else { "pinned at its first boot" }
            ))
            .into()),
            (Some(_), None) => Err(ApiError::internal(format!(
                "cannot read the host key of the SSH server at {guest} (ssh-keyscan) to check it is VM {name}"
            ))
            .into()),
            (None, Some(served)) if self.config.ssh_host_keys == banger_config::HostKeys::Scan => Ok(served.join("\n")),
            (None, _) => Err(ApiError::internal(format!(
                "VM {name} printed no SSH host keys on its console (BANGER-HOSTKEYS-BEGIN…END), so the server \
                 answering at {guest} cannot be told from another machine; for images that do not print them, \
                 set ssh_host_keys = \"scan\" in config.toml (trust on first use)"
            ))
            .into()),
        }
    }

    /// Kill a VMM process (by pid, only if it is still the VM's) and wait for it to go; `false`
    /// if it is still there 10 s after SIGKILL (stuck in the kernel), which callers report.
    pub(super) fn force_stop(&self, name: &str, pid: u32, control_socket: &Path) -> bool {
        let marker = banger_vmm::marker(control_socket);
        if process::signal(pid, &marker, Signal::SIGKILL).is_ok()
            && !process::wait_exit(pid, &marker, Duration::from_secs(10))
        {
            tracing::warn!("{name}: VMM pid {pid} did not exit after SIGKILL");
            return false;
        }
        self.stop_folder_servers(name);
        let paths = self.layout.vm(name);
        let _ = std::fs::remove_dir_all(paths.run_dir);
        if let Err(e) = banger_vmm::firecracker::jail::remove(&paths.jail) {
            tracing::warn!("{name}: {e}");
        }
        true
    }

    /// The error for a VMM that survived SIGKILL; the VM goes back to running.
    pub(super) fn unkillable(&self, name: &str, stopping: &VmPhase) -> Error {
        let pid = stopping.live().map(|l| l.instance.pid).unwrap_or_default();
        let why = format!("VM {name}'s VMM (pid {pid}) did not exit even after SIGKILL; it still runs");
        if let VmPhase::Stopping(live) = stopping
            && let Err(e) = self.transition(name, stopping, VmPhase::Running(live.clone()), Some(why.clone()))
        {
            tracing::warn!("{e}");
        }
        ApiError::internal(why).into()
    }
}

/// What a boot adds to a VM's usual configuration (`image build`'s builder).
#[derive(Debug, Clone, Default)]
pub struct Extras {
    pub disks: Vec<Disk>,
    /// Appended to the kernel command line (starts with a space).
    pub cmdline: String,
}

/// The host's first non-loopback nameserver, for guests that use NAT.
fn upstream_dns() -> Option<Ipv4Addr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .filter_map(|v| v.trim().parse::<Ipv4Addr>().ok())
        .find(|ip| !ip.is_loopback())
}

/// The text of `path` from byte `from` on (the console log keeps every boot; read only this one).
fn read_from(path: &Path, from: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut bytes = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path)
        && f.seek(SeekFrom::Start(from)).is_ok()
    {
        let _ = f.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Write `bytes` to `dst` with mode 0600 in a 0700 directory (temporary file + rename).
fn write_private(dst: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = dst.parent().unwrap_or(Path::new("."));
    let fail = |e: std::io::Error| ApiError::internal(format!("cannot write the SSH key {}: {e}", dst.display()));
    std::fs::create_dir_all(dir).map_err(fail)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
    let tmp = dir.join(".id.tmp");
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, bytes))
        .and_then(|()| std::fs::rename(&tmp, dst));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e).into());
    }
    Ok(())
}

/// A new ed25519 key pair at `dst` (and `dst.pub`), replacing what is there.
fn generate_key(dst: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = dst.parent().unwrap_or(Path::new("."));
    let fail = |e: String| ApiError::internal(format!("cannot generate the SSH key {}: {e}", dst.display()));
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| fail(e.to_string()))?;
    let tmp = dir.join(".id.new");
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_file(tmp.with_extension("new.pub"));
    let comment = format!("banger@{}", nix::unistd::getuid());
    let made = banger_host::run(
        "ssh-keygen",
        [
            "-q".as_ref(),
            "-t".as_ref(),
            "ed25519".as_ref(),
            "-N".as_ref(),
            "".as_ref(),
            "-C".as_ref(),
            comment.as_ref(),
            "-f".as_ref(),
            tmp.as_os_str(),
        ],
    );
    let pub_tmp = dir.join(".id.new.pub");
    let placed = made
        .map_err(|e| e.to_string())
        .and_then(|_| std::fs::rename(&pub_tmp, dst.with_extension("pub")).map_err(|e| e.to_string()))
        .and_then(|()| std::fs::rename(&tmp, dst).map_err(|e| e.to_string()));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(&pub_tmp);
        return Err(fail(e).into());
    }
    tracing::info!("generated this installation's SSH key {}", dst.display());
    Ok(())
}
