//! The VM lifecycle: create, start, stop, kill, delete, and finding VMs again after a restart.
//!
//! Operations run on the blocking pool (they spawn processes and touch files). One operation per
//! VM at a time: a second one on the same VM fails at once with a conflict instead of queueing.
//! VMM processes are independent of the daemon: stopping or losing the daemon leaves them running,
//! and [`reconcile`] finds them again (pid + control socket) or marks them stopped.

pub mod backend;
pub mod names;
pub mod ssh;

use crate::state::AppState;
use crate::stream::Progress;
use banger_api::ApiError;
use banger_api::request::CreateVm;
use banger_api::response::{DiskInfo, SshInfo, Vm, VmState};
use banger_net::{addr, firewall::Firewall, tap};
use banger_state::{Address, Insert, NewVm, VmRecord};
use banger_vmm::{Accel, Backend, Disk, Instance, Nic, VmConfig, process};
use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a boot may take to answer SSH (software emulation on a busy host is slow).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// VM bookkeeping that is not in the database.
pub struct Manager {
    pub backends: backend::Backends,
    /// VMs with an operation in progress, and the state that operation shows.
    busy: Mutex<HashMap<String, VmState>>,
    /// Serialises name checks + slot allocation with disk creation of new VMs.
    create: Mutex<()>,
    pub tap_prefix: String,
    pub firewall: Firewall,
}

impl Manager {
    pub fn new(backends: backend::Backends, state_dir: &Path) -> Manager {
        Manager {
            backends,
            busy: Mutex::new(HashMap::new()),
            create: Mutex::new(()),
            tap_prefix: tap::prefix_for(state_dir),
            firewall: Firewall::host(),
        }
    }

    fn claim(&self, name: &str, shown: VmState) -> Result<Busy<'_>, ApiError> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if busy.contains_key(name) {
            return Err(ApiError::conflict(format!("another operation on VM {name} is in progress")));
        }
        busy.insert(name.to_string(), shown);
        Ok(Busy { manager: self, name: name.to_string() })
    }

    fn shown(&self, name: &str) -> Option<VmState> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner()).get(name).copied()
    }

    fn set_shown(&self, name: &str, shown: VmState) {
        if let Some(s) = self.busy.lock().unwrap_or_else(|e| e.into_inner()).get_mut(name) {
            *s = shown;
        }
    }

    fn nat_tag(&self, name: &str) -> String {
        format!("{}{name}", self.tap_prefix)
    }
}

struct Busy<'a> {
    manager: &'a Manager,
    name: String,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.manager.busy.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.name);
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

fn host_err(e: banger_host::HostError) -> ApiError {
    match e {
        banger_host::HostError::SudoPassword { .. } | banger_host::HostError::NoSudo { .. } => {
            ApiError::permission(e.to_string())
        }
        banger_host::HostError::Missing { .. } => ApiError::not_found(e.to_string()),
        e => ApiError::internal(e.to_string()),
    }
}

fn now() -> u64 {
    crate::now_unix()
}

impl AppState {
    pub fn vm_dir(&self, name: &str) -> PathBuf {
        self.dirs.state.join("vms").join(name)
    }

    fn vm_run_dir(&self, name: &str) -> PathBuf {
        self.dirs.run.join("vms").join(name)
    }

    fn record(&self, name: &str) -> Result<VmRecord, ApiError> {
        self.db()
            .vm(name)
            .map_err(internal)?
            .ok_or_else(|| ApiError::not_found(format!("no VM named {name} (see `banger vm list`)")))
    }

    /// Is the VM's VMM process alive (and really the VM's, not a reused pid)?
    fn alive(rec: &VmRecord) -> bool {
        match (rec.pid, &rec.control_socket) {
            (Some(pid), Some(sock)) => process::is_alive(pid, Path::new(sock)),
            _ => false,
        }
    }

