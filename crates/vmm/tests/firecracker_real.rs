//! The Firecracker driver against a real `firecracker` binary.
//!
//! - `BANGER_TEST_FIRECRACKER=/path/to/firecracker` enables these tests (they print `SKIP …` and
//!   pass otherwise). They need `/dev/kvm`.
//! - `BANGER_TEST_VMLINUX=/path/to/vmlinux` (an uncompressed ELF kernel) enables the full
//!   configure-and-InstanceStart test; without it only a refused start is exercised.
//! - `BANGER_TEST_TAP=<tap device>` adds a network interface (the TAP must exist).
//!
//! Drives can be any files. Whether the guest then runs is not asserted: where KVM cannot run
//! guest code the microVM dies after InstanceStart was accepted.

use banger_vmm::firecracker::Firecracker;
use banger_vmm::{Disk, Instance, Nic, VmConfig, Vmm, VmmError, process};
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::time::Duration;
use std::{env, fs};

/// Straight to fd 2, past libtest's output capture, so a skip is visible in a plain `cargo test`.
fn skip(msg: String) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP {msg}");
}

fn real_bin(test: &str) -> Option<PathBuf> {
    let Some(bin) = env::var_os("BANGER_TEST_FIRECRACKER") else {
        skip(format!("{test}: no real Firecracker (set BANGER_TEST_FIRECRACKER=/path/to/firecracker)"));
        return None;
    };
    let bin = PathBuf::from(bin);
    assert!(bin.is_file(), "BANGER_TEST_FIRECRACKER={} is not a file", bin.display());
    Some(bin)
}

struct Fixture {
    _tmp: tempfile::TempDir,
    config: VmConfig,
}

impl Fixture {
    /// Without `kernel`, a file that is not a kernel image.
    fn new(kernel: Option<PathBuf>) -> Fixture {
        let tmp = tempfile::Builder::new().prefix("fcreal").tempdir_in("/tmp").unwrap();
        let kernel = kernel.unwrap_or_else(|| {
            let junk = tmp.path().join("not-a-kernel");
            fs::write(&junk, b"definitely not an ELF image").unwrap();
            junk
        });
        let base = tmp.path().join("base.img");
        let work = tmp.path().join("work.img");
        fs::write(&base, vec![0u8; 1 << 20]).unwrap();
        fs::File::create(&work).unwrap().set_len(8 << 20).unwrap();
        let config = VmConfig {
            name: "fc-real-test".into(),
            kernel,
            initrd: None,
            cmdline: "root=/dev/vda ro".into(),
            disks: vec![
                Disk { id: "base".into(), path: base, read_only: true },
                Disk { id: "work".into(), path: work, read_only: false },
            ],
            memory_mib: 128,
            vcpus: 1,
            nic: env::var("BANGER_TEST_TAP").ok().map(|tap| Nic { tap, mac: "02:fc:00:00:00:42".into() }),
            run_dir: tmp.path().join("run"),
            console_log: tmp.path().join("console.log"),
            shares: vec![],
            jail_dir: None,
        };
        Fixture { _tmp: tmp, config }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.config.run_dir.join("firecracker.log")).unwrap_or_default()
    }

    /// Firecracker logs to stdout (the console log) until `PUT /logger` takes effect, then to the file.
    fn all_output(&self) -> String {
        fs::read_to_string(&self.config.console_log).unwrap_or_default() + &self.log()
    }

    fn print_logs(&self) {
        println!("--- firecracker.log ---\n{}", self.log());
        println!(
            "--- console (first 40 lines) ---\n{}",
            fs::read_to_string(&self.config.console_log)
                .unwrap_or_default()
                .lines()
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    fn assert_nothing_running(&self) {
        let socket = self.config.run_dir.join("fc.sock");
        assert!(!socket.exists(), "API socket left behind");
        let marker = socket.as_os_str().as_encoded_bytes().to_vec();
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            if let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) {
                assert!(
                    !cmdline.windows(marker.len()).any(|w| w == marker) || !process::is_alive(pid, &socket),
                    "firecracker {pid} still running"
                );
            }
        }
    }
}

