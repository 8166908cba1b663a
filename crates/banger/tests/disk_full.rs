//! A state filesystem too small for a VM (a 200 MiB loop-mounted ext4 as the state dir): `vm
//! create` fails before writing, saying what needs how much and what is free; nothing is left
//! half-made and the database stays readable.
//!
//! Needs root (a loop mount) and a runtime bundle (`BANGER_TEST_RUNTIME`; `make test` sets it);
//! skipped loudly otherwise — unless `BANGER_E2E_REQUIRED=1`, when that is a failure.

mod common;

use common::*;
use std::process::Command;

/// Unmounts the small state filesystem (after stopping the daemon that uses it).
struct Mounted<'a> {
    env: &'a Env,
    at: std::path::PathBuf,
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        self.env.run(&["daemon", "stop"]);
        let _ = Command::new("umount").arg(&self.at).status();
    }
}

#[test]
fn a_full_state_filesystem_fails_clearly_and_leaves_nothing() {
    let Some(rt) = e2e_runtime("disk_full", None) else { return };
    let env = Env::new();
    env.write_config("subnet = \"10.213.229.0/24\"\nvmm = \"qemu\"\n");
    let img = env.path("state.img");
    let at = env.path("state");
    std::fs::create_dir_all(&at).unwrap();
    std::fs::File::create(&img).unwrap().set_len(200 << 20).unwrap();
    assert!(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img).status().unwrap().success());
    assert!(Command::new("mount").args(["-o", "loop"]).arg(&img).arg(&at).status().unwrap().success());
    let _mounted = Mounted { env: &env, at: at.clone() };

    // The base image (on another filesystem) must be copied, and does not fit.
    let out = env.run_rt(&rt, &["vm", "create", "--name", "full1", "--no-start", "--disk-size", "64M"]);
    assert_ne!(out.code(), 0);
    let err = out.stderr();
    eprintln!("{err}");
    assert!(err.contains("not enough free space in"), "{err}");
    assert!(err.contains("a copy of the base image"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("banger: error:")).count(), 1, "one sentence: {err}");

    // Nothing half-made; the database answers.
    let list = env.ok_rt(&rt, &["vm", "list", "--json"]).json();
    assert_eq!(list["vms"].as_array().unwrap().len(), 0);
    let state = env.state_dir();
    let images: Vec<_> = std::fs::read_dir(state.join("images")).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(images.is_empty(), "no pinned or temporary image: {images:?}");
    let vms: Vec<_> = std::fs::read_dir(state.join("vms")).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(vms.is_empty(), "no VM directory: {vms:?}");
    let said = err.lines().find(|l| l.starts_with("banger: error:")).unwrap_or_default().to_string();
    banger_testkit::report(
        "Disk full",
        "`vm create` with a 200 MiB state filesystem",
        &format!(
            "refused (exit {}): \"{}\"; nothing left, database readable",
            out.code(),
            said.trim_start_matches("banger: error: ")
        ),
    );
}