    /// The API view of a VM.
    pub fn vm_view(&self, rec: &VmRecord) -> Vm {
        let dir = self.vm_dir(&rec.name);
        let state =
            self.manager.shown(&rec.name).unwrap_or(if rec.running { VmState::Running } else { VmState::Stopped });
        let disk = |role: &str, path: PathBuf, read_only: bool| {
            let (size, allocated) = banger_storage::usage(&path);
            DiskInfo { role: role.into(), size, allocated, path, read_only }
        };
        let running = state == VmState::Running;
        Vm {
            name: rec.name.clone(),
            state,
            image: rec.image.clone(),
            memory_mib: rec.memory_mib,
            vcpus: rec.vcpus,
            disk_size: rec.disk_size,
            nat: rec.nat,
            ip: rec.guest_ip.clone(),
            host_ip: rec.host_ip.clone(),
            mac: rec.mac.clone(),
            tap: rec.tap.clone(),
            backend: rec.backend.clone().filter(|_| running),
            accel: rec.accel.clone().filter(|_| running),
            pid: rec.pid.filter(|_| running),
            created_at: rec.created_at,
            started_at: rec.started_at.filter(|_| running),
            uptime_secs: rec.started_at.filter(|_| running).map(|t| now().saturating_sub(t)),
            disks: vec![
                disk("base", PathBuf::from(&rec.base_path), true),
                disk("overlay", dir.join(banger_storage::OVERLAY), false),
                disk("work", dir.join(banger_storage::WORK), false),
            ],
            console_log: dir.join("console.log"),
            ssh: SshInfo {
                user: "root".into(),
                host: rec.guest_ip.clone(),
                port: 22,
                key: self.dirs.state.join("ssh").join("id_ed25519"),
                known_hosts: dir.join("known_hosts"),
                host_key_alias: format!("banger-{}", rec.name),
                pinned: rec.host_keys.is_some(),
            },
            dir,
            last_error: rec.last_error.clone(),
        }
    }

    pub fn vm_list(&self) -> Result<Vec<Vm>, ApiError> {
        Ok(self.db().vms().map_err(internal)?.iter().map(|r| self.vm_view(r)).collect())
    }

    pub fn vm_get(&self, name: &str) -> Result<Vm, ApiError> {
        Ok(self.vm_view(&self.record(name)?))
    }

    /// Resolve `--image`: `default`, `base`, or a path to an ext4 image.
    fn resolve_image(&self, image: Option<&str>) -> Result<(String, PathBuf), ApiError> {
        let rt = &self.runtime;
        let missing = |e: banger_config::RuntimeError| ApiError::runtime_missing(e.to_string());
        match image.unwrap_or("default") {
            "default" => {
                Ok(("default".into(), rt.require("default_rootfs", &self.config.default_rootfs).map_err(missing)?))
            }
            "base" => Ok((
                "base".into(),
                rt.require("default_base_rootfs", &self.config.default_base_rootfs).map_err(missing)?,
            )),
            path if path.contains('/') => {
                let p = PathBuf::from(path);
                if !p.is_file() {
                    return Err(ApiError::not_found(format!("image file {path} does not exist")));
                }
                Ok((path.into(), std::fs::canonicalize(&p).unwrap_or(p)))
            }
            other => Err(ApiError::not_found(format!(
                "no image named {other:?}: use `default`, `base`, or a path to an ext4 image"
            ))),
        }
    }

    /// Remove a pinned base image no VM uses any more.
    fn unpin_base(&self, base_path: &str) {
        let path = Path::new(base_path);
        if path.parent() != Some(self.dirs.state.join("images").as_path()) {
            return;
        }
        let used = self.db().vms().map(|v| v.iter().any(|r| r.base_path == base_path)).unwrap_or(true);
        if !used {
            let _ = std::fs::remove_file(path);
        }
    }