fn stop(instance: &Instance) {
    if process::is_alive(instance.pid, &instance.control_socket) {
        let _ = process::signal(instance.pid, &instance.control_socket, Signal::SIGKILL);
    }
    assert!(process::wait_exit(instance.pid, &instance.control_socket, Duration::from_secs(10)));
}

#[test]
fn real_firecracker_reports_its_version() {
    let Some(bin) = real_bin("real_firecracker_reports_its_version") else { return };
    let version = Firecracker::version(&bin).expect("firecracker --version");
    println!("version: {version}");
    assert!(version.starts_with("Firecracker v"), "{version}");
}

#[test]
fn real_firecracker_refusal_is_reported_verbatim_and_cleaned_up() {
    let Some(bin) = real_bin("real_firecracker_refusal_is_reported_verbatim_and_cleaned_up") else { return };
    let mut f = Fixture::new(None);
    f.config.vcpus = 0; // Out of range: Firecracker refuses PUT /machine-config.
    let err = Firecracker::new(bin).start(&f.config).unwrap_err();
    f.print_logs();
    match &err {
        VmmError::Refused { backend, request, message } => {
            assert_eq!((*backend, request.as_str()), ("firecracker", "PUT /machine-config"));
            assert!(!message.is_empty());
            assert!(
                f.log().contains(message.as_str()),
                "the fault_message {message:?} must appear verbatim in the log"
            );
        }
        e => panic!("expected Refused, got {e:?}"),
    }
    println!("error: {err}");
    f.assert_nothing_running();
}

#[test]
fn real_firecracker_refuses_a_non_elf_kernel_at_instance_start() {
    let Some(bin) = real_bin("real_firecracker_refuses_a_non_elf_kernel_at_instance_start") else { return };
    let f = Fixture::new(None);
    let err = Firecracker::new(bin).start(&f.config).unwrap_err();
    f.print_logs();
    match &err {
        VmmError::Refused { request, message, .. } => {
            assert_eq!(request, "PUT /actions", "every configuration request is accepted; InstanceStart is refused");
            assert!(
                f.log().contains(message.as_str()),
                "the fault_message {message:?} must appear verbatim in the log"
            );
        }
        e => panic!("expected Refused, got {e:?}"),
    }
    println!("error: {err}");
    for path in ["/logger", "/machine-config", "/boot-source", "/drives/base", "/drives/work", "/actions"] {
        let line = format!("The API server received a Put request on \"{path}\"");
        assert!(f.all_output().contains(&line), "{path} missing from Firecracker's output");
    }
    f.assert_nothing_running();
}

#[test]
fn real_firecracker_accepts_the_configuration_and_instance_start() {
    let test = "real_firecracker_accepts_the_configuration_and_instance_start";
    let Some(bin) = real_bin(test) else { return };
    let Some(kernel) = env::var_os("BANGER_TEST_VMLINUX").map(PathBuf::from) else {
        skip(format!("{test}: no guest kernel (set BANGER_TEST_VMLINUX=/path/to/ELF vmlinux)"));
        return;
    };
    assert!(kernel.is_file(), "BANGER_TEST_VMLINUX={} is not a file", kernel.display());
    let f = Fixture::new(Some(kernel));
    let fc = Firecracker::new(bin);
    let result = fc.start(&f.config);
    f.print_logs();
    let instance = match result {
        Ok(instance) => instance,
        // The only acceptable failure: Firecracker refused something, and we pass its words on.
        Err(VmmError::Refused { request, message, .. }) => {
            assert!(f.log().contains(&message), "fault_message {message:?} not verbatim");
            panic!("firecracker refused {request}: {message}");
        }
        Err(e) => panic!("start failed: {e}"),
    };
    println!("started: {instance:?}");
    let log = f.all_output();
    let puts = log.lines().filter(|l| l.contains("The API server received a Put request")).count();
    let accepted = log.lines().filter(|l| l.contains("Status code: 204")).count();
    // logger, metrics, machine-config, boot-source, InstanceStart + one per drive and NIC.
    let expected = 5 + f.config.disks.len() + usize::from(f.config.nic.is_some());
    assert_eq!((puts, accepted), (expected, expected), "each PUT (including InstanceStart) answered 204");
    // Status and a clean-shutdown request while the process lives (the guest may already be dead).
    if process::is_alive(instance.pid, &instance.control_socket) {
        match fc.describe_instance(&instance) {
            Ok(info) => println!("describe_instance: {info:?}"),
            Err(e) => println!("describe_instance: {e}"),
        }
        match fc.request_shutdown(&instance) {
            Ok(()) => println!("request_shutdown: accepted"),
            Err(e) => println!("request_shutdown: {e}"),
        }
    } else {
        println!("firecracker exited right after InstanceStart (guest could not run here)");
    }
    stop(&instance);
    let _ = fs::remove_file(&instance.control_socket);
}

