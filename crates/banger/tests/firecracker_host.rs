//! A Firecracker host without QEMU: `vmm = "firecracker"` and `qemu_bin` pointing at nothing (the
//! daemon never looks for QEMU on `PATH` then; `PATH` itself still has the other tools it needs).
//! KVM is judged by Firecracker's own probe boot, `daemon status` reports that verdict and never
//! TCG, and a VM either runs or is refused with the probe's evidence or the fix.
//!
//! This test binary is also a fake `firecracker` and `jailer` (`banger_testkit::fake_firecracker`:
//! `harness = false`, its `main` checks how it was started). With `BANGER_FAKE_FC_QEMU` the fake
//! boots what it was configured with as a real guest under QEMU (TCG), so the daemon's whole
//! Firecracker path runs here, where KVM cannot run guests: the probe, a jailed start, SSH, exec,
//! metrics, a clean stop. The tests with a real Firecracker (`BANGER_TEST_FIRECRACKER`, and
//! `BANGER_TEST_JAILER`, built outside the repository) are skipped loudly without them. All need
//! root and a runtime bundle (`BANGER_TEST_RUNTIME`).

mod common;

use common::*;
use std::path::PathBuf;

const TESTS: &[(&str, fn())] = &[
    (
        "a_vm_runs_through_the_firecracker_path_with_a_fake_firecracker",
        a_vm_runs_through_the_firecracker_path_with_a_fake_firecracker,
    ),
    ("a_firecracker_host_needs_no_qemu", a_firecracker_host_needs_no_qemu),
    ("a_jailed_firecracker_leaves_nothing_behind", a_jailed_firecracker_leaves_nothing_behind),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--exec-file") {
        banger_testkit::fake_firecracker::jailer(&args);
    }
    if args.iter().any(|a| a == "--api-sock" || a == "--version") {
        banger_testkit::fake_firecracker::main(&args);
    }
    banger_testkit::harness::run(TESTS, &args);
}

fn a_firecracker_host_needs_no_qemu() {
    let Some(fc) = std::env::var_os("BANGER_TEST_FIRECRACKER").map(PathBuf::from) else {
        skip("firecracker_host", "no real Firecracker (set BANGER_TEST_FIRECRACKER=/path/to/firecracker)");
        return;
    };
    assert!(fc.is_file(), "BANGER_TEST_FIRECRACKER={} is not a file", fc.display());
    let Some(rt) = e2e_runtime("firecracker_host", None) else { return };
    let env = Env::new();
    env.write_config(&format!(
        "subnet = \"10.213.234.0/24\"\nvmm = \"firecracker\"\nfirecracker_bin = {:?}\n\
         qemu_bin = \"/nonexistent/qemu-system-x86_64\"\ndefault_memory = 512\n",
        fc.display().to_string()
    ));
    let _left = Leftovers { env: &env, rt: &rt, vms: &["fh"], images: &[] };
    let status = env.ok_rt(&rt, &["daemon", "status", "--reprobe", "--json"]).json();
    let kvm = status["kvm"].as_array().expect("kvm verdicts");
    assert_eq!(kvm.len(), 1, "only the VMM in use: {status}");
    assert_eq!(kvm[0]["vmm"], "firecracker", "{status}");
    let (verdict, detail) = (kvm[0]["verdict"].as_str().unwrap(), kvm[0]["detail"].as_str().unwrap().to_string());
    let text = env.ok_rt(&rt, &["daemon", "status"]).stdout();
    assert!(!text.contains("TCG") && text.contains("firecracker: KVM"), "{text}");

    let created = env.run_rt(&rt, &["vm", "create", "--name", "fh", "--disk-size", "128M"]);
    match verdict {
        "runs" => {
            assert_eq!(created.code(), 0, "{}", created.stderr());
            let shown = env.ok_rt(&rt, &["vm", "show", "fh", "--json"]).json();
            assert_eq!(shown["backend"], "firecracker", "{shown}");
            assert_eq!(env.ok_rt(&rt, &["vm", "exec", "fh", "--", "hostname"]).stdout(), "fh\n");
        }
        _ => {
            // Refused with Firecracker's own evidence, never because QEMU is missing.
            assert_eq!(created.code(), 4, "{}", created.stderr());
            let err = created.stderr();
            let evidence = detail.split_once('(').map(|(_, e)| e.trim_end_matches(')')).unwrap_or(&detail);
            assert!(err.to_lowercase().contains("firecracker") && err.contains(evidence), "{err}\nwanted: {evidence}");
            assert!(!err.contains("TCG") && !err.contains("not found"), "{err}");
        }
    }
    banger_testkit::report(
        "Firecracker hosts",
        "a host without QEMU (`qemu_bin` pointing at nothing), `vmm = \"firecracker\"`, a real Firecracker",
        &format!("KVM judged by Firecracker's own probe ({verdict}: {detail}); daemon status never mentions TCG"),
    );
}

