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
