//! Firecracker driver: one `firecracker --api-sock <run_dir>/fc.sock --id <name>` process per VM,
//! configured over its HTTP API (Firecracker v1.16 API; see the request types, one module per API
//! resource).
//!
//! Start-up: spawn detached (stdout/stderr → the console log: Firecracker writes the guest serial
//! console to its stdout), wait for the API socket, then `PUT /logger`, `/machine-config`,
//! `/boot-source`, `/drives/{id}` per disk, `/network-interfaces/eth0`, and `PUT /actions
//! InstanceStart`. Any failure after the spawn kills the process and removes the socket.
//!
//! With a jailer ([`Firecracker::with_jailer`], [`jail`]) the process is started through it in a
//! chroot of its own; `<run_dir>/fc.sock` is then a link to the socket inside, and every path in
//! the configuration is the one inside the chroot.

pub mod actions;
pub mod boot_source;
pub mod drives;
mod http;
pub mod instance_info;
pub mod jail;
pub mod logger;
pub mod machine_config;
pub mod metrics;
pub mod network_interfaces;

pub use actions::{ActionType, InstanceActionInfo};
pub use boot_source::BootSource;
pub use drives::Drive;
pub use instance_info::InstanceInfo;
pub use logger::{LogLevel, Logger};
pub use machine_config::MachineConfiguration;
pub use metrics::Metrics;
pub use network_interfaces::NetworkInterface;

use crate::{Accel, Backend, Instance, VmConfig, Vmm, VmmError, process};
use nix::sys::signal::Signal;
use serde::Serialize;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// API socket file name inside the VM's run directory.
pub const API_SOCKET: &str = "fc.sock";
/// Firecracker's own log file name inside the VM's run directory.
pub const LOG_FILE: &str = "firecracker.log";
/// Firecracker's metrics file name inside the VM's run directory.
pub const METRICS_FILE: &str = "firecracker.metrics";
/// Kernel arguments the driver puts before the VM's own.
pub const BOOT_ARGS_PREFIX: &str = "console=ttyS0 reboot=k panic=1";
/// Name of the single guest network interface.
pub const GUEST_IFACE: &str = "eth0";

const BACKEND: &str = "firecracker";
/// `sun_path` holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// A `PUT` request body for one API resource; the body is the serialized value.
pub trait Resource: Serialize {
    /// Request path, percent-encoded.
    fn path(&self) -> String;
}

/// The Firecracker backend.
#[derive(Debug, Clone)]
pub struct Firecracker {
    bin: PathBuf,
    socket_timeout: Duration,
    request_timeout: Duration,
    jailer: Option<jail::Jailer>,
}

impl Firecracker {
    /// `bin` is the `firecracker` executable.
    pub fn new(bin: PathBuf) -> Self {
        Firecracker {
            bin,
            socket_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            jailer: None,
        }
    }

    /// Start each VM through `jailer` (its chroot is built in the config's `jail_dir`).
    pub fn with_jailer(mut self, jailer: Option<jail::Jailer>) -> Self {
        self.jailer = jailer;
        self
    }

    pub fn jailer(&self) -> Option<&jail::Jailer> {
        self.jailer.as_ref()
    }

    /// How long `start` waits for the API socket to accept (default 5 s) and for each API reply
    /// (default 10 s).
    pub fn with_timeouts(mut self, socket: Duration, request: Duration) -> Self {
        self.socket_timeout = socket;
        self.request_timeout = request;
        self
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// `<run_dir>/fc.sock`.
    pub fn api_socket(run_dir: &Path) -> PathBuf {
        run_dir.join(API_SOCKET)
    }

    /// `<run_dir>/firecracker.log`.
    pub fn log_path(run_dir: &Path) -> PathBuf {
        run_dir.join(LOG_FILE)
    }

    /// The guest kernel command line: the driver's console/platform arguments, then the VM's.
    pub fn boot_args(cmdline: &str) -> String {
        let cmdline = cmdline.trim();
        if cmdline.is_empty() { BOOT_ARGS_PREFIX.to_string() } else { format!("{BOOT_ARGS_PREFIX} {cmdline}") }
    }

    /// First line of `firecracker --version` (e.g. `Firecracker v1.16.1`); `None` if it cannot run.
    pub fn version(bin: &Path) -> Option<String> {
        let out = Command::new(bin).arg("--version").stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).lines().map(str::trim).find(|l| !l.is_empty()).map(str::to_string)
    }

