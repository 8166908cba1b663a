//! `vm stats`: configuration and disks always; while the VM runs, its VMM's CPU and memory on
//! the host, its TAP counters, the VMM's own I/O counters where it keeps them (Firecracker's
//! metrics) and the guest's own figures.
//!
//! Host figures are read when asked (a few `/proc` and `/sys` files). CPU% needs two samples:
//! the daemon's monitor takes one per running VM each second, so the figure covers about the
//! last second. Guest figures come from one fixed command over a one-shot SSH session
//! (`platform/guest_stats.rs`), which takes a moment under emulation: they are refreshed in the
//! background whenever they are older than a second and someone asks, and a request answers at
//! once with the latest ones (`guest.sampled_at` says how old); only the first request after a
//! boot waits for them, briefly.

use super::Manager;
use super::phase::VmPhase;
use crate::error::Result;
use banger_api::response::{DriveIo, GuestStats, NetStats, ProcessStats, VmStats, VmmIo};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Guest figures younger than this are served without asking the guest again.
const GUEST_MAX_AGE: Duration = Duration::from_secs(1);
/// How long the first request after a boot waits for the guest's figures.
const GUEST_FIRST_WAIT: Duration = Duration::from_secs(5);
/// A CPU sample must be at least this old to measure against.
const CPU_MIN_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Default)]
pub struct Samples {
    cpu: Mutex<HashMap<String, CpuSamples>>,
    guest: Arc<(Mutex<HashMap<String, GuestSlot>>, Condvar)>,
}

/// The two latest CPU-time samples of one VMM process.
struct CpuSamples {
    pid: u32,
    older: Option<(Instant, f64)>,
    newer: (Instant, f64),
}

