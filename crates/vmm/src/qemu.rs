//! QEMU driver: `qemu-system-x86_64 -M microvm` with virtio-mmio block and net devices (found by
//! the guest through ACPI), KVM when it really works and TCG otherwise, and a QMP socket for
//! graceful power-down, status and quit.
//!
//! Whether KVM works is decided by [`probe_kvm`], which boots the guest kernel under KVM and
//! waits for it to reach userspace: `/dev/kvm` existing proves nothing (nested schemes exist that
//! open fine and then fail on the first unusual instruction).

use crate::kvm::Verdict;
use crate::process::{self, is_alive};
use crate::{Accel, Backend, Instance, VmConfig, Vmm, VmmError};
use serde_json::{Value, json};
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long QEMU may take to open its QMP socket.
const START_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Qemu {
    bin: PathBuf,
    accel: Accel,
}

impl Qemu {
    pub fn new(bin: PathBuf, accel: Accel) -> Qemu {
        Qemu { bin, accel }
    }

    /// `qemu-system-x86_64 --version`, first line.
    pub fn version(bin: &Path) -> Option<String> {
        let out = Command::new(bin).arg("--version").output().ok()?;
        String::from_utf8_lossy(&out.stdout).lines().next().map(str::to_string)
    }

    /// The full argument vector for `config` (no shell is ever involved).
    pub fn args(&self, config: &VmConfig, qmp: &Path) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |s: &str| a.push(s.into());
        push("-name");
        push(&format!("{},process=banger-{}", config.name, config.name));
        // Host folders (vhost-user-fs) need the guest's memory shared with virtiofsd, and the
        // modern virtio-mmio transport (virtiofsd refuses legacy devices).
        let shared = !config.shares.is_empty();
        push("-M");
        push(if shared { "microvm,rtc=on,memory-backend=mem" } else { "microvm,rtc=on" });
        if shared {
            push("-object");
            push(&format!("memory-backend-memfd,id=mem,size={}M,share=on", config.memory_mib));
            push("-global");
            push("virtio-mmio.force-legacy=false");
        }
        push("-accel");
        push(self.accel.as_str());
        push("-cpu");
        push(match self.accel {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        });
        push("-m");
        push(&config.memory_mib.to_string());
        push("-smp");
        push(&config.vcpus.to_string());
        for s in ["-nodefaults", "-no-user-config", "-nographic", "-display", "none", "-no-reboot"] {
            push(s);
        }
        push("-chardev");
        a.push(opt_path("file,id=console,append=on,path=", &config.console_log));
        let mut push = |s: &str| a.push(s.into());
        push("-serial");
        push("chardev:console");
        push("-qmp");
        let mut qmp_opt = opt_path("unix:", qmp);
        qmp_opt.push(",server=on,wait=off");
        a.push(qmp_opt);
        a.push("-kernel".into());
        a.push(config.kernel.clone().into());
        if let Some(initrd) = &config.initrd {
            a.push("-initrd".into());
            a.push(initrd.clone().into());
        }
        a.push("-append".into());
        a.push(self.cmdline(config).into());
        for disk in &config.disks {
            a.push("-drive".into());
            let mut drive =
                opt_path(&format!("id={},format=raw,if=none,cache=none,aio=threads,file=", disk.id), &disk.path);
            if disk.read_only {
                drive.push(",readonly=on");
            }
            a.push(drive);
            a.push("-device".into());
            a.push(format!("virtio-blk-device,drive={}", disk.id).into());
        }
        for (i, share) in config.shares.iter().enumerate() {
            a.push("-chardev".into());
            a.push(opt_path(&format!("socket,id=fs{i},path="), &share.socket));
            a.push("-device".into());
            a.push(format!("vhost-user-fs-device,chardev=fs{i},tag={}", share.tag).into());
        }
        if let Some(nic) = &config.nic {
            a.push("-netdev".into());
            a.push(format!("tap,id=net0,ifname={},script=no,downscript=no", nic.tap).into());
            a.push("-device".into());
            a.push(format!("virtio-net-device,netdev=net0,mac={}", nic.mac).into());
        }
        a
    }

    /// Kernel arguments: console on the first serial port, panic → exit, plus the caller's.
    /// Under TCG the TSC calibration against the PIT can hang with several vCPUs; give the
    /// kernel the host's TSC rate instead.
    pub fn cmdline(&self, config: &VmConfig) -> String {
        let mut s = String::from("console=ttyS0 panic=-1");
        if self.accel == Accel::Tcg
            && let Some(khz) = host_tsc_khz()
        {
            s.push_str(&format!(" tsc_early_khz={khz}"));
        }
        if !config.cmdline.is_empty() {
            s.push(' ');
            s.push_str(&config.cmdline);
        }
        s
    }
}

