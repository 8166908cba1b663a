//! Published ports (`--publish`, kept with the VM) and temporary forwards (`vm port-forward`),
//! relayed by [`banger_net::forward`].
//!
//! A VM's published ports are bound before its VMM starts (a taken host port refuses the start
//! and changes nothing), stay bound while it runs, and are closed when it stops, fails or is
//! deleted ([`Manager::transition`] and [`Manager::release`] call in here). A daemon that starts
//! with VMs already running binds theirs again. Temporary forwards live as long as the request
//! that made them, or the VM's run, whichever ends first.

use super::phase::VmPhase;
use super::{Manager, Progress};
use crate::error::Result;
use banger_api::response::{Phase, PortForward};
use banger_api::{ApiError, PortSpec, Proto};
use banger_net::forward::{Forward, Forwarder, Transport};
use banger_state::VmRecord;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// What is bound for VMs now.
#[derive(Default)]
pub struct Ports {
    forwarder: OnceLock<std::result::Result<Forwarder, String>>,
    open: Mutex<HashMap<String, VmPorts>>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct VmPorts {
    /// Bound for the VM's published ports (empty when it has none, or they could not be bound).
    published: Vec<(PortSpec, Forward)>,
    /// Published ports of a running VM that could not be bound again (a new daemon found the
    /// host port taken), and why.
    failed: Vec<(PortSpec, String)>,
    /// `vm port-forward` requests in progress, by id.
    temporary: HashMap<u64, Vec<(PortSpec, Forward)>>,
}

impl Ports {
    fn open(&self) -> MutexGuard<'_, HashMap<String, VmPorts>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn forwarder(&self) -> Result<&Forwarder> {
        self.forwarder
            .get_or_init(|| Forwarder::new().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| ApiError::internal(format!("cannot start the port forwarder: {e}")).into())
    }
}

/// The specs of a VM's `publish` column.
pub(super) fn published(rec: &VmRecord) -> Result<Vec<PortSpec>> {
    super::stored_specs(rec, &rec.publish, "published port")
}

/// `--publish` specs for a VM: each with a host port, none clashing with another.
pub(super) fn validate_published(specs: &[PortSpec]) -> Result<()> {
    for (i, s) in specs.iter().enumerate() {
        if s.host_port == 0 {
            return Err(ApiError::bad_input(format!(
                "--publish {s}: give a host port (port 0, any free port, is only for `banger vm port-forward`)"
            ))
            .into());
        }
        if let Some(other) = specs[..i].iter().find(|o| o.clashes(s)) {
            return Err(ApiError::bad_input(format!("--publish {s} and {other} want the same host port")).into());
        }
    }
    Ok(())
}

impl Manager {
    /// Bind one forward to `guest`; an error names the host address and what to do.
    fn bind(
        &self,
        open: &HashMap<String, VmPorts>,
        name: &str,
        guest: IpAddr,
        spec: PortSpec,
    ) -> Result<(PortSpec, Forward)> {
        let transport = match spec.proto {
            Proto::Tcp => Transport::Tcp,
            Proto::Udp => Transport::Udp,
        };
        let target = SocketAddr::new(guest, spec.guest_port);
        match self.ports.forwarder()?.open(transport, spec.host(), target) {
            Ok(f) => {
                let bound = PortSpec { host_port: f.local_addr().port(), ..spec };
                tracing::info!("VM {name}: forwarding {} → {target}/{}", f.local_addr(), spec.proto);
                Ok((bound, f))
            }
            Err(e) => {
                let addr = format!("{}/{}", spec.host(), spec.proto);
                let by_vm = open.iter().find_map(|(vm, p)| {
                    let mut all = p.published.iter().chain(p.temporary.values().flatten());
                    all.any(|(s, _)| s.clashes(&spec)).then_some(vm.as_str())
                });
                if e.raw_os_error() == Some(nix::errno::Errno::EAFNOSUPPORT as i32) {
                    return Err(
                        ApiError::bad_input(format!("cannot listen on {addr}: IPv6 is off on this host")).into()
                    );
                }
                Err(match e.kind() {
                    std::io::ErrorKind::AddrInUse => ApiError::conflict(match by_vm {
                        Some(vm) => format!("host port {addr} is taken by VM {vm}'s forward"),
                        None => format!("host port {addr} is taken by another program on this host (see `ss -lntup`)"),
                    }),
                    std::io::ErrorKind::AddrNotAvailable => ApiError::bad_input(format!(
                        "cannot listen on {addr}: {} is not an address of this host",
                        spec.host_ip
                    )),
                    std::io::ErrorKind::PermissionDenied => ApiError::permission(format!(
                        "cannot listen on {addr}: ports below {} need privileges; publish a higher host port",
                        unprivileged_port_start()
                    )),
                    _ => ApiError::internal(format!("cannot listen on {addr}: {e}")),
                }
                .into())
            }
        }
    }

