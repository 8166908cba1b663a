//! The Firecracker driver against a fake Firecracker, and its request bodies against the API spec.
//!
//! This test binary is its own fake (`banger_testkit::fake_firecracker`): run with `--api-sock
//! PATH` (as the driver runs `firecracker`) it is the fake Firecracker, with `--exec-file` the fake
//! jailer. Otherwise it runs the tests below (`banger_testkit::harness`: `harness = false`; name
//! filters and `--exact`, `--skip`, `--list` work).
//!
//! The spec is read from `<workspace>/../shared/reference/firecracker-api-v1.16.1.yaml`; tests that
//! need it print `SKIP …` when it is absent.

use banger_testkit::fake_firecracker as fake;
use banger_vmm::firecracker::{Firecracker, InstanceInfo};
use banger_vmm::{Disk, Instance, Nic, VmConfig, Vmm, VmmError, process};
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use std::{env, fs};

const TESTS: &[(&str, fn())] = &[
    (
        "start_sends_the_configuration_in_order_then_instance_start",
        start_sends_the_configuration_in_order_then_instance_start,
    ),
    ("request_bodies_validate_against_the_api_spec", request_bodies_validate_against_the_api_spec),
    ("spec_validator_rejects_bad_bodies", spec_validator_rejects_bad_bodies),
    ("minimal_vm_sends_no_initrd_drives_or_nic", minimal_vm_sends_no_initrd_drives_or_nic),
    (
        "refused_boot_source_surfaces_fault_message_and_leaves_nothing_running",
        refused_boot_source_surfaces_fault_message_and_leaves_nothing_running,
    ),
    ("refused_drive_names_the_drive_request", refused_drive_names_the_drive_request),
    ("refused_instance_start_leaves_nothing_running", refused_instance_start_leaves_nothing_running),
    (
        "exit_before_listening_reports_exited_with_last_output_line",
        exit_before_listening_reports_exited_with_last_output_line,
    ),
    (
        "exit_during_configuration_reports_exited_with_last_log_line",
        exit_during_configuration_reports_exited_with_last_log_line,
    ),
    ("api_socket_timeout_kills_the_process", api_socket_timeout_kills_the_process),
    ("stale_socket_is_replaced_and_a_live_one_refused", stale_socket_is_replaced_and_a_live_one_refused),
    ("request_shutdown_sends_ctrl_alt_del", request_shutdown_sends_ctrl_alt_del),
    ("version_and_spawn_errors", version_and_spawn_errors),
    ("kvm_probe_with_firecracker_alone", kvm_probe_with_firecracker_alone),
    ("io_totals_flush_and_sum_the_metrics", io_totals_flush_and_sum_the_metrics),
    ("jailed_start_builds_the_chroot_and_speaks_its_paths", jailed_start_builds_the_chroot_and_speaks_its_paths),
    ("jailer_failure_reports_its_words_and_leaves_nothing", jailer_failure_reports_its_words_and_leaves_nothing),
    ("jailed_refusal_leaves_no_jail", jailed_refusal_leaves_no_jail),
];

fn main() {
    let args: Vec<String> = env::args().skip(1).collect();
    if args.iter().any(|a| a == "--exec-file") {
        fake::jailer(&args);
    }
    if args.iter().any(|a| a == "--api-sock" || a == "--version") {
        fake::main(&args);
    }
    banger_testkit::harness::run(TESTS, &args);
}

// ---------------------------------------------------------------------------------------------
// Fixtures

struct Fixture {
    _tmp: tempfile::TempDir,
    config: VmConfig,
}

impl Fixture {
    /// A full VM config (initrd, two disks, a NIC) with the fake told `fake` (written to fake.json).
    fn new(fake: Value) -> Fixture {
        let tmp = tempfile::Builder::new().prefix("fc").tempdir_in("/tmp").unwrap();
        let run_dir = tmp.path().join("run");
        fs::create_dir_all(&run_dir).unwrap();
        fs::write(run_dir.join("fake.json"), fake.to_string()).unwrap();
        let config = VmConfig {
            name: "devbox-1".into(),
            kernel: tmp.path().join("vmlinux"),
            initrd: Some(tmp.path().join("initrd.img")),
            cmdline: "root=/dev/vda ro ip=10.0.0.2::10.0.0.1:255.255.255.252:devbox-1:eth0:off".into(),
            disks: vec![
                Disk { id: "base".into(), path: tmp.path().join("base.ext4"), read_only: true },
                Disk { id: "work".into(), path: tmp.path().join("work.ext4"), read_only: false },
            ],
            memory_mib: 1024,
            vcpus: 2,
            nic: Some(Nic { tap: "bgr-devbox-1".into(), mac: "02:fc:00:00:00:01".into() }),
            run_dir,
            console_log: tmp.path().join("logs").join("console.log"),
            shares: vec![],
            jail_dir: None,
        };
        Fixture { _tmp: tmp, config }
    }

    fn run_dir(&self) -> &Path {
        &self.config.run_dir
    }