#[test]
fn real_firecracker_exit_is_reported_with_its_last_line() {
    let Some(bin) = real_bin("real_firecracker_exit_is_reported_with_its_last_line") else { return };
    let mut f = Fixture::new(None);
    f.config.name = "bad_id".into(); // Firecracker instance ids allow only alphanumerics and '-'.
    let err = Firecracker::new(bin).start(&f.config).unwrap_err();
    f.print_logs();
    println!("error: {err}");
    match &err {
        VmmError::Exited { detail, .. } => {
            let detail = detail.as_deref().unwrap_or("");
            assert!(detail.contains("Invalid instance ID"), "{detail:?}");
        }
        e => panic!("expected Exited, got {e:?}"),
    }
    f.assert_nothing_running();
}

// ---------------------------------------------------------------------------------------------
// Under the real jailer (`BANGER_TEST_JAILER=/path/to/jailer`, the same version as
// `BANGER_TEST_FIRECRACKER`; needs root).

fn real_jailer(test: &str) -> Option<(PathBuf, banger_vmm::firecracker::jail::Jailer)> {
    let bin = real_bin(test)?;
    let Some(jailer) = env::var_os("BANGER_TEST_JAILER").map(PathBuf::from) else {
        skip(format!("{test}: no real jailer (set BANGER_TEST_JAILER=/path/to/jailer)"));
        return None;
    };
    assert!(jailer.is_file(), "BANGER_TEST_JAILER={} is not a file", jailer.display());
    if !nix::unistd::geteuid().is_root() {
        skip(format!("{test}: the jailer needs root (through sudo it would ask here)"));
        return None;
    }
    Some((bin, banger_vmm::firecracker::jail::Jailer::new(jailer)))
}

impl Fixture {
    /// The same VM, jailed in `<tmp>/jail`.
    fn jailed(kernel: Option<PathBuf>) -> Fixture {
        let mut f = Fixture::new(kernel);
        f.config.jail_dir = Some(f._tmp.path().join("jail"));
        f
    }

    fn jail_dir(&self) -> PathBuf {
        self.config.jail_dir.clone().unwrap()
    }

    /// Firecracker's log inside the jail (while it exists).
    fn jailed_log(&self) -> String {
        let mut out = String::new();
        for e in walk(&self.jail_dir()) {
            if e.file_name().is_some_and(|n| n == "firecracker.log") {
                out += &fs::read_to_string(&e).unwrap_or_default();
            }
        }
        out
    }

