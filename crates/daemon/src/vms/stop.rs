//! `vm stop`, `vm restart`, `vm kill`, `vm delete`.

use super::phase::VmPhase;
use super::{Manager, Progress};
use crate::error::Result;
use crate::fault;
use banger_api::ApiError;
use banger_api::event::EventKind;
use banger_api::response::{Phase, Vm};
use banger_state::VmRecord;
use banger_vmm::process;
use nix::sys::signal::Signal;
use std::time::Duration;

impl Manager {
    /// `vm stop`: power off cleanly, force after `timeout`.
    pub fn stop(&self, name: &str, timeout: Duration, progress: &dyn Progress) -> Result<Vm> {
        let _op = self.claim(name, "stop")?;
        let result = self.observe(name).and_then(|(rec, phase)| self.stop_claimed(&rec, &phase, timeout, progress));
        let result = result.and_then(|_| self.get(name));
        self.published(name, result)
    }

    pub(super) fn stop_claimed(
        &self,
        rec: &VmRecord,
        phase: &VmPhase,
        timeout: Duration,
        progress: &dyn Progress,
    ) -> Result<VmPhase> {
        self.stop_clean(rec, phase, timeout, progress).map(|(p, _)| p)
    }

    /// [`Self::stop_claimed`], also telling whether the guest powered off by itself (`false`:
    /// its VMM was killed after `timeout`).
    pub(super) fn stop_clean(
        &self,
        rec: &VmRecord,
        phase: &VmPhase,
        timeout: Duration,
        progress: &dyn Progress,
    ) -> Result<(VmPhase, bool)> {
        let name = rec.name.as_str();
        let VmPhase::Running(live) = phase else {
            return Err(super::refusal(name, phase.kind(), Phase::Stopping));
        };
        let stopping = self.transition(name, phase, VmPhase::Stopping(live.clone()), None)?;
        fault::point("stop:stopping");
        let instance = &live.instance;
        self.step(progress, name, "stopping", format!("asking {name} to power off"));
        self.ask_poweroff(rec, instance, true);
        fault::point("stop:asked");
        let clean = process::wait_exit(instance.pid, &instance.marker(), timeout);
        if !clean {
            self.step(
                progress,
                name,
                "stopping",
                format!("{name} did not power off within {}s; killing its VMM", timeout.as_secs()),
            );
            if !self.force_stop(name, instance.pid, &instance.control_socket) {
                return Err(self.unkillable(name, &stopping));
            }
        }
        fault::point("stop:exited");
        self.release(rec);
        fault::point("stop:released");
        let stopped = self.transition(name, &stopping, VmPhase::Stopped, None)?;
        self.step(progress, name, "stopped", format!("{name} stopped"));
        Ok((stopped, clean))
    }

    /// `vm restart`: stop if running, then start.
    pub fn restart(&self, name: &str, timeout: Duration, progress: &dyn Progress) -> Result<Vm> {
        let _op = self.claim(name, "restart")?;
        let result = (|| {
            let (rec, mut phase) = self.observe(name)?;
            if phase.kind() == Phase::Running {
                phase = self.stop_claimed(&rec, &phase, timeout, progress)?;
                fault::point("restart:stopped");
            }
            self.start_claimed(&self.record(name)?, &phase, progress)
        })();
        self.published(name, result)
    }

    /// `vm kill --signal SIG`: signal the VMM process; if it exits, the VM is stopped.
    pub fn kill(&self, name: &str, signal: &str) -> Result<Vm> {
        let sig = parse_signal(signal)?;
        let _op = self.claim(name, "kill")?;
        let result = (|| {
            let (rec, phase) = self.observe(name)?;
            let VmPhase::Running(live) = &phase else {
                return Err(ApiError::invalid_state(format!("VM {name} is not running")).into());
            };
            let instance = &live.instance;
            if instance.jail_id().is_some() && !reaches_pid_namespace_init(sig) {
                return Err(ApiError::invalid_state(format!(
                    "VM {name}'s Firecracker is jailed as init of its own PID namespace, where the kernel drops \
                     {} from outside (Firecracker does not handle it); use --signal KILL, or `banger vm stop`",
                    sig.as_str()
                ))
                .into());
            }
            process::signal(instance.pid, &instance.marker(), sig)?;
            fault::point("kill:signalled");
            if process::wait_exit(instance.pid, &instance.marker(), Duration::from_secs(5)) {
                self.release(&rec);
                self.transition(name, &phase, VmPhase::Stopped, Some(format!("killed with {}", sig.as_str())))?;
            }
            self.get(name)
        })();
        self.published(name, result)
    }

