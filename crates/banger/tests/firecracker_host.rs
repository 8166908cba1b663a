//! A Firecracker host without QEMU: `vmm = "firecracker"`, `qemu_bin` pointing at nothing and no
//! QEMU on `PATH`. KVM is judged by Firecracker's own probe boot, `daemon status` reports that
//! verdict and never TCG, and a VM either runs (where KVM runs guests) or is refused with the
//! probe's evidence (where it cannot, as on the development machines).
//!
//! Needs a real Firecracker (`BANGER_TEST_FIRECRACKER=/path/to/firecracker`, built outside the
//! repository; skipped loudly without it), root and a runtime bundle (`BANGER_TEST_RUNTIME`).

mod common;

use common::*;
use std::path::PathBuf;

#[test]
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
#[test]
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
         qemu_bin = \"/nonexistent/qemu-system-x86_64\"\ndefault_memory = 256\n",
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
    let mut id = None;
    // Ended if an assertion below fails while it runs (a daemon stop leaves VMMs running).
    let _guard = seen.as_ref().map(|(pid, chroot, _)| KillJailed(*pid, chroot.clone()));
    if let Some((pid, chroot, v)) = &seen {
        assert_eq!(v["jailed"], true, "{v}");
        assert!(chroot.starts_with(&jail_dir), "{v}");
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        // Its `/` (pivot_root in its own mount namespace) is the chroot.
        if let Some(root) = ino(&PathBuf::from(format!("/proc/{pid}/root/api.sock"))) {
            assert_eq!(Some(root), ino(&chroot.join("api.sock")), "Firecracker runs chrooted");
            let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap_or("").to_string();
            assert!(nspid.trim_end().ends_with("\t1"), "init of its own PID namespace: {nspid}");
            // Its crash: what the daemon must clean up after.
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        }
        id = chroot.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
    }
    let out = create.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_ne!(out.status.code(), Some(0), "the guest cannot have answered: {err}");
    assert!(err.contains("failed to start"), "{err}");
    eprintln!("jailed VM seen running: {}; vm create said: {}", seen.is_some(), err.trim());
    let v = env.ok_rt(&rt, &["vm", "show", "fj", "--json"]).json();
    assert_eq!(v["state"], "failed", "{v}");
    assert!(!jail_dir.exists(), "the jail is removed after Firecracker died: {}", jail_dir.display());
    assert!(!env.run_dir().join("vms/fj/fc.sock").exists(), "the socket link is removed");
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
            "jailed start {}; after Firecracker died the VM failed with its jail, socket link and process gone: {}",
            if seen.is_some() { "seen chrooted in its own PID namespace" } else { "ended before it could be seen" },
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