    /// `GET /`: the instance's id, state (`Not started`, `Running`, `Paused`) and version.
    pub fn describe_instance(&self, instance: &Instance) -> Result<InstanceInfo, VmmError> {
        let socket = &instance.control_socket;
        if !process::is_alive(instance.pid, &instance.marker()) {
            return Err(VmmError::NotRunning { pid: instance.pid });
        }
        let resp = http::request(socket, "GET", "/", None, self.request_timeout)
            .map_err(|source| VmmError::Control { socket: socket.clone(), source })?;
        if !resp.is_success() {
            return Err(refused("GET /", &resp));
        }
        serde_json::from_slice(&resp.body)
            .map_err(|e| VmmError::Protocol(format!("firecracker GET / returned an unexpected body: {e}")))
    }

    /// `PUT` one resource on the API socket; a non-2xx reply becomes [`VmmError::Refused`].
    pub fn put(&self, socket: &Path, resource: &impl Resource) -> Result<(), VmmError> {
        let path = resource.path();
        let body = serde_json::to_vec(resource).map_err(|e| VmmError::Protocol(format!("encoding {path}: {e}")))?;
        let resp = http::request(socket, "PUT", &path, Some(&body), self.request_timeout)
            .map_err(|source| VmmError::Control { socket: socket.to_path_buf(), source })?;
        if resp.is_success() { Ok(()) } else { Err(refused(&format!("PUT {path}"), &resp)) }
    }

    /// Configure and start the guest; `config`, `log_path` and `metrics_path` as Firecracker
    /// sees them (inside its chroot when jailed). The log and metrics files exist.
    fn configure(
        &self,
        config: &VmConfig,
        socket: &Path,
        log_path: &Path,
        metrics_path: &Path,
    ) -> Result<(), VmmError> {
        self.put(
            socket,
            &Logger { log_path: Some(log_path.to_path_buf()), level: Some(LogLevel::Info), ..Default::default() },
        )?;
        self.put(socket, &Metrics { metrics_path: metrics_path.to_path_buf() })?;
        self.put(
            socket,
            &MachineConfiguration {
                vcpu_count: config.vcpus,
                mem_size_mib: config.memory_mib,
                smt: Some(false),
                track_dirty_pages: None,
                huge_pages: None,
            },
        )?;
        self.put(
            socket,
            &BootSource {
                kernel_image_path: config.kernel.clone(),
                initrd_path: config.initrd.clone(),
                boot_args: Some(Self::boot_args(&config.cmdline)),
            },
        )?;
        for disk in &config.disks {
            self.put(
                socket,
                &Drive {
                    drive_id: disk.id.clone(),
                    path_on_host: Some(disk.path.clone()),
                    is_root_device: false,
                    is_read_only: Some(disk.read_only),
                    partuuid: None,
                    cache_type: None,
                    io_engine: None,
                },
            )?;
        }
        if let Some(nic) = &config.nic {
            self.put(
                socket,
                &NetworkInterface {
                    iface_id: GUEST_IFACE.into(),
                    host_dev_name: nic.tap.clone(),
                    guest_mac: Some(nic.mac.clone()),
                    mtu: None,
                },
            )?;
        }
        self.put(socket, &InstanceActionInfo { action_type: ActionType::InstanceStart })
    }