    /// `vm delete [--force]`: the VM, its disks, TAP, rules and pinned base (if unused) go.
    pub fn delete(&self, name: &str, force: bool) -> Result<()> {
        let _op = self.claim(name, "delete")?;
        let result = (|| {
            let rec = self.record(name)?;
            // A row this daemon cannot read must still be removable: by the pid it names, if
            // that is still the VM's process.
            let phase = match Self::phase_of(&rec) {
                Ok(phase) => self.settle(&rec, phase)?,
                Err(e) if force => {
                    tracing::warn!("{e}; deleting it anyway");
                    if let (Some(pid), Some(socket)) = (rec.pid, rec.control_socket.as_deref())
                        && !self.force_stop(name, pid, socket.as_ref())
                    {
                        return Err(ApiError::internal(format!(
                            "VM {name}'s VMM (pid {pid}) did not exit even after SIGKILL"
                        ))
                        .into());
                    }
                    VmPhase::Stopped
                }
                Err(e) => return Err(e.context("delete it with --force to remove it anyway")),
            };
            if let VmPhase::Running(live) | VmPhase::Stopping(live) = &phase {
                if !force {
                    let what = match phase {
                        VmPhase::Running(_) => "running; stop it first",
                        _ => "stopping; wait until it has stopped",
                    };
                    return Err(
                        ApiError::invalid_state(format!("VM {name} is {what} or delete it with --force")).into()
                    );
                }
                let stopping = match &phase {
                    VmPhase::Running(_) => self.transition(name, &phase, VmPhase::Stopping(live.clone()), None)?,
                    _ => phase.clone(),
                };
                if !self.force_stop(name, live.instance.pid, &live.instance.control_socket) {
                    return Err(self.unkillable(name, &stopping));
                }
                self.transition(name, &stopping, VmPhase::Stopped, Some("deleted with --force".into()))?;
                fault::point("delete:stopped");
            }
            self.release(&rec);
            // Marked, then the row: a daemon that dies after it leaves only marked disks without
            // a VM, which the next one removes (`remove_orphans`) — never a VM without its disks.
            let dir = self.layout.vm(name).dir;
            let _ = std::fs::write(dir.join(DELETING), b"");
            fault::point("delete:marked");
            self.db().delete_vm(name)?;
            fault::point("delete:unregistered");
            if let Err(e) = banger_storage::remove(&dir) {
                tracing::warn!("VM {name} is deleted, but its directory stays: {e}");
            }
            self.unpin_base(&rec.base_path);
            self.events.publish(Some(name), EventKind::Deleted);
            self.write_ssh_config();
            Ok(())
        })();
        self.published(name, result)
    }
}

/// Put in a VM's directory just before its row is deleted: the directory may go.
pub const DELETING: &str = ".deleting";

/// `KILL`, `SIGKILL`, `kill`, `9` → SIGKILL.
pub fn parse_signal(s: &str) -> Result<Signal> {
    let bad = || ApiError::bad_input(format!("{s:?} is not a signal: use a name such as TERM, KILL, INT or a number"));
    if let Ok(n) = s.parse::<i32>() {
        return Ok(Signal::try_from(n).map_err(|_| bad())?);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    Ok(name.parse::<Signal>().map_err(|_| bad())?)
}

/// Whether `sig` sent from the host reaches a jailed Firecracker, which is init of its own PID
/// namespace: only SIGKILL and SIGSTOP, and the signals it has handlers for (the rest are dropped
/// by the kernel).
fn reaches_pid_namespace_init(sig: nix::sys::signal::Signal) -> bool {
    use nix::sys::signal::Signal::*;
    matches!(sig, SIGKILL | SIGSTOP | SIGHUP | SIGBUS | SIGSEGV | SIGSYS | SIGXFSZ | SIGXCPU | SIGPIPE | SIGILL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("INT").unwrap(), Signal::SIGINT);
        for bad in ["", "NOPE", "999", "-1"] {
            assert_eq!(parse_signal(bad).unwrap_err().code(), banger_api::ErrorCode::BadInput, "{bad}");
        }
    }

    #[test]
    fn a_jailed_firecracker_is_sent_only_signals_that_reach_it() {
        assert!(reaches_pid_namespace_init(Signal::SIGKILL) && reaches_pid_namespace_init(Signal::SIGHUP));
        assert!(!reaches_pid_namespace_init(Signal::SIGTERM) && !reaches_pid_namespace_init(Signal::SIGINT));
    }
}