/// QEMU option values are comma-separated; a comma in a path is written twice.
fn opt_path(prefix: &str, path: &Path) -> OsString {
    let mut s = OsString::from(prefix);
    s.push(path.to_string_lossy().replace(',', ",,"));
    s
}

/// The host's TSC frequency in kHz, from /proc/cpuinfo's "cpu MHz" of the first CPU.
fn host_tsc_khz() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("cpu MHz"))?;
    let mhz: f64 = line.split(':').nth(1)?.trim().parse().ok()?;
    Some((mhz * 1000.0) as u64)
}

impl Vmm for Qemu {
    fn backend(&self) -> Backend {
        Backend::Qemu
    }

    fn accel(&self) -> Accel {
        self.accel
    }

    fn start(&self, config: &VmConfig) -> Result<Instance, VmmError> {
        std::fs::create_dir_all(&config.run_dir)
            .map_err(|source| VmmError::Control { socket: config.run_dir.clone(), source })?;
        let qmp = config.run_dir.join("qmp.sock");
        let _ = std::fs::remove_file(&qmp);
        let log_path = config.run_dir.join("qemu.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| VmmError::Spawn { bin: self.bin.clone(), source })?;
        let log_len = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log2 = log.try_clone().map_err(|source| VmmError::Spawn { bin: self.bin.clone(), source })?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(self.args(config, &qmp)).stdin(Stdio::null()).stdout(log).stderr(log2);
        let mut child =
            process::spawn_detached(&mut cmd).map_err(|source| VmmError::Spawn { bin: self.bin.clone(), source })?;
        let pid = child.id();
        let instance = Instance { backend: Backend::Qemu, accel: self.accel, pid, control_socket: qmp.clone() };
        let deadline = Instant::now() + START_TIMEOUT;
        let ready = loop {
            if let Ok(Some(status)) = child.try_wait() {
                let detail = banger_host::last_line_since(&log_path, log_len);
                let _ = std::fs::remove_file(&qmp);
                return Err(VmmError::Exited { bin: self.bin.clone(), status: status.to_string(), detail });
            }
            if let Ok(mut q) = Qmp::connect(&qmp) {
                break q.execute("query-status", None);
            }
            if Instant::now() >= deadline {
                break Err(VmmError::Timeout { what: "QEMU's QMP socket".into(), secs: START_TIMEOUT.as_secs() });
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        match ready {
            Ok(status) if status["status"] == "running" => {
                process::reap_in_background(child);
                Ok(instance)
            }
            other => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_file(&qmp);
                Err(other.err().unwrap_or_else(|| VmmError::Protocol("QEMU did not start the guest".into())))
            }
        }
    }

    fn request_shutdown(&self, instance: &Instance) -> Result<(), VmmError> {
        if !is_alive(instance.pid, &instance.control_socket) {
            return Err(VmmError::NotRunning { pid: instance.pid });
        }
        Qmp::connect(&instance.control_socket)?.execute("system_powerdown", None).map(|_| ())
    }
}

/// A QMP connection: greeting read, capabilities negotiated.
pub struct Qmp {
    socket: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    pub fn connect(socket: &Path) -> Result<Qmp, VmmError> {
        let err = |source| VmmError::Control { socket: socket.into(), source };
        let stream = UnixStream::connect(socket).map_err(err)?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(err)?;
        let writer = stream.try_clone().map_err(err)?;
        let mut q = Qmp { socket: socket.into(), reader: BufReader::new(stream), writer };
        let greeting = q.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(VmmError::Protocol(format!("{} is not a QMP socket", socket.display())));
        }
        q.execute("qmp_capabilities", None)?;
        Ok(q)
    }

    /// Run `command`; returns its `return` value or the QMP error as [`VmmError::Refused`].
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, VmmError> {
        let mut msg = json!({ "execute": command });
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut line = msg.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(|source| VmmError::Control { socket: self.socket.clone(), source })?;
        loop {
            let reply = self.read_message()?;
            if reply.get("event").is_some() {
                continue;
            }
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                return Err(VmmError::Refused {
                    backend: "qemu",
                    request: command.into(),
                    message: err["desc"].as_str().unwrap_or("unknown error").into(),
                });
            }
        }
    }

