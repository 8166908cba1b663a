//! End-to-end bundle build (network + root + mmdebstrap; slow). Runs only with
//! `BANGER_TEST_IMAGE_BUILD=1`. The init binary comes from `BANGER_INIT_BINARY`, or is built
//! statically here with cargo.

use banger_image::{RuntimeOptions, build_runtime, cpio};
use std::path::{Path, PathBuf};
use std::process::Command;

const MAX_ALLOCATED_MIB: u64 = 700;

fn init_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("BANGER_INIT_BINARY") {
        return PathBuf::from(p);
    }
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("guest-init-static");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "banger-guest-init", "--target", "x86_64-unknown-linux-gnu", "--target-dir"])
        .arg(&target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static -C strip=symbols")
        .status()
        .expect("run cargo");
    assert!(status.success(), "building banger-init failed");
    target_dir.join("x86_64-unknown-linux-gnu/release/banger-init")
}

fn debugfs(image: &Path, req: &str) -> String {
    let o = Command::new("debugfs").arg("-R").arg(req).arg(image).output().expect("debugfs");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn build_runtime_bundle_without_docker() {
    if std::env::var("BANGER_TEST_IMAGE_BUILD").as_deref() != Ok("1") {
        println!(
            "\n*** SKIPPED build_runtime_bundle_without_docker: set BANGER_TEST_IMAGE_BUILD=1 to run it \
                  (needs root, network to the Debian mirror, mmdebstrap, e2fsprogs, dpkg, kmod; ~2 min) ***\n"
        );
        return;
    }
    let init = init_binary();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runtime");
    let opts = RuntimeOptions { out_dir: out.clone(), init_binary: init, docker: false, ..Default::default() };
    let s = build_runtime(&opts, &|m| eprintln!("build: {m}")).expect("build_runtime");
    assert_eq!(s.out_dir, out);

    // ELF vmlinux.
    let vmlinux = std::fs::read(out.join("vmlinux")).unwrap();
    assert!(vmlinux.starts_with(b"\x7fELF\x02"));
    // cpio initrd with init and the dm-snapshot module.
    let initrd = std::fs::read(out.join("initrd.img")).unwrap();
    let names: Vec<String> = cpio::list(&initrd).unwrap().into_iter().map(|e| e.0).collect();
    assert!(names.iter().any(|n| n == "init"), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with("dm-snapshot.ko")), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with("/modules.dep")), "{names:?}");
    assert!(out.join("modules").join(&s.kernel_release).join("modules.dep").is_file());

    // rootfs: authorized key present, no host keys, sparse.
    let rootfs = out.join("rootfs.ext4");
    let key = std::fs::read_to_string(out.join("id_ed25519.pub")).unwrap();
    let ak = debugfs(&rootfs, "cat /etc/ssh/authorized_keys.d/root");
    assert_eq!(ak.trim(), key.trim());
    let ssh_dir = debugfs(&rootfs, "ls /etc/ssh");
    assert!(ssh_dir.contains("sshd_config"), "{ssh_dir}");
    assert!(!ssh_dir.contains("ssh_host_"), "host keys baked into the image: {ssh_dir}");
    assert!(debugfs(&rootfs, "stat /etc/systemd/system/banger-hostkeys.service").contains("Inode:"));
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(&rootfs).unwrap();
    let alloc_mib = (md.blocks() * 512) >> 20;
    println!("rootfs.ext4: {} MiB apparent, {alloc_mib} MiB allocated", md.len() >> 20);
    assert!(alloc_mib < MAX_ALLOCATED_MIB, "rootfs allocates {alloc_mib} MiB");
    assert!(md.len() >= 4096 << 20);

    let toml = std::fs::read_to_string(out.join("bundle.toml")).unwrap();
    assert!(toml.contains(&s.kernel_release));
    assert!(!out.join("rootfs-docker.ext4").exists());
    // Staging/work dirs are gone.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}
