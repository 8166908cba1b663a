//! Making the recorded phases true again: a VMM that died, or an operation a restarted daemon
//! was in the middle of. Every operation settles its VM first ([`Manager::observe`]); the
//! daemon's monitor settles every VM each second, and at start also removes TAPs and NAT rules
//! of this installation that no running VM owns.

use super::Manager;
use super::phase::VmPhase;
use crate::error::Result;
use banger_api::event::EventKind;
use banger_state::VmRecord;
use banger_vmm::process;
use std::path::Path;

/// Is the recorded VMM process still there (and still the VM's, not a reused pid)?
fn alive(phase: &VmPhase) -> Option<bool> {
    phase.live().map(|l| process::is_alive(l.instance.pid, &l.instance.control_socket))
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
                (VmPhase::Stopped, "the VMM exited while bangerd was away during the stop".into())
            }
            (VmPhase::Stopping(live), Some(true)) => (
                VmPhase::Running(live.clone()),
                "the stop did not finish (bangerd restarted); the VM still runs".into(),
            ),
            (VmPhase::Starting(Some(live)), Some(true)) => (
                VmPhase::Running(live.clone()),
                "the boot did not finish (bangerd restarted); the VMM still runs, the guest may still be booting"
                    .into(),
            ),
            (VmPhase::Starting(_), _) => {
                // A VMM spawned just before bangerd went away has no recorded pid: find it by the
                // VM's run directory in its command line, so it does not hold the disks.
                if phase.live().is_none() {
                    for pid in process::find_with_marker(&self.layout.vm(name).run_dir) {
                        tracing::warn!("{name}: killing VMM pid {pid}, which the database never recorded");
                        let _ = process::signal(pid, &self.layout.vm(name).run_dir, nix::sys::signal::Signal::SIGKILL);
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
        }
    }

    /// At daemon start: what a previous daemon that died mid-operation left — VM directories a
    /// delete marked and unregistered but did not remove, and temporary copies of base images.
    /// Nothing else without a row is touched (a lost or replaced database must never cost disks).
    fn remove_orphans(&self) {
        let Ok(records) = self.db().vms() else { return };
        if let Ok(dirs) = std::fs::read_dir(self.layout.vms()) {
            for d in dirs.flatten() {
                let name = d.file_name().to_string_lossy().into_owned();
                if d.path().join(super::stop::DELETING).is_file() && !records.iter().any(|r| r.name == name) {
                    tracing::warn!(
                        "removing {}: no VM {name} is registered (a delete that did not finish)",
                        d.path().display()
                    );
                    if let Err(e) = banger_storage::remove(&d.path()) {
                        tracing::warn!("{e}");
                    }
                }
            }
        }
        if let Ok(files) = std::fs::read_dir(self.layout.images()) {
            for f in files.flatten() {
                let path = f.path();
                let temporary = f.file_name().to_string_lossy().contains(".tmp-");
                if temporary && !records.iter().any(|r| Path::new(&r.base_path) == path) {
                    tracing::info!("removing {}: an unfinished copy", path.display());
                    let _ = std::fs::remove_file(&path);
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