    fn read_message(&mut self) -> Result<Value, VmmError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|source| VmmError::Control { socket: self.socket.clone(), source })?;
        if n == 0 {
            return Err(VmmError::Protocol(format!("QMP socket {} closed", self.socket.display())));
        }
        serde_json::from_str(&line).map_err(|e| VmmError::Protocol(format!("bad QMP message: {e}")))
    }
}

/// Boot `kernel` (and `initrd`) under QEMU with KVM for up to `timeout` and watch its console
/// ([`crate::kvm::watch`]); `dev` is `/dev/kvm`.
pub fn probe_kvm(bin: &Path, kernel: &Path, initrd: Option<&Path>, dev: &Path, timeout: Duration) -> Verdict {
    if let Err(v) = crate::kvm::preflight(dev, bin, "QEMU", "install qemu-system-x86, or set qemu_bin") {
        return v;
    }
    let dir = match tempdir_for_probe() {
        Ok(d) => d,
        Err(e) => {
            return Verdict::Unprobed { why: format!("no directory for the probe: {e}"), fix: "check TMPDIR".into() };
        }
    };
    let console = dir.join("console.log");
    let errors = dir.join("stderr.log");
    let mut cmd = Command::new(bin);
    cmd.args(["-M", "microvm", "-accel", "kvm", "-cpu", "host", "-m", "256", "-smp", "1"])
        .args(["-nodefaults", "-no-user-config", "-nographic", "-display", "none", "-no-reboot"])
        .arg("-serial")
        .arg(opt_path("file:", &console))
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", &format!("console=ttyS0 panic=-1 rdinit={}", crate::kvm::PROBE_INIT)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errors).map(Stdio::from).unwrap_or_else(|_| Stdio::null()));
    if let Some(initrd) = initrd {
        cmd.arg("-initrd").arg(initrd);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Verdict::Unprobed {
                why: format!("cannot run {}: {e}", bin.display()),
                fix: "check qemu_bin".into(),
            };
        }
    };
    let verdict = crate::kvm::watch(
        &console,
        || match child.try_wait() {
            Ok(Some(status)) => {
                let said = std::fs::read_to_string(&errors).unwrap_or_default();
                Some(match said.trim().lines().last() {
                    Some(line) => format!("{status}: {line}"),
                    None => status.to_string(),
                })
            }
            _ => None,
        },
        timeout,
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    verdict
}