    /// `vm create`.
    pub fn vm_create(&self, req: CreateVm, progress: &Progress) -> Result<Vm, ApiError> {
        let cfg = &self.config;
        let memory_mib = req.memory_mib.unwrap_or(cfg.default_memory);
        let vcpus = req.vcpus.unwrap_or(cfg.default_vcpu);
        let disk_size = req.disk_size.unwrap_or(cfg.default_disk_size);
        if !(128..=1 << 20).contains(&memory_mib) {
            return Err(ApiError::bad_input(format!("--memory {memory_mib} is out of range: use 128 to 1048576 MiB")));
        }
        if !(1..=64).contains(&vcpus) {
            return Err(ApiError::bad_input(format!("--vcpu {vcpus} is out of range: use 1 to 64")));
        }
        if disk_size < 64 << 20 {
            return Err(ApiError::bad_input("--disk-size must be at least 64M"));
        }
        if let Some(name) = &req.name {
            names::validate(name)?;
        }
        let (image, base) = self.resolve_image(req.image.as_deref())?;
        let missing = |e: banger_config::RuntimeError| ApiError::runtime_missing(e.to_string());
        let kernel = self.runtime.require("default_kernel", &cfg.default_kernel).map_err(missing)?;
        let initrd = self.runtime.require("default_initrd", &cfg.default_initrd).map_err(missing)?;
        self.runtime.require("ssh_key_path", &cfg.ssh_key_path).map_err(missing)?;

        let create_guard = self.manager.create.lock().unwrap_or_else(|e| e.into_inner());
        let name = match req.name {
            Some(n) => n,
            None => match &cfg.namegen_path {
                Some(program) => names::from_program(program)?,
                None => {
                    let taken: Vec<String> = self.db().vms().map_err(internal)?.into_iter().map(|v| v.name).collect();
                    names::generate(&taken).ok_or_else(|| ApiError::conflict("no free generated name; pass --name"))?
                }
            },
        };
        let _busy = self.manager.claim(&name, VmState::Stopped)?;
        let subnet = cfg.subnet;
        let prefix = self.manager.tap_prefix.clone();
        let base = banger_storage::pin_base(&self.dirs.state.join("images"), &base).map_err(internal)?;
        let new = NewVm {
            name: name.clone(),
            image,
            base_path: base.display().to_string(),
            base_id: banger_storage::base_id(&base).map_err(internal)?,
            kernel: kernel.display().to_string(),
            initrd: Some(initrd.display().to_string()),
            memory_mib,
            vcpus,
            disk_size,
            nat: req.nat,
            created_at: now(),
        };
        let inserted = self.db().insert_vm(&new, addr::capacity(subnet.prefix), |slot| {
            let lease = addr::lease(subnet.network, subnet.prefix, slot).expect("slot below capacity");
            Address {
                tap: tap::name(&prefix, slot),
                host_ip: lease.host.to_string(),
                guest_ip: lease.guest.to_string(),
                mac: lease.mac(),
            }
        });
        let rec = match inserted {
            Ok(Insert::Inserted(rec)) => *rec,
            other => {
                self.unpin_base(&new.base_path);
                return Err(match other {
                    Ok(Insert::NameTaken) => ApiError::conflict(format!("a VM named {name} already exists")),
                    Ok(_) => ApiError::conflict(format!("subnet {subnet} has no room for another VM (one /30 each)")),
                    Err(e) => internal(e),
                });
            }
        };
        progress.step(
            "disks",
            format!("creating disks for {name} (work disk {})", banger_config::size::format_size(disk_size)),
        );
        if let Err(e) = banger_storage::create(&self.vm_dir(&name), &base, disk_size) {
            let _ = self.db().delete_vm(&name);
            self.unpin_base(&rec.base_path);
            return Err(ApiError::new(
                if e.exit_code() == banger_api::exit::CONFLICT {
                    banger_api::ErrorCode::Conflict
                } else {
                    banger_api::ErrorCode::Internal
                },
                e.to_string(),
            ));
        }
        drop(create_guard);
        if req.no_start {
            return Ok(self.vm_view(&rec));
        }
        self.manager.set_shown(&name, VmState::Starting);
        self.start_claimed(&rec, progress)
    }

    /// `vm start`.
    pub fn vm_start(&self, name: &str, progress: &Progress) -> Result<Vm, ApiError> {
        let _busy = self.manager.claim(name, VmState::Starting)?;
        let rec = self.record(name)?;
        if rec.running && Self::alive(&rec) {
            return Err(ApiError::invalid_state(format!("VM {name} is already running")));
        }
        self.start_claimed(&rec, progress)
    }

