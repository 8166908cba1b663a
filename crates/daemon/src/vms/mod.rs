//! The VM lifecycle, owned by [`Manager`]: create, start, stop, restart, kill, delete, and
//! [`Manager::reconcile`] (finding VMs again after a daemon restart, noticing VMMs that died).
//!
//! Every phase change goes through [`Manager::transition`], which checks it is allowed
//! ([`Phase::can_become`]), writes the database and publishes the event. One operation per VM
//! at a time ([`Manager::claim`]): a second one fails at once with a conflict. Operations run on
//! the blocking pool (they spawn processes and touch files). VMM processes are independent of
//! the daemon: stopping or losing it leaves them running, and reconcile finds them again.
//!
//! One file per operation: [`view`] (list/show), [`create`], [`boot`] (start), [`stop`] (stop,
//! restart, kill, delete), [`reconcile`].

pub mod boot;
pub mod build;
pub mod create;
#[cfg(any(test, feature = "fake-host"))]
pub mod fake_host;
pub mod images;
pub mod layout;
pub mod mounts;
pub mod names;
pub mod phase;
pub mod ports;
pub mod reconcile;
pub mod set;
pub mod ssh_config;
pub mod stats;
pub mod stop;
pub mod view;

#[cfg(test)]
mod hostile_input;
#[cfg(test)]
mod tests;

use crate::error::{Error, Result};
use crate::events::EventBus;
use crate::platform::{Guest, HostNet, Hypervisor};
use banger_api::ApiError;
use banger_api::event::EventKind;
use banger_api::response::Phase;
use banger_config::{Config, RuntimeDir};
use banger_state::{Db, VmRecord};
use layout::Layout;
use phase::VmPhase;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long a boot may take to answer SSH (software emulation on a busy host is slow).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// Where a long operation reports its steps (the client's progress stream; nothing in tests).
pub trait Progress: Sync {
    fn step(&self, stage: &str, message: &str);
    /// Whether the client went away (long builds stop and clean up when it does).
    fn cancelled(&self) -> bool {
        false
    }
}

impl Progress for () {
    fn step(&self, _stage: &str, _message: &str) {}
}

/// Everything a [`Manager`] is made of.
pub struct Parts {
    pub db: Db,
    pub layout: Layout,
    pub config: Config,
    pub runtime: RuntimeDir,
    pub hypervisor: Box<dyn Hypervisor>,
    pub net: Box<dyn HostNet>,
    pub guest: Arc<dyn Guest>,
    pub events: Arc<EventBus>,
    /// Names TAPs and NAT tags of this installation (see `banger_net::tap::prefix_for`).
    pub tap_prefix: String,
    /// The built-in DNS server's port, when it runs: guests' port 53 is redirected to it and
    /// their resolver is the host side of their link.
    pub dns_port: Option<u16>,
}

pub struct Manager {
    db: Mutex<Db>,
    pub layout: Layout,
    pub config: Config,
    pub runtime: RuntimeDir,
    pub hypervisor: Box<dyn Hypervisor>,
    net: Box<dyn HostNet>,
    guest: Arc<dyn Guest>,
    /// Samples behind `vm stats` (VMM CPU time, the last guest figures).
    samples: stats::Samples,
    pub events: Arc<EventBus>,
    pub tap_prefix: String,
    pub dns_port: Option<u16>,
    /// VMs with an operation in progress, and which.
    ops: Mutex<HashMap<String, &'static str>>,
    /// Serialises name choice and slot allocation with the disk creation of new VMs.
    creating: Mutex<()>,
    /// Serialises making this installation's SSH key (many creates may ask for it at once).
    key_lock: Mutex<()>,
    /// Stops a daemon that died had begun, being finished (see `reconcile`): since when, and
    /// when the guest was last asked.
    resumed_stops: Mutex<HashMap<String, (std::time::Instant, std::time::Instant)>>,
    /// Interactive builds waiting for their shell to end, by image name.
    waiting_builds: Mutex<HashMap<String, std::sync::mpsc::Sender<bool>>>,
    /// How long a boot may take to answer SSH.
    pub boot_timeout: Duration,
    /// Host ports forwarded to VMs now.
    ports: ports::Ports,
}