fn tempdir_for_probe() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("banger-kvm-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Disk, Nic};

    fn config() -> VmConfig {
        VmConfig {
            name: "calm-otter".into(),
            kernel: "/rt/vmlinux".into(),
            initrd: Some("/rt/initrd.img".into()),
            cmdline: "ip=172.30.0.2::172.30.0.1:255.255.255.252:calm-otter:eth0:off".into(),
            disks: vec![
                Disk { id: "base".into(), path: "/rt/rootfs.ext4".into(), read_only: true },
                Disk { id: "overlay".into(), path: "/s/vms/calm-otter/overlay,1.img".into(), read_only: false },
            ],
            memory_mib: 1024,
            vcpus: 2,
            nic: Some(Nic { tap: "bgr0".into(), mac: "02:42:ac:1e:00:02".into() }),
            run_dir: "/run/b/calm-otter".into(),
            console_log: "/s/vms/calm-otter/console.log".into(),
            shares: vec![],
            jail_dir: None,
        }
    }

    #[test]
    fn host_folders_share_the_guest_s_memory_and_get_a_vhost_user_device_each() {
        let q = Qemu::new("qemu-system-x86_64".into(), Accel::Tcg);
        let plain: Vec<String> =
            q.args(&config(), Path::new("/q")).into_iter().map(|s| s.into_string().unwrap()).collect();
        assert_eq!(after(&plain, "-M"), ["microvm,rtc=on"], "nothing changes without folders");
        assert!(after(&plain, "-object").is_empty() && after(&plain, "-global").is_empty());
        let shares = vec![
            crate::Share { tag: "banger0".into(), socket: "/run/b/calm-otter/fs0.sock".into() },
            crate::Share { tag: "banger1".into(), socket: "/run/b/calm-otter/fs1.sock".into() },
        ];
        let a: Vec<String> = q
            .args(&VmConfig { shares, ..config() }, Path::new("/q"))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(after(&a, "-M"), ["microvm,rtc=on,memory-backend=mem"]);
        assert_eq!(after(&a, "-object"), ["memory-backend-memfd,id=mem,size=1024M,share=on"], "the size is -m's");
        assert_eq!(after(&a, "-global"), ["virtio-mmio.force-legacy=false"]);
        let chardevs = after(&a, "-chardev");
        assert!(chardevs.contains(&"socket,id=fs0,path=/run/b/calm-otter/fs0.sock"), "{chardevs:?}");
        assert!(chardevs.contains(&"socket,id=fs1,path=/run/b/calm-otter/fs1.sock"), "{chardevs:?}");
        let devices = after(&a, "-device");
        assert!(devices.contains(&"vhost-user-fs-device,chardev=fs0,tag=banger0"), "{devices:?}");
        assert!(devices.contains(&"vhost-user-fs-device,chardev=fs1,tag=banger1"), "{devices:?}");
    }

    fn args(accel: Accel) -> Vec<String> {
        let q = Qemu::new("qemu-system-x86_64".into(), accel);
        q.args(&config(), Path::new("/run/b/calm-otter/qmp.sock"))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    fn after<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2).filter(|w| w[0] == flag).map(|w| w[1].as_str()).collect()
    }

    #[test]
    fn command_line_has_disks_in_order_readonly_base_and_the_tap() {
        let a = args(Accel::Tcg);
        assert_eq!(after(&a, "-accel"), ["tcg"]);
        assert_eq!(after(&a, "-cpu"), ["max"]);
        assert_eq!(after(&a, "-m"), ["1024"]);
        assert_eq!(after(&a, "-smp"), ["2"]);
        assert_eq!(
            after(&a, "-drive"),
            [
                "id=base,format=raw,if=none,cache=none,aio=threads,file=/rt/rootfs.ext4,readonly=on",
                "id=overlay,format=raw,if=none,cache=none,aio=threads,file=/s/vms/calm-otter/overlay,,1.img",
            ]
        );
        assert_eq!(after(&a, "-device")[..2], ["virtio-blk-device,drive=base", "virtio-blk-device,drive=overlay"]);
        assert_eq!(after(&a, "-netdev"), ["tap,id=net0,ifname=bgr0,script=no,downscript=no"]);
        assert_eq!(after(&a, "-qmp"), ["unix:/run/b/calm-otter/qmp.sock,server=on,wait=off"]);
        assert_eq!(after(&a, "-chardev"), ["file,id=console,append=on,path=/s/vms/calm-otter/console.log"]);
        let append = after(&a, "-append")[0];
        assert!(append.starts_with("console=ttyS0 panic=-1"), "{append}");
        assert!(append.contains(" tsc_early_khz="), "TCG needs the TSC rate: {append}");
        assert!(append.ends_with(":calm-otter:eth0:off"), "{append}");
        assert!(a.contains(&"-no-reboot".to_string()));
    }

    #[test]
    fn kvm_uses_the_host_cpu_and_no_tsc_hint() {
        let a = args(Accel::Kvm);
        assert_eq!(after(&a, "-accel"), ["kvm"]);
        assert_eq!(after(&a, "-cpu"), ["host"]);
        assert!(!after(&a, "-append")[0].contains("tsc_early_khz"));
    }
}