    /// Bind every spec for `name` (all or nothing).
    fn bind_all(
        &self,
        open: &HashMap<String, VmPorts>,
        name: &str,
        guest: IpAddr,
        specs: &[PortSpec],
    ) -> Result<Vec<(PortSpec, Forward)>> {
        // Dropping what was bound so far releases it.
        specs.iter().map(|s| self.bind(open, name, guest, *s)).collect()
    }

    fn guest_addr(rec: &VmRecord) -> Result<IpAddr> {
        rec.guest_ip
            .parse()
            .map_err(|_| ApiError::internal(format!("VM {} has a malformed address in the database", rec.name)).into())
    }

    /// Bind VM `rec`'s published ports unless they are bound already. A start does this before
    /// its VMM runs, `strict`ly: all or nothing. A running VM found again (a new daemon) gets
    /// each port that can be had; the others are kept as failed, shown by `vm show`, and the
    /// first failure is returned.
    pub(super) fn open_published(&self, rec: &VmRecord, strict: bool) -> Result<()> {
        let specs = published(rec)?;
        if specs.is_empty() {
            return Ok(());
        }
        let guest = Self::guest_addr(rec)?;
        let mut open = self.ports.open();
        if open.get(&rec.name).is_some_and(|p| !p.published.is_empty()) {
            return Ok(());
        }
        if strict {
            let bound = self.bind_all(&open, &rec.name, guest, &specs)?;
            open.entry(rec.name.clone()).or_default().published = bound;
            return Ok(());
        }
        let (mut bound, mut failed, mut first) = (Vec::new(), Vec::new(), None);
        for spec in specs {
            match self.bind(&open, &rec.name, guest, spec) {
                Ok(b) => bound.push(b),
                Err(e) => {
                    failed.push((spec, e.to_string()));
                    first.get_or_insert(e);
                }
            }
        }
        let vm = open.entry(rec.name.clone()).or_default();
        (vm.published, vm.failed) = (bound, failed);
        first.map_or(Ok(()), Err)
    }

    /// Bind the published ports of every running VM (a daemon that starts with VMs running).
    pub fn open_all_published(&self) {
        let Ok(vms) = self.db().vms() else { return };
        for rec in vms.iter().filter(|r| r.phase == Phase::Running.as_str()) {
            if let Err(e) = self.open_published(rec, false) {
                tracing::warn!("VM {}: {e}", rec.name);
                self.events.publish(
                    Some(&rec.name),
                    banger_api::event::EventKind::Error { message: format!("published ports not forwarded: {e}") },
                );
            }
        }
    }

    /// Close everything forwarded to VM `name` (it stopped, failed or is deleted).
    pub(super) fn close_forwards(&self, name: &str) {
        // Closed after the lock is let go (closing waits for each relay to end).
        let removed = self.ports.open().remove(name);
        if removed.is_some() {
            drop(removed);
            tracing::info!("VM {name}: forwards closed");
        }
    }

    /// A running VM's published ports become `specs`: added ones are bound first (a taken port
    /// changes nothing), then removed ones are closed.
    pub(super) fn replace_published(&self, rec: &VmRecord, specs: &[PortSpec]) -> Result<()> {
        let guest = Self::guest_addr(rec)?;
        let mut open = self.ports.open();
        let mut current = open.get_mut(&rec.name).map(|p| std::mem::take(&mut p.published)).unwrap_or_default();
        let added: Vec<PortSpec> = specs.iter().filter(|s| !current.iter().any(|(b, _)| b == *s)).copied().collect();
        // Ports this VM gives up may be what an added one wants (the same port, another guest
        // port): those are closed before the new ones are bound.
        let (freed, kept): (Vec<_>, Vec<_>) =
            current.drain(..).partition(|(b, _)| !specs.contains(b) && added.iter().any(|a| a.clashes(b)));
        let freed_specs: Vec<PortSpec> = freed.iter().map(|(s, _)| *s).collect();
        drop(freed);
        let bound = match self.bind_all(&open, &rec.name, guest, &added) {
            Ok(b) => b,
            Err(e) => {
                // Put back what was closed for it.
                let mut restored = kept;
                if let Ok(again) = self.bind_all(&open, &rec.name, guest, &freed_specs) {
                    restored.extend(again);
                }
                open.entry(rec.name.clone()).or_default().published = restored;
                return Err(e);
            }
        };
        let mut now: Vec<(PortSpec, Forward)> = kept.into_iter().filter(|(b, _)| specs.contains(b)).collect();
        now.extend(bound);
        let vm = open.entry(rec.name.clone()).or_default();
        vm.published = now;
        vm.failed.retain(|(s, _)| specs.contains(s) && !vm.published.iter().any(|(b, _)| b == s));
        Ok(())
    }