    fn assert_jail_gone(&self, id: &str) {
        assert!(!self.jail_dir().exists(), "jail {} left behind", self.jail_dir().display());
        let links = fs::read_dir(&self.config.run_dir).into_iter().flatten().flatten();
        let links: Vec<_> = links.filter(|e| e.file_name().to_string_lossy().starts_with("jail-")).collect();
        assert!(links.is_empty(), "socket link left behind: {links:?}");
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            assert!(!process::is_alive(pid, std::path::Path::new(id)), "jailed firecracker {pid} still running");
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn real_jailer_refusal_is_reported_and_leaves_no_jail() {
    let test = "real_jailer_refusal_is_reported_and_leaves_no_jail";
    let Some((bin, jailer)) = real_jailer(test) else { return };
    let mut f = Fixture::jailed(None);
    f.config.vcpus = 0;
    let id = banger_vmm::firecracker::jail::id(&f.jail_dir());
    let err = Firecracker::new(bin).with_jailer(Some(jailer)).start(&f.config).unwrap_err();
    println!("error: {err}");
    match &err {
        VmmError::Refused { request, .. } => assert_eq!(request, "PUT /machine-config"),
        e => panic!("expected Refused, got {e:?}"),
    }
    f.assert_jail_gone(&id);
}

#[test]
fn real_jailer_runs_firecracker_chrooted_in_its_own_pid_namespace_through_instance_start() {
    let test = "real_jailer_runs_firecracker_chrooted_in_its_own_pid_namespace_through_instance_start";
    let Some((bin, jailer)) = real_jailer(test) else { return };
    let Some(kernel) = env::var_os("BANGER_TEST_VMLINUX").map(PathBuf::from) else {
        skip(format!("{test}: no guest kernel (set BANGER_TEST_VMLINUX=/path/to/ELF vmlinux)"));
        return;
    };
    let f = Fixture::jailed(Some(kernel));
    // Root's Firecracker drops to another user (`jailer_uid`): the VM's files become that user's.
    let jailer = jailer.with_ids(65534, 65534);
    let fc = Firecracker::new(bin).with_jailer(Some(jailer.clone()));
    let result = fc.start(&f.config);
    println!("--- jailed firecracker.log ---\n{}", f.jailed_log());
    println!("--- console ---\n{}", fs::read_to_string(&f.config.console_log).unwrap_or_default());
    let instance = result.unwrap_or_else(|e| panic!("jailed start failed: {e}"));
    println!("started: {instance:?}");
    let id = instance.jail_id().expect("the instance knows its jail");
    assert_eq!(id, banger_vmm::firecracker::jail::id(&f.jail_dir()));
    let log = f.jailed_log();
    let accepted = log.lines().filter(|l| l.contains("Status code: 204")).count();
    let expected = 5 + f.config.disks.len() + usize::from(f.config.nic.is_some());
    assert_eq!(accepted, expected, "each PUT (including InstanceStart) answered 204 inside the jail");
    let chroot = f.jail_dir().join(fs::canonicalize(fc.bin()).unwrap().file_name().unwrap()).join(&id).join("root");
    // Checked at once: a guest that cannot run may end Firecracker soon after InstanceStart.
    assert!(process::is_alive(instance.pid, &instance.marker()), "the jailed Firecracker is gone right after start");
    let pid = instance.pid;
    // Chrooted (pivot_root in its own mount namespace: its `/` is our chroot), as our user,
    // alone in its PID namespace, every thread under a seccomp filter.
    use std::os::unix::fs::MetadataExt;
    let ino = |p: String| fs::metadata(&p).map(|m| (m.dev(), m.ino())).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(ino(format!("/proc/{pid}/root/api.sock")), ino(chroot.join("api.sock").display().to_string()));
    assert_eq!(ino(format!("/proc/{pid}/root/base.img")), ino(f.config.disks[0].path.display().to_string()));
    assert_ne!(fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap(), fs::read_link("/proc/self/ns/mnt").unwrap());
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| status.lines().find(|l| l.starts_with(k)).unwrap_or("").to_string();
    assert!(field("NSpid:").trim_end().ends_with("\t1"), "init of its own PID namespace: {}", field("NSpid:"));
    assert!(field("Uid:").contains(&format!("\t{}\t", jailer.uid)), "{}", field("Uid:"));
    let mut threads = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let status = fs::read_to_string(task.path().join("status")).unwrap_or_default();
        let get = |k: &str| status.lines().find(|l| l.starts_with(k)).unwrap_or("").trim().to_string();
        threads.push(format!("{} {}", get("Name:"), get("Seccomp:")));
    }
    // The API thread installs its filter itself, a moment after it starts serving.
    assert!(!threads.is_empty() && threads.iter().all(|t| t.ends_with("Seccomp:\t2")), "{threads:?}");
    println!("jailed: {} {}; threads: {threads:?}", field("NSpid:"), field("Uid:"));
    let info = fc.describe_instance(&instance).expect("GET / through the link into the jail");
    assert_eq!(info.id, id);
    println!("describe_instance: {info:?}");
    let marker = instance.marker();
    if process::is_alive(instance.pid, &marker) {
        let _ = process::signal(instance.pid, &marker, Signal::SIGKILL);
    }
    assert!(process::wait_exit(instance.pid, &marker, Duration::from_secs(10)));
    banger_vmm::firecracker::jail::remove(&f.jail_dir()).unwrap();
    let _ = fs::remove_file(&instance.control_socket);
    f.assert_jail_gone(&id);
}