    fn socket(&self) -> PathBuf {
        self.run_dir().join("fc.sock")
    }

    /// Every request the fake received: `{"method", "path", "content_type", "body"}`.
    fn requests(&self) -> Vec<Value> {
        let Ok(text) = fs::read_to_string(self.run_dir().join("requests.jsonl")) else { return vec![] };
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    fn method_paths(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| format!("{} {}", r["method"].as_str().unwrap(), r["path"].as_str().unwrap()))
            .collect()
    }

    fn fake_pid(&self) -> u32 {
        fs::read_to_string(self.run_dir().join("fake.pid")).unwrap().trim().parse().unwrap()
    }

    /// Asserts the fake is gone and its socket removed.
    fn assert_nothing_left(&self) {
        let pid = self.fake_pid();
        assert!(!process::is_alive(pid, &self.socket()), "fake firecracker {pid} still running");
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "fake firecracker {pid} not reaped");
        assert!(!self.socket().exists(), "API socket left behind");
    }
}

fn firecracker() -> Firecracker {
    Firecracker::new(env::current_exe().unwrap())
}

fn stop(instance: &Instance) {
    process::signal(instance.pid, &instance.control_socket, Signal::SIGKILL).unwrap();
    assert!(process::wait_exit(instance.pid, &instance.control_socket, Duration::from_secs(5)));
}

fn expected_requests(f: &Fixture) -> Vec<Value> {
    let c = &f.config;
    let tmp = c.run_dir.parent().unwrap();
    let put = |path: &str, body: Value| json!({"method": "PUT", "path": path, "content_type": "application/json", "body": body});
    vec![
        put("/logger", json!({"log_path": c.run_dir.join("firecracker.log"), "level": "Info"})),
        put("/metrics", json!({"metrics_path": c.run_dir.join("firecracker.metrics")})),
        put("/machine-config", json!({"vcpu_count": 2, "mem_size_mib": 1024, "smt": false})),
        put(
            "/boot-source",
            json!({
                "kernel_image_path": tmp.join("vmlinux"),
                "initrd_path": tmp.join("initrd.img"),
                "boot_args": "console=ttyS0 reboot=k panic=1 root=/dev/vda ro ip=10.0.0.2::10.0.0.1:255.255.255.252:devbox-1:eth0:off",
            }),
        ),
        put(
            "/drives/base",
            json!({"drive_id": "base", "path_on_host": tmp.join("base.ext4"), "is_root_device": false, "is_read_only": true}),
        ),
        put(
            "/drives/work",
            json!({"drive_id": "work", "path_on_host": tmp.join("work.ext4"), "is_root_device": false, "is_read_only": false}),
        ),
        put(
            "/network-interfaces/eth0",
            json!({"iface_id": "eth0", "host_dev_name": "bgr-devbox-1", "guest_mac": "02:fc:00:00:00:01"}),
        ),
        put("/actions", json!({"action_type": "InstanceStart"})),
    ]
}

// ---------------------------------------------------------------------------------------------
// Tests

fn start_sends_the_configuration_in_order_then_instance_start() {
    let f = Fixture::new(json!({}));
    let fc = firecracker();
    assert_eq!(fc.backend(), banger_vmm::Backend::Firecracker);
    assert_eq!(fc.accel(), banger_vmm::Accel::Kvm);
    let instance = fc.start(&f.config).unwrap();
    assert_eq!(instance.backend, banger_vmm::Backend::Firecracker);
    assert_eq!(instance.accel, banger_vmm::Accel::Kvm);
    assert_eq!(instance.control_socket, f.socket());
    assert_eq!(instance.pid, f.fake_pid());
    assert!(process::is_alive(instance.pid, &instance.control_socket));
    // Its own session, so it outlives the daemon.
    let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(instance.pid as i32))).unwrap();
    assert_eq!(sid.as_raw() as u32, instance.pid);

    let requests = f.requests();
    let expected = expected_requests(&f);
    for (i, (got, want)) in requests.iter().zip(&expected).enumerate() {
        assert_eq!(got, want, "request #{i}");
    }
    assert_eq!(requests.len(), expected.len(), "{:#?}", f.method_paths());

    // Command line, log file, console capture.
    let argv = fs::read_to_string(f.run_dir().join("fake.argv")).unwrap();
    assert_eq!(argv, format!("--api-sock\n{}\n--id\ndevbox-1\n", f.socket().display()));
    assert!(f.run_dir().join("firecracker.log").exists(), "log file must be created before PUT /logger");
    let console = fs::read_to_string(&f.config.console_log).unwrap();
    assert!(console.contains("fake firecracker devbox-1 listening"), "stdout goes to the console log: {console:?}");
    assert!(console.contains("fake guest: serial console line"), "{console:?}");
    assert!(console.contains("fake firecracker stderr line"), "stderr goes to the console log too: {console:?}");

    let info: InstanceInfo = fc.describe_instance(&instance).unwrap();
    assert_eq!((info.id.as_str(), info.state.as_str()), ("devbox-1", "Running"));
    stop(&instance);
}