#[derive(Default)]
struct GuestSlot {
    /// The boot these figures belong to (its VMM's pid and start time): a new boot starts afresh.
    boot: (u32, u64),
    ok: Option<(Instant, GuestStats)>,
    /// Why the last attempt failed (cleared by a success).
    err: Option<String>,
    asked: Option<Instant>,
    in_flight: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Manager {
    /// Take a CPU-time sample of every running VM's VMM (the monitor calls this each second).
    pub fn sample_cpu(&self) {
        let Ok(records) = self.db().vms() else { return };
        let mut cpu = lock(&self.samples.cpu);
        let mut seen = Vec::new();
        for rec in &records {
            let Ok(VmPhase::Running(live)) = VmPhase::from_record(rec) else { continue };
            let i = &live.instance;
            let Some(u) = banger_vmm::process::usage(i.pid, &i.marker()) else { continue };
            let now = (Instant::now(), u.cpu_secs);
            seen.push(rec.name.clone());
            match cpu.get_mut(&rec.name) {
                Some(s) if s.pid == i.pid => {
                    s.older = Some(s.newer);
                    s.newer = now;
                }
                _ => {
                    cpu.insert(rec.name.clone(), CpuSamples { pid: i.pid, older: None, newer: now });
                }
            }
        }
        cpu.retain(|name, _| seen.contains(name));
    }

    /// A running VM's VMM process: its RSS now and its CPU use since the monitor's last sample
    /// (at least [`CPU_MIN_INTERVAL`] old). `None` when the process is gone.
    pub(super) fn process_stats(&self, name: &str, i: &banger_vmm::Instance) -> Option<ProcessStats> {
        let u = banger_vmm::process::usage(i.pid, &i.marker())?;
        let now = Instant::now();
        let cpu_percent = lock(&self.samples.cpu).get(name).filter(|s| s.pid == i.pid).and_then(|s| {
            [Some(s.newer), s.older]
                .into_iter()
                .flatten()
                .find(|(t, _)| now.duration_since(*t) >= CPU_MIN_INTERVAL)
                .map(|(t, secs)| (u.cpu_secs - secs).max(0.0) / now.duration_since(t).as_secs_f64() * 100.0)
        });
        Some(ProcessStats { pid: i.pid, cpu_percent, rss_bytes: u.rss_bytes })
    }

    /// `vm stats`.
    pub fn stats(&self, name: &str) -> Result<VmStats> {
        let rec = self.record(name)?;
        let vm = self.view(&rec);
        let mut stats = VmStats {
            name: vm.name.clone(),
            state: vm.state,
            time: crate::now_unix_f64(),
            vcpus: vm.vcpus,
            memory_mib: vm.memory_mib,
            uptime_secs: vm.uptime_secs,
            process: None,
            guest: None,
            guest_error: None,
            network: None,
            disks: vm.disks.clone(),
            vmm_io: None,
        };
        let Ok(VmPhase::Running(live)) = VmPhase::from_record(&rec) else {
            lock(&self.samples.guest.0).remove(name);
            return Ok(stats);
        };
        let i = &live.instance;
        stats.process = self.process_stats(name, i);
        // The TAP's receive side is what the guest sent.
        stats.network = banger_net::tap::counters(&rec.tap).map(|c| NetStats {
            tap: rec.tap.clone(),
            rx_bytes: c.tx_bytes,
            rx_packets: c.tx_packets,
            tx_bytes: c.rx_bytes,
            tx_packets: c.rx_packets,
        });
        stats.vmm_io =
            self.hypervisor.for_instance(i.backend, i.accel).ok().and_then(|vmm| vmm.io_totals(i)).map(|t| {
                Box::new(VmmIo {
                    source: i.backend.as_str().into(),
                    block_read_bytes: t.block_read_bytes,
                    block_write_bytes: t.block_write_bytes,
                    block_reads: t.block_reads,
                    block_writes: t.block_writes,
                    drives: t
                        .drives
                        .into_iter()
                        .map(|(id, (r, w))| DriveIo { id, read_bytes: r, write_bytes: w })
                        .collect(),
                    net_rx_bytes: t.net_rx_bytes,
                    net_tx_bytes: t.net_tx_bytes,
                    net_rx_packets: t.net_rx_packets,
                    net_tx_packets: t.net_tx_packets,
                })
            });
        if !vm.ssh.pinned {
            stats.guest_error = Some("the guest's SSH host key is not pinned yet".into());
            return Ok(stats);
        }
        let (guest, err) = self.guest_figures(name, (i.pid, live.started_at), vm.ssh);
        stats.guest = guest;
        stats.guest_error = err;
        Ok(stats)
    }

    /// The latest guest figures of this boot, refreshed in the background when stale.
    fn guest_figures(
        &self,
        name: &str,
        boot: (u32, u64),
        ssh: banger_api::response::SshInfo,
    ) -> (Option<GuestStats>, Option<String>) {
        let shared = self.samples.guest.clone();
        let (slots, ready) = &*shared;
        let mut map = lock(slots);
        let slot = map.entry(name.to_string()).or_default();
        if slot.boot != boot {
            *slot = GuestSlot { boot, ..Default::default() };
        }
        let stale = slot.asked.is_none_or(|t| t.elapsed() >= GUEST_MAX_AGE);
        if stale && !slot.in_flight {
            slot.in_flight = true;
            slot.asked = Some(Instant::now());
            let (guest, name, shared) = (self.guest.clone(), name.to_string(), shared.clone());
            std::thread::spawn(move || {
                let result = guest.stats(&ssh);
                let (slots, ready) = &*shared;
                let mut map = lock(slots);
                if let Some(slot) = map.get_mut(&name).filter(|s| s.boot == boot) {
                    match result {
                        Ok(g) => {
                            slot.ok = Some((Instant::now(), g));
                            slot.err = None;
                        }
                        Err(e) => slot.err = Some(format!("cannot read the guest's figures: {e}")),
                    }
                    slot.in_flight = false;
                }
                ready.notify_all();
            });
        }
        let deadline = Instant::now() + GUEST_FIRST_WAIT;
        loop {
            let slot = map.get(name);
            let waiting = slot.is_some_and(|s| s.boot == boot && s.ok.is_none() && s.err.is_none() && s.in_flight);
            let left = deadline.saturating_duration_since(Instant::now());
            if !waiting || left.is_zero() {
                break;
            }
            map = ready.wait_timeout(map, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        match map.get(name) {
            Some(s) => (
                s.ok.as_ref().map(|(_, g)| g.clone()),
                s.err.clone().or_else(|| s.ok.is_none().then(|| "the guest has not answered yet".into())),
            ),
            None => (None, Some("the guest has not answered yet".into())),
        }
    }
}