    /// `vm port-forward`: bind `specs` to running VM `name` until [`Self::end_temporary`] or the
    /// VM stops. Returns the id and the specs as bound (port 0 replaced).
    fn forward_temporarily(&self, name: &str, specs: &[PortSpec]) -> Result<(u64, Vec<PortSpec>, String)> {
        if specs.is_empty() {
            return Err(ApiError::bad_input("give at least one HOSTPORT:GUESTPORT to forward").into());
        }
        for (i, s) in specs.iter().enumerate() {
            if let Some(other) = specs[..i].iter().find(|o| o.clashes(s)) {
                return Err(ApiError::bad_input(format!("{s} and {other} want the same host port")).into());
            }
        }
        // The phase is read under the lock: a stop or failure writes the database before it
        // closes the VM's forwards, so either it is seen here or it closes these too.
        let mut open = self.ports.open();
        let rec = self.record(name)?;
        let guest = Self::guest_addr(&rec)?;
        match Self::phase_of(&rec)? {
            VmPhase::Running(_) => {}
            p => {
                return Err(ApiError::invalid_state(format!(
                    "VM {name} is {}: ports are forwarded only to a running VM (`banger vm start {name}`)",
                    p.kind()
                ))
                .into());
            }
        }
        let bound = self.bind_all(&open, name, guest, specs)?;
        let id = self.ports.next_id.fetch_add(1, Ordering::Relaxed);
        let shown = bound.iter().map(|(s, _)| *s).collect();
        open.entry(name.to_string()).or_default().temporary.insert(id, bound);
        Ok((id, shown, rec.guest_ip))
    }

    /// `vm port-forward`: forward `specs` to running VM `name` (a `forwarding` step names each
    /// host address) until the client goes (`Ok`), the VM stops or `shutting_down()` (errors).
    pub fn port_forward(
        &self,
        name: &str,
        specs: &[PortSpec],
        progress: &dyn Progress,
        shutting_down: &dyn Fn() -> bool,
    ) -> Result<()> {
        let (id, bound, guest) = self.forward_temporarily(name, specs)?;
        let _end = EndTemporary(self, name, id);
        for spec in &bound {
            let line = format!("{} → {name} ({guest}:{}/{})", spec.host(), spec.guest_port, spec.proto);
            progress.step("forwarding", &line);
        }
        loop {
            std::thread::sleep(Duration::from_millis(500));
            if progress.cancelled() {
                return Ok(());
            }
            if !self.temporary_open(name, id) {
                return Err(ApiError::invalid_state(format!("VM {name} stopped; forwarding ended")).into());
            }
            if shutting_down() {
                return Err(ApiError::unavailable("bangerd is shutting down; forwarding ended").into());
            }
        }
    }

    /// Whether temporary forward `id` of VM `name` is still open.
    fn temporary_open(&self, name: &str, id: u64) -> bool {
        self.ports.open().get(name).is_some_and(|p| p.temporary.contains_key(&id))
    }

    /// What `vm show` lists: published ports (active while bound) and temporary forwards.
    pub(super) fn port_views(&self, rec: &VmRecord) -> Vec<PortForward> {
        let open = self.ports.open();
        let vm = open.get(&rec.name);
        let mut views: Vec<PortForward> = published(rec)
            .unwrap_or_default()
            .into_iter()
            .map(|spec| PortForward {
                spec,
                persistent: true,
                active: vm.is_some_and(|p| p.published.iter().any(|(s, _)| *s == spec)),
                error: vm.and_then(|p| p.failed.iter().find(|(s, _)| *s == spec).map(|(_, e)| e.clone())),
            })
            .collect();
        if let Some(p) = vm {
            let mut temporary: Vec<&(PortSpec, Forward)> = p.temporary.values().flatten().collect();
            temporary.sort_by_key(|(s, _)| *s);
            views.extend(temporary.into_iter().map(|(spec, _)| PortForward {
                spec: *spec,
                persistent: false,
                active: true,
                error: None,
            }));
        }
        views
    }
}

/// Closes a temporary forward however its request ends.
struct EndTemporary<'a>(&'a Manager, &'a str, u64);

impl Drop for EndTemporary<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.0.ports.open().get_mut(self.1) {
            p.temporary.remove(&self.2);
        }
    }
}

/// The lowest port an unprivileged process may bind.
fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}