fn request_bodies_validate_against_the_api_spec() {
    let Some(spec) = spec::Spec::load() else { return };
    let f = Fixture::new(json!({}));
    let fc = firecracker();
    let instance = fc.start(&f.config).unwrap();
    fc.request_shutdown(&instance).unwrap();
    stop(&instance);
    let requests = f.requests();
    assert_eq!(requests.len(), 9);
    for r in &requests {
        let (method, path) = (r["method"].as_str().unwrap(), r["path"].as_str().unwrap());
        let body = if r["body"].is_null() { None } else { Some(&r["body"]) };
        let errors = spec.validate_request(method, path, body);
        assert!(errors.is_empty(), "{method} {path} {body:?} does not match the spec:\n  {}", errors.join("\n  "));
    }
    println!("    validated {} request bodies against {}", requests.len(), spec.path.display());
}

fn spec_validator_rejects_bad_bodies() {
    let Some(spec) = spec::Spec::load() else { return };
    let check = |method: &str, path: &str, body: Value| spec.validate_request(method, path, Some(&body));
    assert!(check("PUT", "/machine-config", json!({"vcpu_count": 2, "mem_size_mib": 512, "smt": false})).is_empty());
    let cases = [
        ("PUT", "/machine-config", json!({"mem_size_mib": 512}), "required"),
        ("PUT", "/machine-config", json!({"vcpu_count": 0, "mem_size_mib": 512}), "minimum"),
        ("PUT", "/machine-config", json!({"vcpu_count": 33, "mem_size_mib": 512}), "maximum"),
        ("PUT", "/machine-config", json!({"vcpu_count": 1, "mem_size_mib": "512"}), "integer"),
        ("PUT", "/machine-config", json!({"vcpu_count": 1, "mem_size_mib": 512, "huge_pages": "1G"}), "enum"),
        ("PUT", "/drives/base", json!({"drive_id": "base", "is_root_device": false, "readonly": true}), "unknown"),
        ("PUT", "/drives/base", json!({"drive_id": "base", "is_root_device": "no"}), "boolean"),
        (
            "PUT",
            "/drives/base",
            json!({"drive_id": "base", "is_root_device": false, "rate_limiter": {"ops": {"size": 1}}}),
            "required",
        ),
        ("PUT", "/actions", json!({"action_type": "Reboot"}), "enum"),
        ("PUT", "/logger", json!({"level": "Loud"}), "enum"),
        ("PUT", "/boot-source", json!({"boot_args": "x"}), "required"),
        ("PUT", "/boot-source", json!(["not", "an", "object"]), "object"),
        ("PUT", "/no-such-resource", json!({}), "no operation"),
        ("POST", "/actions", json!({"action_type": "InstanceStart"}), "no operation"),
    ];
    for (method, path, body, needle) in cases {
        let errors = spec.validate_request(method, path, Some(&body));
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "{method} {path} {body}: expected a {needle:?} error, got {errors:?}"
        );
    }
    assert!(spec.validate_request("GET", "/", None).is_empty());
    assert!(!spec.validate_request("PUT", "/actions", None).is_empty(), "a required body must be present");
}

fn minimal_vm_sends_no_initrd_drives_or_nic() {
    let mut f = Fixture::new(json!({}));
    f.config.initrd = None;
    f.config.disks.clear();
    f.config.nic = None;
    f.config.cmdline = String::new();
    let instance = firecracker().start(&f.config).unwrap();
    stop(&instance);
    assert_eq!(
        f.method_paths(),
        ["PUT /logger", "PUT /metrics", "PUT /machine-config", "PUT /boot-source", "PUT /actions"]
    );
    let boot = &f.requests()[3]["body"];
    assert_eq!(boot, &json!({"kernel_image_path": f.config.kernel, "boot_args": "console=ttyS0 reboot=k panic=1"}));
}

const ODD_FAULT: &str = "Invalid kernel path: \"/nope/vmlinux\": No such file or directory (os error 2)\t[ünïcödé]";

fn refused_boot_source_surfaces_fault_message_and_leaves_nothing_running() {
    let f = Fixture::new(json!({"refuse": {"request": "PUT /boot-source", "fault_message": ODD_FAULT}}));
    let err = firecracker().start(&f.config).unwrap_err();
    match &err {
        VmmError::Refused { backend, request, message } => {
            assert_eq!(*backend, "firecracker");
            assert_eq!(request, "PUT /boot-source");
            assert_eq!(message, ODD_FAULT, "fault_message must come through verbatim");
        }
        e => panic!("expected Refused, got {e:?}"),
    }
    assert_eq!(err.to_string(), format!("firecracker refused PUT /boot-source: {ODD_FAULT}"));
    assert_eq!(
        f.method_paths(),
        ["PUT /logger", "PUT /metrics", "PUT /machine-config", "PUT /boot-source"],
        "stops at the refusal"
    );
    f.assert_nothing_left();
}

