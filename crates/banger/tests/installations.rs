//! Two installations on one host with the same subnet (two users, or two state dirs of one
//! user): each skips the /30s the other's running VMs use, and a VM whose /30 the other took
//! while it was stopped refuses to start, saying why — it never reaches the other's VM. And each
//! logs in with its own key: neither the other's nor the bundle's opens its VMs.
//!
//! Needs root and a runtime bundle (`BANGER_TEST_RUNTIME`; `make test` sets it); skipped loudly
//! otherwise — unless `BANGER_E2E_REQUIRED=1`, when that is a failure.

mod common;

use common::*;
use std::os::unix::process::CommandExt;

#[test]
fn two_installations_with_one_subnet_never_share_an_address() {
    let Some(rt) = e2e_runtime("installations", None) else { return };
    let config = "subnet = \"10.213.226.0/24\"\nvmm = \"qemu\"\ndefault_memory = 512\n";
    let (a, b) = (Env::new(), Env::new());
    a.write_config(config);
    b.write_config(config);
    let _a_left = Leftovers { env: &a, rt: &rt, vms: &["a1"], images: &[] };
    let _b_left = Leftovers { env: &b, rt: &rt, vms: &["b1", "b2"], images: &[] };

    // B registers a VM while A has none: slot 0.
    let b1 = b.ok_rt(&rt, &["vm", "create", "--name", "b1", "--no-start", "--disk-size", "64M", "--json"]).json();
    assert_eq!(b1["ip"], "10.213.226.2");
    // A knows nothing of it and boots its own VM in slot 0.
    let a1 = a.ok_rt(&rt, &["vm", "create", "--name", "a1", "--disk-size", "64M", "--json"]).json();
    assert_eq!(a1["ip"], "10.213.226.2");

    // B's VM now refuses to start: its /30 is A's.
    let refused = b.run_rt(&rt, &["vm", "start", "b1"]);
    assert_eq!(refused.code(), 4, "{}", refused.stderr());
    let err = refused.stderr();
    assert!(err.contains("10.213.226.0/30 are in use on this host"), "{err}");
    assert!(err.contains(a1["tap"].as_str().unwrap()), "names the other link: {err}");
    // A new VM of B's skips A's slot.
    let b2 = b.ok_rt(&rt, &["vm", "create", "--name", "b2", "--no-start", "--disk-size", "64M", "--json"]).json();
    assert_eq!(b2["ip"], "10.213.226.6");
    // A's VM is A's: its SSH works with A's own key and pinned host key ...
    assert_eq!(a.ok_rt(&rt, &["vm", "ssh", "a1", "--", "hostname"]).stdout().trim(), "a1");
    // ... and nobody else's key opens it: not B's, not the bundle's (which every user of the
    // same bundle has).
    let b_key = b.state_dir().join("ssh/id_ed25519");
    assert!(b_key.is_file(), "B made its own key");
    assert_ne!(std::fs::read(&b_key).unwrap(), std::fs::read(a.state_dir().join("ssh/id_ed25519")).unwrap());
    for key in [b_key, rt.join("id_ed25519")] {
        let out = std::process::Command::new("ssh")
            .args(["-i"])
            .arg(&key)
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"])
            .args(["root@10.213.226.2", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(255), "{} must not log in: {out:?}", key.display());
        assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{out:?}");
    }
    banger_testkit::report(
        "Many users on one host",
        "two installations with one subnet",
        "distinct /30s; a VM whose /30 the other took refuses to start (exit 4); each VM opens only to its own \
         installation's key (the other's and the bundle's: Permission denied)",
    );

    // Another (non-root) user cannot read A's key, disks or database, nor use its socket.
    let state = a.state_dir();
    for (what, path) in [
        ("key", state.join("ssh/id_ed25519")),
        ("work disk", state.join("vms/a1/work.ext4")),
        ("database", state.join("state.db")),
    ] {
        let out = std::process::Command::new("cat").arg(&path).uid(65534).gid(65534).output().unwrap();
        assert!(!out.status.success(), "uid 65534 read A's {what}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{what}: {out:?}");
    }
    assert_eq!(mode(&state) & 0o077, 0, "state dir private");
    assert_eq!(mode(&state.join("ssh/id_ed25519")), 0o600);
    let out = std::process::Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(a.socket())
        .arg("http://bangerd/v1/vms")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "uid 65534 cannot even connect to A's socket: {out:?}");
    banger_testkit::report(
        "Many users on one host",
        "uid 65534 reads another user's key, work disk, database; uses its socket",
        "Permission denied (state dir 0700, key 0600); the socket cannot be reached (run dir 0700; the daemon also \
         refuses other uids by SO_PEERCRED)",
    );
}