    /// The private copy of the bundle's SSH key (ssh insists on 0600 and on owning it).
    fn ssh_key(&self) -> Result<PathBuf, ApiError> {
        let src = self
            .runtime
            .require("ssh_key_path", &self.config.ssh_key_path)
            .map_err(|e| ApiError::runtime_missing(e.to_string()))?;
        let dir = self.dirs.state.join("ssh");
        let dst = dir.join("id_ed25519");
        let key = std::fs::read(&src).map_err(|e| internal(format!("cannot read SSH key {}: {e}", src.display())))?;
        if std::fs::read(&dst).ok().as_deref() != Some(&key[..]) {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::create_dir_all(&dir).map_err(internal)?;
            let tmp = dir.join("id_ed25519.tmp");
            let _ = std::fs::remove_file(&tmp);
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .and_then(|mut f| std::io::Write::write_all(&mut f, &key))
                .and_then(|()| std::fs::rename(&tmp, &dst));
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                return Err(internal(format!("cannot copy the SSH key to {}: {e}", dst.display())));
            }
        }
        Ok(dst)
    }

    fn start_claimed(&self, rec: &VmRecord, progress: &Progress) -> Result<Vm, ApiError> {
        let name = rec.name.clone();
        for (what, path) in [("kernel", &rec.kernel), ("base image", &rec.base_path)]
            .into_iter()
            .chain(rec.initrd.as_ref().map(|p| ("initrd", p)))
        {
            if !Path::new(path).exists() {
                return Err(ApiError::runtime_missing(format!(
                    "the {what} of VM {name}, {path}, is missing; restore the runtime bundle (`make runtime-bundle` or `make runtime-build`)"
                )));
            }
        }
        if banger_storage::base_id(Path::new(&rec.base_path)).ok().as_deref() != Some(rec.base_id.as_str()) {
            return Err(ApiError::invalid_state(format!(
                "the base image {} changed since VM {name} was created (rebuilt or replaced), so the VM's overlay no \
                 longer matches it; delete the VM and create it again",
                rec.base_path
            )));
        }
        self.ssh_key()?;
        let kernel = PathBuf::from(&rec.kernel);
        let initrd = rec.initrd.as_ref().map(PathBuf::from);
        if self.manager.backends.kvm_known().is_none() {
            progress.step("probe", "checking whether KVM can run guests here (once per host boot)");
        }
        let vmm = self.manager.backends.select(&kernel, initrd.as_deref())?;
        let guest: Ipv4Addr = rec.guest_ip.parse().map_err(internal)?;
        let host: Ipv4Addr = rec.host_ip.parse().map_err(internal)?;
        progress.step("network", format!("creating TAP {} ({host} ↔ {guest})", rec.tap));
        let _ = tap::delete(&rec.tap);
        tap::create(&rec.tap, nix::unistd::geteuid().as_raw(), host).map_err(host_err)?;
        if rec.nat
            && let Err(e) = self.manager.firewall.enable_nat(&self.manager.nat_tag(&name), &rec.tap, guest)
        {
            self.cleanup_network(rec);
            return Err(host_err(e));
        }
        let dir = self.vm_dir(&name);
        let console = dir.join("console.log");
        let console_from = std::fs::metadata(&console).map(|m| m.len()).unwrap_or(0);
        let lease = addr::Lease { slot: rec.slot, host, guest };
        let config = VmConfig {
            name: name.clone(),
            kernel,
            initrd,
            // `quiet`: the console carries the guest's own messages (host keys) rather than boot noise.
            cmdline: format!(
                "{} systemd.hostname={name} quiet systemd.show_status=0",
                lease.kernel_arg(&name, upstream_dns())
            ),
            disks: vec![
                Disk { id: "base".into(), path: PathBuf::from(&rec.base_path), read_only: true },
                Disk { id: "overlay".into(), path: dir.join(banger_storage::OVERLAY), read_only: false },
                Disk { id: "work".into(), path: dir.join(banger_storage::WORK), read_only: false },
            ],
            memory_mib: rec.memory_mib,
            vcpus: rec.vcpus,
            nic: Some(Nic { tap: rec.tap.clone(), mac: rec.mac.clone() }),
            run_dir: self.vm_run_dir(&name),
            console_log: console.clone(),
        };
        let instance = match vmm.start(&config) {
            Ok(i) => i,
            Err(e) => {
                self.cleanup_network(rec);
                let msg = format!("VM {name} failed to start: {e}");
                let _ = self.db().vm_stopped(&name, Some(&msg));
                return Err(ApiError::internal(msg));
            }
        };
        let recorded = self.db().vm_started(
            &name,
            instance.backend.as_str(),
            instance.accel.as_str(),
            instance.pid,
            &instance.control_socket.display().to_string(),
            now(),
        );
        if let Err(e) = recorded {
            // A VM the database does not know about must not keep running.
            self.force_stop(&name, &instance);
            self.cleanup_network(rec);
            return Err(internal(e));
        }
        progress.step(
            "vmm",
            format!("{} started ({}, pid {})", instance.backend.as_str(), instance.accel.as_str(), instance.pid),
        );
        if let Err(e) = self.wait_boot(&name, &instance, guest, &console, console_from, progress) {
            self.force_stop(&name, &instance);
            let rec = self.record(&name)?;
            self.cleanup_network(&rec);
            let _ = self.db().vm_stopped(&name, Some(&e.message));
            return Err(e);
        }
        let rec = self.record(&name)?;
        let keys = match rec.host_keys.clone() {
            Some(k) => Some(k),
            None => {
                let text = read_from(&console, console_from);
                let keys = ssh::host_keys_from_console(&text).or_else(|| ssh::keyscan(guest)).map(|k| k.join("\n"));
                if let Some(k) = &keys {
                    self.db().set_vm_host_keys(&name, k).map_err(internal)?;
                    progress.step("ssh", "pinned the VM's SSH host keys");
                }
                keys
            }
        };
        if let Some(k) = keys {
            ssh::write_known_hosts(&dir.join("known_hosts"), &format!("banger-{name}"), &k).map_err(internal)?;
        }
        progress.step("ready", format!("SSH ready on {guest}"));
        self.manager.set_shown(&name, VmState::Running);
        Ok(self.vm_view(&self.record(&name)?))
    }

    /// Wait for kernel → network → SSH, reporting each stage once.
    fn wait_boot(
        &self,
        name: &str,
        instance: &Instance,
        guest: Ipv4Addr,
        console: &Path,
        console_from: u64,
        progress: &Progress,
    ) -> Result<(), ApiError> {
        let start = Instant::now();
        let (mut kernel, mut network) = (false, false);
        loop {
            if !process::is_alive(instance.pid, &instance.control_socket) {
                let tail = read_from(console, console_from);
                let last = tail.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("(no console output)").trim();
                return Err(ApiError::internal(format!(
                    "VM {name}'s VMM exited during boot (last console line: {last}); console log: {}",
                    console.display()
                )));
            }
            // The kernel banner (not printed with `quiet`) or the first line of banger's initrd.
            let text = if kernel { String::new() } else { read_from(console, console_from) };
            if !kernel && (text.contains("Linux version") || text.contains("banger-init")) {
                kernel = true;
                progress.step("kernel", "kernel booting");
            }
            match ssh::probe(guest) {
                ssh::Probe::Ready(banner) => {
                    if !network {
                        progress.step("network", "network up");
                    }
                    tracing::info!("{name}: {banner} after {:.1}s", start.elapsed().as_secs_f64());
                    return Ok(());
                }
                ssh::Probe::NetworkUp if !network => {
                    network = true;
                    progress.step("network", "network up, waiting for sshd");
                }
                _ => {}
            }
            if start.elapsed() > BOOT_TIMEOUT {
                return Err(ApiError::internal(format!(
                    "VM {name} did not answer SSH within {}s, so it was stopped (its disks are kept: `banger vm start {name}` \
                     retries, `banger vm delete {name}` removes it); console log: {}",
                    BOOT_TIMEOUT.as_secs(),
                    console.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn force_stop(&self, name: &str, instance: &Instance) {
        if process::signal(instance.pid, &instance.control_socket, Signal::SIGKILL).is_ok() {
            process::wait_exit(instance.pid, &instance.control_socket, Duration::from_secs(10));
        }
        let _ = std::fs::remove_dir_all(self.vm_run_dir(name));
    }

    /// Remove the VM's TAP and NAT rules (whatever exists of them).
    fn cleanup_network(&self, rec: &VmRecord) {
        if let Err(e) = tap::delete(&rec.tap) {
            tracing::warn!("{}: {e}", rec.name);
        }
        if rec.nat
            && let (Ok(guest), tag) = (rec.guest_ip.parse(), self.manager.nat_tag(&rec.name))
            && let Err(e) = self.manager.firewall.disable_nat(&tag, &rec.tap, guest)
        {
            tracing::warn!("{}: {e}", rec.name);
        }
    }

    /// The process is gone: release everything a running VM holds and record it stopped.
    fn mark_stopped(&self, rec: &VmRecord, error: Option<&str>) -> Result<(), ApiError> {
        self.cleanup_network(rec);
        let _ = std::fs::remove_dir_all(self.vm_run_dir(&rec.name));
        self.db().vm_stopped(&rec.name, error).map_err(internal)
    }

    fn instance(rec: &VmRecord) -> Option<Instance> {
        let backend = match rec.backend.as_deref() {
            Some("firecracker") => Backend::Firecracker,
            Some("qemu") => Backend::Qemu,
            _ => return None,
        };
        let accel = if rec.accel.as_deref() == Some("kvm") { Accel::Kvm } else { Accel::Tcg };
        Some(Instance { backend, accel, pid: rec.pid?, control_socket: PathBuf::from(rec.control_socket.as_ref()?) })
    }

    /// `vm stop`: power off cleanly, force after `timeout`.
    pub fn vm_stop(&self, name: &str, timeout: Duration, progress: &Progress) -> Result<Vm, ApiError> {
        let busy = self.manager.claim(name, VmState::Stopping)?;
        self.stop_claimed(name, timeout, progress)?;
        drop(busy);
        Ok(self.vm_view(&self.record(name)?))
    }

    fn stop_claimed(&self, name: &str, timeout: Duration, progress: &Progress) -> Result<(), ApiError> {
        let rec = self.record(name)?;
        let Some(instance) = Self::instance(&rec).filter(|_| rec.running && Self::alive(&rec)) else {
            if rec.running {
                self.mark_stopped(&rec, None)?;
            }
            return Err(ApiError::invalid_state(format!("VM {name} is not running")));
        };
        progress.step("stopping", format!("asking {name} to power off"));
        if rec.host_keys.is_some() && self.ssh_key().is_ok() {
            ssh::poweroff(&self.vm_view(&rec).ssh);
        }
        if let Ok(vmm) = self.manager.backends.for_instance(instance.backend, instance.accel) {
            let _ = vmm.request_shutdown(&instance);
        }
        if !process::wait_exit(instance.pid, &instance.control_socket, timeout) {
            progress
                .step("stopping", format!("{name} did not power off within {}s; killing its VMM", timeout.as_secs()));
            self.force_stop(name, &instance);
        }
        self.mark_stopped(&rec, None)?;
        progress.step("stopped", format!("{name} stopped"));
        Ok(())
    }

    /// `vm restart`.
    pub fn vm_restart(&self, name: &str, timeout: Duration, progress: &Progress) -> Result<Vm, ApiError> {
        let _busy = self.manager.claim(name, VmState::Stopping)?;
        match self.stop_claimed(name, timeout, progress) {
            Ok(()) => {}
            Err(e) if e.code == banger_api::ErrorCode::InvalidState => {}
            Err(e) => return Err(e),
        }
        self.manager.set_shown(name, VmState::Starting);
        let rec = self.record(name)?;
        self.start_claimed(&rec, progress)
    }

    /// `vm kill --signal SIG`.
    pub fn vm_kill(&self, name: &str, signal: &str) -> Result<Vm, ApiError> {
        let sig = parse_signal(signal)?;
        let _busy = self.manager.claim(name, VmState::Running)?;
        let rec = self.record(name)?;
        let Some(instance) = Self::instance(&rec).filter(|_| rec.running && Self::alive(&rec)) else {
            return Err(ApiError::invalid_state(format!("VM {name} is not running")));
        };
        process::signal(instance.pid, &instance.control_socket, sig).map_err(internal)?;
        if process::wait_exit(instance.pid, &instance.control_socket, Duration::from_secs(5)) {
            self.mark_stopped(&rec, None)?;
        }
        drop(_busy);
        Ok(self.vm_view(&self.record(name)?))
    }

    /// `vm delete [--force]`.
    pub fn vm_delete(&self, name: &str, force: bool) -> Result<(), ApiError> {
        let _busy = self.manager.claim(name, VmState::Stopping)?;
        let rec = self.record(name)?;
        if let Some(instance) = Self::instance(&rec).filter(|_| rec.running && Self::alive(&rec)) {
            if !force {
                return Err(ApiError::invalid_state(format!(
                    "VM {name} is running; stop it first or delete it with --force"
                )));
            }
            self.force_stop(name, &instance);
        }
        self.cleanup_network(&rec);
        banger_storage::remove(&self.vm_dir(name)).map_err(internal)?;
        let _ = std::fs::remove_dir_all(self.vm_run_dir(name));
        self.db().delete_vm(name).map_err(internal)?;
        self.unpin_base(&rec.base_path);
        Ok(())
    }
}

/// After a daemon (re)start, and periodically: VMs whose process died are marked stopped and
/// lose their TAP/NAT; TAPs and NAT rules of this installation that no running VM owns go.
pub fn reconcile(state: &AppState, at_start: bool) {
    let Ok(records) = state.db().vms() else { return };
    for rec in &records {
        if rec.running && state.manager.shown(&rec.name).is_none() && !AppState::alive(rec) {
            tracing::info!("VM {}'s VMM (pid {:?}) is gone; marking it stopped", rec.name, rec.pid);
            if let Err(e) = state.mark_stopped(rec, None) {
                tracing::warn!("{}", e.message);
            }
        }
    }
    if !at_start {
        return;
    }
    let live: Vec<&VmRecord> = records.iter().filter(|r| r.running && AppState::alive(r)).collect();
    for name in tap::list(&state.manager.tap_prefix) {
        if !live.iter().any(|r| r.tap == name) {
            tracing::info!("removing leftover TAP {name}");
            if let Err(e) = tap::delete(&name) {
                tracing::warn!("{e}");
            }
        }
    }
    // NAT rules outlive only a crash while a `--nat` VM ran, and that VM is still registered:
    // without one, there is nothing to look for (and no root command to run at every start).
    if !records.iter().any(|r| r.nat) {
        return;
    }
    let keep: Vec<String> = live.iter().filter(|r| r.nat).map(|r| state.manager.nat_tag(&r.name)).collect();
    match state.manager.firewall.remove_stale(&state.manager.tap_prefix, &keep) {
        Ok(0) => {}
        Ok(n) => tracing::info!("removed {n} leftover NAT rules"),
        Err(banger_host::HostError::Missing { .. }) => {}
        Err(e) => tracing::warn!("checking NAT rules: {e}"),
    }
}

/// `KILL`, `SIGKILL`, `kill`, `9` → SIGKILL.
pub fn parse_signal(s: &str) -> Result<Signal, ApiError> {
    let bad = || ApiError::bad_input(format!("{s:?} is not a signal: use a name such as TERM, KILL, INT or a number"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse::<Signal>().map_err(|_| bad())
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
            assert_eq!(parse_signal(bad).unwrap_err().code, banger_api::ErrorCode::BadInput, "{bad}");
        }
    }
}
