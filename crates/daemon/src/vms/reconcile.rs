//! Making the recorded phases true again: a VMM that died, or an operation a restarted daemon
//! was in the middle of. Every operation settles its VM first ([`Manager::observe`]); the
//! daemon's monitor settles every VM each second, and at start also removes TAPs and NAT rules
//! of this installation that no running VM owns.

use super::Manager;
use super::phase::VmPhase;
use crate::error::Result;
use crate::platform::ssh;
use banger_api::event::EventKind;
use banger_state::VmRecord;
use banger_vmm::Instance;
use banger_vmm::process;
use std::collections::HashMap;
use std::path::Path;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

/// How long a stop that a daemon which died had begun may take to finish before its VMM is
/// killed (the guest is asked again to power off at once).
pub const RESUMED_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often such a guest is asked again.
const RESUMED_STOP_ASK_EVERY: Duration = Duration::from_secs(5);

/// Is the recorded VMM process still there (and still the VM's, not a reused pid)?
fn alive(phase: &VmPhase) -> Option<bool> {
    phase.live().map(|l| process::is_alive(l.instance.pid, &l.instance.marker()))
}

/// When this host booted (`btime` of `/proc/stat`, Unix seconds).
fn host_booted_at() -> Option<u64> {
    std::fs::read_to_string("/proc/stat").ok()?.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

/// Whether the host restarted since a VM started at `started_at`: its VMM is gone because the
/// machine went down, not because anything failed.
fn host_restarted_since(started_at: u64) -> bool {
    host_booted_at().is_some_and(|b| started_at < b)
}

impl Manager {
    /// Stops being finished for a daemon that died (see `settle`), by VM: since when.
    pub(super) fn resumed_stops(&self) -> MutexGuard<'_, HashMap<String, (Instant, Instant)>> {
        self.resumed_stops.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ask a guest to power off: over SSH (guests without ACPI, such as QEMU's microvm), and
    /// through its VMM. With `wait` false both requests run on their own thread (a daemon
    /// settling VMs at start must not wait on a guest or a VMM before it serves anyone).
    pub(super) fn ask_poweroff(&self, rec: &VmRecord, instance: &Instance, wait: bool) {
        let ssh = (rec.host_keys.is_some() && self.ssh_key().is_ok()).then(|| (self.guest.clone(), self.view(rec).ssh));
        let vmm = self.hypervisor.for_instance(instance.backend, instance.accel);
        let (name, instance) = (rec.name.clone(), instance.clone());
        let ask = move || {
            if let Some((guest, ssh)) = ssh {
                guest.poweroff(&ssh);
            }
            match vmm {
                Ok(vmm) => {
                    if let Err(e) = vmm.request_shutdown(&instance) {
                        tracing::warn!("{name}: {e}");
                    }
                }
                Err(e) => tracing::warn!("{name}: {e}"),
            }
        };
        if wait {
            ask();
        } else {
            std::thread::spawn(ask);
        }
    }

    /// The VM's record and its phase, settled. Call only while holding the VM (no operation of
    /// its own is in flight, so `starting`/`stopping` mean one was interrupted).
    pub(super) fn observe(&self, name: &str) -> Result<(VmRecord, VmPhase)> {
        let rec = self.record(name)?;
        let phase = Self::phase_of(&rec)?;
        let phase = self.settle(&rec, phase)?;
        Ok((rec, phase))
    }

    /// Whether `settle` would change anything (checked without holding the VM), given whether
    /// its recorded process is alive.
    fn unsettled(phase: &VmPhase, alive: Option<bool>) -> bool {
        match phase {
            VmPhase::Running(_) => alive == Some(false),
            VmPhase::Starting(_) | VmPhase::Stopping(_) => true,
            VmPhase::Stopped | VmPhase::Failed(_) => false,
        }
    }

    pub(super) fn settle(&self, rec: &VmRecord, phase: VmPhase) -> Result<VmPhase> {
        let name = rec.name.as_str();
        let pid = phase.live().map(|l| l.instance.pid).unwrap_or_default();
        let (to, reason) = match (&phase, alive(&phase)) {
            // The host went down with it (VMM, TAP and rules all gone): stopped, not failed.
            (VmPhase::Running(live) | VmPhase::Starting(Some(live)) | VmPhase::Stopping(live), Some(false))
                if host_restarted_since(live.started_at) =>
            {
                (VmPhase::Stopped, format!("the host restarted since VM {name} started; start it again"))
            }
            (VmPhase::Running(_), Some(false)) => {
                let why = format!("VM {name}'s VMM (pid {pid}) exited without being asked to");
                (VmPhase::Failed(why.clone()), why)
            }
            (VmPhase::Stopping(_), Some(false)) => {
                self.resumed_stops().remove(name);
                (VmPhase::Stopped, "the VMM exited while bangerd was away during the stop".into())
            }
            // A stop a daemon that died had begun: someone asked for it, so it is finished —
            // the guest is asked (again) to power off, and its VMM killed if it has not within
            // `RESUMED_STOP_TIMEOUT`. Meanwhile the VM stays `stopping`.
            (VmPhase::Stopping(live), Some(true)) => {
                // Asked at once and every few seconds (a guest still booting may miss the first).
                let (since, ask) = {
                    let mut stops = self.resumed_stops();
                    let now = Instant::now();
                    let (since, asked) = stops.entry(name.to_string()).or_insert((now, now - RESUMED_STOP_ASK_EVERY));
                    let ask = asked.elapsed() >= RESUMED_STOP_ASK_EVERY;
                    if ask {
                        *asked = now;
                    }
                    (*since, ask)
                };
                if ask {
                    tracing::info!("{name}: asking the guest to power off (finishing a stop bangerd did not finish)");
                    self.ask_poweroff(rec, &live.instance, false);
                }
                if since.elapsed() < RESUMED_STOP_TIMEOUT {
                    return Ok(phase);
                }
                self.resumed_stops().remove(name);
                if !self.force_stop(name, pid, &live.instance.control_socket) {
                    return Err(self.unkillable(name, &phase));
                }
                (
                    VmPhase::Stopped,
                    format!(
                        "the stop bangerd did not finish was finished: the guest did not power off within {}s, so its \
                         VMM was killed",
                        RESUMED_STOP_TIMEOUT.as_secs()
                    ),
                )
            }
            // A boot a daemon that died had begun. With host keys pinned at an earlier boot the
            // VM is running (SSH checks those keys); at a first boot nothing has shown that
            // what answers is this VM, so its VMM is stopped and the VM can be started again.
            (VmPhase::Starting(Some(live)), Some(true)) => match &rec.host_keys {
                Some(keys) => {
                    let paths = self.layout.vm(name);
                    if let Err(e) = ssh::write_known_hosts(&paths.known_hosts, &paths.host_key_alias, keys) {
                        tracing::warn!("{name}: cannot write {}: {e}", paths.known_hosts.display());
                    }
                    (
                        VmPhase::Running(live.clone()),
                        "the boot did not finish (bangerd restarted); the VMM still runs, the guest may still be \
                         booting"
                            .into(),
                    )
                }
                // Stopped cleanly, as a stop would be (killing a guest in its first boot can
                // lose what it has not written out yet, such as its new host keys).
                None => (
                    VmPhase::Stopping(live.clone()),
                    format!(
                        "the first boot of VM {name} did not finish (bangerd restarted) before its host keys were \
                         checked; stopping it (start it again)"
                    ),
                ),
            },
            (VmPhase::Starting(_), _) => {
                // A VMM spawned just before bangerd went away has no recorded pid: find it by the
                // VM's run directory in its command line (a jailed Firecracker: by its jail id),
                // so it does not hold the disks.
                if phase.live().is_none() {
                    let paths = self.layout.vm(name);
                    let jail_id = std::path::PathBuf::from(banger_vmm::firecracker::jail::id(&paths.jail));
                    // `RUN/vms/NAME/`: with the separator, VM `a` never matches VM `ab`'s paths.
                    let run_dir = paths.run_dir.join("");
                    for marker in [&run_dir, &jail_id] {
                        for pid in process::find_with_marker_of(marker, &self.hypervisor.vmm_uids()) {
                            tracing::warn!("{name}: killing VMM pid {pid}, which the database never recorded");
                            if process::signal(pid, marker, nix::sys::signal::Signal::SIGKILL).is_ok() {
                                process::wait_exit(pid, marker, Duration::from_secs(5));
                            }
                        }
                    }
                }
                let why = format!("the boot of VM {name} did not finish (bangerd restarted) and its VMM is gone");
                (VmPhase::Failed(why.clone()), why)
            }
            _ => return Ok(phase),
        };
        tracing::info!("{name}: {reason}");
        if to.live().is_none() {
            self.release(rec);
        }
        self.transition(name, &phase, to, Some(reason))
    }

    /// A running jailed Firecracker whose socket link in the run directory is gone (the run
    /// directory was wiped while it ran): link its chroot's socket again. Whether it did.
    fn relink_jail(&self, name: &str, instance: &banger_vmm::Instance) -> bool {
        let Some(id) = instance.jail_id() else { return false };
        let jail = self.layout.vm(name).jail;
        let found = std::fs::read_dir(&jail)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join(&id).join("root").join(banger_vmm::firecracker::jail::SOCKET))
            .find(|p| p.exists());
        let Some(target) = found else { return false };
        let link = &instance.control_socket;
        let made = link.parent().is_some_and(|d| std::fs::create_dir_all(d).is_ok())
            && std::os::unix::fs::symlink(&target, link).is_ok();
        if made {
            tracing::info!("VM {name}: linked its jailed Firecracker's socket {} again", target.display());
        }
        made
    }

    /// Settle every VM (those busy with an operation are left to it). At daemon start, also
    /// remove leftover TAPs and NAT rules of this installation.
    pub fn reconcile(&self, at_start: bool) {
        let Ok(records) = self.db().vms() else { return };
        for rec in &records {
            let phase = match Self::phase_of(rec) {
                Ok(p) => p,
                Err(e) => {
                    if at_start {
                        tracing::warn!("{e}");
                        self.events.publish(Some(&rec.name), EventKind::Error { message: e.to_string() });
                    }
                    continue;
                }
            };
            let up = alive(&phase);
            if at_start
                && let Some(live) = phase.live()
                && up == Some(true)
                && !live.instance.control_socket.exists()
                && !self.relink_jail(&rec.name, &live.instance)
            {
                tracing::warn!(
                    "VM {}: its control socket {} is missing; stopping it will signal the VMM (pid {})",
                    rec.name,
                    live.instance.control_socket.display(),
                    live.instance.pid
                );
            }
            if !Self::unsettled(&phase, up) {
                continue;
            }
            let Ok(_op) = self.claim(&rec.name, "reconcile") else { continue };
            if let Err(e) = self.observe(&rec.name) {
                tracing::warn!("{e}");
            }
        }
        if at_start {
            self.remove_leftovers();
            self.remove_orphans();
            self.write_ssh_config();
        }
    }

    /// At daemon start: finish or undo what a previous daemon that died mid-operation left.
    /// - a create (`vms/.NAME.registering`): complete if its disks were moved into place, else
    ///   its row (if any) is removed, with its half-made disks (`vms/.NAME.creating-PID`);
    /// - a delete: a directory it marked (`.deleting`) goes once no row names it; a marked
    ///   directory whose row is still there was not deleted (the mark goes);
    /// - temporary copies of base images go, and so do pinned bases no VM uses — but only when
    ///   every VM directory has its row (a lost or replaced database must never cost disks).
    ///
    /// (Work disk grows are finished by [`Manager::finish_grows`], once the daemon serves.)
    fn remove_orphans(&self) {
        let vms_dir = self.layout.vms();
        let entries: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(&vms_dir)
            .map(|d| d.flatten().map(|e| (e.file_name().to_string_lossy().into_owned(), e.path())).collect())
            .unwrap_or_default();
        for (file, path) in &entries {
            if let Some(name) = file.strip_prefix('.').and_then(|f| f.strip_suffix(".registering")) {
                let registered = self.db().vm(name);
                if self.layout.vm(name).dir.is_dir() {
                    tracing::info!("VM {name}: its create had finished making its disks; kept");
                } else if let Ok(Some(rec)) = registered {
                    tracing::warn!("VM {name}: its create did not finish (bangerd died); removing it");
                    if let Err(e) = self.db().delete_vm(name) {
                        tracing::warn!("{e}");
                        continue;
                    }
                    self.events.publish(Some(name), EventKind::Deleted);
                    self.unpin_base(&rec.base_path);
                }
                let _ = std::fs::remove_file(path);
            } else if file.starts_with('.') && file.contains(".creating-") {
                tracing::info!("removing {}: disks of a create that did not finish", path.display());
                let _ = banger_storage::remove(path);
            }
        }
        let Ok(records) = self.db().vms() else { return };
        let mut unregistered = false;
        for (name, path) in entries.iter().filter(|(f, p)| !f.starts_with('.') && p.is_dir()) {
            let rec = records.iter().find(|r| &r.name == name);
            let marked = path.join(super::stop::DELETING);
            match rec {
                None if marked.is_file() => {
                    tracing::warn!(
                        "removing {}: no VM {name} is registered (a delete that did not finish)",
                        path.display()
                    );
                    if let Err(e) = banger_storage::remove(path) {
                        tracing::warn!("{e}");
                    }
                }
                None => unregistered = true,
                Some(_) => {
                    if marked.is_file() {
                        tracing::info!("VM {name}: a delete that did not finish left it; kept");
                        let _ = std::fs::remove_file(&marked);
                    }
                }
            }
        }
        if let Ok(files) = std::fs::read_dir(self.layout.images()) {
            for f in files.flatten() {
                let path = f.path();
                let file = f.file_name().to_string_lossy().into_owned();
                // By file name (a content id), not by the whole path: the same state directory
                // may be spelled another way this time (a symlinked home, a moved directory).
                let used = records.iter().any(|r| Path::new(&r.base_path).file_name() == path.file_name());
                if used || !path.is_file() {
                    continue;
                }
                if file.contains(".tmp-") {
                    tracing::info!("removing {}: an unfinished copy", path.display());
                    let _ = std::fs::remove_file(&path);
                } else if !unregistered {
                    tracing::info!("removing {}: a pinned base no VM uses", path.display());
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }

    /// Finish the work disk grows (`.growing`) that a daemon which died recorded but did not
    /// do; run once the daemon serves (e2fsck and resize2fs of a big disk take a while). Each
    /// VM is held meanwhile: an operation on it is told another is in progress, and a `vm
    /// start` that comes first finishes the grow itself.
    pub fn finish_grows(&self) {
        let Ok(records) = self.db().vms() else { return };
        for rec in records.iter().filter(|r| self.layout.vm(&r.name).growing.exists()) {
            let name = rec.name.as_str();
            let Ok(_op) = self.claim(name, "set") else { continue };
            let Ok(rec) = self.record(name) else { continue };
            let idle = Self::phase_of(&rec).map(|p| p.live().is_none()).unwrap_or(false);
            if idle && self.layout.vm(name).growing.exists() {
                tracing::info!("VM {name}: finishing the work disk's grow to {} bytes", rec.disk_size);
                if let Err(e) = self.finish_grow(name, rec.disk_size) {
                    tracing::warn!("VM {name}: {e} (retried at its next start)");
                }
            }
        }
    }

    fn remove_leftovers(&self) {
        let Ok(records) = self.db().vms() else { return };
        let live: Vec<&VmRecord> =
            records.iter().filter(|r| Self::phase_of(r).map(|p| alive(&p) == Some(true)).unwrap_or(false)).collect();
        for name in self.net.taps(&self.tap_prefix) {
            if !live.iter().any(|r| r.tap == name) {
                tracing::info!("removing leftover TAP {name}");
                if let Err(e) = self.net.delete_tap(&name) {
                    tracing::warn!("{e}");
                }
            }
        }
        // Firewall rules (NAT, DNS redirects) outlive only a crash while a VM ran, and that VM
        // is still registered: without one there is nothing to look for (and no root command to
        // run at every start).
        if records.is_empty() {
            return;
        }
        let mut keep = Vec::new();
        for r in &live {
            if r.nat {
                keep.push(self.nat_tag(&r.name));
            }
            if self.dns_port.is_some() {
                keep.push(self.dns_tag(&r.name));
            }
        }
        match self.net.remove_stale_rules(&self.tap_prefix, &keep) {
            Ok(0) => {}
            Ok(n) => tracing::info!("removed {n} leftover firewall rules"),
            Err(banger_host::HostError::Missing { .. }) => {}
            Err(e) => tracing::warn!("checking firewall rules: {e}"),
        }
        // Put back what running VMs need (rules are idempotent; someone may have flushed them).
        for r in &live {
            if r.nat
                && let Ok(guest) = r.guest_ip.parse()
                && let Err(e) = self.net.enable_nat(&self.nat_tag(&r.name), &r.tap, guest)
            {
                tracing::warn!("{}: restoring NAT: {e}", r.name);
            }
            if let Some(port) = self.dns_port
                && let Err(e) = self.net.enable_dns_redirect(&self.dns_tag(&r.name), &r.tap, port)
            {
                tracing::warn!("{}: restoring the DNS redirect: {e}", r.name);
            }
        }
    }
}