fn refused_drive_names_the_drive_request() {
    let f = Fixture::new(
        json!({"refuse": {"request": "PUT /drives/work", "fault_message": "Unable to add the block device"}}),
    );
    match firecracker().start(&f.config).unwrap_err() {
        VmmError::Refused { request, message, .. } => {
            assert_eq!((request.as_str(), message.as_str()), ("PUT /drives/work", "Unable to add the block device"));
        }
        e => panic!("expected Refused, got {e:?}"),
    }
    assert_eq!(f.method_paths().last().unwrap(), "PUT /drives/work");
    f.assert_nothing_left();
}

fn refused_instance_start_leaves_nothing_running() {
    let fault = "Cannot start microvm that was already started";
    let f = Fixture::new(json!({"refuse": {"request": "PUT /actions", "fault_message": fault}}));
    match firecracker().start(&f.config).unwrap_err() {
        VmmError::Refused { request, message, .. } => {
            assert_eq!((request.as_str(), message.as_str()), ("PUT /actions", fault))
        }
        e => panic!("expected Refused, got {e:?}"),
    }
    assert_eq!(f.method_paths().len(), 8);
    f.assert_nothing_left();
}

fn exit_before_listening_reports_exited_with_last_output_line() {
    let f = Fixture::new(json!({"exit_before_listen": "Error: Failed to open the API socket: permission denied"}));
    fs::create_dir_all(f.config.console_log.parent().unwrap()).unwrap();
    fs::write(&f.config.console_log, "output of an earlier run\n").unwrap();
    match firecracker().start(&f.config).unwrap_err() {
        VmmError::Exited { bin, status, detail } => {
            assert_eq!(bin, env::current_exe().unwrap());
            assert!(status.contains('1'), "{status}");
            assert_eq!(detail.as_deref(), Some("Error: Failed to open the API socket: permission denied"));
        }
        e => panic!("expected Exited, got {e:?}"),
    }
    assert!(f.requests().is_empty());
    f.assert_nothing_left();
}

fn exit_during_configuration_reports_exited_with_last_log_line() {
    let f = Fixture::new(json!({"exit_on": "PUT /machine-config"}));
    match firecracker().start(&f.config).unwrap_err() {
        VmmError::Exited { status, detail, .. } => {
            assert!(status.contains('3'), "{status}");
            // Once PUT /logger succeeded, Firecracker's last words are in its log file.
            assert_eq!(detail.as_deref(), Some("[fake] Firecracker exiting with error on PUT /machine-config"));
        }
        e => panic!("expected Exited, got {e:?}"),
    }
    assert_eq!(f.method_paths(), ["PUT /logger", "PUT /metrics", "PUT /machine-config"]);
    f.assert_nothing_left();
}

fn api_socket_timeout_kills_the_process() {
    let f = Fixture::new(json!({"never_listen": true}));
    let fc = firecracker().with_timeouts(Duration::from_millis(1500), Duration::from_secs(5));
    match fc.start(&f.config).unwrap_err() {
        VmmError::Timeout { what, secs } => {
            assert!(what.contains("fc.sock"), "{what}");
            assert_eq!(secs, 2);
        }
        e => panic!("expected Timeout, got {e:?}"),
    }
    f.assert_nothing_left();
}

fn stale_socket_is_replaced_and_a_live_one_refused() {
    let f = Fixture::new(json!({}));
    // A socket file nobody listens on (left by a crashed Firecracker).
    drop(std::os::unix::net::UnixListener::bind(f.socket()).unwrap());
    assert!(f.socket().exists());
    let fc = firecracker();
    let instance = fc.start(&f.config).unwrap();
    // A second start for the same VM must not steal the live socket.
    match fc.start(&f.config).unwrap_err() {
        VmmError::Spawn { source, .. } => assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse, "{source}"),
        e => panic!("expected Spawn(AddrInUse), got {e:?}"),
    }
    assert!(process::is_alive(instance.pid, &instance.control_socket), "the running VM is untouched");
    assert!(f.socket().exists());
    stop(&instance);
}

fn request_shutdown_sends_ctrl_alt_del() {
    let f = Fixture::new(json!({}));
    let fc = firecracker();
    let instance = fc.start(&f.config).unwrap();
    fc.request_shutdown(&instance).unwrap();
    let last = f.requests().pop().unwrap();
    assert_eq!(
        last,
        json!({"method": "PUT", "path": "/actions", "content_type": "application/json", "body": {"action_type": "SendCtrlAltDel"}})
    );
    stop(&instance);
    match fc.request_shutdown(&instance).unwrap_err() {
        VmmError::NotRunning { pid } => assert_eq!(pid, instance.pid),
        e => panic!("expected NotRunning, got {e:?}"),
    }
    assert!(matches!(fc.describe_instance(&instance), Err(VmmError::NotRunning { .. })));
}