    /// Start `firecracker --api-sock <socket> --id <name>` with its output on `console`.
    fn spawn(
        &self,
        config: &VmConfig,
        socket: &Path,
        console: File,
        console_offset: u64,
    ) -> Result<(Starting, jail::Inside), VmmError> {
        let spawn_err = |source| VmmError::Spawn { bin: self.bin.clone(), source };
        let log_path = Self::log_path(&config.run_dir);
        let metrics = config.run_dir.join(METRICS_FILE);
        // Firecracker opens these without O_CREAT.
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| spawn_err(with_path(e, "create", &log_path)))?;
        File::create(&metrics).map_err(|e| spawn_err(with_path(e, "create", &metrics)))?;
        let log_offset = file_len(&log_path);
        let console_err = console.try_clone().map_err(spawn_err)?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--api-sock").arg(socket).arg("--id").arg(&config.name);
        cmd.stdin(Stdio::null()).stdout(console).stderr(console_err);
        let child = process::spawn_detached(&mut cmd).map_err(spawn_err)?;
        let starting = Starting {
            pid: child.id(),
            child: Some(child),
            marker: socket.to_path_buf(),
            bin: self.bin.clone(),
            socket: socket.to_path_buf(),
            console_log: config.console_log.clone(),
            console_offset,
            log_path: log_path.clone(),
            log_offset,
            status: None,
            jail_dir: None,
            armed: true,
        };
        Ok((starting, jail::Inside { config: config.clone(), log: log_path, metrics }))
    }

    /// Build the VM's chroot, start Firecracker through the jailer (as root: directly, or
    /// `sudo -n`) and find its pid (the jailer's pid file). `socket` becomes a link to the API
    /// socket inside.
    fn spawn_jailed(
        &self,
        jailer: &jail::Jailer,
        jail: &jail::Jail,
        config: &VmConfig,
        socket: &Path,
        console: File,
        console_offset: u64,
    ) -> Result<(Starting, jail::Inside), VmmError> {
        let jailer_err = |source| VmmError::Spawn { bin: jailer.bin.clone(), source };
        let dir = jail.dir.as_path();
        let inside = jail.prepare(jailer, config)?;
        // Whatever the jailer got as far as starting goes too (it runs as our uid once dropped).
        let cleanup = |e: VmmError| {
            for pid in jailer.processes(&jail.id) {
                if process::signal(pid, Path::new(&jail.id), Signal::SIGKILL).is_ok() {
                    process::wait_exit(pid, Path::new(&jail.id), Duration::from_secs(5));
                }
            }
            let _ = fs::remove_file(socket);
            log_removal(jail::remove(dir));
            e
        };
        std::os::unix::fs::symlink(jail.socket(), socket)
            .map_err(|e| cleanup(jailer_err(with_path(e, "link", socket))))?;
        let mut cmd = banger_host::root_command(jailer.privilege, &jailer.bin, &jailer.args(jail, &self.bin, config))
            .map_err(|e| cleanup(jailer_err(io::Error::other(e.to_string()))))?;
        let console_err = console.try_clone().map_err(|e| cleanup(jailer_err(e)))?;
        cmd.stdin(Stdio::null()).stdout(console).stderr(console_err);
        let mut child = process::spawn_detached(&mut cmd).map_err(|e| cleanup(jailer_err(e)))?;
        // The jailer writes Firecracker's pid, then (with its own PID namespace) exits.
        let deadline = Instant::now() + self.socket_timeout;
        let read_pid = || fs::read_to_string(jail.pid_file()).ok().and_then(|t| t.trim().parse::<u32>().ok());
        let pid = loop {
            if let Some(pid) = read_pid() {
                break pid;
            }
            let exited = child.try_wait().ok().flatten();
            // It may have written the file and exited since the read above.
            if let Some(pid) = exited.filter(|s| s.success()).and_then(|_| read_pid()) {
                break pid;
            }
            if let Some(status) = exited.filter(|s| !s.success()) {
                return Err(cleanup(VmmError::Exited {
                    bin: jailer.bin.clone(),
                    status: status.to_string(),
                    detail: banger_host::last_line_since(&config.console_log, console_offset),
                }));
            }
            if Instant::now() >= deadline || exited.is_some() {
                // SIGTERM: `sudo` passes it on to the jailer (SIGKILL it cannot), then SIGKILL.
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGTERM);
                if !matches!(child.try_wait(), Ok(Some(_))) {
                    std::thread::sleep(Duration::from_millis(200));
                    let _ = child.kill();
                }
                let _ = child.wait();
                return Err(cleanup(VmmError::Timeout {
                    what: format!("the jailer writing Firecracker's pid to {}", jail.pid_file().display()),
                    secs: self.socket_timeout.as_secs_f64().ceil() as u64,
                }));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        process::reap_in_background(child);
        let log_path = jail.host_path(&inside.log);
        let starting = Starting {
            pid,
            child: None,
            marker: PathBuf::from(&jail.id),
            bin: self.bin.clone(),
            socket: socket.to_path_buf(),
            console_log: config.console_log.clone(),
            console_offset,
            log_offset: file_len(&log_path),
            log_path,
            status: None,
            jail_dir: Some(dir.to_path_buf()),
            armed: true,
        };
        Ok((starting, inside))
    }

    fn wait_for_socket(&self, starting: &mut Starting) -> Result<(), VmmError> {
        let deadline = Instant::now() + self.socket_timeout;
        loop {
            if starting.exited().is_some() {
                return Err(VmmError::NotRunning { pid: starting.pid });
            }
            if UnixStream::connect(&starting.socket).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(VmmError::Timeout {
                    what: format!("the Firecracker API socket {} accepting connections", starting.socket.display()),
                    secs: self.socket_timeout.as_secs_f64().ceil() as u64,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn refused(request: &str, resp: &http::Response) -> VmmError {
    #[derive(serde::Deserialize)]
    struct Fault {
        fault_message: String,
    }
    let message = match serde_json::from_slice::<Fault>(&resp.body) {
        Ok(f) => f.fault_message,
        Err(_) => {
            let text = String::from_utf8_lossy(&resp.body).trim().to_string();
            if text.is_empty() { format!("HTTP {} {}", resp.status, resp.reason) } else { text }
        }
    };
    VmmError::Refused { backend: BACKEND, request: request.to_string(), message }
}

/// Firecracker's metrics file, opened only if it is a regular file: not followed through a link
/// and never waited on (a jailed Firecracker's user could put a link or a FIFO there).
fn open_metrics(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file =
        OpenOptions::new().read(true).custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK).open(path).ok()?;
    file.metadata().ok()?.is_file().then_some(file)
}

/// A jail that could not be removed entirely is worth a line in the daemon's log.
fn log_removal(result: Result<(), String>) {
    if let Err(e) = result {
        eprintln!("banger: {e}");
    }
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// A spawned Firecracker that has not finished starting. Dropping it (or [`Starting::fail`]) kills
/// the process and removes the socket (and the jail); [`Starting::finish`] hands the process to a
/// reaper thread.
struct Starting {
    /// The Firecracker process when it is our child (not jailed: a jailed one is the jailer's).
    child: Option<Child>,
    pid: u32,
    /// What marks it ([`process::is_alive`]): its socket, or its jail id.
    marker: PathBuf,
    bin: PathBuf,
    socket: PathBuf,
    console_log: PathBuf,
    console_offset: u64,
    log_path: PathBuf,
    log_offset: u64,
    /// How it exited, once it has.
    status: Option<String>,
    /// The jail to remove on failure.
    jail_dir: Option<PathBuf>,
    armed: bool,
}

impl Starting {
    /// How the process exited, if it has (a child is reaped).
    fn exited(&mut self) -> Option<String> {
        if self.status.is_none() {
            self.status = match self.child.as_mut() {
                Some(child) => child.try_wait().ok().flatten().map(|s| s.to_string()),
                None => (!process::is_alive(self.pid, &self.marker)).then(|| "it is gone".to_string()),
            };
        }
        self.status.clone()
    }

    /// Wait up to `grace` for the process to exit by itself.
    fn exited_within(&mut self, grace: Duration) -> Option<String> {
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What the process said last: its log file once the logger is set up, else its stdout/stderr.
    fn last_words(&self) -> Option<String> {
        banger_host::last_line_since(&self.log_path, self.log_offset)
            .or_else(|| banger_host::last_line_since(&self.console_log, self.console_offset))
    }

    /// Clean up after `err`: an exited process becomes [`VmmError::Exited`] (unless Firecracker
    /// refused a request, whose message is more useful), a live one is killed.
    fn fail(mut self, err: VmmError) -> VmmError {
        // A broken connection usually means the process is dying: give it a moment.
        let grace = match err {
            VmmError::Control { .. } | VmmError::Protocol(_) | VmmError::NotRunning { .. } => Duration::from_secs(1),
            _ => Duration::ZERO,
        };
        let status = self.exited_within(grace);
        let detail = self.last_words();
        self.kill_and_clean();
        match (status, err) {
            (_, err @ VmmError::Refused { .. }) => err,
            (Some(status), _) => VmmError::Exited { bin: self.bin.clone(), status, detail },
            (None, err) => err,
        }
    }

    fn kill_and_clean(&mut self) {
        self.armed = false;
        if self.status.is_none() {
            if process::is_alive(self.pid, &self.marker) {
                let _ = process::signal(self.pid, &self.marker, Signal::SIGKILL);
            }
            // SIGKILL leaves a zombie at once (is_alive ignores zombies); reap it.
            let gone = process::wait_exit(self.pid, &self.marker, Duration::from_secs(5));
            if let Some(mut child) = self.child.take() {
                if gone {
                    let _ = child.wait();
                } else {
                    process::reap_in_background(child);
                }
            }
        }
        let _ = fs::remove_file(&self.socket);
        if let Some(dir) = self.jail_dir.take() {
            log_removal(jail::remove(&dir));
        }
    }

    fn finish(mut self) -> u32 {
        self.armed = false;
        if let Some(child) = self.child.take() {
            process::reap_in_background(child);
        }
        self.pid
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if self.armed {
            self.kill_and_clean();
        }
    }
}

/// Boot `kernel` (and `initrd`) under Firecracker for up to `timeout` and watch its console
/// ([`crate::kvm::watch`]); its API socket, log and console live in `dir` (removed after); `dev` is
/// `/dev/kvm`. Nothing but Firecracker is needed.
pub fn probe_kvm(
    bin: &Path,
    kernel: &Path,
    initrd: Option<&Path>,
    dev: &Path,
    dir: &Path,
    timeout: Duration,
) -> crate::kvm::Verdict {
    use crate::kvm::{PROBE_INIT, Verdict};
    if let Err(v) = crate::kvm::preflight(dev, bin, "Firecracker", "install firecracker, or set firecracker_bin") {
        return v;
    }
    let config = VmConfig {
        name: "banger-kvm-probe".into(),
        kernel: kernel.to_path_buf(),
        initrd: initrd.map(Path::to_path_buf),
        cmdline: format!("rdinit={PROBE_INIT}"),
        disks: vec![],
        memory_mib: 256,
        vcpus: 1,
        nic: None,
        run_dir: dir.to_path_buf(),
        console_log: dir.join("console.log"),
        shares: vec![],
        jail_dir: None,
    };
    let verdict = match Firecracker::new(bin.to_path_buf()).start(&config) {
        Err(e) => Verdict::Broken { evidence: format!("Firecracker could not start a guest: {e}") },
        Ok(instance) => {
            let (pid, socket) = (instance.pid, instance.control_socket.clone());
            let verdict = crate::kvm::watch(
                &config.console_log,
                || (!process::is_alive(pid, &socket)).then(|| "it is gone".to_string()),
                timeout,
            );
            if process::signal(pid, &socket, Signal::SIGKILL).is_ok() {
                process::wait_exit(pid, &socket, Duration::from_secs(5));
            }
            // Firecracker's own account (KVM exits land in its log, not on the console).
            let log = fs::read_to_string(Firecracker::log_path(dir)).unwrap_or_default();
            // Its API server's chatter says nothing about the guest.
            let said = log.lines().rev().map(str::trim).find(|l| !l.is_empty() && !l.contains(":fc_api]"));
            match (verdict, said) {
                (Verdict::Broken { evidence }, Some(line)) => {
                    Verdict::Broken { evidence: format!("{evidence}; Firecracker's log: {line:?}") }
                }
                (v, _) => v,
            }
        }
    };
    let _ = fs::remove_dir_all(dir);
    verdict
}

impl Vmm for Firecracker {
    fn backend(&self) -> Backend {
        Backend::Firecracker
    }

    fn accel(&self) -> Accel {
        Accel::Kvm
    }

    fn start(&self, config: &VmConfig) -> Result<Instance, VmmError> {
        if !config.shares.is_empty() {
            return Err(VmmError::Protocol("Firecracker has no shared filesystem device for host folders".into()));
        }
        let spawn_err = |source| VmmError::Spawn { bin: self.bin.clone(), source };
        let jail = match (&self.jailer, &config.jail_dir) {
            (None, _) => None,
            (Some(_), Some(dir)) => Some(jail::Jail::new(dir, &self.bin).map_err(spawn_err)?),
            (Some(j), None) => {
                return Err(VmmError::Spawn {
                    bin: j.bin.clone(),
                    source: io::Error::new(io::ErrorKind::InvalidInput, "no jail directory for this VM"),
                });
            }
        };
        let socket = match &jail {
            Some(j) => config.run_dir.join(j.link_name()),
            None => Self::api_socket(&config.run_dir),
        };
        let running = |j: &jail::Jail| self.jailer.as_ref().and_then(|jl| jl.processes(&j.id).first().copied());
        if let Some(pid) = jail.as_ref().and_then(running) {
            return Err(spawn_err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("a jailed Firecracker for this VM is still running (pid {pid})"),
            )));
        }
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(spawn_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("API socket path {} is longer than {MAX_SOCKET_PATH} bytes", socket.display()),
            )));
        }
        fs::create_dir_all(&config.run_dir).map_err(|e| spawn_err(with_path(e, "create", &config.run_dir)))?;
        match fs::symlink_metadata(&socket) {
            Ok(_) => {
                if UnixStream::connect(&socket).is_ok() {
                    return Err(spawn_err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("{} is in use: a Firecracker for this VM is still running", socket.display()),
                    )));
                }
                fs::remove_file(&socket).map_err(|e| spawn_err(with_path(e, "remove stale socket", &socket)))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(spawn_err(with_path(e, "inspect", &socket))),
        }
        if let Some(parent) = config.console_log.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| spawn_err(with_path(e, "create", parent)))?;
        }
        let console = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.console_log)
            .map_err(|e| spawn_err(with_path(e, "open", &config.console_log)))?;
        let console_offset = file_len(&config.console_log);
        let (mut starting, inside) = match (&self.jailer, &jail) {
            (Some(jailer), Some(jail)) => self.spawn_jailed(jailer, jail, config, &socket, console, console_offset)?,
            _ => self.spawn(config, &socket, console, console_offset)?,
        };
        if let Err(e) = self.wait_for_socket(&mut starting) {
            return Err(match starting.fail(e) {
                // The jailer could not exec it: say why when it is the usual reason.
                VmmError::Exited { bin, status, detail }
                    if jail.is_some() && jail::is_static(&self.bin) == Some(false) =>
                {
                    let why = jail::dynamic_under_jailer(&self.bin);
                    VmmError::Exited {
                        bin,
                        status,
                        detail: Some(detail.map(|d| format!("{d} ({why})")).unwrap_or(why)),
                    }
                }
                e => e,
            });
        }
        if let Err(e) = self.configure(&inside.config, &socket, &inside.log, &inside.metrics) {
            return Err(starting.fail(e));
        }
        let pid = starting.finish();
        Ok(Instance { backend: Backend::Firecracker, accel: Accel::Kvm, pid, control_socket: socket })
    }

    fn runs_as(&self) -> Option<u32> {
        self.jailer.as_ref().filter(|j| j.other_user()).map(|j| j.uid)
    }

    fn request_shutdown(&self, instance: &Instance) -> Result<(), VmmError> {
        if !process::is_alive(instance.pid, &instance.marker()) {
            return Err(VmmError::NotRunning { pid: instance.pid });
        }
        self.put(&instance.control_socket, &InstanceActionInfo { action_type: ActionType::SendCtrlAltDel })
    }

    /// Flush Firecracker's metrics (so they are current) and sum its metrics file.
    fn io_totals(&self, instance: &Instance) -> Option<metrics::Totals> {
        if !process::is_alive(instance.pid, &instance.marker()) {
            return None;
        }
        // Beside the socket: in the run dir, or where our own link points (the chroot), never
        // through a link the jailed Firecracker's user could have put there.
        let dir = match fs::read_link(&instance.control_socket) {
            Ok(target) => target.parent()?.to_path_buf(),
            Err(_) => instance.control_socket.parent()?.to_path_buf(),
        };
        let file = dir.join(METRICS_FILE);
        // A failed flush still leaves the periodic (60 s) ones to read.
        let _ = self.put(&instance.control_socket, &InstanceActionInfo { action_type: ActionType::FlushMetrics });
        let opened = open_metrics(&file)?;
        static READER: std::sync::LazyLock<metrics::Reader> = std::sync::LazyLock::new(Default::default);
        READER.totals(&file, instance.pid, opened).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_args_put_the_console_first() {
        assert_eq!(Firecracker::boot_args(""), "console=ttyS0 reboot=k panic=1");
        assert_eq!(Firecracker::boot_args("root=/dev/vda ro "), "console=ttyS0 reboot=k panic=1 root=/dev/vda ro");
    }

    #[test]
    fn request_bodies_serialize_like_the_api_expects() {
        let body = |r: &dyn erased::Body| r.json();
        assert_eq!(
            body(&InstanceActionInfo { action_type: ActionType::SendCtrlAltDel }),
            r#"{"action_type":"SendCtrlAltDel"}"#
        );
        assert_eq!(
            body(&Logger {
                log_path: Some("/r/firecracker.log".into()),
                level: Some(LogLevel::Info),
                ..Default::default()
            }),
            r#"{"log_path":"/r/firecracker.log","level":"Info"}"#
        );
        let drive = Drive {
            drive_id: "a b".into(),
            path_on_host: Some("/d".into()),
            is_root_device: false,
            is_read_only: Some(true),
            partuuid: None,
            cache_type: None,
            io_engine: None,
        };
        assert_eq!(drive.path(), "/drives/a%20b");
        assert_eq!(
            body(&drive),
            r#"{"drive_id":"a b","path_on_host":"/d","is_root_device":false,"is_read_only":true}"#
        );
        assert_eq!(serde_json::to_string(&machine_config::HugePages::TwoMiB).unwrap(), r#""2M""#);
    }

    mod erased {
        pub trait Body {
            fn json(&self) -> String;
        }
        impl<T: serde::Serialize> Body for T {
            fn json(&self) -> String {
                serde_json::to_string(self).unwrap()
            }
        }
    }

    #[test]
    fn refusals_carry_the_fault_message_verbatim() {
        let resp = http::Response {
            status: 400,
            reason: "Bad Request".into(),
            body: br#"{"fault_message":"  Invalid: \"x\"\n"}"#.to_vec(),
        };
        match refused("PUT /boot-source", &resp) {
            VmmError::Refused { backend, request, message } => {
                assert_eq!(
                    (backend, request.as_str(), message.as_str()),
                    ("firecracker", "PUT /boot-source", "  Invalid: \"x\"\n")
                );
            }
            e => panic!("{e:?}"),
        }
        let resp = http::Response { status: 500, reason: "Internal Server Error".into(), body: vec![] };
        assert!(
            matches!(refused("GET /", &resp), VmmError::Refused { message, .. } if message == "HTTP 500 Internal Server Error")
        );
    }
}