/// An operation's hold on one VM; released when dropped.
pub struct Op<'a> {
    manager: &'a Manager,
    name: String,
}

impl Drop for Op<'_> {
    fn drop(&mut self) {
        self.manager.ops().remove(&self.name);
    }
}

pub(crate) fn now() -> u64 {
    crate::now_unix()
}

impl Manager {
    pub fn new(p: Parts) -> Manager {
        Manager {
            db: Mutex::new(p.db),
            layout: p.layout,
            config: p.config,
            runtime: p.runtime,
            hypervisor: p.hypervisor,
            net: p.net,
            guest: p.guest,
            samples: stats::Samples::default(),
            events: p.events,
            tap_prefix: p.tap_prefix,
            dns_port: p.dns_port,
            ops: Mutex::new(HashMap::new()),
            creating: Mutex::new(()),
            waiting_builds: Mutex::new(HashMap::new()),
            resumed_stops: Mutex::new(HashMap::new()),
            key_lock: Mutex::new(()),
            boot_timeout: BOOT_TIMEOUT,
            ports: ports::Ports::default(),
        }
    }

    /// The database (held briefly; never across a wait).
    pub fn db(&self) -> MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ops(&self) -> MutexGuard<'_, HashMap<String, &'static str>> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hold VM `name` for operation `what`; a VM held by another operation is a conflict. A hold
    /// by the monitor's reconcile is brief, so that one is waited for (up to a second).
    pub fn claim(&self, name: &str, what: &'static str) -> Result<Op<'_>> {
        let mut holder = "";
        for _ in 0..50 {
            let mut ops = self.ops();
            match ops.get(name) {
                None => {
                    ops.insert(name.to_string(), what);
                    return Ok(Op { manager: self, name: name.to_string() });
                }
                Some(&"reconcile") if what != "reconcile" => {}
                Some(other) => {
                    holder = other;
                    break;
                }
            }
            drop(ops);
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(ApiError::conflict(format!("another operation on VM {name} is in progress ({holder})")).into())
    }

    pub fn record(&self, name: &str) -> Result<VmRecord> {
        self.db()
            .vm(name)?
            .ok_or_else(|| ApiError::not_found(format!("no VM named {name} (see `banger vm list`)")).into())
    }

    pub(super) fn phase_of(rec: &VmRecord) -> Result<VmPhase> {
        VmPhase::from_record(rec).map_err(|e| ApiError::internal(e).into())
    }

    /// The one function that changes a VM's phase: checks the change is allowed, records it and
    /// publishes it. `reason` explains changes nobody asked for.
    pub fn transition(&self, name: &str, from: &VmPhase, to: VmPhase, reason: Option<String>) -> Result<VmPhase> {
        let (f, t) = (from.kind(), to.kind());
        if !f.can_become(t) {
            return Err(refusal(name, f, t));
        }
        if !self.db().set_phase(name, f.as_str(), &to.row())? {
            return Err(
                ApiError::internal(format!("VM {name} is no longer {f} in the database; nothing was changed")).into()
            );
        }
        if f != t {
            tracing::info!("VM {name}: {f} → {t}{}", reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default());
            self.events.publish(Some(name), EventKind::Phase { from: f, to: t, reason });
        }
        // Forwards follow the VMM: bound while it runs (a start binds them before it boots).
        match t {
            Phase::Stopped | Phase::Failed => self.close_forwards(name),
            Phase::Running if f != t => {
                if let Err(e) = self.record(name).and_then(|rec| self.open_published(&rec, false)) {
                    tracing::warn!("VM {name}: published ports not forwarded: {e}");
                    self.events.publish(
                        Some(name),
                        EventKind::Error { message: format!("published ports not forwarded: {e}") },
                    );
                }
            }
            _ => {}
        }
        Ok(to)
    }

    /// Report a step of a long operation to the client and as an event.
    fn step(&self, progress: &dyn Progress, vm: &str, stage: &str, message: String) {
        tracing::info!("{vm}: {stage}: {message}");
        progress.step(stage, &message);
        self.events.publish(Some(vm), EventKind::Progress { stage: stage.into(), message });
    }

    /// Publish a failed operation as an error event, unless it was a refusal that changed
    /// nothing (bad input, unknown VM, wrong phase, another operation).
    fn published<T>(&self, vm: &str, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            use banger_api::ErrorCode::*;
            if !matches!(e.code(), BadInput | NotFound | Conflict | InvalidState) {
                self.events.publish(Some(vm), EventKind::Error { message: e.to_string() });
            }
        }
        result
    }

    fn nat_tag(&self, name: &str) -> String {
        format!("{}{name}", self.tap_prefix)
    }

    /// The tag of a VM's DNS redirect rules (VM names have no dots, so it is no VM's NAT tag).
    fn dns_tag(&self, name: &str) -> String {
        format!("{}{name}.dns", self.tap_prefix)
    }

    /// Release what a VMM process held: its forwards, TAP, NAT and DNS rules and run directory.
    fn release(&self, rec: &VmRecord) {
        self.close_forwards(&rec.name);
        if let Some(port) = self.dns_port
            && let Err(e) = self.net.disable_dns_redirect(&self.dns_tag(&rec.name), &rec.tap, port)
        {
            tracing::warn!("{}: {e}", rec.name);
        }
        if let Err(e) = self.net.delete_tap(&rec.tap) {
            tracing::warn!("{}: {e}", rec.name);
        }
        if rec.nat
            && let Ok(guest) = rec.guest_ip.parse()
            && let Err(e) = self.net.disable_nat(&self.nat_tag(&rec.name), &rec.tap, guest)
        {
            tracing::warn!("{}: {e}", rec.name);
        }
        self.stop_folder_servers(&rec.name);
        let paths = self.layout.vm(&rec.name);
        let _ = std::fs::remove_dir_all(paths.run_dir);
        // A jailed Firecracker's chroot and cgroup (it is gone by now).
        if let Err(e) = banger_vmm::firecracker::jail::remove(&paths.jail) {
            tracing::warn!("{}: {e}", rec.name);
        }
        self.resumed_stops.lock().unwrap_or_else(|e| e.into_inner()).remove(&rec.name);
    }
}

/// Specs a VM row keeps as strings (published ports, host folders), parsed; one that does not
/// parse (a database edited by hand?) is an error naming the VM and `what` it is.
pub(super) fn stored_specs<T: std::str::FromStr<Err = String>>(
    rec: &VmRecord,
    list: &[String],
    what: &str,
) -> Result<Vec<T>> {
    list.iter()
        .map(|s| {
            s.parse().map_err(|e| {
                ApiError::internal(format!("VM {} has a bad {what} in the database: {e}", rec.name)).into()
            })
        })
        .collect()
}

/// The sentence for a change the lifecycle does not allow.
fn refusal(name: &str, from: Phase, to: Phase) -> Error {
    let msg = match (from, to) {
        (Phase::Running, Phase::Starting) => format!("VM {name} is already running"),
        (Phase::Stopped | Phase::Failed, Phase::Stopping | Phase::Stopped | Phase::Running) => {
            format!("VM {name} is not running")
        }
        (Phase::Starting | Phase::Stopping, _) => format!("VM {name} is {from}; wait until that is done"),
        _ => format!("VM {name} is {from} and cannot become {to}"),
    };
    ApiError::invalid_state(msg).into()
}