/// A jailed Firecracker under the daemon: `daemon status` says VMs are jailed, a starting VM shows
/// its jail (chrooted, its own PID namespace), and when its Firecracker dies the VM fails and its
/// jail, socket link and process are gone; delete leaves nothing.
///
/// Needs a real jailer and a static Firecracker of the same version (`BANGER_TEST_JAILER`,
/// `BANGER_TEST_FIRECRACKER`), root and a runtime bundle. Where KVM cannot run guests (as on the
/// development machines) the probe is skipped with `BANGER_ACCEL=kvm`: Firecracker accepts the
/// configuration and InstanceStart in its jail, and the guest never answers; the test then ends
/// Firecracker itself (a crash).
fn a_jailed_firecracker_leaves_nothing_behind() {
    let test = "a_jailed_firecracker_leaves_nothing_behind";
    let (Some(fc), Some(jailer)) = (
        std::env::var_os("BANGER_TEST_FIRECRACKER").map(PathBuf::from),
        std::env::var_os("BANGER_TEST_JAILER").map(PathBuf::from),
    ) else {
        skip(test, "no real Firecracker and jailer (set BANGER_TEST_FIRECRACKER and BANGER_TEST_JAILER)");
        return;
    };
    if !is_root() {
        skip(test, "the jailer needs root (through sudo it would ask here)");
        return;
    }
    let Some(rt) = e2e_runtime(test, None) else { return };
    let env = Env::new();
    env.write_config(&format!(
        "subnet = \"10.213.235.0/24\"\nvmm = \"firecracker\"\nfirecracker_bin = {:?}\njailer_bin = {:?}\n\
         jailer_uid = 65534\njailer_gid = 65534\nqemu_bin = \"/nonexistent/qemu-system-x86_64\"\ndefault_memory = 256\n",
        fc.display().to_string(),
        jailer.display().to_string()
    ));
    let _left = Leftovers { env: &env, rt: &rt, vms: &["fj"], images: &[] };
    let banger = |args: &[&str]| {
        let mut c = env.banger(args);
        c.env("BANGER_RUNTIME_DIR", &rt).env("BANGER_ACCEL", "kvm");
        c
    };
    let out = Out(banger(&["daemon", "status", "--json"]).output().unwrap());
    env.note_started(&out.stderr());
    let status = out.json();
    assert_eq!(status["jailer"]["state"], "jailed", "{status}");
    assert!(status["jailer"]["detail"].as_str().unwrap().contains("own chroot"), "{status}");

    let create = banger(&["vm", "create", "--name", "fj", "--disk-size", "128M"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let jail_dir = env.state_dir().join("vms/fj/jail");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut seen = None;
    while std::time::Instant::now() < deadline {
        let shown = env.run_rt(&rt, &["vm", "show", "fj", "--json"]);
        if shown.code() == 0 {
            let v = shown.json();
            if v["state"] != "starting" && v["state"] != "stopped" {
                break;
            }
            if let (Some(pid), Some(chroot)) = (v["pid"].as_u64(), v["jail"]["chroot"].as_str()) {
                seen = Some((pid as i32, PathBuf::from(chroot), v.clone()));
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (pid, chroot, v) = seen.clone().expect("the jailed VM was seen starting, with its pid and jail");
    // Ended if an assertion below fails while it runs (a daemon stop leaves VMMs running).
    let _guard = KillJailed(pid, chroot.clone());
    assert_eq!(v["jailed"], true, "{v}");
    assert!(chroot.starts_with(&jail_dir), "{v}");
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &std::path::Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).unwrap();
    // Its `/` (pivot_root in its own mount namespace) is the chroot.
    assert_eq!(
        ino(&PathBuf::from(format!("/proc/{pid}/root/api.sock"))),
        ino(&chroot.join("api.sock")),
        "Firecracker runs chrooted"
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap_or("").to_string();
    assert!(nspid.trim_end().ends_with("\t1"), "init of its own PID namespace: {nspid}");
    // Root's daemon: Firecracker dropped to `jailer_uid` (its TAP and files are that user's).
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("").to_string();
    assert!(uid.contains("\t65534\t"), "runs as jailer_uid: {uid}");
    assert_eq!(v["jail"]["uid"], 65534, "{v}");
    // Its crash (before any guest could answer): what the daemon must clean up after.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let id = chroot.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
    let out = create.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_ne!(out.status.code(), Some(0), "the guest cannot have answered: {err}");
    assert!(err.contains("failed to start"), "{err}");
    let v = env.ok_rt(&rt, &["vm", "show", "fj", "--json"]).json();
    assert_eq!(v["state"], "failed", "{v}");
    assert!(!jail_dir.exists(), "the jail is removed after Firecracker died: {}", jail_dir.display());
    if let Some(id) = &id {
        assert!(!env.run_dir().join(format!("vms/fj/jail-{id}.sock")).exists(), "the socket link is removed");
    }
    if let Some(id) = &id {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                assert!(!cmdline.windows(id.len()).any(|w| w == id.as_bytes()), "a process of jail {id} is left");
            }
        }
    }
    env.ok_rt(&rt, &["vm", "delete", "fj"]);
    assert!(!env.state_dir().join("vms/fj").exists(), "delete leaves nothing");
    banger_testkit::report(
        "Firecracker hosts",
        "a real jailer and Firecracker under bangerd (BANGER_ACCEL=kvm past the probe)",
        &format!(
            "a jailed start seen chrooted in its own PID namespace; after its Firecracker was killed the VM failed \
             with its jail, socket link and process gone: {}",
            err.lines().last().unwrap_or("")
        ),
    );
}

/// SIGKILL for a jailed Firecracker this test caused to start, if it is still that process.
struct KillJailed(i32, PathBuf);

impl Drop for KillJailed {
    fn drop(&mut self) {
        let id = self.1.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.0)).unwrap_or_default();
        if let Some(id) = id
            && cmdline.windows(id.len()).any(|w| w == id.as_bytes())
        {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Config for a host with this binary as its Firecracker (and jailer, if `jailed`) and no QEMU.
fn fake_host_config(subnet: &str, jailed: bool) -> String {
    let me = std::env::current_exe().unwrap().display().to_string();
    format!(
        "subnet = \"{subnet}\"\nvmm = \"firecracker\"\nfirecracker_bin = {me:?}\njailer_bin = {:?}\n\
         qemu_bin = \"/nonexistent/qemu-system-x86_64\"\ndefault_memory = 512\n",
        if jailed { me.clone() } else { "none".into() }
    )
}

/// The daemon's Firecracker path to a running guest, with the fake Firecracker booting it under
/// QEMU: Firecracker's probe says KVM runs (no word of TCG), the VM starts jailed (the fake
/// jailer's layout, the disks hard-linked into it), answers SSH and `vm exec`, `vm stats` has
/// Firecracker's metrics, `vm stop` is clean and leaves no jail. Then, with a fake that prints
/// nothing, `vm create` is refused with the probe's evidence; and a user who may not open
/// /dev/kvm is told so and how to fix it.
fn a_vm_runs_through_the_firecracker_path_with_a_fake_firecracker() {
    let test = "firecracker_host (fake Firecracker)";
    let Some(qemu) = which("qemu-system-x86_64") else {
        skip(test, "the fake Firecracker boots its guest with qemu-system-x86_64, which is not installed");
        return;
    };
    let Some(rt) = e2e_runtime(test, None) else { return };
    let env = Env::new();
    env.write_config(&fake_host_config("10.213.237.0/24", true));
    let _left = Leftovers { env: &env, rt: &rt, vms: &["ff"], images: &[] };
    let run = |args: &[&str]| {
        let out =
            Out(env.banger(args).env("BANGER_RUNTIME_DIR", &rt).env("BANGER_FAKE_FC_QEMU", &qemu).output().unwrap());
        env.note_started(&out.stderr());
        out
    };
    let t0 = std::time::Instant::now();
    let status = run(&["daemon", "status", "--reprobe", "--json"]).json();
    let probe = t0.elapsed();
    assert_eq!(
        status["kvm"],
        serde_json::json!([{"vmm": "firecracker", "verdict": "runs", "detail": "KVM runs guests"}]),
        "{status}"
    );
    assert_eq!(status["jailer"]["state"], "jailed", "{status}");
    let text = run(&["daemon", "status"]).stdout();
    assert!(text.contains("firecracker: KVM runs guests") && !text.contains("TCG"), "{text}");

    let t0 = std::time::Instant::now();
    let created = run(&["vm", "create", "--name", "ff", "--disk-size", "256M"]);
    assert_eq!(created.code(), 0, "{}", created.stderr());
    let boot = t0.elapsed();
    let v = run(&["vm", "show", "ff", "--json"]).json();
    assert_eq!(
        (v["state"].as_str(), v["backend"].as_str(), v["jailed"].as_bool()),
        (Some("running"), Some("firecracker"), Some(true)),
        "{v}"
    );
    let jail_dir = env.state_dir().join("vms/ff/jail");
    let chroot = PathBuf::from(v["jail"]["chroot"].as_str().unwrap());
    assert!(chroot.starts_with(&jail_dir), "{v}");
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(&chroot.join("work.img")),
        ino(&env.state_dir().join("vms/ff/work.ext4")),
        "the work disk is hard-linked"
    );
    let shown = run(&["vm", "show", "ff"]).stdout();
    assert!(shown.contains("jail:") && shown.contains(&chroot.display().to_string()), "{shown}");
    let exec = run(&["vm", "exec", "ff", "--", "cat", "/proc/sys/kernel/hostname"]);
    assert_eq!((exec.code(), exec.stdout().as_str()), (0, "ff\n"), "{}", exec.stderr());
    let stats = run(&["vm", "stats", "ff", "--json"]).json();
    let io = &stats["vmm_io"];
    assert!(
        io["source"] == "firecracker" && io["block_read_bytes"].as_u64() >= Some(4096),
        "Firecracker's metrics: {stats}"
    );
    let id = chroot.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
    let pid = v["pid"].as_i64().unwrap() as i32;
    let stopped = run(&["vm", "stop", "ff"]);
    assert_eq!(stopped.code(), 0, "{}", stopped.stderr());
    assert!(wait_gone(pid, std::time::Duration::from_secs(10)), "the fake Firecracker exits with its guest");
    assert!(!jail_dir.exists(), "stop removes the jail");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        assert!(!cmdline.windows(id.len()).any(|w| w == id.as_bytes()), "a process of jail {id} is left");
    }
    run(&["vm", "delete", "ff"]);

    // A Firecracker whose guest prints nothing: refused with what the probe saw.
    let silent = Env::new();
    silent.write_config(&fake_host_config("10.213.238.0/24", false));
    let out = silent.run_rt(&rt, &["vm", "create", "--name", "fs", "--disk-size", "128M"]);
    assert_eq!(out.code(), 4, "{}", out.stderr());
    let err = out.stderr();
    assert!(err.contains("probe boot under Firecracker failed") && err.contains("printed nothing"), "{err}");
    assert!(err.contains("Firecracker's log") && !err.contains("TCG"), "{err}");
    // Created, never started: stopped (a `vm start` after fixing the host tries again).
    let v = silent.ok_rt(&rt, &["vm", "show", "fs", "--json"]).json();
    assert_eq!((v["state"].as_str(), v["pid"].as_u64()), (Some("stopped"), None), "{v}");

    // A user who may not open /dev/kvm (uid 65534 here, where it is root's alone).
    let kvm_open_to_nobody = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata("/dev/kvm").map(|m| m.permissions().mode() & 0o006 == 0o006).unwrap_or(true)
    };
    if kvm_open_to_nobody {
        skip(test, "the no-/dev/kvm-access case: /dev/kvm is missing or open to everyone on this host");
    } else {
        let nobody = Env::new();
        nobody.write_config(&fake_host_config("10.213.239.0/24", false));
        for dir in ["home", "run", "state", "config", "cache"] {
            std::fs::create_dir_all(nobody.path(dir)).unwrap();
        }
        let chown =
            std::process::Command::new("chown").args(["-R", "65534:65534"]).arg(nobody.tmp.path()).status().unwrap();
        assert!(chown.success());
        let out = {
            use std::os::unix::process::CommandExt;
            Out(nobody
                .banger(&["vm", "create", "--name", "fn", "--disk-size", "128M"])
                .env("BANGER_RUNTIME_DIR", &rt)
                .uid(65534)
                .gid(65534)
                .output()
                .unwrap())
        };
        nobody.note_started(&out.stderr());
        assert_eq!(out.code(), 4, "{}", out.stderr());
        let err = out.stderr();
        assert!(err.contains("may not open /dev/kvm") && err.contains("usermod -aG kvm"), "{err}");
        assert!(err.contains("--reprobe"), "{err}");
    }
    banger_testkit::report(
        "Firecracker hosts",
        "no QEMU for the daemon (`qemu_bin` at nothing, `vmm = \"firecracker\"`); a fake Firecracker (and jailer) booting what it is configured with under QEMU",
        &format!(
            "probe: KVM runs ({:.1}s, never a word of TCG); a jailed VM answered SSH in {:.1}s, ran `vm exec`, had Firecracker's metrics, stopped cleanly leaving no jail; a silent guest: refused with the probe's evidence; no /dev/kvm access: refused with the fix",
            probe.as_secs_f64(),
            boot.as_secs_f64()
        ),
    );
}