fn version_and_spawn_errors() {
    assert_eq!(Firecracker::version(&env::current_exe().unwrap()).as_deref(), Some("Firecracker v1.16.1-fake"));
    assert_eq!(Firecracker::version(Path::new("/nonexistent/firecracker")), None);
    assert_eq!(Firecracker::version(Path::new("/bin/false")), None);
    let mut f = Fixture::new(json!({}));
    let run_dir = f.config.run_dir.clone();
    f.config.run_dir = run_dir.join("x".repeat(100));
    match firecracker().start(&f.config).unwrap_err() {
        VmmError::Spawn { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::InvalidInput);
            assert!(source.to_string().contains("longer than 107 bytes"), "{source}");
        }
        e => panic!("expected Spawn(InvalidInput), got {e:?}"),
    }
    assert!(!f.config.run_dir.exists(), "nothing spawned, nothing created");
    f.config.run_dir = run_dir;
    match Firecracker::new("/nonexistent/firecracker".into()).start(&f.config).unwrap_err() {
        VmmError::Spawn { bin, source } => {
            assert_eq!(bin, Path::new("/nonexistent/firecracker"));
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        e => panic!("expected Spawn, got {e:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The fake Firecracker

/// `vm stats` on a Firecracker VM: each call flushes the metrics (FlushMetrics) and sums every
/// flush in the file (each holds the counts since the previous one).
fn io_totals_flush_and_sum_the_metrics() {
    let f = Fixture::new(json!({}));
    let fc = firecracker();
    let instance = fc.start(&f.config).unwrap();
    let first = fc.io_totals(&instance).expect("totals while it runs");
    assert_eq!((first.flushes, first.block_read_bytes, first.net_rx_bytes), (1, 4096, 300));
    let second = fc.io_totals(&instance).unwrap();
    assert_eq!((second.flushes, second.block_write_bytes, second.drives["work"]), (2, 2048, (8192, 2048)));
    assert!(f.method_paths().iter().filter(|m| m.contains("PUT /actions")).count() >= 3, "{:#?}", f.method_paths());
    process::signal(instance.pid, &instance.control_socket, Signal::SIGKILL).unwrap();
    assert!(process::wait_exit(instance.pid, &instance.control_socket, Duration::from_secs(5)));
    assert_eq!(fc.io_totals(&instance), None, "nothing from a VMM that is gone");
}

/// A KVM probe needs nothing but Firecracker (no QEMU anywhere): a kernel that reaches its init
/// is "runs", a silent one "broken" with what was seen, no /dev/kvm "unprobed" with the fix. The
/// fake reads `fake.json` in the probe's directory.
fn kvm_probe_with_firecracker_alone() {
    use banger_vmm::kvm::Verdict;
    let tmp = tempfile::tempdir().unwrap();
    // Any file this user can open read-write stands in for /dev/kvm.
    let dev = tmp.path().join("kvm");
    fs::write(&dev, b"").unwrap();
    let probe = |name: &str, console: Option<&str>| {
        let dir = tmp.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        let cfg = match console {
            Some(c) => json!({ "console": c }),
            None => json!({}),
        };
        fs::write(dir.join("fake.json"), cfg.to_string()).unwrap();
        let v = banger_vmm::firecracker::probe_kvm(
            &env::current_exe().unwrap(),
            Path::new("/k/vmlinux"),
            None,
            &dev,
            &dir,
            Duration::from_secs(2),
        );
        assert!(!dir.exists(), "the probe's directory is removed");
        v
    };
    let banner = "Linux version 6.1.0 (fake)\nRun /banger-kvm-probe as init process";
    assert_eq!(probe("ok", Some(banner)), Verdict::Runs);
    let Verdict::Broken { evidence } = probe("silent", None) else { panic!("a silent kernel is broken") };
    assert!(
        evidence.contains("printed nothing") && evidence.contains("Firecracker's log: \"[fake] logger configured\""),
        "{evidence}"
    );
    // Firecracker's own output naming the probe (its log path, say) is not the guest reaching it.
    let Verdict::Broken { .. } = probe("vmm-noise", Some("PUT /logger log_path=/tmp/x/banger-kvm-probe.log")) else {
        panic!("no kernel banner, no verdict of runs")
    };
    let stuck = "Linux version 6.1.0 (fake)\nKVM internal error. Suberror: 1";
    let Verdict::Broken { evidence } = probe("stuck", Some(stuck)) else { panic!() };
    assert!(evidence.contains("KVM internal error"), "the last console line is the evidence: {evidence}");
    let missing = banger_vmm::firecracker::probe_kvm(
        &env::current_exe().unwrap(),
        Path::new("/k/vmlinux"),
        None,
        &tmp.path().join("no-kvm"),
        &tmp.path().join("nodev"),
        Duration::from_secs(2),
    );
    let Verdict::Unprobed { why, fix } = missing else { panic!() };
    assert!(why.contains("does not exist") && fix.contains("modprobe"), "{why}; {fix}");
    // No process of the probes is left.
    assert!(process::find_with_marker(tmp.path()).is_empty());
    println!("verdicts: runs, broken (silent), broken (stuck), unprobed");
}

// ---------------------------------------------------------------------------------------------
// Under the (fake) jailer

/// The fixture's VM, jailed in `<tmp>/jail` by the fake jailer (this binary); its kernel, initrd
/// and disks exist (they are hard-linked into the chroot).
fn jailed_fixture(fake: Value) -> (Fixture, banger_vmm::firecracker::jail::Jailer) {
    let mut f = Fixture::new(fake.clone());
    let tmp = f.config.run_dir.parent().unwrap().to_path_buf();
    fs::write(tmp.join("fake.json"), fake.to_string()).unwrap();
    for p in [&f.config.kernel, f.config.initrd.as_ref().unwrap()] {
        fs::write(p, b"image").unwrap();
    }
    for d in &f.config.disks {
        fs::write(&d.path, b"disk").unwrap();
    }
    f.config.jail_dir = Some(tmp.join("jail"));
    let jailer = banger_vmm::firecracker::jail::Jailer {
        bin: env::current_exe().unwrap(),
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        cgroup: Err("not on this test host".into()),
        privilege: banger_host::Privilege::Root,
    };
    (f, jailer)
}

fn jail_of(f: &Fixture) -> banger_vmm::firecracker::jail::Jail {
    banger_vmm::firecracker::jail::Jail::new(f.config.jail_dir.as_ref().unwrap(), &env::current_exe().unwrap()).unwrap()
}

fn assert_no_jail_left(f: &Fixture, jail: &banger_vmm::firecracker::jail::Jail) {
    assert!(!f.config.jail_dir.as_ref().unwrap().exists(), "the jail is removed");
    assert!(fs::symlink_metadata(f.run_dir().join(jail.link_name())).is_err(), "the socket link is removed");
    assert!(process::find_with_marker(Path::new(&jail.id)).is_empty(), "no jailed process is left");
}

/// The jailer gets the VM's id, the user's uid/gid, its own PID namespace and the in-chroot API
/// socket; the chroot holds hard links to the disks; Firecracker is configured with the paths it
/// sees inside; the daemon reaches it through `<run_dir>/jail-<id>.sock`; it is marked by its jail
/// id, which that link's name carries (so it is still found when the link is gone).
fn jailed_start_builds_the_chroot_and_speaks_its_paths() {
    let (f, jailer) = jailed_fixture(json!({}));
    let fc = firecracker().with_jailer(Some(jailer.clone()));
    let jail = jail_of(&f);
    let instance = fc.start(&f.config).unwrap();
    let dir = f.config.jail_dir.clone().unwrap();
    let argv = fs::read_to_string(dir.with_extension("argv")).unwrap();
    let exe = env::current_exe().unwrap();
    let expected = [
        "--id",
        &jail.id,
        "--exec-file",
        &exe.display().to_string(),
        "--uid",
        &jailer.uid.to_string(),
        "--gid",
        &jailer.gid.to_string(),
        "--chroot-base-dir",
        &dir.display().to_string(),
        "--new-pid-ns",
        "--",
        "--api-sock",
        "/api.sock",
    ]
    .map(|a| format!("{a}\n"))
    .concat();
    assert_eq!(argv, expected, "no cgroup arguments where the host does not delegate them");
    let link = f.run_dir().join(jail.link_name());
    assert_eq!(instance.control_socket, link);
    assert_eq!(fs::read_link(&link).unwrap(), jail.chroot.join("api.sock"));
    assert_eq!(instance.jail_id().as_deref(), Some(jail.id.as_str()));
    assert_eq!(instance.marker(), Path::new(&jail.id));
    assert_eq!(fs::read_to_string(jail.pid_file()).unwrap(), instance.pid.to_string());
    assert!(process::is_alive(instance.pid, &instance.marker()));
    // Its copy of the binary, hard links to the files, in-chroot paths in every request.
    assert!(jail.chroot.join(exe.file_name().unwrap()).is_file(), "the jailer's copy of firecracker");
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &Path| fs::metadata(p).unwrap().ino();
    assert_eq!(ino(&jail.chroot.join("base.img")), ino(&f.config.disks[0].path));
    assert_eq!(ino(&jail.chroot.join("work.img")), ino(&f.config.disks[1].path));
    let reqs: Vec<Value> = fs::read_to_string(jail.chroot.join("requests.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let body = |path: &str| reqs.iter().find(|r| r["path"] == path).unwrap()["body"].clone();
    assert_eq!(body("/logger")["log_path"], "/firecracker.log");
    assert_eq!(body("/metrics")["metrics_path"], "/firecracker.metrics");
    assert_eq!(
        (body("/boot-source")["kernel_image_path"].clone(), body("/boot-source")["initrd_path"].clone()),
        (json!("/vmlinux"), json!("/initrd"))
    );
    assert_eq!(body("/drives/base")["path_on_host"], "/base.img");
    assert_eq!(body("/drives/work")["path_on_host"], "/work.img");
    assert_eq!(reqs.last().unwrap()["body"]["action_type"], "InstanceStart");
    let rec = banger_vmm::firecracker::jail::Record::read(&dir).unwrap();
    assert_eq!((rec.chroot.clone(), rec.uid), (jail.chroot.clone(), jailer.uid));
    assert_eq!(rec.cgroup_note.as_deref(), Some("not on this test host"));
    // Still recognised as alive without its link (a run directory wiped while it runs), and a
    // second start of the same VM is refused.
    fs::rename(&link, link.with_extension("away")).unwrap();
    assert!(process::is_alive(instance.pid, &instance.marker()));
    let again = fc.start(&f.config).unwrap_err().to_string();
    assert!(again.contains("still running"), "{again}");
    fs::rename(link.with_extension("away"), &link).unwrap();
    // The API, metrics and shutdown work through the link.
    assert_eq!(fc.describe_instance(&instance).unwrap().id, jail.id);
    assert_eq!(fc.io_totals(&instance).expect("metrics from inside the chroot").flushes, 1);
    fc.request_shutdown(&instance).unwrap();
    process::signal(instance.pid, &instance.marker(), Signal::SIGKILL).unwrap();
    assert!(process::wait_exit(instance.pid, &instance.marker(), Duration::from_secs(5)));
    banger_vmm::firecracker::jail::remove(&dir).unwrap();
    let _ = fs::remove_file(&link);
    assert_no_jail_left(&f, &jail);
}

/// A jailer that fails (a cgroup it may not write, say) is reported with its own last words, and
/// the half-built jail is gone.
fn jailer_failure_reports_its_words_and_leaves_nothing() {
    let msg = "Jailer error: Failed to write to cgroup file memory.max";
    let (f, jailer) = jailed_fixture(json!({ "jailer_fail": msg }));
    let jail = jail_of(&f);
    let err = firecracker().with_jailer(Some(jailer.clone())).start(&f.config).unwrap_err();
    match &err {
        VmmError::Exited { bin, detail, .. } => {
            assert_eq!(bin, &jailer.bin, "the jailer is named");
            assert_eq!(detail.as_deref(), Some(msg), "{err}");
        }
        e => panic!("expected Exited, got {e:?}"),
    }
    assert_no_jail_left(&f, &jail);
}

/// Firecracker refusing a request inside the jail: its words, the process killed, the jail gone.
fn jailed_refusal_leaves_no_jail() {
    let (f, jailer) = jailed_fixture(
        json!({"refuse": {"request": "PUT /boot-source", "fault_message": "Kernel image path is invalid"}}),
    );
    let jail = jail_of(&f);
    let err = firecracker().with_jailer(Some(jailer)).start(&f.config).unwrap_err();
    assert!(matches!(&err, VmmError::Refused { message, .. } if message == "Kernel image path is invalid"), "{err:?}");
    assert_no_jail_left(&f, &jail);
}

// ---------------------------------------------------------------------------------------------
// A small validator for Swagger 2.0 `definitions` schemas

mod spec {
    use serde_json::{Map, Value};
    use std::path::PathBuf;
    use yaml_rust2::{Yaml, YamlLoader};

    pub struct Spec {
        pub path: PathBuf,
        root: Value,
    }

    fn to_json(y: &Yaml) -> Value {
        match y {
            Yaml::Real(s) => s.parse::<f64>().map(Value::from).unwrap_or_else(|_| Value::String(s.clone())),
            Yaml::Integer(i) => Value::from(*i),
            Yaml::String(s) => Value::String(s.clone()),
            Yaml::Boolean(b) => Value::Bool(*b),
            Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
            Yaml::Hash(h) => {
                let mut m = Map::new();
                for (k, v) in h {
                    let key = match k {
                        Yaml::String(s) | Yaml::Real(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        other => format!("{other:?}"),
                    };
                    m.insert(key, to_json(v));
                }
                Value::Object(m)
            }
            Yaml::Null | Yaml::BadValue | Yaml::Alias(_) => Value::Null,
        }
    }

    impl Spec {
        /// Path of the reference spec: `<workspace>/../shared/reference/firecracker-api-v1.16.1.yaml`.
        /// (`BANGER_FIRECRACKER_SPEC` overrides it.)
        pub fn location() -> PathBuf {
            if let Some(p) = std::env::var_os("BANGER_FIRECRACKER_SPEC") {
                return PathBuf::from(p);
            }
            let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            let workspace = manifest.parent().and_then(|p| p.parent()).expect("crates/vmm is two levels down");
            let workspace = workspace.canonicalize().unwrap_or_else(|_| workspace.to_path_buf());
            workspace.parent().unwrap_or(&workspace).join("shared/reference/firecracker-api-v1.16.1.yaml")
        }

        /// The parsed spec, or `None` after printing a loud SKIP line.
        pub fn load() -> Option<Spec> {
            let path = Self::location();
            let Ok(text) = std::fs::read_to_string(&path) else {
                println!("    SKIP firecracker API spec checks: {} not found", path.display());
                return None;
            };
            let docs = YamlLoader::load_from_str(&text).expect("spec is valid YAML");
            let root = to_json(&docs[0]);
            assert_eq!(root["swagger"], "2.0");
            assert_eq!(root["info"]["version"], "1.16.1");
            Some(Spec { path, root })
        }

        /// Errors for `method path` carrying `body`; empty when it matches the spec.
        pub fn validate_request(&self, method: &str, path: &str, body: Option<&Value>) -> Vec<String> {
            let Some((template, op)) = self.operation(method, path) else {
                return vec![format!("no operation {method} {path} in the spec")];
            };
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let body_param = params.iter().find(|p| p["in"] == "body");
            let mut errors = Vec::new();
            match (body_param, body) {
                (None, None) => {}
                (None, Some(_)) => errors.push(format!("{method} {template} takes no body")),
                (Some(p), None) => {
                    if p["required"] == true {
                        errors.push(format!("{method} {template}: required body missing"));
                    }
                }
                (Some(p), Some(body)) => self.validate(&p["schema"], body, "body", &mut errors),
            }
            // Path parameters must be the ids in the body (Firecracker refuses a mismatch).
            for (seg, tseg) in path.split('/').zip(template.split('/')) {
                if let Some(name) = tseg.strip_prefix('{').and_then(|s| s.strip_suffix('}'))
                    && let Some(id) = body.and_then(|b| b.get(name))
                    && id.as_str() != Some(seg)
                {
                    errors.push(format!("path parameter {name}={seg} but body has {id}"));
                }
            }
            errors
        }

        fn operation(&self, method: &str, path: &str) -> Option<(String, &Value)> {
            let paths = self.root["paths"].as_object()?;
            let segs: Vec<&str> = path.split('/').collect();
            paths.iter().find_map(|(template, item)| {
                let tsegs: Vec<&str> = template.split('/').collect();
                let matches = tsegs.len() == segs.len()
                    && tsegs.iter().zip(&segs).all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s);
                let op = item.get(method.to_ascii_lowercase())?;
                matches.then(|| (template.clone(), op))
            })
        }

        fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
            match schema["$ref"].as_str() {
                Some(r) => {
                    let name = r.strip_prefix("#/definitions/").expect("local definition ref");
                    let def = &self.root["definitions"][name];
                    assert!(!def.is_null(), "dangling $ref {r}");
                    self.resolve(def)
                }
                None => schema,
            }
        }

        /// Checks `type`, `required`, `properties` (unknown ones are errors unless
        /// `additionalProperties` allows them: Firecracker's types deny unknown fields), `enum`,
        /// `minimum`/`maximum` and array `items`.
        fn validate(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
            let schema = self.resolve(schema);
            if let Some(allowed) = schema["enum"].as_array()
                && !allowed.contains(value)
            {
                errors.push(format!("{at}: {value} not in enum {allowed:?}"));
            }
            let ty = schema["type"].as_str().or(if schema.get("properties").is_some() { Some("object") } else { None });
            match ty {
                Some("object") => {
                    let Some(obj) = value.as_object() else {
                        return errors.push(format!("{at}: expected an object, got {value}"));
                    };
                    for req in schema["required"].as_array().into_iter().flatten() {
                        let req = req.as_str().unwrap();
                        if !obj.contains_key(req) {
                            errors.push(format!("{at}: required property {req:?} missing"));
                        }
                    }
                    for (k, v) in obj {
                        let sub = format!("{at}.{k}");
                        match schema["properties"].get(k) {
                            Some(prop) => self.validate(prop, v, &sub, errors),
                            None => match &schema["additionalProperties"] {
                                Value::Bool(true) => {}
                                extra @ Value::Object(_) => self.validate(extra, v, &sub, errors),
                                _ => errors.push(format!("{sub}: unknown property")),
                            },
                        }
                    }
                }
                Some("string") if !value.is_string() => errors.push(format!("{at}: expected a string, got {value}")),
                Some("boolean") if !value.is_boolean() => errors.push(format!("{at}: expected a boolean, got {value}")),
                Some("integer") if !(value.is_i64() || value.is_u64()) => {
                    errors.push(format!("{at}: expected an integer, got {value}"))
                }
                Some("number") if !value.is_number() => errors.push(format!("{at}: expected a number, got {value}")),
                Some("array") => match value.as_array() {
                    Some(items) => {
                        for (i, item) in items.iter().enumerate() {
                            self.validate(&schema["items"], item, &format!("{at}[{i}]"), errors);
                        }
                    }
                    None => errors.push(format!("{at}: expected an array, got {value}")),
                },
                _ => {}
            }
            if let Some(n) = value.as_f64() {
                if let Some(min) = schema["minimum"].as_f64()
                    && n < min
                {
                    errors.push(format!("{at}: {n} below minimum {min}"));
                }
                if let Some(max) = schema["maximum"].as_f64()
                    && n > max
                {
                    errors.push(format!("{at}: {n} above maximum {max}"));
                }
            }
        }
    }
}
